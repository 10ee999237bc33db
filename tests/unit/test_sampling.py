"""The seeded training order: a function of (seed, epoch), resumable at any position."""

import torch

from semclust.data import MultiViewDataset, make_loader
from semclust.data.datasets import FeatureDataset
from semclust.data.sampling import SampleKey, SeededShuffleSampler, mix_seed


def test_the_order_depends_on_seed_and_epoch_only():
    first, again, other = SeededShuffleSampler(50, 7), SeededShuffleSampler(50, 7), None
    assert list(first) == list(again)
    first.set_epoch(1)
    again.set_epoch(1)
    assert list(first) == list(again)
    other = SeededShuffleSampler(50, 8)
    other.set_epoch(1)
    assert [key.index for key in first] != [key.index for key in other]
    assert sorted(key.index for key in first) == list(range(50))
    first.set_epoch(2)
    assert [key.index for key in first] != [key.index for key in again]


def test_resuming_at_a_position_yields_the_rest_of_that_epoch_then_whole_epochs():
    sampler = SeededShuffleSampler(20, 3)
    sampler.set_epoch(4)
    whole = list(sampler)
    resumed = SeededShuffleSampler(20, 3)
    resumed.resume_at(4, 12)
    assert list(resumed) == whole[12:]
    assert list(resumed) == whole  # the position applies to one iteration only


def test_views_follow_the_sample_seed_whatever_the_global_state_or_workers():
    dataset = MultiViewDataset(
        FeatureDataset(torch.zeros(8, 3).numpy()), {"noisy": lambda x: x + torch.rand(3)}
    )
    key = SampleKey(5, mix_seed(1, 2, 5))
    torch.manual_seed(0)
    first = dataset[key]["noisy"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert torch.equal(dataset[key]["noisy"], first)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is kept
    assert not torch.equal(dataset[SampleKey(5, mix_seed(1, 3, 5))]["noisy"], first)
    in_process = [batch["noisy"] for batch in make_loader(dataset, 4, True, 0, seed=9)]
    in_workers = [batch["noisy"] for batch in make_loader(dataset, 4, True, 2, seed=9)]
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_workers, strict=True))

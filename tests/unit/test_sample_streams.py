"""Per-sample random streams: exact SplitMix64, uniform draws, rows that follow their sample."""

import random

import pytest
import torch

from semclust.data.sample_streams import SampleStreams, draw_integers, draw_uniform, splitmix64

MASK = (1 << 64) - 1


def splitmix_reference(value: int) -> int:
    """SplitMix64's output function on Python integers (Vigna's C code, mod 2**64)."""
    z = value & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_splitmix_on_int64_tensors_is_the_unsigned_algorithm():
    rng = random.Random(0)
    values = [rng.getrandbits(64) for _ in range(2000)] + [0, 1, MASK, 1 << 63]
    signed = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values])
    mixed = [v & MASK for v in splitmix64(signed).tolist()]
    assert mixed == [splitmix_reference(v) for v in values]


def test_a_sample_draws_the_same_numbers_in_any_batch_and_position():
    whole, alone = SampleStreams([5, 6, 7, 8]), SampleStreams([7])
    for shape in ((4, 3), (4,), (4, 2, 5)):
        rows = whole.rand(shape)
        assert torch.equal(rows[2], alone.rand((1, *shape[1:]))[0])
    assert torch.equal(SampleStreams([1, 2]).rand((2, 6))[0], SampleStreams([1, 3]).rand((2, 6))[0])
    assert not torch.equal(SampleStreams([1]).rand((1, 6)), SampleStreams([2]).rand((1, 6)))
    stream = SampleStreams([3])
    assert not torch.equal(stream.rand((1, 4)), stream.rand((1, 4)))  # the stream moves on
    stepwise = SampleStreams([3])
    parts = torch.cat([stepwise.rand((1, 4)), stepwise.rand((1, 2))], dim=1)
    assert torch.equal(parts, SampleStreams([3]).rand((1, 6)))


def test_draws_are_uniform_and_exact_in_their_precision():
    draws = SampleStreams(range(4000)).rand((4000, 25), torch.float64).flatten()
    assert draws.min() >= 0 and draws.max() < 1
    counts = torch.histc(draws, bins=20, min=0, max=1)
    expected = len(draws) / 20
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 45  # 19 degrees of freedom: p < 1e-3 above ~43.8
    pairs = draws.view(4000, 25)
    correlation = torch.corrcoef(torch.stack([pairs[:, 0], pairs[:, 1]]))[0, 1]
    assert abs(correlation) < 0.06  # consecutive numbers of a stream are independent
    singles = SampleStreams(range(100)).rand((100, 10))
    assert singles.dtype == torch.float32 and singles.max() < 1
    assert torch.equal(singles * 2**24, (singles * 2**24).floor())  # 24 random bits each


def test_integers_and_the_generator_path():
    integers = SampleStreams(range(3000)).randint(5, (3000, 2))
    assert integers.min() == 0 and integers.max() == 4
    assert torch.bincount(integers.flatten(), minlength=5).min() > 0.17 * integers.numel()
    generator = torch.Generator().manual_seed(3)
    expected = torch.rand((4, 2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(draw_uniform(generator, (4, 2)), expected)
    expected = torch.randint(3, (6,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(draw_integers(torch.Generator().manual_seed(1), 3, (6,)), expected)
    streams = SampleStreams([1, 2])
    assert torch.equal(draw_integers(streams, 5, (2, 3)), SampleStreams([1, 2]).randint(5, (2, 3)))
    with pytest.raises(ValueError, match="draws for 2 samples must have shape"):
        SampleStreams([1, 2]).rand((3, 1))

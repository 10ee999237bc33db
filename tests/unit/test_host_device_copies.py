"""Views made on the training device never make the host wait for it.

A blocking host-to-device copy (``tensor.to("cuda")``, ``torch.tensor(..., device="cuda")``)
synchronises the stream, and a read back (``.cpu()``, ``.item()``) waits for the device too.
On the CPU neither shows, so these tests make the views of images on the ``meta`` device: a
read back of a meta tensor raises, and every copy onto it is recorded with its ``non_blocking``
flag. On a CUDA machine the last test runs the same batches under CUDA's sync debug mode.
"""

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader

from semclust.data import make_loader
from semclust.data.batch_views import build_batch_transforms
from semclust.data.device_views import DecodedViews, ViewPlan, apply_view_plan
from semclust.data.sample_streams import SampleStreams
from semclust.losses import confidence_cross_entropy, scan_loss
from semclust.transfer import on_device, recorded_device_work

VIEWS = ("pretext", "weak", "strong", "eval")
RECIPES = {
    "natural": (3, 32, [0.49, 0.48, 0.45], [0.2, 0.2, 0.2]),
    "small_grayscale": (1, 16, [0.3], [0.4]),
}


def blocking_transfers(function, *args) -> tuple[list[str], object]:
    """The copies from the host that ``function(*args)`` waits for, and what it returns."""
    with recorded_device_work() as work:
        result = function(*args)
    return work.waits, result


def blocking(function, *args) -> list[str]:
    return blocking_transfers(function, *args)[0]


def test_the_recorders_see_the_copies_that_would_wait():
    images = torch.zeros(4, 3, 8, 8, device="meta")
    assert blocking(lambda: torch.ones(4).to(images.device)) == ["aten._to_copy.default"]
    assert blocking(lambda: torch.tensor([0.5], device="meta")) == ["tensor"]
    assert blocking(lambda: torch.ones(4).to("meta", non_blocking=True)) == []
    assert blocking(on_device, [0.5, 0.2], images, torch.float32) == []
    with recorded_device_work() as work:
        (images * 2).sum()
        torch.ones(3).sum()  # on the host: not counted
    assert work.ops == 2
    with pytest.raises(NotImplementedError):
        images.cpu()  # so a view that read a device value back could not pass unseen


def test_on_device_keeps_values_and_converts_on_the_way():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.float16)
    moved = on_device(torch.tensor([0.1, 0.2], dtype=torch.float64), images, images.dtype)
    assert moved.dtype == torch.float16 and torch.equal(moved, torch.tensor([0.1, 0.2]).half())
    assert on_device((1, 2), images).tolist() == [1, 2]
    if torch.cuda.is_available():
        on_gpu = on_device(torch.arange(3), images.cuda())
        assert on_gpu.is_cuda and on_device(on_gpu, on_gpu).data_ptr() == on_gpu.data_ptr()


@pytest.mark.parametrize("rotation_invariant", [False, True], ids=["upright", "turned"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_view_queues_its_copies_and_reads_nothing_back(recipe, rotation_invariant):
    channels, size, mean, std = RECIPES[recipe]
    views = build_batch_transforms(recipe, size, mean, std, rotation_invariant=rotation_invariant)
    images = torch.zeros(64, channels, size, size, dtype=torch.uint8, device="meta")
    for name in VIEWS:
        found, made = blocking_transfers(views.get(name), images, SampleStreams(range(64)))
        assert found == [], name
        assert made.shape == (64, channels, size, size) and made.is_meta


def _training_batches() -> tuple[DataLoader, list[str]]:
    """SCAN-style batches of 48 natural images (both view sources), as a stage loads them."""
    channels, size, mean, std = RECIPES["natural"]
    transforms = build_batch_transforms("natural", size, mean, std)
    plan = ViewPlan(
        {
            "view_a": ("anchor", transforms.pretext),
            "anchor": ("anchor", transforms.strong),
            "neighbor": ("neighbor", transforms.strong),
            "weak": ("anchor", transforms.weak),
        }
    )
    pixels = torch.randint(0, 256, (100, channels, size, size), dtype=torch.uint8)
    neighbors = np.stack([np.roll(np.arange(100), -s)[1:6] for s in range(100)])
    dataset = DecodedViews(pixels, np.arange(100) % 10, plan, neighbors)
    loader = make_loader(dataset, 48, True, 0, drop_last=True, seed=3, collate_fn=dataset.collate)
    return loader, list(plan.views)


def test_a_batch_s_random_streams_stay_on_the_host_when_it_moves():
    loader, names = _training_batches()
    batch = move_data_to_device(next(iter(loader)), torch.device("meta"))  # as Lightning does
    assert batch["pixels"].is_meta and batch["neighbor_pixels"].is_meta
    # Until 2026-12-07 the seeds were a tensor, moved with the batch and read back: an error here.
    found, made = blocking_transfers(apply_view_plan, batch)
    assert found == []
    assert all(made[name].is_meta for name in names) and "pixels" not in made


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_batch_is_moved_and_viewed_without_a_synchronisation():
    loader, names = _training_batches()
    first, second = list(loader)[:2]
    assert first["pixels"].is_pinned() and first["neighbor_pixels"].is_pinned()
    cuda = torch.device("cuda")
    apply_view_plan(move_data_to_device(first, cuda))  # warm-up: CUDA context, pinned blocks
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        made = apply_view_plan(move_data_to_device(second, cuda))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert all(made[name].is_cuda for name in names)
    assert made["view_a"].shape == (48, 3, 32, 32)


@pytest.mark.parametrize("class_balancing", [True, False])
def test_the_scan_and_self_label_losses_never_read_the_device_back(class_balancing):
    # Until 2026-12-07 the self-label loss selected its confident rows and counted them with
    # bincount, each a read back (an error on meta); on a GPU two waits every step.
    weak = torch.randn(16, 10, device="meta")
    strong = torch.randn(16, 10, device="meta", requires_grad=True)
    with recorded_device_work() as work:
        loss, confident = confidence_cross_entropy(weak, strong, 0.9, class_balancing, True)
        loss.backward()
        scan_loss(strong, weak, 5.0, across_processes=True).total.backward()
    assert work.waits == [] and loss.is_meta and confident.is_meta

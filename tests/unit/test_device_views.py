"""Decoded images and batches whose views the training device makes (the batched input path)."""

import numpy as np
import pytest
import torch
from PIL import Image

from semclust.data import DigitsDataset, make_loader
from semclust.data.batch_views import build_batch_transforms
from semclust.data.datasets import FeatureDataset, ImageDataset
from semclust.data.decoded import (
    GIB,
    ViewMaker,
    choose_input_path,
    choose_view_maker,
    decode_all,
    decoded_images,
    size_text,
)
from semclust.data.device_views import PLAN_KEY, DecodedViews, ViewPlan, apply_view_plan
from semclust.data.sampling import SampleKey, mix_seed

GRAY = {
    "channels": 1,
    "image_size": 16,
    "augment": {"recipe": "small_grayscale"},
    "input_path": "auto",
    "batched_max_gib": 8,
}
NATURAL = {**GRAY, "channels": 3, "image_size": 32, "augment": {"recipe": "natural"}}


class PhotoSet(ImageDataset):
    """RGB PIL images of a given size whose pixels encode the image index."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self.targets = np.arange(count) % 3

    def __len__(self) -> int:
        return self.count

    def load_image(self, index: int) -> Image.Image:
        pixels = np.full((self.size, self.size, 3), index, dtype=np.uint8)
        pixels[0, 0] = (255, 0, 0)
        return Image.fromarray(pixels)


def test_auto_batches_when_nothing_but_speed_changes():
    digits = choose_input_path(GRAY, DigitsDataset("test"))  # 8x8 upsampled: same views
    assert digits.batched and digits.reason == "90 KiB decoded"  # 360 images of 16x16
    assert choose_input_path(NATURAL, PhotoSet(20, 32)).batched
    bigger = choose_input_path(NATURAL, PhotoSet(20, 48))  # crops of full-size photos differ
    assert not bigger.batched and bigger.reason == "images stored at 48x48, not 32x32"
    assert choose_input_path({**NATURAL, "input_path": "batched"}, PhotoSet(20, 48)).batched
    assert not choose_input_path({**GRAY, "input_path": "per_image"}, DigitsDataset("test")).batched
    too_big = choose_input_path({**GRAY, "batched_max_gib": 1e-6}, DigitsDataset("test"))
    assert not too_big.batched and "exceeds data.batched_max_gib=1e-06" in too_big.reason
    features = FeatureDataset(np.zeros((10, 4), dtype=np.float32))
    assert choose_input_path(GRAY, features).reason == "cached features, not images"
    with pytest.raises(ValueError, match="data.input_path must be one of auto, batched"):
        choose_input_path({**GRAY, "input_path": "gpu"}, features)


def test_sizes_are_logged_in_a_unit_that_shows_them():
    assert [size_text(n) for n in (940, 23 * 1024 + 5, 146 << 20, int(1.25 * GIB))] == [
        "940 B",
        "23 KiB",
        "146 MiB",
        "1.2 GiB",
    ]


def test_decoding_keeps_every_pixel_and_resizes_only_other_sizes():
    digits = DigitsDataset("test")
    decoded = decode_all(digits, 1, 8, num_workers=0)
    assert decoded.dtype == torch.uint8 and torch.equal(decoded, digits.images)
    photos = decode_all(PhotoSet(5, 32), 3, 32, num_workers=0)
    assert photos.shape == (5, 3, 32, 32)
    assert photos[3, :, 5, 5].tolist() == [3, 3, 3] and photos[3, :, 0, 0].tolist() == [255, 0, 0]
    assert decode_all(PhotoSet(5, 48), 3, 32, num_workers=0).shape == (5, 3, 32, 32)
    with pytest.raises(ValueError, match="an image has 3 channels, the data config 1"):
        decode_all(PhotoSet(2, 8), 1, 8, num_workers=0)


def test_decoded_images_are_kept_for_later_stages_under_their_key():
    digits = DigitsDataset("test")
    first = decoded_images(digits, 1, 16, 0, "digits-test")
    assert decoded_images(digits, 1, 16, 0, "digits-test") is first
    assert decoded_images(digits, 1, 16, 0, None) is not first


def _plan(**views: tuple[str, str]) -> ViewPlan:
    transforms = build_batch_transforms("small_grayscale", 16, [0.3], [0.4])
    return ViewPlan(
        {name: (source, transforms.get(view)) for name, (source, view) in views.items()}
    )


def _batches(
    dataset: DecodedViews, seed: int = 4, epoch: int = 0, start: int = 0, batch_size: int = 32
) -> list:
    loader = make_loader(
        dataset, batch_size, True, 0, drop_last=True, seed=seed, collate_fn=dataset.collate
    )
    loader.sampler.resume_at(epoch, start)
    return [apply_view_plan(batch) for batch in loader]


def test_loader_processes_make_the_views_by_default_only_when_a_gpu_trains():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    with_workers = {**NATURAL, "num_workers": 4, "batch_views_in": "auto"}
    on_gpu = choose_view_maker(with_workers, cuda)
    assert on_gpu.in_loader and "a GPU trains" in on_gpu.reason
    assert choose_view_maker(with_workers, cpu) == ViewMaker(False, "training on cpu")
    assert choose_view_maker({**with_workers, "num_workers": 0}, cuda).reason == (
        "data.num_workers=0"
    )
    assert not choose_view_maker({**with_workers, "batch_views_in": "device"}, cuda).in_loader
    assert choose_view_maker({**with_workers, "batch_views_in": "workers"}, cpu).in_loader
    assert not choose_view_maker(NATURAL, cuda).in_loader  # no loader processes given
    stl10 = choose_view_maker({**with_workers, "image_size": 96}, cuda)
    assert stl10 == ViewMaker(False, "96 px views cost the CPU more than the GPU")
    with pytest.raises(ValueError, match="data.batch_views_in must be one of auto, device"):
        choose_view_maker({**with_workers, "batch_views_in": "gpu"}, cuda)


def test_batches_carry_their_plan_until_the_device_applies_it():
    digits = DigitsDataset("test")
    dataset = DecodedViews(digits.images, digits.targets, _plan(a=("anchor", "pretext")))
    batch = dataset.collate([3, 1, 2])
    assert batch[PLAN_KEY] is dataset.plan and batch["pixels"].dtype == torch.uint8
    assert batch["index"].tolist() == [3, 1, 2]
    assert batch["target"].tolist() == digits.targets[[3, 1, 2]].tolist()
    made = apply_view_plan(batch)
    assert made["a"].shape == (3, 1, 16, 16) and made["a"].dtype == torch.float32
    assert "pixels" not in made and PLAN_KEY not in made
    assert apply_view_plan({"image": 1}) == {"image": 1}  # a per-image batch passes as it is


def _decoded(
    recipe: str, count: int, views: dict[str, tuple[str, str]], views_in_collate: bool = False
) -> DecodedViews:
    """``count`` images for a recipe, its ``views`` ({name: (source, view)}) planned, and each
    image's next five as its neighbours."""
    if recipe == "natural":
        images = decode_all(PhotoSet(count, 32), 3, 32, num_workers=0)
        transforms = build_batch_transforms("natural", 32, [0.5] * 3, [0.2] * 3)
    else:
        images = DigitsDataset("test").images[:count]
        transforms = build_batch_transforms("small_grayscale", 16, [0.3], [0.4])
    plan = ViewPlan({name: (source, transforms.get(v)) for name, (source, v) in views.items()})
    neighbors = np.stack([np.roll(np.arange(count), -s)[1:6] for s in range(count)])
    return DecodedViews(images, None, plan, neighbors, views_in_collate)


#: SCAN's strong pairs and a SimCLR view.
PAIRS = {
    "anchor": ("anchor", "strong"),
    "neighbor": ("neighbor", "strong"),
    "pretext": ("anchor", "pretext"),
}


@pytest.mark.parametrize("recipe", ["small_grayscale", "natural"])
def test_the_collate_makes_the_views_the_device_would_make(recipe):
    keys = [SampleKey(index, mix_seed(3, index)) for index in (5, 0, 9, 2)]
    made_there = _decoded(recipe, 64, PAIRS, views_in_collate=True).collate(keys)
    made_after = apply_view_plan(_decoded(recipe, 64, PAIRS).collate(keys))
    assert made_there.keys() == made_after.keys()
    assert PLAN_KEY not in made_there and "pixels" not in made_there
    for name, value in made_after.items():
        assert torch.equal(made_there[name], value), name
    assert made_there["anchor"].dtype == torch.float32
    assert not torch.equal(made_there["anchor"], made_there["neighbor"])


@pytest.mark.parametrize("recipe", ["small_grayscale", "natural"])
def test_loader_processes_hand_over_the_batches_the_training_process_makes(recipe):
    """Two worker processes (one thread each) against the views made after the batch's move."""
    in_collate = _decoded(recipe, 64, PAIRS, views_in_collate=True)
    loader = make_loader(
        in_collate, 16, True, 2, drop_last=True, seed=4, collate_fn=in_collate.collate
    )
    from_workers = list(loader)
    by_device = _batches(_decoded(recipe, 64, PAIRS), batch_size=16)
    assert len(from_workers) == len(by_device) == 4
    for a, b in zip(from_workers, by_device, strict=True):
        assert a.keys() == b.keys() and PLAN_KEY not in a
        for name in a:
            assert torch.equal(a[name], b[name]), name


def test_views_depend_on_the_samples_seeds_so_a_resumed_epoch_repeats_them():
    digits = DigitsDataset("test")
    plan = _plan(view_a=("anchor", "pretext"), view_b=("anchor", "pretext"))
    dataset = DecodedViews(digits.images, digits.targets, plan)
    whole = _batches(dataset, epoch=2)
    resumed = _batches(dataset, epoch=2, start=5 * 32)  # from the sixth batch on
    assert len(resumed) == len(whole) - 5
    for a, b in zip(whole[5:], resumed, strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["view_a"], b["view_a"])
    first = whole[0]
    assert not torch.equal(first["view_a"], first["view_b"])  # two draws, not one view twice
    other_epoch = _batches(dataset, epoch=3)[0]
    assert not torch.equal(other_epoch["view_a"], first["view_a"])


def test_scan_pairs_draw_each_neighbour_from_the_sample_s_own_list():
    digits = DigitsDataset("test")
    rng = np.random.default_rng(0)
    neighbors = np.stack([rng.choice(len(digits), 5, replace=False) for _ in range(len(digits))])
    plan = _plan(anchor=("anchor", "strong"), neighbor=("neighbor", "strong"))
    dataset = DecodedViews(digits.images, digits.targets, plan, neighbors)
    drawn = []
    for batch in _batches(dataset):
        index, neighbor_index = batch["index"].numpy(), batch["neighbor_index"].numpy()
        assert all(n in neighbors[i] for i, n in zip(index, neighbor_index, strict=True))
        assert batch["neighbor"].shape == batch["anchor"].shape == (32, 1, 16, 16)
        drawn.extend(np.argmax(neighbors[index] == neighbor_index[:, None], axis=1))
    counts = np.bincount(drawn, minlength=5)
    assert counts.min() > 0.1 * len(drawn)  # every position of the lists gets drawn
    with pytest.raises(ValueError, match="source must be anchor or neighbor"):
        ViewPlan({"x": ("other", None)})


@pytest.mark.parametrize("recipe", ["small_grayscale", "natural"])
def test_each_sample_gets_its_views_in_any_batch_so_ddp_shares_augment_like_one_process(recipe):
    """Two processes each hold every second sample of a global batch (SeededShuffleSampler)."""
    views = {"a": ("anchor", "pretext"), "n": ("neighbor", "strong"), "w": ("anchor", "weak")}
    dataset = _decoded(recipe, 16, views)
    keys = [SampleKey(index, mix_seed(9, index)) for index in range(12)]
    whole = apply_view_plan(dataset.collate(keys))
    assert not torch.equal(whole["a"][0], whole["a"][1])
    for rank in (0, 1):
        share = apply_view_plan(dataset.collate(keys[rank::2]))
        for name in ("a", "n", "w", "neighbor_index"):
            assert torch.equal(share[name], whole[name][rank::2]), (name, rank)

"""Digits dataset, augmentation recipes and the view / neighbour wrappers."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from semclust.data import (
    DigitsDataset,
    MultiViewDataset,
    NeighborsDataset,
    build_dataset,
    build_transforms,
    make_loader,
)
from semclust.data.transforms import RandomAffineResize

VIEWS = ("pretext", "weak", "strong", "eval")


@pytest.fixture(scope="module")
def digits() -> DigitsDataset:
    return DigitsDataset("all")


@pytest.fixture(scope="module")
def grayscale_views():
    return build_transforms("small_grayscale", image_size=16, mean=[0.5], std=[0.5])


def sample_keys(dataset: DigitsDataset) -> Counter:
    """Each sample as (pixels, target), counted, so splits can be compared as multisets."""
    return Counter(
        (dataset.images[i].numpy().tobytes(), int(dataset.targets[i])) for i in range(len(dataset))
    )


class TestDigitsDataset:
    def test_split_sizes(self, digits: DigitsDataset):
        assert len(digits) == 1797
        assert len(DigitsDataset("train")) == 1437
        assert len(DigitsDataset("test")) == 360

    @pytest.mark.parametrize("seed", [0, 3])
    def test_train_and_test_partition_all(self, digits: DigitsDataset, seed: int):
        train = DigitsDataset("train", split_seed=seed)
        test = DigitsDataset("test", split_seed=seed)
        assert sample_keys(train) + sample_keys(test) == sample_keys(digits)

    def test_split_seed_decides_the_split(self):
        first, again = DigitsDataset("test", split_seed=0), DigitsDataset("test", split_seed=0)
        other = DigitsDataset("test", split_seed=1)
        assert torch.equal(first.images, again.images)
        assert not torch.equal(first.images, other.images)

    @pytest.mark.parametrize("index", [0, 1, 1796])
    def test_sample_layout(self, digits: DigitsDataset, index: int):
        sample = digits[index]
        assert sample.keys() == {"image", "target", "index"}
        assert sample["image"].dtype == torch.uint8
        assert sample["image"].shape == (1, 8, 8)
        assert isinstance(sample["target"], int)
        assert sample["target"] == digits.targets[index]
        assert sample["index"] == index

    def test_pixels_span_the_uint8_range_and_all_classes_appear(self, digits: DigitsDataset):
        assert digits.images.min() == 0
        assert digits.images.max() == 255
        assert sorted(set(digits.targets.tolist())) == list(range(10))
        assert digits.class_names == [str(d) for d in range(10)]

    def test_unknown_split_raises(self):
        with pytest.raises(ValueError, match="unknown digits split"):
            DigitsDataset("validation")

    def test_build_dataset_reads_the_split_key(self):
        cfg = {
            "kind": "digits",
            "train_split": "train",
            "val_split": "all",
            "options": {"split_seed": 0},
        }
        assert len(build_dataset(cfg, "train")) == 1437
        assert len(build_dataset(cfg, "val")) == 1797
        with pytest.raises(ValueError, match="unknown dataset kind"):
            build_dataset({**cfg, "kind": "mnist"}, "train")


class TestTransforms:
    @pytest.mark.parametrize("view", VIEWS)
    def test_small_grayscale_views_give_normalised_float_images(
        self, digits: DigitsDataset, grayscale_views, view: str
    ):
        torch.manual_seed(0)
        out = grayscale_views.get(view)(digits[5]["image"])
        assert out.dtype == torch.float32
        assert out.shape == (1, 16, 16)
        assert out.min() >= -1.0 - 1e-6
        assert out.max() <= 1.0 + 1e-6

    def test_eval_view_is_deterministic_and_normalises(
        self, digits: DigitsDataset, grayscale_views
    ):
        black = torch.zeros(1, 8, 8, dtype=torch.uint8)
        white = torch.full((1, 8, 8), 255, dtype=torch.uint8)
        torch.testing.assert_close(grayscale_views.eval(black), torch.full((1, 16, 16), -1.0))
        torch.testing.assert_close(grayscale_views.eval(white), torch.full((1, 16, 16), 1.0))
        image = digits[0]["image"]
        torch.manual_seed(1)
        first = grayscale_views.eval(image)
        torch.manual_seed(2)  # other random state: the same view
        assert torch.equal(first, grayscale_views.eval(image))

    def test_random_views_differ_between_draws(self, digits: DigitsDataset, grayscale_views):
        torch.manual_seed(0)
        image = digits[0]["image"]
        draws = [grayscale_views.strong(image) for _ in range(5)]
        assert any(not torch.equal(draws[0], d) for d in draws[1:])

    @pytest.mark.parametrize("flip", [False, True])
    def test_small_grayscale_flips_only_when_asked_and_never_at_evaluation(self, flip: bool):
        # A left-bright image seen with rotation, zoom and shift off: only a flip moves it.
        image = torch.zeros(1, 16, 16, dtype=torch.uint8)
        image[:, :, :4] = 255
        views = build_transforms(
            "small_grayscale", 16, [0.5], [0.5], rotation=0, crop_scale_min=0.81, flip=flip
        )
        torch.manual_seed(0)
        weak = [views.weak(image) for _ in range(40)]
        flipped = [view[0, 8, :6].mean() < view[0, 8, -6:].mean() for view in weak]
        assert any(flipped) == flip
        assert all(views.eval(image)[0, 8, :4].min() > 0.9 for _ in range(3))

    @pytest.mark.parametrize("view", VIEWS)
    def test_natural_views_on_a_pil_rgb_image(self, view: str):
        torch.manual_seed(0)
        pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        views = build_transforms("natural", image_size=32, mean=[0.5] * 3, std=[0.25] * 3)
        image = Image.fromarray(pixels)
        assert image.mode == "RGB"
        out = views.get(view)(image)
        assert out.dtype == torch.float32
        assert out.shape == (3, 32, 32)

    def test_unknown_recipe_and_view_raise(self, grayscale_views):
        with pytest.raises(ValueError, match="unknown augmentation recipe"):
            build_transforms("cartoon", image_size=16, mean=[0.5], std=[0.5])
        with pytest.raises(ValueError, match="unknown view"):
            grayscale_views.get("medium")


def identity(image):
    return image


class TestNeighborsDataset:
    def test_neighbour_is_drawn_from_the_anchor_row(self, digits: DigitsDataset):
        rng = np.random.default_rng(0)
        neighbors = np.stack(
            [rng.choice(len(digits), 5, replace=False) for _ in range(len(digits))]
        )
        dataset = NeighborsDataset(digits, neighbors, identity)
        torch.manual_seed(0)
        for index in (0, 17, 1796):
            drawn = set()
            for _ in range(60):
                sample = dataset[index]
                assert sample.keys() == {"anchor", "neighbor", "index", "neighbor_index", "target"}
                assert sample["index"] == index
                assert sample["target"] == digits.targets[index]
                assert sample["neighbor_index"] in neighbors[index]
                assert torch.equal(sample["anchor"], digits.images[index])
                assert torch.equal(sample["neighbor"], digits.images[sample["neighbor_index"]])
                drawn.add(sample["neighbor_index"])
            assert len(drawn) > 1

    def test_transform_is_applied_to_both_images(self, digits: DigitsDataset, grayscale_views):
        neighbors = np.tile(np.arange(1, 4), (len(digits), 1))
        sample = NeighborsDataset(digits, neighbors, grayscale_views.eval)[0]
        assert sample["anchor"].shape == sample["neighbor"].shape == (1, 16, 16)
        assert sample["anchor"].dtype == torch.float32
        assert torch.equal(sample["anchor"], grayscale_views.eval(digits[0]["image"]))
        neighbor = int(sample["neighbor_index"])
        assert neighbor in (1, 2, 3)
        assert torch.equal(sample["neighbor"], grayscale_views.eval(digits[neighbor]["image"]))

    @pytest.mark.parametrize("shape", [(1797,), (1796, 3), (1798, 3)])
    def test_rejects_neighbour_table_of_wrong_shape(self, digits: DigitsDataset, shape):
        with pytest.raises(ValueError, match="neighbor_indices must be"):
            NeighborsDataset(digits, np.zeros(shape, dtype=np.int64), identity)


def test_multi_view_dataset_applies_each_named_transform(digits: DigitsDataset, grayscale_views):
    dataset = MultiViewDataset(
        digits, {"view_a": grayscale_views.pretext, "view_b": grayscale_views.eval}
    )
    assert len(dataset) == len(digits)
    sample = dataset[3]
    assert sample.keys() == {"view_a", "view_b", "target", "index"}
    assert sample["view_a"].shape == sample["view_b"].shape == (1, 16, 16)
    torch.testing.assert_close(sample["view_b"], grayscale_views.eval(digits[3]["image"]))
    assert (sample["target"], sample["index"]) == (int(digits.targets[3]), 3)


def test_make_loader_caps_the_batch_at_the_dataset_size(digits: DigitsDataset, grayscale_views):
    dataset = MultiViewDataset(
        torch.utils.data.Subset(digits, range(10)), {"image": grayscale_views.eval}
    )
    loader = make_loader(dataset, batch_size=64, shuffle=False, num_workers=0, drop_last=True)
    batches = list(loader)
    assert len(batches) == 1
    assert batches[0]["image"].shape == (10, 1, 16, 16)
    assert batches[0]["index"].tolist() == list(range(10))


class TestRandomAffineResize:
    def test_without_randomness_it_is_a_plain_resize(self):
        image = torch.rand(1, 8, 8)
        expected = torch.nn.functional.interpolate(
            image[None], size=(16, 16), mode="bilinear", antialias=True, align_corners=False
        )[0]
        torch.testing.assert_close(RandomAffineResize(16)(image), expected, atol=1e-5, rtol=0)

    def test_random_warps_differ_between_calls_and_keep_the_shape(self):
        torch.manual_seed(0)
        warp = RandomAffineResize(16, degrees=30, scale=(0.8, 1.2), translate=0.1, shear=10)
        image = torch.rand(3, 16, 16)
        first, second = warp(image), warp(image)
        assert first.shape == second.shape == (3, 16, 16)
        assert not torch.allclose(first, second)

    def test_a_half_turn_flips_the_image(self, monkeypatch):
        image = torch.arange(16.0).reshape(1, 4, 4)
        # Draws of 1.0 for the angle and 0.5 elsewhere: exactly +180 degrees, no shear or shift.
        monkeypatch.setattr(torch, "rand", lambda n: torch.tensor([1.0, 0.5, 0.0, 0.5, 0.5]))
        rotated = RandomAffineResize(4, degrees=180)(image)
        torch.testing.assert_close(rotated, image.flip(1).flip(2), atol=1e-4, rtol=0)

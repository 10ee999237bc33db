"""Batched views against the per-image recipes: distributions, exact semantics, reproducibility."""

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.datasets import load_digits
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from semclust.data import batch_ops as ops
from semclust.data.batch_views import batch_view_transforms, build_batch_transforms
from semclust.data.transforms import RandomBrightnessContrast, build_transforms

VIEWS = ("pretext", "weak", "strong", "eval")
RANDOM_VIEWS = ("pretext", "weak", "strong")
NATURAL = {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
GRAYSCALE = {"image_size": 16, "mean": [0.5], "std": [0.5]}
DRAWS = 2048
# Same-distribution runs of these statistics reach |z| of about 4 (heavier tails than a
# normal), so agreement allows six standard errors; wrong parameters give far more.
Z_MAX = 6.0
# Two-sample KS tests pass above this p-value and a deliberately wrong parameter must fall
# far below it.
P_MIN = 1e-3


def structured_images(count: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 images with a tilted gradient per channel and one flat coloured rectangle."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1)
    images = []
    for _ in range(count):
        slopes = rng.uniform(-1, 1, (channels, 2, 1, 1)) * rng.uniform(0.3, 1)
        image = 0.5 + 0.35 * (slopes[:, 0] * xs + slopes[:, 1] * ys)
        image += rng.uniform(-0.1, 0.1, (channels, 1, 1))
        top, left = rng.integers(0, size // 2, 2)
        height, width = rng.integers(size // 6, size // 2, 2)
        image[:, top : top + height, left : left + width] = rng.uniform(0, 1, (channels, 1, 1))
        images.append(np.clip(image * 255, 0, 255).round().astype(np.uint8))
    return torch.from_numpy(np.stack(images))


def digit_images(count: int = 16) -> torch.Tensor:
    """sklearn's 8x8 digits as uint8 (count, 1, 8, 8)."""
    pixels = load_digits().images[:count] * 255 / 16
    return torch.from_numpy(np.round(pixels).astype(np.uint8))[:, None]


def per_image_draws(transform, images: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """Draw ``i`` is the per-image view of ``images[i % len(images)]``."""
    torch.manual_seed(seed)
    views = [transform(images[i % len(images)]) for i in range(draws)]
    return torch.stack([view.as_subclass(torch.Tensor) for view in views])


def batch_draws(transform, images: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """Draw ``i`` is the batch view of ``images[i % len(images)]``."""
    batch = images.repeat(draws // len(images), 1, 1, 1)
    return transform(batch, torch.Generator().manual_seed(seed))


def view_statistics(views: torch.Tensor) -> torch.Tensor:
    """Per draw and channel: mean, std and mean absolute x / y differences (sharpness)."""
    dx = (views[..., 1:] - views[..., :-1]).abs().mean(dim=(2, 3))
    dy = (views[..., 1:, :] - views[..., :-1, :]).abs().mean(dim=(2, 3))
    return torch.cat([views.mean(dim=(2, 3)), views.std(dim=(2, 3)), dx, dy], 1).double()


def stratified_z(first: torch.Tensor, second: torch.Tensor, images: int) -> torch.Tensor:
    """z-scores of the mean statistics' difference, image by image so image variety cancels."""
    a = view_statistics(first).view(-1, images, 4 * first.shape[1])
    b = view_statistics(second).view(-1, images, 4 * first.shape[1])
    difference = (a.mean(0) - b.mean(0)).mean(0)
    standard_error = ((a.var(0) + b.var(0)) / len(a)).sum(0).sqrt() / images
    return difference / standard_error.clamp_min(1e-12)


def recipe_case(recipe: str):
    if recipe == "natural":
        return NATURAL, structured_images(8, 3, 32)
    return GRAYSCALE, digit_images()


class TestDistributionsMatchThePerImageRecipes:
    # The deterministic eval views are compared value by value in TestGeometry.
    @pytest.mark.parametrize("view", RANDOM_VIEWS)
    @pytest.mark.parametrize("recipe", ["natural", "small_grayscale"])
    def test_view_statistics_agree(self, recipe: str, view: str):
        settings, images = recipe_case(recipe)
        expected = per_image_draws(build_transforms(recipe, **settings).get(view), images, DRAWS, 1)
        batched = batch_draws(
            build_batch_transforms(recipe, **settings).get(view), images, DRAWS, 2
        )
        z = stratified_z(expected, batched, len(images))
        assert z.abs().max() < Z_MAX, z

    def test_view_statistics_catch_a_wrong_zoom_range(self):
        images = digit_images()
        expected = per_image_draws(
            build_transforms("small_grayscale", **GRAYSCALE).pretext, images, DRAWS, 1
        )
        wrong = build_batch_transforms("small_grayscale", **GRAYSCALE, crop_scale_min=0.7)
        z = stratified_z(expected, batch_draws(wrong.pretext, images, DRAWS, 2), len(images))
        assert z.abs().max() > 2 * Z_MAX

    def test_natural_views_agree_when_the_stored_size_differs(self):
        images = structured_images(8, 3, 48)
        for view in ("pretext", "weak"):
            expected = per_image_draws(
                build_transforms("natural", **NATURAL).get(view), images, 1024, 1
            )
            batched = batch_draws(
                build_batch_transforms("natural", **NATURAL).get(view), images, 1024, 2
            )
            assert stratified_z(expected, batched, len(images)).abs().max() < Z_MAX


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """Channel 0 holds each pixel's column, channel 1 its row (times 5, to fit in uint8)."""
    rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([columns, rows, torch.zeros_like(rows)]).mul(5).to(torch.uint8)


def apparent_crops(views: torch.Tensor, size: int) -> dict[str, np.ndarray]:
    """Each view's crop in input pixels: signed width (negative when flipped), height, centre.

    Output pixels away from the border are linear in the input coordinates (the crops are
    enlarged, so no antialiasing filter and no edge clamping reaches them): the slope between
    two of them times the output size is the crop's side, their midpoint the crop's centre.
    """
    middle, inner = size // 2, [2, size - 3]
    columns, rows = views[:, 0, middle, inner], views[:, 1, inner, middle]
    return {
        "width": ((columns[:, 1] - columns[:, 0]) * size / (size - 5)).numpy(),
        "height": ((rows[:, 1] - rows[:, 0]) * size / (size - 5)).numpy(),
        "centre_x": columns.mean(dim=1).numpy(),
        "centre_y": rows.mean(dim=1).numpy(),
    }


class TestPretextCrop:
    # Smaller than the output, and not square, so every crop is enlarged.
    height, width, size = 24, 30, 32

    def crops(self, monkeypatch, crop_scale_min: float = 0.2) -> dict[str, np.ndarray]:
        # Colour off, mean 0 and std 1/51: outputs are input pixel coordinates.
        monkeypatch.setattr(ops, "color_jitter", lambda views, *args, **kwargs: views)
        monkeypatch.setattr(ops, "random_grayscale", lambda views, *args, **kwargs: views)
        pretext = build_batch_transforms(
            "natural", self.size, [0.0] * 3, [1 / 51] * 3, crop_scale_min=crop_scale_min
        ).pretext
        image = coordinate_image(self.height, self.width)
        views = pretext(image.expand(3000, -1, -1, -1), torch.Generator().manual_seed(0))
        return apparent_crops(views, self.size)

    def per_image_crops(self) -> dict[str, np.ndarray]:
        # The per-image recipe without its colour transforms, on float coordinates.
        recipe = build_transforms("natural", self.size, [0.0] * 3, [1 / 51] * 3).pretext
        geometry = v2.Compose(
            [
                t
                for t in recipe.transforms
                if not isinstance(t, (v2.RandomApply, v2.RandomGrayscale, v2.ToDtype))
            ]
        )
        # Float input skips the uint8 scaling, hence the division.
        image = coordinate_image(self.height, self.width).float()
        views = per_image_draws(geometry, image[None], 3000, seed=1)
        return apparent_crops(views / 255, self.size)

    def test_crop_boxes_map_exactly_onto_the_output(self, monkeypatch):
        crops = self.crops(monkeypatch)
        for side in ("width", "height"):
            np.testing.assert_allclose(crops[side], crops[side].round(), atol=2e-3)
        # A box's centre sits on a pixel centre or edge: twice it is a whole number.
        for centre in ("centre_x", "centre_y"):
            np.testing.assert_allclose(2 * crops[centre], (2 * crops[centre]).round(), atol=2e-3)
        assert (crops["centre_x"] - abs(crops["width"]) / 2 >= -0.5 - 1e-3).all()
        assert (crops["centre_x"] + abs(crops["width"]) / 2 <= self.width - 0.5 + 1e-3).all()

    def test_area_aspect_position_and_flips_match_random_resized_crop(self, monkeypatch):
        crops, expected = self.crops(monkeypatch), self.per_image_crops()
        for draws in (crops, expected):
            # Float noise would break ties between the two samples' whole and half pixels.
            draws.update({key: np.round(2 * value) / 2 for key, value in draws.items()})
            draws["area"] = abs(draws["width"] * draws["height"]) / (self.height * self.width)
            draws["aspect"] = abs(draws["width"] / draws["height"])
        for statistic in ("area", "aspect", "centre_x", "centre_y"):
            assert stats.ks_2samp(crops[statistic], expected[statistic]).pvalue > P_MIN, statistic
        assert crops["area"].min() >= 0.2 - 0.02 and crops["area"].max() <= 1.0 + 1e-6
        for draws in (crops, expected):
            assert abs((draws["width"] < 0).mean() - 0.5) < 0.04

    def test_a_wrong_crop_scale_fails_the_area_check(self, monkeypatch):
        crops, expected = self.crops(monkeypatch, crop_scale_min=0.3), self.per_image_crops()
        area = abs(crops["width"] * crops["height"])
        expected_area = abs(expected["width"] * expected["height"])
        assert stats.ks_2samp(area, expected_area).pvalue < 1e-6


class TestColourOps:
    def test_ops_match_torchvision_image_by_image(self):
        generator = torch.Generator().manual_seed(0)
        images = torch.rand((16, 3, 5, 7), generator=generator)
        factors = ops.uniform(generator, (16,), 0.6, 1.4).float()
        shifts = ops.uniform(generator, (16,), -0.5, 0.5).float()
        pairs = [
            (ops.adjust_brightness, TF.adjust_brightness, factors),
            (ops.adjust_contrast, TF.adjust_contrast, factors),
            (ops.adjust_saturation, TF.adjust_saturation, factors),
            (ops.adjust_hue, TF.adjust_hue, shifts),
        ]
        for batched, per_image, values in pairs:
            expected = torch.stack(
                [
                    per_image(image, float(value))
                    for image, value in zip(images, values, strict=True)
                ]
            )
            torch.testing.assert_close(batched(images.clone(), values), expected, atol=1e-5, rtol=0)
        gray = torch.stack([TF.rgb_to_grayscale(image) for image in images])
        torch.testing.assert_close(ops.grayscale(images), gray, atol=1e-6, rtol=0)

    def test_rgb_to_hsv_on_known_colours(self):
        rgb = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0.5, 0), (1, 0, 0.5), (0.5, 0.5, 0.5)]
        hsv = [
            (0, 1, 1),
            (1 / 3, 1, 1),
            (2 / 3, 1, 1),
            (1 / 12, 1, 1),
            (11 / 12, 1, 1),
            (0, 0, 0.5),
        ]
        images = torch.tensor(rgb).view(-1, 3, 1, 1)
        torch.testing.assert_close(ops.rgb_to_hsv(images), torch.tensor(hsv).view(-1, 3, 1, 1))

    def test_jitter_factors_span_torchvision_ranges(self):
        grey = torch.full((4000, 3, 2, 2), 0.5)
        generator = torch.Generator().manual_seed(0)
        brightened = ops.color_jitter(grey, generator, p=0.8, strengths=(0.4, 0.0, 0.0, 0.0))
        factors = brightened[:, 0, 0, 0] / 0.5
        applied = factors != 1
        assert abs(applied.double().mean() - 0.8) < 0.03
        uniform_cdf = stats.uniform(loc=0.6, scale=0.8).cdf
        assert stats.kstest(factors[applied].numpy(), uniform_cdf).pvalue > P_MIN

        red = torch.zeros((4000, 3, 2, 2))
        red[:, 0] = 1
        shifted = ops.color_jitter(red, generator, p=1.0, strengths=(0.0, 0.0, 0.0, 0.1))
        hue = ops.rgb_to_hsv(shifted)[:, 0, 0, 0]
        signed_shift = torch.where(hue > 0.5, hue - 1, hue)
        shift_cdf = stats.uniform(loc=-0.1, scale=0.2).cdf
        assert stats.kstest(signed_shift.numpy(), shift_cdf).pvalue > P_MIN

    def test_jitter_of_a_colourful_image_matches_color_jitter(self):
        image = structured_images(1, 3, 6)[0].float() / 255
        jitter = v2.ColorJitter(0.4, 0.4, 0.4, 0.1)
        expected = per_image_draws(jitter, image[None], 3000, seed=0)
        batched = ops.color_jitter(
            image.expand(3000, -1, -1, -1),
            torch.Generator().manual_seed(1),
            1.0,
            (0.4,) * 3 + (0.1,),
        )
        for channel in range(3):
            for statistic in (lambda v: v.mean(dim=(1, 2)), lambda v: v.std(dim=(1, 2))):
                a = statistic(expected[:, channel]).numpy()
                b = statistic(batched[:, channel]).numpy()
                assert stats.ks_2samp(a, b).pvalue > P_MIN

    def test_jitter_order_is_drawn_per_sample_like_color_jitter(self):
        # Half black, half white: brightness then contrast keeps black + white <= 1 (white
        # clamps first), contrast then brightness often exceeds 1, so the sum's distribution
        # shows the mixture of orders. Saturation and hue leave grey images alone.
        image = torch.zeros(3, 2, 2)
        image[:, 0] = 1
        jitter = v2.ColorJitter(0.4, 0.4, 0.4, 0.1)
        expected = per_image_draws(jitter, image[None], 3000, seed=0)
        batched = ops.color_jitter(
            image.expand(3000, -1, -1, -1),
            torch.Generator().manual_seed(1),
            1.0,
            (0.4,) * 3 + (0.1,),
        )
        sums = [(views[:, 0, 0, 0] + views[:, 0, 1, 0]).numpy() for views in (expected, batched)]
        assert stats.ks_2samp(*sums).pvalue > P_MIN
        assert (sums[1] > 1 + 1e-6).mean() > 0.07  # about 0.14 with the orders mixed

    def test_pretext_colour_of_a_flat_image_matches(self):
        # A flat colour hides the crop, leaving jitter and grayscale. In HSV, brightness moves
        # only V, hue only H, contrast and saturation only S (clamping aside), so each op's
        # range shows on its own. The per-image recipe gets float pixels so that its uint8
        # rounding does not enter the comparison.
        colour = torch.tensor([204, 51, 102], dtype=torch.uint8).view(1, 3, 1, 1)
        images = colour.expand(1, 3, 32, 32)
        per_image = build_transforms("natural", **NATURAL).pretext
        batched = build_batch_transforms("natural", **NATURAL).pretext
        expected, actual = (
            ops.rgb_to_hsv(draws[..., :1, :1] * 0.25 + 0.5)[:, :, 0, 0]
            for draws in (
                per_image_draws(per_image, images.float() / 255, DRAWS, 0),
                batch_draws(batched, images, DRAWS, 1),
            )
        )
        for channel in range(3):
            assert stats.ks_2samp(expected[:, channel], actual[:, channel]).pvalue > P_MIN
        # Untouched: neither jittered (p = 0.8) nor grey (p = 0.2).
        hsv = ops.rgb_to_hsv(colour.float() / 255)[:, :, 0, 0]
        untouched = (actual - hsv).abs().amax(dim=1) < 1e-5
        assert abs(untouched.double().mean() - 0.2 * 0.8) < 0.035

    def test_pretext_grayscale_fraction(self):
        # Saturation never reaches 0, so only RandomGrayscale makes all channels equal.
        images = structured_images(8, 3, 32)
        for views in (
            per_image_draws(build_transforms("natural", **NATURAL).pretext, images, DRAWS, 0),
            batch_draws(build_batch_transforms("natural", **NATURAL).pretext, images, DRAWS, 0),
        ):
            spread = (views.amax(dim=1) - views.amin(dim=1)).amax(dim=(1, 2))
            assert abs((spread < 1e-5).double().mean() - 0.2) < 0.035


class TestGeometry:
    @pytest.mark.parametrize("flip", [False, True])
    @pytest.mark.parametrize("view", RANDOM_VIEWS)
    def test_small_grayscale_batch_of_one_reproduces_the_per_image_view(self, view, flip):
        # Mean -1 and std 1 put pixels in [1, 2]; erasing, drawn differently, gives 0 and is
        # left out of the comparison.
        settings = {**GRAYSCALE, "mean": [-1.0], "std": [1.0], "flip": flip}
        per_image = build_transforms("small_grayscale", **settings).get(view)
        batched = build_batch_transforms("small_grayscale", **settings).get(view)
        for seed, image in enumerate(digit_images(6)):
            torch.manual_seed(seed)
            expected = per_image(image).as_subclass(torch.Tensor)
            actual = batched(image[None], torch.Generator().manual_seed(seed))[0]
            kept = (expected != 0) & (actual != 0)
            assert kept.double().mean() > 0.8
            torch.testing.assert_close(actual[kept], expected[kept], atol=1e-5, rtol=0)

    def test_brightness_contrast_matches_the_per_image_module_sample_by_sample(self):
        # rand((n, 3)) gives the numbers of n calls of rand(3), so the draws line up.
        images = torch.rand((16, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        module = RandomBrightnessContrast(0.4, 0.4, p=0.8)
        expected = per_image_draws(module, images, len(images), seed=3)
        actual = ops.brightness_contrast(images, torch.Generator().manual_seed(3), 0.4, 0.4, 0.8)
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
        assert not torch.equal(actual, images)

    def test_weak_views_are_exact_reflect_padded_crops_drawn_uniformly(self):
        image = structured_images(1, 3, 32)[0]
        padded = TF.pad(image, [4], padding_mode="reflect")
        outcomes = {}
        for top in range(9):
            for left in range(9):
                crop = padded[:, top : top + 32, left : left + 32]
                for flipped in (False, True):
                    view = TF.horizontal_flip(crop) if flipped else crop
                    outcomes[view.numpy().tobytes()] = (top, left, flipped)
        weak = build_batch_transforms("natural", **NATURAL).weak
        views = weak(image.expand(3240, -1, -1, -1), torch.Generator().manual_seed(0))
        pixels = (views * 0.25 + 0.5).mul(255).round().to(torch.uint8)
        drawn = [outcomes[view.numpy().tobytes()] for view in pixels]  # KeyError: not a crop
        counts = np.unique(np.array(drawn), axis=0, return_counts=True)[1]
        assert len(counts) == 162
        assert stats.chisquare(counts).pvalue > P_MIN

    @pytest.mark.parametrize("recipe", ["natural", "small_grayscale"])
    def test_strong_view_erases_like_the_per_image_view(self, recipe: str):
        # Normalised with mean -1 and std 1, pixels lie in [1, 2]: only erasing gives 0.
        settings, images = recipe_case(recipe)
        channels = images.shape[1]
        settings = {**settings, "mean": [-1.0] * channels, "std": [1.0] * channels}
        per_image = build_transforms(recipe, **settings).strong
        batched = build_batch_transforms(recipe, **settings).strong
        areas = [
            (draws[:, 0] == 0).double().mean(dim=(1, 2)).numpy()
            for draws in (
                per_image_draws(per_image, images, DRAWS, 0),
                batch_draws(batched, images, DRAWS, 1),
            )
        ]
        assert stats.ks_2samp(*areas).pvalue > P_MIN
        assert abs((areas[0] > 0).mean() - (areas[1] > 0).mean()) < 0.05

    @pytest.mark.parametrize(
        ("scale", "ratio", "p", "size"),
        [((0.01, 0.25), (1.0, 1.0), 1.0, 32), ((0.02, 0.15), (0.3, 3.3), 0.5, 16)],
    )
    def test_erasing_matches_random_erasing(self, scale, ratio, p, size):
        ones = torch.ones(1, size, size)
        erasing = v2.RandomErasing(p=p, scale=scale, ratio=ratio, value=0)
        expected = per_image_draws(erasing, ones[None], 3000, seed=0)
        boxes, erased = ops.erasing_boxes(
            torch.Generator().manual_seed(1), 3000, size, size, p=p, scale=scale, ratio=ratio
        )
        batched = ops.erase(ones.expand(3000, -1, -1, -1), boxes, erased)
        area = (batched == 0).double().mean(dim=(1, 2, 3))
        expected_area = (expected == 0).double().mean(dim=(1, 2, 3))
        assert abs((area > 0).double().mean() - p) < 0.03
        assert (
            stats.ks_2samp(area[area > 0].numpy(), expected_area[expected_area > 0].numpy()).pvalue
            > P_MIN
        )
        assert area.max() <= scale[1] + 2 / size
        erased_area = (boxes.height * boxes.width).double() / size**2
        torch.testing.assert_close(area, torch.where(erased, erased_area, 0.0))

    def test_a_wrong_erasing_scale_fails_the_area_check(self):
        ones = torch.ones(1, 32, 32)
        erasing = v2.RandomErasing(p=1.0, scale=(0.01, 0.25), ratio=(1.0, 1.0), value=0)
        expected = (per_image_draws(erasing, ones[None], 3000, seed=0) == 0).double()
        boxes, erased = ops.erasing_boxes(
            torch.Generator().manual_seed(1), 3000, 32, 32, p=1.0, scale=(0.01, 0.16), ratio=(1, 1)
        )
        batched = ops.erase(ones.expand(3000, -1, -1, -1), boxes, erased) == 0
        area, expected_area = batched.double().mean(dim=(1, 2, 3)), expected.mean(dim=(1, 2, 3))
        assert stats.ks_2samp(area.numpy(), expected_area.numpy()).pvalue < 1e-6

    @pytest.mark.parametrize("stored", [32, 40])
    def test_natural_eval_matches_the_per_image_view_within_a_grey_level(self, stored: int):
        images = structured_images(8, 3, stored)
        expected = per_image_draws(build_transforms("natural", **NATURAL).eval, images, 8, 0)
        actual = build_batch_transforms("natural", **NATURAL).eval(images, torch.Generator())
        grey_level = 1 / 255 / 0.25
        assert (actual - expected).abs().max() <= grey_level + 1e-5
        if stored == 32:
            torch.testing.assert_close(actual, expected)

    def test_small_grayscale_eval_matches_the_per_image_view(self):
        images = digit_images()
        expected = per_image_draws(
            build_transforms("small_grayscale", **GRAYSCALE).eval, images, 16, 0
        )
        actual = build_batch_transforms("small_grayscale", **GRAYSCALE).eval(
            images, torch.Generator()
        )
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def all_views(channels: int, stored: int):
    """(recipe, view, transform, images) for every view of both recipes."""
    cases = []
    for recipe, settings in (("natural", NATURAL), ("small_grayscale", GRAYSCALE)):
        settings = {
            **settings,
            "mean": settings["mean"][:1] * channels,
            "std": settings["std"][:1] * channels,
        }
        views = build_batch_transforms(recipe, **settings)
        for view in VIEWS:
            cases.append((recipe, view, views.get(view), settings["image_size"]))
    images = structured_images(6, channels, stored)
    return [(recipe, view, transform, size, images) for recipe, view, transform, size in cases]


def case_id(case) -> str:
    return f"{case[0]}-{case[1]}"


class TestContract:
    @pytest.mark.parametrize("channels", [1, 3])
    @pytest.mark.parametrize("stored", [12, 32, 40])
    def test_shape_dtype_reproducibility_and_untouched_input(self, channels: int, stored: int):
        for recipe, view, transform, size, images in all_views(channels, stored):
            before = images.clone()
            first = transform(images, torch.Generator().manual_seed(0))
            again = transform(images, torch.Generator().manual_seed(0))
            other = transform(images, torch.Generator().manual_seed(1))
            assert first.shape == (6, channels, size, size), (recipe, view)
            assert first.dtype == torch.float32 and first.device == images.device
            assert torch.isfinite(first).all()
            assert torch.equal(first, again), (recipe, view)
            assert torch.equal(first, other) == (view == "eval"), (recipe, view)
            assert torch.equal(images, before), (recipe, view)

    def test_views_are_drawn_per_sample(self):
        images = structured_images(1, 3, 32).expand(16, -1, -1, -1)
        for recipe, settings in (("natural", NATURAL), ("small_grayscale", GRAYSCALE)):
            settings = {**settings, "mean": [0.5] * 3, "std": [0.5] * 3}
            views = build_batch_transforms(recipe, **settings)
            for view in RANDOM_VIEWS:
                out = views.get(view)(images, torch.Generator().manual_seed(0))
                distinct = {sample.numpy().tobytes() for sample in out}
                assert len(distinct) > 12, (recipe, view)

    def test_bad_inputs_raise(self):
        views = build_batch_transforms("natural", **NATURAL)
        images = structured_images(2, 3, 32)
        with pytest.raises(ValueError, match="uint8"):
            views.eval(images.float(), torch.Generator())
        with pytest.raises(ValueError, match="uint8"):
            views.eval(images[0], torch.Generator())
        with pytest.raises(ValueError, match="unknown view"):
            views.get("medium")
        with pytest.raises(ValueError, match="unknown augmentation recipe"):
            build_batch_transforms("cartoon", **NATURAL)
        if torch.cuda.is_available():
            with pytest.raises(ValueError, match="CPU generator"):
                views.eval(images, torch.Generator(device="cuda"))

    def test_built_from_a_data_config_with_its_checks(self):
        data_cfg = {
            "channels": 1,
            "image_size": 16,
            "mean": [0.5],
            "std": [0.5],
            "augment": {"recipe": "small_grayscale", "rotation": 10.0, "flip": True},
        }
        views = batch_view_transforms(data_cfg)
        assert views.weak.affine.degrees == 5.0 and views.weak.flip
        with pytest.raises(ValueError, match="data.mean has 1 values but data.channels=3"):
            batch_view_transforms({**data_cfg, "channels": 3})

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    @pytest.mark.parametrize("channels", [1, 3])
    def test_cpu_and_cuda_give_the_same_views(self, channels: int):
        for recipe, view, transform, _, images in all_views(channels, 40):
            images = images.repeat(32, 1, 1, 1)
            on_cpu = transform(images, torch.Generator().manual_seed(0))
            on_cuda = transform(images.cuda(), torch.Generator().manual_seed(0))
            assert on_cuda.is_cuda
            difference = (on_cuda.cpu() - on_cpu).abs()
            # A grey level's rounding may fall differently; anything more is a real mismatch.
            assert (difference > 1e-4).double().mean() < 1e-3, (recipe, view)
            assert difference.max() < 0.1, (recipe, view)

"""rotation_invariance: turned training views, rotation-pooled features, and the config."""

import math

import numpy as np
import pytest
import torch

from semclust.config_checks import ConfigError, check_config
from semclust.data.batch_views import build_batch_transforms
from semclust.data.transforms import black, build_transforms
from semclust.models import build_backbone
from semclust.models.rotation import RotationPooledBackbone, rotate
from semclust.rotation_invariance import apply_rotation_invariance

MEAN, STD = [0.25], [0.5]
FILL = black(MEAN, STD)  # -0.5


def _dot_right_of_centre(size: int = 16) -> torch.Tensor:
    """A uint8 (1, S, S) image: black, with a bright 2x2 dot half way to the right edge."""
    image = torch.zeros(1, size, size, dtype=torch.uint8)
    middle = size // 2
    image[0, middle - 1 : middle + 1, middle + 3 : middle + 5] = 255
    return image


def _dot_angle(view: torch.Tensor) -> float:
    """Angle (degrees, counter-clockwise from the right, image y pointing down) of the
    brightness-weighted centre of a normalised view, relative to the image centre."""
    pixels = (view[0] * STD[0] + MEAN[0]).clamp(0, 1)
    # Only the dot: erased boxes (value 0 after normalisation) are grey, 0.25, here.
    weights = torch.where(pixels > 0.4, pixels, 0).double()
    size = pixels.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64),
        torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )
    centre = (size - 1) / 2
    if weights.sum() == 0:
        return math.nan
    x = float((weights * (xs - centre)).sum() / weights.sum())
    y = float((weights * (ys - centre)).sum() / weights.sum())
    return math.degrees(math.atan2(-y, x))


def test_a_quarter_turn_is_rot90_and_corners_take_the_fill():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 8, 8)
    turned = rotate(images, torch.full((2,), math.pi / 2), [0.0, 0.0, 0.0])
    # Counter-clockwise, as torch.rot90 with dims (H, W) turns it.
    torch.testing.assert_close(turned, torch.rot90(images, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    ones = torch.ones(1, 2, 16, 16)
    eighth = rotate(ones, torch.tensor([math.pi / 4]), [-0.5, 3.0])
    assert eighth[0, :, 0, 0].tolist() == pytest.approx([-0.5, 3.0])  # a corner turned out
    assert eighth[0, :, 8, 8].tolist() == pytest.approx([1.0, 1.0])  # the middle stays


def test_rotate_rejects_mismatched_angles_and_fill():
    with pytest.raises(ValueError, match="B angles"):
        rotate(torch.zeros(2, 1, 4, 4), torch.zeros(3), [0.0])
    with pytest.raises(ValueError, match="one value per channel"):
        rotate(torch.zeros(2, 1, 4, 4), torch.zeros(2), [0.0, 0.0])


def test_pooled_features_ignore_quarter_turns_in_eval_mode_only():
    torch.manual_seed(0)
    spec = {"name": "small_cnn", "in_channels": 1, "width": 8, "feature_dim": 16}
    pooled = build_backbone(**spec, rotation_pooling={"angles": 4, "fill": FILL})
    assert isinstance(pooled, RotationPooledBackbone) and pooled.feature_dim == 16
    images = torch.randn(5, 1, 16, 16)
    quarter = torch.rot90(images, 1, dims=(2, 3))
    pooled.eval()
    with torch.no_grad():
        torch.testing.assert_close(pooled(images), pooled(quarter), atol=1e-5, rtol=1e-4)
        # The bare backbone is not invariant: the pooling is what makes it so.
        assert (pooled.unpooled(images) - pooled.unpooled(quarter)).abs().max() > 1e-3
    pooled.train()
    torch.testing.assert_close(pooled(images), pooled.unpooled(images))


def test_pooling_settings_are_checked():
    spec = {"name": "small_cnn", "in_channels": 1, "width": 8}
    with pytest.raises(ValueError, match="positive integer"):
        build_backbone(**spec, rotation_pooling={"angles": 0, "fill": FILL})
    with pytest.raises(ValueError, match="angles and fill"):
        build_backbone(**spec, rotation_pooling={"angles": 4, "turns": 2, "fill": FILL})


def _angles(view, draws: int, batched: bool) -> np.ndarray:
    image = _dot_right_of_centre()
    if batched:
        generator = torch.Generator().manual_seed(0)
        views = view(image.unsqueeze(0).repeat(draws, 1, 1, 1), generator)
    else:
        torch.manual_seed(0)
        views = torch.stack([view(image) for _ in range(draws)])
    angles = np.array([_dot_angle(v) for v in views])
    return angles[np.isfinite(angles)]  # a view whose dot was erased has none


@pytest.mark.parametrize("batched", [False, True], ids=["per_image", "batched"])
@pytest.mark.parametrize("view", ["pretext", "weak", "strong"])
def test_training_views_are_turned_over_the_full_circle(view, batched):
    build = build_batch_transforms if batched else build_transforms
    options = {"image_size": 16, "mean": MEAN, "std": STD, "rotation": 15.0}
    upright = _angles(build("small_grayscale", **options).get(view), 200, batched)
    turned = _angles(
        build("small_grayscale", **options, rotation_invariant=True).get(view), 400, batched
    )
    # Without the option the dot stays right of centre (15 degrees of rotation, shear, shift).
    assert len(upright) > 150 and np.abs(upright).max() < 80
    # With it the angle is uniform on the circle: each 30-degree bin holds about a twelfth.
    # (Quarter turns alone would leave the bins between the quarters nearly empty: 0.2 %.)
    shares = np.histogram(turned, bins=12, range=(-180, 180))[0] / len(turned)
    assert shares.min() > 0.04 and shares.max() < 0.14, shares


def test_the_eval_view_stays_upright():
    for build in (build_transforms, build_batch_transforms):
        views = build("small_grayscale", 16, MEAN, STD, rotation_invariant=True)
        batched = build is build_batch_transforms
        angles = _angles(views.eval, 20, batched)
        assert np.abs(angles).max() < 1


def test_config_switch_sets_the_views_and_the_pooling(compose_config):
    cfg = compose_config(
        "train", ["rotation_invariance.enabled=true", "rotation_invariance.angles=6"]
    )
    check_config(cfg)
    applied = apply_rotation_invariance(cfg)
    assert cfg.data.augment.rotation_invariant is True
    expected_fill = [-m / s for m, s in zip(cfg.data.mean, cfg.data.std, strict=True)]
    assert cfg.backbone.rotation_pooling == {"angles": 6, "fill": expected_fill}
    assert "6 turns" in applied["line"]
    untouched = compose_config("train")
    assert apply_rotation_invariance(untouched) is None
    assert "rotation_invariant" not in untouched.data.augment
    assert "rotation_pooling" not in untouched.backbone


def test_bad_rotation_settings_name_the_option(compose_config):
    with pytest.raises(ConfigError, match="rotation_invariance.angles"):
        check_config(compose_config("train", ["rotation_invariance.angles=0"]))
    with pytest.raises(ConfigError, match="rotation_invariance.enabled"):
        check_config(compose_config("train", ["rotation_invariance.enabled=7"]))

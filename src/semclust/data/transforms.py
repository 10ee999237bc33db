"""Augmentation recipes. Each recipe gives four views of an image:

- ``pretext``: SimCLR's strong, random view (two are drawn per image);
- ``weak``: light geometric jitter, the view self-labeling reads pseudo-labels from;
- ``strong``: heavy augmentation for SCAN's anchors/neighbours and self-labeling's targets;
- ``eval``: deterministic resize and normalisation only.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from semclust.models.rotation import rotate


@dataclass(frozen=True)
class ViewTransforms:
    """The four views of a recipe: per image (this module) or per batch (``batch_views``)."""

    pretext: Callable
    weak: Callable
    strong: Callable
    eval: Callable

    def get(self, view: str) -> Callable:
        if view not in ("pretext", "weak", "strong", "eval"):
            raise ValueError(f"unknown view {view!r}; choose pretext, weak, strong or eval")
        return getattr(self, view)


class RandomAffineResize(torch.nn.Module):
    """Resize to ``size`` and apply a random rotation, zoom, shift and shear in one warp.

    Works on float ``(C, H, W)`` tensors. torchvision's chain of RandomResizedCrop and
    RandomAffine costs about ten times more per image, which dominates training time on
    tiny images; one ``grid_sample`` per image keeps augmentation cheaper than the model.

    Args:
        size: output height and width.
        degrees: rotation drawn uniformly from ``[-degrees, degrees]``.
        scale: zoom range; above 1 enlarges the content (a crop), below 1 shrinks it.
        translate: shift drawn uniformly up to this fraction of the image, per axis.
        shear: shear angle drawn uniformly from ``[-shear, shear]`` degrees.
    """

    def __init__(
        self,
        size: int,
        degrees: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        translate: float = 0.0,
        shear: float = 0.0,
    ) -> None:
        super().__init__()
        self.size, self.degrees, self.scale = size, degrees, tuple(scale)
        self.translate, self.shear = translate, shear

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        batch = image.unsqueeze(0)
        if batch.shape[-2:] != (self.size, self.size):
            batch = F.interpolate(
                batch,
                size=(self.size, self.size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        u = torch.rand(5).tolist()
        angle = math.radians((2 * u[0] - 1) * self.degrees)
        shear = math.radians((2 * u[1] - 1) * self.shear)
        zoom = self.scale[0] + u[2] * (self.scale[1] - self.scale[0])
        # Normalised coordinates span [-1, 1], so a shift of t image widths is 2t.
        shift_x, shift_y = (
            (2 * u[3] - 1) * 2 * self.translate,
            (2 * u[4] - 1) * 2 * self.translate,
        )
        cos, sin, tan = math.cos(angle), math.sin(angle), math.tan(shear)
        # affine_grid maps output coordinates to input coordinates: the inverse warp.
        theta = torch.tensor(
            [
                [cos / zoom, (tan * cos - sin) / zoom, shift_x],
                [sin / zoom, (tan * sin + cos) / zoom, shift_y],
            ],
            dtype=batch.dtype,
        ).unsqueeze(0)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(
            batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[0]


class RandomBrightnessContrast(torch.nn.Module):
    """With probability ``p``, scale brightness and contrast by factors in ``1 ± strength``.

    Works on float ``(C, H, W)`` tensors in ``[0, 1]``.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, p: float = 0.8) -> None:
        super().__init__()
        self.brightness, self.contrast, self.p = brightness, contrast, p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        u = torch.rand(3).tolist()
        if u[0] >= self.p:
            return image
        image = image * (1 + (2 * u[1] - 1) * self.brightness)
        mean = image.mean()
        return ((image - mean) * (1 + (2 * u[2] - 1) * self.contrast) + mean).clamp(0, 1)


def _finish(image_size: int, mean: Sequence[float], std: Sequence[float]) -> list:
    return [
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]


def natural_images(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale_min: float = 0.2,
    cutout_fraction: float = 0.5,
) -> ViewTransforms:
    """The SCAN paper's recipe for CIFAR / STL-10 photographs.

    ``cutout_fraction`` is the largest side of the erased square relative to the image
    (SCAN's cutout: 16 px on CIFAR's 32, 32 px on STL-10's 96).
    """
    start = [v2.ToImage()]
    return ViewTransforms(
        pretext=v2.Compose(
            start
            + [
                v2.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                v2.RandomGrayscale(p=0.2),
            ]
            + _finish(image_size, mean, std)
        ),
        weak=v2.Compose(
            start
            + [
                v2.Resize((image_size, image_size), antialias=True),
                v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect"),
                v2.RandomHorizontalFlip(),
            ]
            + _finish(image_size, mean, std)
        ),
        # SCAN's "ours" strategy: flip, crop, four RandAugment operations, then cutout.
        strong=v2.Compose(
            start
            + [
                v2.Resize((image_size, image_size), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect"),
                v2.RandAugment(num_ops=4),
            ]
            + _finish(image_size, mean, std)
            + [
                v2.RandomErasing(
                    p=1.0, scale=(0.01, max(0.01, cutout_fraction**2)), ratio=(1.0, 1.0), value=0
                ),
            ]
        ),
        eval=v2.Compose(start + _finish(image_size, mean, std)),
    )


def small_grayscale(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rotation: float = 15.0,
    crop_scale_min: float = 0.5,
    flip: bool = False,
) -> ViewTransforms:
    """Tiny grayscale images (digits, MNIST, COIL-20): geometry and contrast.

    ``rotation`` is in-plane, in degrees. ``crop_scale_min`` is the smallest share of the
    image area a pretext crop keeps (as in RandomResizedCrop), expressed here as a zoom.
    ``flip`` adds horizontal flips to the training views: off for digits, whose meaning a
    flip changes; on for objects on a turntable (COIL-20), where the mirror image of the
    view at angle θ resembles the view at −θ.
    """
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    start = to_float + ([v2.RandomHorizontalFlip()] if flip else [])
    normalize = [v2.Normalize(list(mean), list(std))]
    max_zoom = 1 / math.sqrt(crop_scale_min)
    return ViewTransforms(
        pretext=v2.Compose(
            start
            + [
                RandomAffineResize(image_size, rotation, (0.9, max_zoom), translate=0.1, shear=10),
                RandomBrightnessContrast(0.4, 0.4, p=0.8),
            ]
            + normalize
        ),
        weak=v2.Compose(
            start
            + [
                RandomAffineResize(image_size, rotation / 2, (0.9, 1.1), translate=0.1),
            ]
            + normalize
        ),
        strong=v2.Compose(
            start
            + [
                RandomAffineResize(image_size, rotation, (0.8, 1.2), translate=0.15, shear=15),
                RandomBrightnessContrast(0.4, 0.4, p=0.8),
            ]
            + normalize
            + [
                v2.RandomErasing(p=0.5, scale=(0.02, 0.15), value=0),
            ]
        ),
        eval=v2.Compose(to_float + [RandomAffineResize(image_size)] + normalize),
    )


_RECIPES = {"natural": natural_images, "small_grayscale": small_grayscale}


class RandomTurn(torch.nn.Module):
    """Turn a normalised ``(C, H, W)`` view by an angle drawn uniformly from the full circle;
    corners take ``fill``, the normalised value of black."""

    def __init__(self, fill: Sequence[float]) -> None:
        super().__init__()
        self.fill = [float(value) for value in fill]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        angle = (2 * torch.rand(1, dtype=torch.float64) - 1) * math.pi
        return rotate(image.unsqueeze(0), angle, self.fill)[0]


def black(mean: Sequence[float], std: Sequence[float]) -> list[float]:
    """The normalised value of a black pixel, per channel."""
    return [-m / s for m, s in zip(mean, std, strict=True)]


def turned_at_random(
    views: ViewTransforms, turned: Callable[[Callable], Callable]
) -> ViewTransforms:
    """``views`` whose training views (pretext, weak, strong) ``turned`` wraps so that they end
    with a turn by a random angle (``data.augment.rotation_invariant``); eval stays upright."""
    return ViewTransforms(
        pretext=turned(views.pretext),
        weak=turned(views.weak),
        strong=turned(views.strong),
        eval=views.eval,
    )


def build_transforms(
    recipe: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rotation_invariant: bool = False,
    **options: float,
) -> ViewTransforms:
    """The four views of a named recipe (``natural`` or ``small_grayscale``);
    ``rotation_invariant`` turns every training view by a random angle."""
    views = recipe_builder(_RECIPES, recipe)(image_size, mean, std, **options)
    if not rotation_invariant:
        return views
    turn = RandomTurn(black(mean, std))
    return turned_at_random(views, lambda view: v2.Compose([view, turn]))


def recipe_builder(recipes: Mapping[str, Callable], recipe: str) -> Callable:
    """``recipes[recipe]``, or an error naming the recipes there are."""
    if recipe not in recipes:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; choose one of {sorted(recipes)}")
    return recipes[recipe]


def recipe_arguments(data_cfg: Mapping) -> dict:
    """The :func:`build_transforms` arguments a data config gives, checked against its channels."""
    channels = data_cfg["channels"]
    for key in ("mean", "std"):
        if len(data_cfg[key]) != channels:
            raise ValueError(
                f"data.{key} has {len(data_cfg[key])} values but data.channels={channels}; "
                f"give one {key} per channel"
            )
    augment = dict(data_cfg["augment"])
    return {
        "recipe": augment.pop("recipe"),
        "image_size": data_cfg["image_size"],
        "mean": list(data_cfg["mean"]),
        "std": list(data_cfg["std"]),
        **augment,
    }


def view_transforms(data_cfg: Mapping) -> ViewTransforms:
    """The four views (pretext, weak, strong, eval) that a data config describes."""
    return build_transforms(**recipe_arguments(data_cfg))

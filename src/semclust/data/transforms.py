"""Augmentation recipes. Each recipe gives four views of an image:

- ``pretext``: SimCLR's strong, random view (two are drawn per image);
- ``weak``: light geometric jitter, the view self-labeling reads pseudo-labels from;
- ``strong``: heavy augmentation for SCAN's anchors/neighbours and self-labeling's targets;
- ``eval``: deterministic resize and normalisation only.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import v2


@dataclass(frozen=True)
class ViewTransforms:
    pretext: Callable
    weak: Callable
    strong: Callable
    eval: Callable

    def get(self, view: str) -> Callable:
        if view not in ("pretext", "weak", "strong", "eval"):
            raise ValueError(f"unknown view {view!r}; choose pretext, weak, strong or eval")
        return getattr(self, view)


def _finish(image_size: int, mean: Sequence[float], std: Sequence[float]) -> list:
    return [
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]


def natural_images(image_size: int, mean: Sequence[float], std: Sequence[float],
                   crop_scale_min: float = 0.2) -> ViewTransforms:
    """The SCAN paper's recipe for CIFAR / STL-10 photographs."""
    start = [v2.ToImage()]
    return ViewTransforms(
        pretext=v2.Compose(start + [
            v2.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ] + _finish(image_size, mean, std)),
        weak=v2.Compose(start + [
            v2.Resize((image_size, image_size), antialias=True),
            v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect"),
            v2.RandomHorizontalFlip(),
        ] + _finish(image_size, mean, std)),
        # SCAN's "ours" strategy: flip, crop, four RandAugment operations, then cutout.
        strong=v2.Compose(start + [
            v2.Resize((image_size, image_size), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect"),
            v2.RandAugment(num_ops=4),
        ] + _finish(image_size, mean, std) + [
            v2.RandomErasing(p=1.0, scale=(0.06, 0.06), ratio=(1.0, 1.0), value=0),
        ]),
        eval=v2.Compose(start + _finish(image_size, mean, std)),
    )


def small_grayscale(image_size: int, mean: Sequence[float], std: Sequence[float],
                    rotation: float = 15.0, crop_scale_min: float = 0.5) -> ViewTransforms:
    """Tiny grayscale images (digits, MNIST, COIL-20): geometry and contrast, never flips.

    Flips change a digit's meaning; ``rotation`` (degrees) can go up to 180 for objects whose
    pose is a nuisance, as in COIL-20.
    """
    start = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    return ViewTransforms(
        pretext=v2.Compose(start + [
            v2.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), ratio=(0.8, 1.25),
                                 antialias=True),
            v2.RandomAffine(degrees=rotation, shear=10),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
        ] + _finish(image_size, mean, std)),
        weak=v2.Compose(start + [
            v2.RandomAffine(degrees=rotation / 2, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        ] + _finish(image_size, mean, std)),
        strong=v2.Compose(start + [
            v2.RandomAffine(degrees=rotation, translate=(0.15, 0.15), scale=(0.8, 1.2), shear=15),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
        ] + _finish(image_size, mean, std) + [
            v2.RandomErasing(p=0.5, scale=(0.02, 0.15), value=0),
        ]),
        eval=v2.Compose(start + _finish(image_size, mean, std)),
    )


_RECIPES = {"natural": natural_images, "small_grayscale": small_grayscale}


def build_transforms(recipe: str, image_size: int, mean: Sequence[float],
                     std: Sequence[float], **options: float) -> ViewTransforms:
    """The four views of a named recipe (``natural`` or ``small_grayscale``)."""
    if recipe not in _RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; choose one of "
                         f"{sorted(_RECIPES)}")
    return _RECIPES[recipe](image_size, mean, std, **options)

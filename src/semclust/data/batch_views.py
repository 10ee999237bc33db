"""The augmentation recipes of :mod:`semclust.data.transforms`, made for a whole batch at once.

Each view takes uint8 ``(B, C, H, W)`` images on any device and a CPU ``torch.Generator`` or
the batch's :class:`~semclust.data.sample_streams.SampleStreams` (training: each sample's
parameters from its own seed), draws every random parameter per sample on the CPU, and
returns float32 ``(B, C, image_size, image_size)`` normalised views on the images' device.
Same generator state, same views, on CPU or CUDA; nothing waits for the device.

Where the batch views differ from the per-image recipes:

- Everything after resizing runs in float ``[0, 1]``; torchvision's uint8 path rounds or
  truncates after each colour op and after RandomResizedCrop, so single values differ by a
  grey level or two; the distributions are otherwise the same.
- The natural pretext crop is one bilinear ``grid_sample`` from the stored image, without
  antialiasing: identical to torchvision when the crop is enlarged (the usual case), aliased
  when a crop larger than ``image_size`` is shrunk. Output pixels within half a pixel of the
  crop's edge read the neighbouring pixels outside the crop, where torchvision repeats the
  crop's edge.
- Random draws follow the same distributions but not torchvision's random stream, except
  small_grayscale's affine warp and brightness/contrast, whose draws match one sample at a time.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from semclust.data import batch_ops as ops
from semclust.data.batch_randaugment import rand_augment
from semclust.data.sample_streams import Draws, SampleStreams
from semclust.data.transforms import (
    ViewTransforms,
    black,
    recipe_arguments,
    recipe_builder,
    turned_at_random,
)
from semclust.models.rotation import rotate


class BatchTransform(Protocol):
    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor: ...


def check_inputs(images: torch.Tensor, generator: Draws) -> None:
    """Raise unless ``images`` is a uint8 ``(B, C, H, W)`` batch and ``generator`` is on the CPU."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"batch views take uint8 (B, C, H, W) images, got {images.dtype} {tuple(images.shape)}"
        )
    if isinstance(generator, SampleStreams):
        if len(generator) != len(images):
            raise ValueError(f"{len(generator)} sample streams for a batch of {len(images)}")
    elif generator.device.type != "cpu":
        raise ValueError(
            f"draw batch augmentation parameters from a CPU generator, got {generator.device}; "
            "a CPU generator gives the same views on every device"
        )


@dataclass(frozen=True)
class ViewOutput:
    """What every view ends with: its side and per-channel normalisation."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def finish(self, views: torch.Tensor) -> torch.Tensor:
        return ops.normalize(views, self.mean, self.std)


@dataclass(frozen=True)
class EvalView(ViewOutput):
    """Antialiased resize (rounded to uint8 levels, as torchvision's uint8 resize) and normalise.

    ``round_resize=False`` keeps the float resize, as the small_grayscale recipe does.
    """

    round_resize: bool = True

    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor:
        check_inputs(images, generator)
        if self.round_resize:
            return self.finish(ops.to_unit(ops.resize_uint8(images, self.image_size)))
        return self.finish(ops.resize(ops.to_unit(images), self.image_size))


@dataclass(frozen=True)
class NaturalPretext(ViewOutput):
    """SimCLR's view: resized crop and flip in one warp, colour jitter, random grayscale."""

    crop_scale_min: float = 0.2

    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor:
        check_inputs(images, generator)
        batch, _, height, width = images.shape
        boxes = ops.resized_crop_boxes(
            generator, batch, height, width, (self.crop_scale_min, 1.0), (3 / 4, 4 / 3)
        )
        theta = ops.flip_theta(
            ops.crop_theta(boxes, height, width), ops.coin(generator, batch, 0.5)
        )
        # Border padding stands in for torchvision's edge clamping where a crop meets the edge.
        views = ops.warp(ops.to_unit(images), theta, self.image_size, padding_mode="border")
        views = ops.color_jitter(views, generator, p=0.8, strengths=(0.4, 0.4, 0.4, 0.1))
        return self.finish(ops.random_grayscale(views, generator, p=0.2))


@dataclass(frozen=True)
class NaturalWeak(ViewOutput):
    """Resize, reflect-padded random crop (padding ``image_size // 8``) and flip."""

    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor:
        check_inputs(images, generator)
        views = ops.resize_uint8(images, self.image_size)
        views = ops.padded_crop_flip(views, generator, self.image_size // 8, flip=True)
        return self.finish(ops.to_unit(views))


@dataclass(frozen=True)
class NaturalStrong(ViewOutput):
    """SCAN's strong view: flip, padded crop, four RandAugment ops, normalise, then cutout.

    The cutout is RandomErasing(p=1) of a square covering 1% to ``cutout_fraction``² of the
    image, set to zero after normalisation.
    """

    cutout_fraction: float = 0.5

    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor:
        check_inputs(images, generator)
        views = ops.resize_uint8(images, self.image_size)
        views = ops.padded_crop_flip(views, generator, self.image_size // 8, flip=True)
        views = self.finish(ops.to_unit(rand_augment(views, generator, num_ops=4)))
        boxes, erased = ops.erasing_boxes(
            generator,
            len(views),
            self.image_size,
            self.image_size,
            p=1.0,
            scale=(0.01, max(0.01, self.cutout_fraction**2)),
            ratio=(1.0, 1.0),
        )
        return ops.erase(views, boxes, erased)


@dataclass(frozen=True)
class AffineRange:
    """The ranges of one :class:`~semclust.data.transforms.RandomAffineResize`."""

    degrees: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    shear: float = 0.0


@dataclass(frozen=True)
class GrayscaleView(ViewOutput):
    """small_grayscale's training views: optional flip, affine warp, brightness/contrast, erasing.

    Draws in the per-image order (flip, warp, brightness/contrast), so a batch of one from a
    generator seeded like the global RNG gives the per-image recipe's view, erasing aside.
    """

    affine: AffineRange = AffineRange()
    flip: bool = False
    jitter: bool = False
    erase_p: float = 0.0

    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor:
        check_inputs(images, generator)
        batch = images.shape[0]
        flips = ops.coin(generator, batch, 0.5) if self.flip else None
        affine = self.affine
        theta = ops.random_affine_theta(
            generator, batch, affine.degrees, affine.scale, affine.translate, affine.shear
        )
        if flips is not None:
            # Flipping the input before the warp is a flip of the sampled x coordinate.
            theta = ops.flip_theta(theta, flips)
        views = ops.resize(ops.to_unit(images), self.image_size)
        views = ops.warp(views, theta, self.image_size, padding_mode="zeros")
        if self.jitter:
            views = ops.brightness_contrast(views, generator, 0.4, 0.4, p=0.8)
        views = self.finish(views)
        if self.erase_p == 0:
            return views
        boxes, erased = ops.erasing_boxes(
            generator,
            batch,
            self.image_size,
            self.image_size,
            p=self.erase_p,
            scale=(0.02, 0.15),
            ratio=(0.3, 3.3),
        )
        return ops.erase(views, boxes, erased)


def natural_images(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale_min: float = 0.2,
    cutout_fraction: float = 0.5,
) -> ViewTransforms:
    """Batch views of :func:`semclust.data.transforms.natural_images`."""
    base = {"image_size": image_size, "mean": tuple(mean), "std": tuple(std)}
    return ViewTransforms(
        pretext=NaturalPretext(**base, crop_scale_min=crop_scale_min),
        weak=NaturalWeak(**base),
        strong=NaturalStrong(**base, cutout_fraction=cutout_fraction),
        eval=EvalView(**base),
    )


def small_grayscale(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rotation: float = 15.0,
    crop_scale_min: float = 0.5,
    flip: bool = False,
) -> ViewTransforms:
    """Batch views of :func:`semclust.data.transforms.small_grayscale`."""
    base = {"image_size": image_size, "mean": tuple(mean), "std": tuple(std)}
    max_zoom = 1 / math.sqrt(crop_scale_min)
    return ViewTransforms(
        pretext=GrayscaleView(
            **base,
            affine=AffineRange(rotation, (0.9, max_zoom), translate=0.1, shear=10),
            flip=flip,
            jitter=True,
        ),
        weak=GrayscaleView(
            **base, affine=AffineRange(rotation / 2, (0.9, 1.1), translate=0.1), flip=flip
        ),
        strong=GrayscaleView(
            **base,
            affine=AffineRange(rotation, (0.8, 1.2), translate=0.15, shear=15),
            flip=flip,
            jitter=True,
            erase_p=0.5,
        ),
        eval=EvalView(**base, round_resize=False),
    )


_RECIPES = {"natural": natural_images, "small_grayscale": small_grayscale}


@dataclass(frozen=True)
class TurnedView:
    """A training view, then a turn of each sample by an angle drawn uniformly from the full
    circle (per-image twin: :class:`~semclust.data.transforms.RandomTurn`)."""

    view: BatchTransform
    fill: tuple[float, ...]

    def __call__(self, images: torch.Tensor, generator: Draws) -> torch.Tensor:
        views = self.view(images, generator)
        angles = ops.uniform(generator, (len(views),), -math.pi, math.pi)
        return rotate(views, angles, self.fill)


def build_batch_transforms(
    recipe: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rotation_invariant: bool = False,
    **options: float,
) -> ViewTransforms:
    """The four batch views of a named recipe (``natural`` or ``small_grayscale``);
    ``rotation_invariant`` turns every training view by a random angle."""
    views = recipe_builder(_RECIPES, recipe)(image_size, mean, std, **options)
    if not rotation_invariant:
        return views
    fill = tuple(black(mean, std))
    return turned_at_random(views, lambda view: TurnedView(view, fill))


def batch_view_transforms(data_cfg: Mapping) -> ViewTransforms:
    """The four batch views (pretext, weak, strong, eval) that a data config describes."""
    return build_batch_transforms(**recipe_arguments(data_cfg))

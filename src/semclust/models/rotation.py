"""In-plane rotation of image batches, and a backbone whose features ignore it.

Rotation acts on normalised ``(B, C, H, W)`` tensors. Bilinear sampling is linear and the
normalisation is affine per channel, so turning a normalised image with the corners filled by
``fill`` (the normalised value of black, ``-mean / std``) is turning the raw image with black
corners: the training views (:mod:`semclust.data.transforms`, ``batch_views``) and the pooled
features below see the same images.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from semclust.transfer import on_device


def rotate(images: torch.Tensor, angles: torch.Tensor, fill: Sequence[float]) -> torch.Tensor:
    """``images`` turned counter-clockwise about their centres by ``angles`` (radians, one per
    image), the uncovered corners set to ``fill`` (one value per channel)."""
    if images.ndim != 4 or angles.shape != (images.shape[0],):
        raise ValueError(
            f"rotate takes (B, C, H, W) images and B angles, got {tuple(images.shape)} "
            f"and {tuple(angles.shape)}"
        )
    if len(fill) != images.shape[1]:
        raise ValueError(f"fill needs one value per channel ({images.shape[1]}), got {fill}")
    angles = on_device(angles, images, torch.float64)
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    # affine_grid maps output to input coordinates: the inverse turn, by -angle. y points
    # down in image coordinates, so this matrix turns the picture counter-clockwise.
    theta = torch.stack(
        [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], dim=1
    ).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    offset = on_device(fill, images, images.dtype).view(1, -1, 1, 1)
    # Zero padding of (images - fill) is padding with fill.
    turned = F.grid_sample(
        images - offset, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return turned + offset


def with_rotation_pooling(backbone: nn.Module, pooling: Mapping[str, Any] | None) -> nn.Module:
    """``backbone`` as a backbone spec's ``rotation_pooling`` (``{"angles": n, "fill": [...]}``,
    set by ``rotation_invariance``) says: unchanged when None, else rotation-pooled."""
    if pooling is None:
        return backbone
    if set(pooling) != {"angles", "fill"}:
        raise ValueError(f"backbone.rotation_pooling takes angles and fill, got {sorted(pooling)}")
    return RotationPooledBackbone(backbone, pooling["angles"], pooling["fill"])


class RotationPooledBackbone(nn.Module):
    """A backbone whose evaluation features are the mean over ``angles`` evenly spaced turns
    of the image (0°, 360°/angles, ...); in training mode it is the backbone unchanged, since
    the training views are turned at random already.

    The cluster heads are linear, so pooled features give the mean of the turns' logits.
    ``fill`` is the normalised value of black, one per channel (the turned-out corners).
    """

    def __init__(self, backbone: nn.Module, angles: int, fill: Sequence[float]) -> None:
        super().__init__()
        if isinstance(angles, bool) or not isinstance(angles, int) or angles < 1:
            raise ValueError(f"rotation_pooling.angles must be a positive integer, got {angles}")
        self.backbone = backbone
        self.angles = angles
        self.fill = [float(value) for value in fill]
        self.feature_dim = backbone.feature_dim

    @property
    def unpooled(self) -> nn.Module:
        """The backbone of one turn (what Grad-CAM explains: one image, one set of maps)."""
        return self.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training or self.angles == 1:
            return self.backbone(images)
        batch = images.shape[0]
        total = None
        # One turn at a time: memory stays that of one batch (a ViT at 224 px needs it).
        for turn in range(self.angles):
            angles = torch.full((batch,), turn * 2 * math.pi / self.angles, dtype=torch.float64)
            features = self.backbone(rotate(images, angles, self.fill) if turn else images)
            total = features if total is None else total + features
        return total / self.angles

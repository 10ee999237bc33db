"""Batched augmentation primitives: per-sample random parameters, one tensor op per batch.

Random parameters are drawn on the CPU from an explicit ``torch.Generator`` (or per sample
from :class:`~semclust.data.sample_streams.SampleStreams`) and only then moved to the images'
device, so a seed gives the same views on CPU and CUDA; they move with
:func:`~semclust.transfer.on_device`, which never waits for the device. Functions that
draw take ``generator`` and return parameters; functions that apply take tensors and never
draw. Images here are float ``(B, C, H, W)`` in ``[0, 1]`` unless a name says ``uint8``.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from semclust.data.sample_streams import Draws, draw_uniform
from semclust.transfer import on_device

# torchvision's rgb_to_grayscale weights (ITU-R 601, with its 0.2989 for red).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def uniform(generator: Draws, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    """CPU float64 draws from U(low, high)."""
    return low + (high - low) * draw_uniform(generator, shape, torch.float64)


def coin(generator: Draws, batch: int, p: float) -> torch.Tensor:
    """CPU booleans, each True with probability ``p`` (torchvision's ``rand < p``)."""
    return draw_uniform(generator, (batch,)) < p


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], as a new tensor."""
    return images.float().div_(255)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of float images to ``size``², only when needed."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased resize of uint8 images, rounded back to uint8 like torchvision's uint8 path."""
    if images.shape[-2:] == (size, size):
        return images
    return resize(images.float(), size).round_().clamp_(0, 255).to(torch.uint8)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``."""
    mean_t = on_device(mean, images, images.dtype).view(1, -1, 1, 1)
    std_t = on_device(std, images, images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """CPU ``(B,)`` parameters as ``(B, 1, 1, 1)`` on ``like``'s device and dtype."""
    return on_device(values, like, like.dtype).view(-1, 1, 1, 1)


def warp(images: torch.Tensor, theta: torch.Tensor, size: int, padding_mode: str) -> torch.Tensor:
    """Sample ``size``² outputs through per-sample inverse affine maps ``theta`` (B, 2, 3)."""
    theta = on_device(theta, images, images.dtype)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


def flip_theta(theta: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Compose a horizontal flip of the input into each flagged inverse map."""
    sign = torch.where(flips, -1.0, 1.0).to(theta.dtype)
    return torch.cat([theta[:, :1] * sign.view(-1, 1, 1), theta[:, 1:]], dim=1)


def random_affine_theta(
    generator: Draws,
    batch: int,
    degrees: float,
    scale: tuple[float, float],
    translate: float,
    shear: float,
) -> torch.Tensor:
    """Inverse maps (float64) of :class:`~semclust.data.transforms.RandomAffineResize`.

    Draws ``rand(batch, 5)`` in float32 and applies its formula in float64, so one sample
    from a generator seeded like the global one reproduces its warp exactly.
    """
    u = draw_uniform(generator, (batch, 5)).double()
    angle = torch.deg2rad((2 * u[:, 0] - 1) * degrees)
    shear_angle = torch.deg2rad((2 * u[:, 1] - 1) * shear)
    zoom = scale[0] + u[:, 2] * (scale[1] - scale[0])
    # Normalised coordinates span [-1, 1], so a shift of t image widths is 2t.
    shift_x, shift_y = (2 * u[:, 3] - 1) * 2 * translate, (2 * u[:, 4] - 1) * 2 * translate
    cos, sin, tan = angle.cos(), angle.sin(), shear_angle.tan()
    return torch.stack(
        [
            torch.stack([cos / zoom, (tan * cos - sin) / zoom, shift_x], 1),
            torch.stack([sin / zoom, (tan * sin + cos) / zoom, shift_y], 1),
        ],
        dim=1,
    )


@dataclass(frozen=True)
class Boxes:
    """Per-sample integer boxes (CPU int64): rows from ``top``, columns from ``left``."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


def _first_fitting_attempt(
    sides: tuple[torch.Tensor, torch.Tensor], fits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's first attempt that fits (torchvision tries up to ten in order)."""
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first max
    found = fits.any(dim=1)
    return sides[0].gather(1, first)[:, 0], sides[1].gather(1, first)[:, 0], found


def _uniform_offset(generator: Draws, room: torch.Tensor) -> torch.Tensor:
    """Integers uniform on ``0..room`` per sample, like ``randint(0, room + 1)``."""
    u = draw_uniform(generator, room.shape, torch.float64)
    return (u * (room + 1)).floor().long()


def resized_crop_boxes(
    generator: Draws,
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    attempts: int = 10,
) -> Boxes:
    """RandomResizedCrop's boxes: all attempts drawn at once, the first fitting one kept.

    Falls back to torchvision's central crop clipped to ``ratio`` when no attempt fits.
    """
    target_area = height * width * uniform(generator, (batch, attempts), *scale)
    aspect = uniform(generator, (batch, attempts), math.log(ratio[0]), math.log(ratio[1])).exp()
    # torch.round and Python's round both round half to even.
    w = (target_area * aspect).sqrt().round().long()
    h = (target_area / aspect).sqrt().round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    h, w, found = _first_fitting_attempt((h, w), fits)

    in_ratio = width / height
    fallback_w, fallback_h = width, height
    if in_ratio < min(ratio):
        fallback_h = int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_w = int(round(height * max(ratio)))
    h = torch.where(found, h, fallback_h)
    w = torch.where(found, w, fallback_w)
    top = torch.where(found, _uniform_offset(generator, height - h), (height - h) // 2)
    left = torch.where(found, _uniform_offset(generator, width - w), (width - w) // 2)
    return Boxes(top, left, h, w)


def crop_theta(boxes: Boxes, height: int, width: int) -> torch.Tensor:
    """Inverse maps (float64) that send the output square exactly onto each box's pixel edges."""
    scale_x = boxes.width.double() / width
    scale_y = boxes.height.double() / height
    # A box's centre, in the [-1, 1] coordinates of pixel edges (align_corners=False).
    centre_x = (2 * boxes.left + boxes.width).double() / width - 1
    centre_y = (2 * boxes.top + boxes.height).double() / height - 1
    zeros = torch.zeros_like(scale_x)
    return torch.stack(
        [torch.stack([scale_x, zeros, centre_x], 1), torch.stack([zeros, scale_y, centre_y], 1)],
        dim=1,
    )


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices outside ``0..size-1`` without repeating the edge (``reflect`` padding)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def padded_crop_flip(
    images: torch.Tensor, generator: Draws, padding: int, flip: bool
) -> torch.Tensor:
    """RandomCrop(size, padding, reflect) then, if ``flip``, RandomHorizontalFlip, per sample.

    Works on square images of any dtype by gathering mirrored indices, so no padded copy is
    made. A flip before the crop gives the same distribution, as reflect padding is symmetric.
    """
    batch, _, size, _ = images.shape
    top = _uniform_offset(generator, torch.full((batch,), 2 * padding))
    left = _uniform_offset(generator, torch.full((batch,), 2 * padding))
    flips = coin(generator, batch, 0.5) if flip else torch.zeros(batch, dtype=torch.bool)
    steps = torch.arange(size)
    rows = _reflect(top[:, None] + steps - padding, size)
    columns = left[:, None] + torch.where(flips[:, None], size - 1 - steps, steps)
    columns = _reflect(columns - padding, size)
    rows, columns = on_device(rows, images), on_device(columns, images)
    channels = images.shape[1]
    picked = images.gather(2, rows.view(batch, 1, size, 1).expand(-1, channels, -1, size))
    return picked.gather(3, columns.view(batch, 1, 1, size).expand(-1, channels, size, -1))


def erasing_boxes(
    generator: Draws,
    batch: int,
    height: int,
    width: int,
    p: float,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    attempts: int = 10,
) -> tuple[Boxes, torch.Tensor]:
    """RandomErasing's boxes and which samples are erased (drawn with ``p``, and a fitting box)."""
    erase_area = height * width * uniform(generator, (batch, attempts), *scale)
    aspect = uniform(generator, (batch, attempts), math.log(ratio[0]), math.log(ratio[1])).exp()
    h = (erase_area * aspect).sqrt().round().long()
    w = (erase_area / aspect).sqrt().round().long()
    h, w, found = _first_fitting_attempt((h, w), (h < height) & (w < width))
    h, w = torch.where(found, h, 0), torch.where(found, w, 0)
    top = _uniform_offset(generator, height - h)
    left = _uniform_offset(generator, width - w)
    erased = found & coin(generator, batch, p)
    return Boxes(top, left, h, w), erased


def erase(images: torch.Tensor, boxes: Boxes, erased: torch.Tensor) -> torch.Tensor:
    """Set each erased sample's box to zero, as a new tensor."""
    rows = torch.arange(images.shape[-2], device=images.device).view(1, -1, 1)
    columns = torch.arange(images.shape[-1], device=images.device).view(1, 1, -1)
    top, left, height, width = (
        on_device(value, images).view(-1, 1, 1)
        for value in (boxes.top, boxes.left, boxes.height, boxes.width)
    )
    inside = (rows >= top) & (rows < top + height) & (columns >= left) & (columns < left + width)
    inside = inside & on_device(erased, images).view(-1, 1, 1)
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma ``(B, 1, H, W)`` of RGB images; a 1-channel image is its own luma."""
    if images.shape[1] == 1:
        return images
    weights = on_device(GRAY_WEIGHTS, images, images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * other).clamp_(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each sample by its factor, clamped to [0, 1]."""
    return (images * factor.view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each sample with the mean of its luma (torchvision's contrast)."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each RGB sample with its own luma image."""
    return _blend(images, grayscale(images), factor)


def _value_chroma_hue(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HSV's value, chroma (value x saturation) and hue in sectors [0, 6), each (B, H, W).

    Elementwise maxima instead of a max over channels: several times faster on the CPU.
    """
    red, green, blue = images.unbind(dim=1)
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    is_red = value == red
    is_green = (value == green) & ~is_red
    numerator = torch.where(is_red, green - blue, torch.where(is_green, blue - red, red - green))
    sector = is_green * 2.0 + (~is_red & ~is_green) * 4.0
    # Grey pixels have a zero numerator, hence hue 0.
    hue = numerator.div_(chroma.clamp_min(1e-12)).add_(sector).remainder_(6)
    return value, chroma, hue


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV with hue in [0, 1); grey pixels get hue 0 and saturation 0."""
    value, chroma, hue = _value_chroma_hue(images)
    saturation = chroma / value.clamp_min(1e-12)
    return torch.stack([hue / 6, saturation, value], dim=1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each RGB sample's hue by its shift (a fraction of the colour circle).

    Back to RGB with ``v - v s clamp(min(k, 4 - k), 0, 1)`` per channel, where ``v s`` is
    the chroma and ``k`` the hue sector offset by 5, 3 and 1 for red, green and blue.
    """
    value, chroma, hue = _value_chroma_hue(images)
    hue = hue.add_(6 * shift.view(-1, 1, 1)).unsqueeze(1)
    offsets = on_device((5.0, 3.0, 1.0), images, images.dtype)
    k = (offsets.view(1, 3, 1, 1) + hue).remainder_(6)
    weight = torch.minimum(k, 4 - k).clamp_(0, 1)
    return (value.unsqueeze(1) - chroma.unsqueeze(1) * weight).clamp_(0, 1)


def color_jitter(
    images: torch.Tensor,
    generator: Draws,
    p: float,
    strengths: tuple[float, float, float, float],
) -> torch.Tensor:
    """With probability ``p`` per sample, torchvision's ColorJitter in a random order per sample.

    ``strengths`` are (brightness, contrast, saturation, hue): factors U(1 ± s), hue shift
    U(± hue). Each sample draws a permutation of the four ops; for each of the four slots, each
    op runs on the samples that have it in that slot. Saturation and hue leave 1-channel
    images alone, as torchvision does.
    """
    batch = images.shape[0]
    brightness, contrast, saturation, hue = strengths
    factors = torch.stack(
        [
            uniform(generator, (batch,), 1 - brightness, 1 + brightness),
            uniform(generator, (batch,), 1 - contrast, 1 + contrast),
            uniform(generator, (batch,), 1 - saturation, 1 + saturation),
            uniform(generator, (batch,), -hue, hue),
        ],
        dim=1,
    )
    order = draw_uniform(generator, (batch, 4)).argsort(dim=1)
    applied = coin(generator, batch, p)
    adjustments = [adjust_brightness, adjust_contrast]
    if images.shape[1] == 3:
        adjustments += [adjust_saturation, adjust_hue]
    factors_on_device = on_device(factors, images, images.dtype)
    out = images.clone()
    for slot in range(4):
        for op_index, adjust in enumerate(adjustments):
            # Chosen on the CPU, so picking the subset never waits for the device.
            chosen = torch.nonzero(applied & (order[:, slot] == op_index))[:, 0]
            if len(chosen) == 0:
                continue
            chosen = on_device(chosen, images)
            subset = out.index_select(0, chosen)
            out.index_copy_(0, chosen, adjust(subset, factors_on_device[chosen, op_index]))
    return out


def random_grayscale(images: torch.Tensor, generator: Draws, p: float) -> torch.Tensor:
    """With probability ``p`` per sample, replace the image by its luma in every channel."""
    chosen = on_device(coin(generator, images.shape[0], p), images).view(-1, 1, 1, 1)
    return torch.where(chosen, grayscale(images).expand_as(images), images)


def brightness_contrast(
    images: torch.Tensor,
    generator: Draws,
    brightness: float,
    contrast: float,
    p: float,
) -> torch.Tensor:
    """Batched :class:`~semclust.data.transforms.RandomBrightnessContrast`, same draws per sample.

    Contrast scales around each image's own mean over all channels and pixels.
    """
    u = draw_uniform(generator, (images.shape[0], 3))
    applied = on_device(u[:, 0] < p, images).view(-1, 1, 1, 1)
    scaled = images * per_sample(1 + (2 * u[:, 1].double() - 1) * brightness, images)
    mean = scaled.mean(dim=(1, 2, 3), keepdim=True)
    contrast_factor = per_sample(1 + (2 * u[:, 2].double() - 1) * contrast, images)
    jittered = ((scaled - mean) * contrast_factor + mean).clamp_(0, 1)
    return torch.where(applied, jittered, images)

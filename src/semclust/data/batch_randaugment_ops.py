"""RandAugment's factor ops (brightness, colour, contrast, sharpness) with a factor per image.

torchvision's tensor kernels take one factor per call, so a batch whose images drew
``1 + m`` and ``1 - m`` needed a call per sign, each a handful of kernel launches. These
repeat its arithmetic step for step (the same float32 roundings: ``1 - factor`` is formed in
float64 and rounded once, as torchvision's Python float is) with the factors as a
``(N, 1, 1, 1)`` tensor, and are checked image for image against torchvision's own ops
(``tests/unit/test_batch_randaugment.py``). Images are uint8 ``(N, C, H, W)``, C 1 or 3.
"""

import torch
import torch.nn.functional as F

from semclust.transfer import on_device

FACTOR_OPS = ("Brightness", "Color", "Contrast", "Sharpness")


def adjust_by_factors(images: torch.Tensor, op_name: str, factors: torch.Tensor) -> torch.Tensor:
    """``op_name`` of :data:`FACTOR_OPS` with ``factors[i]`` (CPU float64) for image ``i``."""
    if op_name == "Brightness":
        scaled = images.mul(_per_image(factors, images))
        return scaled.clamp_(0, 255).to(images.dtype)
    if op_name == "Color":
        if images.shape[1] == 1:  # a no-op on grey images, as in torchvision (and PIL)
            return images
        return _blend(images, _luma(images).floor_(), factors)
    if op_name == "Contrast":
        grey = _luma(images).floor_() if images.shape[1] == 3 else images.to(torch.float32)
        return _blend(images, grey.mean(dim=(-3, -2, -1), keepdim=True), factors)
    if op_name == "Sharpness":
        return _sharpen(images, factors)
    raise ValueError(f"{op_name!r} is not one of {FACTOR_OPS}")


def _per_image(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return on_device(values, images, torch.float32).view(-1, 1, 1, 1)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """torchvision's float luma of uint8 RGB images, ``(N, 1, H, W)``."""
    red, green, blue = images.unbind(dim=-3)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).unsqueeze(-3)


def _blend(images: torch.Tensor, other: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``factor * images + (1 - factor) * other``, clamped and truncated to uint8."""
    blended = images.mul(_per_image(factors, images))
    blended.addcmul_(other, _per_image(1.0 - factors, images))  # fused, as add_(alpha=) is
    return blended.clamp_(0, 255).to(images.dtype)


def _sharpen(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Blend with a 3×3 blur (1s round a 5, over 13) inside a one-pixel border, which stays."""
    channels, height, width = images.shape[-3:]
    if height <= 2 or width <= 2:
        return images
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = on_device([[a, a, a], [a, b, a], [a, a, a]], images, torch.float32)
    output = images.to(dtype=torch.float32, copy=True)
    blurred = F.conv2d(output, kernel.expand(channels, 1, 3, 3), groups=channels)
    inner = output[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.round_().sub_(inner), _per_image(1.0 - factors, images))
    return output.clamp_(0, 255).to(images.dtype)

"""torchvision's ``v2.RandAugment`` applied per sample to a whole batch on any device.

With the magnitude fixed (torchvision's default 9 of 31 bins), RandAugment's only
per-image randomness is which op each of its ``num_ops`` rounds applies and, for signed
ops, the sign of the magnitude. So each round draws (op, sign) for every sample, sorts the
batch by that choice and applies torchvision's own functional op to each group as one
``(N, C, H, W)`` tensor: every image gets exactly what ``v2.RandAugment`` gives it for the
same choices, at the cost of a few batched kernels instead of one call per image.

On a GPU the kernel launches bound this, each group's costing the same however few its
images, so groups are merged where the result stays the same. The geometric ops (shears,
translations, rotation) sample the nearest pixel, so each copies input pixels to fixed
places: a map learnt once per image size from torchvision's own op, and all of a round's
geometric groups are one gather. The factor ops take a factor per image
(:mod:`semclust.data.batch_randaugment_ops`), so both signs of one are one call.
"""

import functools
import math
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from semclust.data.batch_randaugment_ops import FACTOR_OPS, adjust_by_factors
from semclust.data.sample_streams import Draws, SampleStreams
from semclust.transfer import on_device

# v2.RandAugment's defaults; a different magnitude would change every op's strength.
MAGNITUDE = 9
NUM_MAGNITUDE_BINS = 31

# v2.RandAugment's op space, in its order: (name, signed).
OPS: tuple[tuple[str, bool], ...] = (
    ("Identity", False),
    ("ShearX", True),
    ("ShearY", True),
    ("TranslateX", True),
    ("TranslateY", True),
    ("Rotate", True),
    ("Brightness", True),
    ("Color", True),
    ("Contrast", True),
    ("Sharpness", True),
    ("Posterize", False),
    ("Solarize", False),
    ("AutoContrast", False),
    ("Equalize", False),
)
OP_NAMES = tuple(name for name, _ in OPS)
_SIGNED = torch.tensor([signed for _, signed in OPS])
GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def _map_rows() -> torch.Tensor:
    """Group ``g = 2 * op + negative`` -> its row of :func:`pixel_maps` (0 for other ops)."""
    rows = torch.zeros(2 * len(OPS), dtype=torch.long)
    for index, name in enumerate(GEOMETRIC_OPS):
        op = OP_NAMES.index(name)
        rows[2 * op], rows[2 * op + 1] = 1 + 2 * index, 2 + 2 * index
    return rows


_MAP_ROW = _map_rows()


@dataclass(frozen=True)
class Choices:
    """The random part of RandAugment for a batch.

    ``op[r, i]`` indexes :data:`OPS` for round ``r`` of sample ``i``; ``negative[r, i]``
    says whether that op's magnitude is negated (always False for unsigned ops). Both are
    CPU tensors of shape ``(num_ops, batch_size)``.
    """

    op: torch.Tensor
    negative: torch.Tensor


def draw_choices(batch_size: int, generator: Draws, num_ops: int = 4) -> Choices:
    """Draw each sample's ops (uniform, with replacement) and signs (p = 0.5) on the CPU."""
    if num_ops < 0:
        raise ValueError(f"num_ops should be a non-negative integer, got {num_ops}")
    if isinstance(generator, SampleStreams):  # streams draw with the batch axis first
        op = generator.randint(len(OPS), (batch_size, num_ops)).T
        negative = generator.randint(2, (batch_size, num_ops)).T.bool()
    else:
        op = torch.randint(len(OPS), (num_ops, batch_size), generator=generator)
        negative = torch.randint(2, (num_ops, batch_size), generator=generator).bool()
    return Choices(op=op, negative=negative & _SIGNED[op])


def magnitude(op_name: str, height: int, width: int) -> float:
    """The magnitude v2.RandAugment uses for ``op_name`` before any sign flip.

    Computed as torchvision does (float32 ``linspace`` bins, then ``float``), so the
    parameters passed to each functional are bit-identical to torchvision's.
    """
    bins, index = NUM_MAGNITUDE_BINS, MAGNITUDE
    if op_name in ("ShearX", "ShearY"):
        return float(torch.linspace(0.0, 0.3, bins)[index])
    if op_name == "TranslateX":
        return float(torch.linspace(0.0, 150.0 / 331.0 * width, bins)[index])
    if op_name == "TranslateY":
        return float(torch.linspace(0.0, 150.0 / 331.0 * height, bins)[index])
    if op_name == "Rotate":
        return float(torch.linspace(0.0, 30.0, bins)[index])
    if op_name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return float(torch.linspace(0.0, 0.9, bins)[index])
    if op_name == "Posterize":
        return float((8 - (torch.arange(bins) / ((bins - 1) / 4))).round().int()[index])
    if op_name == "Solarize":
        return float(torch.linspace(1.0, 0.0, bins)[index])
    if op_name in ("Identity", "AutoContrast", "Equalize"):
        return 0.0
    raise ValueError(f"unknown RandAugment op {op_name!r}; choose one of {OP_NAMES}")


def apply_op(images: torch.Tensor, op_name: str, magnitude: float) -> torch.Tensor:
    """Apply one RandAugment op with a signed magnitude to uint8 ``(N, C, H, W)`` images.

    The same functional calls, with the same arguments, as torchvision's RandAugment
    (interpolation NEAREST, fill None i.e. zeros); each works image by image on a batch.
    """
    nearest = InterpolationMode.NEAREST
    if op_name == "Identity":
        return images
    if op_name in ("ShearX", "ShearY"):
        # torchvision shears about the top-left corner (center=[0, 0]).
        angle = math.degrees(math.atan(magnitude))
        shear = [angle, 0.0] if op_name == "ShearX" else [0.0, angle]
        return F.affine(
            images,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=shear,
            interpolation=nearest,
            fill=None,
            center=[0, 0],
        )
    if op_name in ("TranslateX", "TranslateY"):
        translate = [int(magnitude), 0] if op_name == "TranslateX" else [0, int(magnitude)]
        return F.affine(
            images,
            angle=0.0,
            translate=translate,
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=nearest,
            fill=None,
        )
    if op_name == "Rotate":
        return F.rotate(images, angle=magnitude, interpolation=nearest, fill=None)
    if op_name in FACTOR_OPS:
        factors = torch.full((images.shape[0],), 1.0 + magnitude, dtype=torch.float64)
        return adjust_by_factors(images, op_name, factors)
    if op_name == "Posterize":
        return F.posterize(images, bits=int(magnitude))
    if op_name == "Solarize":
        return F.solarize(images, threshold=255.0 * magnitude)
    if op_name == "AutoContrast":
        return F.autocontrast(images)
    if op_name == "Equalize":
        return F.equalize(images)
    raise ValueError(f"unknown RandAugment op {op_name!r}; choose one of {OP_NAMES}")


@functools.lru_cache(maxsize=32)
def pixel_maps(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the geometric ops take each output pixel from, on ``device``.

    Row 0 is the identity, then each of :data:`GEOMETRIC_OPS` with its positive and its
    negative magnitude. Returns ``(source, outside)``, both ``(rows, H * W)``: the flat index
    of the input pixel each output pixel copies, and where it falls outside the image (set to
    zero there, torchvision's fill). The maps come from torchvision's own op applied to an
    image of pixel numbers, so they copy what it would copy.
    """
    numbered = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, 1, height, width)
    moved = [numbered]
    for name in GEOMETRIC_OPS:
        for sign in (1.0, -1.0):
            moved.append(apply_op(numbered, name, sign * magnitude(name, height, width)))
    source = torch.cat(moved).flatten(1).round().long() - 1
    like = torch.empty(0, device=device)
    return on_device(source.clamp(min=0), like), on_device(source < 0, like)


def move_pixels(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each image through its row of :func:`pixel_maps` (``rows`` on the images' device)."""
    batch, channels, height, width = images.shape
    source, outside = pixel_maps(height, width, images.device)
    picked = images.reshape(batch, channels, height * width).gather(
        2, source.index_select(0, rows).unsqueeze(1).expand(-1, channels, -1)
    )
    picked.masked_fill_(outside.index_select(0, rows).unsqueeze(1), 0)
    return picked.view(batch, channels, height, width)


def apply_choices(images: torch.Tensor, choices: Choices) -> torch.Tensor:
    """Apply drawn choices to uint8 ``(B, C, H, W)`` images, as :func:`rand_augment` does."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images of shape (B, 1 or 3, H, W), "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    batch_size, _, height, width = images.shape
    if choices.op.shape[1:] != (batch_size,):
        raise ValueError(
            f"choices are for {choices.op.shape[1:]} samples but the batch has {batch_size}"
        )
    magnitudes = [magnitude(name, height, width) for name in OP_NAMES]
    # Group g = 2 * op + negative; groups are contiguous once samples are sorted by it.
    group = 2 * choices.op + choices.negative.long()
    current = images
    # current[k] holds sample held_sample[k]: rounds gather in the new sorted order
    # directly from the previous one, and a single scatter at the end restores the order.
    held_sample = torch.arange(batch_size)
    for round_group in group:
        order = torch.argsort(round_group, stable=True)
        position_of_sample = torch.empty_like(held_sample)
        position_of_sample[held_sample] = torch.arange(batch_size)
        gather = on_device(position_of_sample[order], images)
        current = current.index_select(0, gather)
        held_sample = order
        # Sorted by group, an op's two signs lie side by side: one piece per op.
        counts = torch.bincount(round_group, minlength=2 * len(OPS)).view(-1, 2).tolist()
        pieces = current.split([positive + negative for positive, negative in counts])
        outputs = []
        for name, piece, (positive, negative), value in zip(
            OP_NAMES, pieces, counts, magnitudes, strict=True
        ):
            if piece.shape[0] == 0:
                continue
            if name == "Identity" or name in GEOMETRIC_OPS:
                outputs.append(piece)  # the geometric ones all move at once below
            elif name in FACTOR_OPS:
                signed = [1.0 + value] * positive + [1.0 - value] * negative
                factors = torch.tensor(signed, dtype=torch.float64)
                outputs.append(adjust_by_factors(piece, name, factors))
            else:  # unsigned
                outputs.append(apply_op(piece, name, value))
        current = torch.cat(outputs) if len(outputs) > 1 else (outputs or [current])[0]
        rows = _MAP_ROW[round_group[order]]
        if bool(rows.any()):  # a CPU tensor: deciding never waits for the device
            current = move_pixels(current, on_device(rows, images))
    if current is images:
        return images.clone()
    restore = on_device(held_sample, images)
    return torch.empty_like(current).index_copy_(0, restore, current)


def rand_augment(images: torch.Tensor, generator: Draws, num_ops: int = 4) -> torch.Tensor:
    """torchvision's ``v2.RandAugment(num_ops)`` applied independently to each image.

    ``images`` are uint8 ``(B, C, H, W)`` with C 1 or 3, on any device; the result has the
    same shape, dtype and device. Defaults as torchvision's: magnitude 9 of 31 bins, NEAREST
    interpolation, zero fill. The choices come from ``generator`` (a CPU generator, so a CPU
    and a CUDA batch get the same ones); the input is left unchanged.
    """
    return apply_choices(images, draw_choices(images.shape[0], generator, num_ops))

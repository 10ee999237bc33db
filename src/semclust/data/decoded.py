"""A dataset decoded once into one uint8 tensor, for views made a batch at a time.

Decoding and augmenting every image in loader processes caps a GPU at a few thousand images
per second. When the decoded set fits in memory (CIFAR-10: 146 MiB), it is held once as
``(N, C, S, S)`` uint8 in shared memory, and the views are made a batch at a time
(:mod:`semclust.data.batch_views`): on the training device, or on the CPU in the loader
processes while a GPU trains. The choices are :func:`choose_input_path`'s and
:func:`choose_view_maker`'s.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from semclust.data.datasets import FeatureDataset, ImageDataset

log = logging.getLogger(__name__)

INPUT_PATHS = ("auto", "batched", "per_image")
VIEW_MAKERS = ("auto", "device", "workers")
#: Images looked at to learn the stored size before choosing a path.
SIZE_SAMPLE = 16
GIB = 1 << 30


@dataclass(frozen=True)
class InputPath:
    """How a stage's images reach the model: ``batched`` views on the training device from a
    decoded tensor, or ``per_image`` views made in loader processes; and why."""

    batched: bool
    reason: str


def choose_input_path(data_cfg: Mapping[str, Any], dataset: Any) -> InputPath:
    """``data.input_path``: ``batched`` or ``per_image`` as given, or for ``auto`` batched
    whenever that changes nothing but speed: the decoded set fits ``data.batched_max_gib``
    and the recipe's views come out the same from images stored at ``data.image_size``."""
    wanted = data_cfg.get("input_path", "auto")
    if wanted not in INPUT_PATHS:
        raise ValueError(f"data.input_path must be one of {', '.join(INPUT_PATHS)}, got {wanted!r}")
    if isinstance(dataset, FeatureDataset) or not isinstance(dataset, ImageDataset):
        return InputPath(False, "cached features, not images")
    if wanted == "per_image":
        return InputPath(False, "data.input_path=per_image")
    size = data_cfg["image_size"]
    needed = decoded_bytes(len(dataset), data_cfg["channels"], size)
    if wanted == "batched":
        return InputPath(True, "data.input_path=batched")
    limit = data_cfg.get("batched_max_gib", 8)
    if needed > limit * GIB:
        return InputPath(
            False, f"{needed / GIB:.1f} GiB decoded exceeds data.batched_max_gib={limit}"
        )
    stored = stored_sizes(dataset)
    if data_cfg["augment"]["recipe"] == "natural" and stored != {(size, size)}:
        # Random crops of full-size photographs differ from crops of pre-resized ones.
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(stored))
        return InputPath(False, f"images stored at {shown}, not {size}x{size}")
    return InputPath(True, f"{size_text(needed)} decoded")


@dataclass(frozen=True)
class ViewMaker:
    """Where batched views are made: in the loader (``in_loader``: its worker processes, on
    the CPU) or on the training device after the batch's move; and why."""

    in_loader: bool
    reason: str


#: The largest views ``auto`` has loader processes make. A CPU core makes about 6,000 SimCLR
#: pairs a second at 32 px but 380 at 96 px (docs/BENCHMARKS.md): the views' cost grows
#: faster with size than the model's step, so larger views stay on the GPU.
LOADER_VIEWS_MAX_SIZE = 32


def choose_view_maker(data_cfg: Mapping[str, Any], device: torch.device) -> ViewMaker:
    """``data.batch_views_in``: ``device`` or ``workers`` as given; for ``auto`` the loader
    processes when a GPU trains on small images and there are such processes, else the
    training device.

    A view is a few hundred small ops (a SCAN strong view about 470), each a kernel launch
    that costs the host of a GPU as much however small the images, in the process that must
    keep the GPU fed with the model's steps: small images make those steps short, so the
    host's time would bound them. Loader processes make the same views in parallel on the
    CPU (every sample's draws come from its own seed).
    """
    wanted = data_cfg.get("batch_views_in", "auto")
    if wanted not in VIEW_MAKERS:
        raise ValueError(
            f"data.batch_views_in must be one of {', '.join(VIEW_MAKERS)}, got {wanted!r}"
        )
    if wanted != "auto":
        return ViewMaker(wanted == "workers", f"data.batch_views_in={wanted}")
    if device.type != "cuda":
        return ViewMaker(False, f"training on {device.type}")
    if not data_cfg.get("num_workers"):
        return ViewMaker(False, "data.num_workers=0")
    size = data_cfg["image_size"]
    if size > LOADER_VIEWS_MAX_SIZE:
        return ViewMaker(False, f"{size} px views cost the CPU more than the GPU")
    return ViewMaker(True, "a GPU trains, so the host's time goes to its steps")


def decoded_bytes(count: int, channels: int, size: int) -> int:
    return count * channels * size * size


def size_text(nbytes: int) -> str:
    """``nbytes`` for a log line: 940 B, 23 KiB, 146 MiB, 1.2 GiB."""
    if nbytes >= GIB:
        return f"{nbytes / GIB:.1f} GiB"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.0f} {unit}"
    return f"{nbytes} B"


def stored_sizes(dataset: ImageDataset) -> set[tuple[int, int]]:
    """``(height, width)`` of up to :data:`SIZE_SAMPLE` images spread over the dataset."""
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(SIZE_SAMPLE, len(dataset))).astype(int))
    return {tuple(_to_uint8(dataset.load_image(int(i)), 0).shape[-2:]) for i in picks}


class _Decoder(Dataset):
    """Each image as uint8 ``(C, S, S)``: decoded, and resized only when stored otherwise."""

    def __init__(self, dataset: ImageDataset, channels: int, size: int) -> None:
        self.dataset, self.channels, self.size = dataset, channels, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = _to_uint8(self.dataset.load_image(index), self.channels)
        if image.shape[-2:] != (self.size, self.size):
            image = F.interpolate(
                image[None].float(), (self.size, self.size), mode="bilinear", antialias=True
            )[0]
            image = image.round().clamp(0, 255).to(torch.uint8)
        return image


def _to_uint8(image: Any, channels: int) -> torch.Tensor:
    """A loader's raw image (PIL or uint8 tensor) as a uint8 ``(C, H, W)`` tensor."""
    tensor = TF.pil_to_tensor(image) if not isinstance(image, torch.Tensor) else image
    if tensor.ndim == 2:
        tensor = tensor[None]
    if channels and tensor.shape[0] != channels:
        raise ValueError(f"an image has {tensor.shape[0]} channels, the data config {channels}")
    return tensor


def decode_all(dataset: ImageDataset, channels: int, size: int, num_workers: int) -> torch.Tensor:
    """Every image of ``dataset`` as one uint8 ``(N, C, size, size)`` tensor (shared memory,
    so loader processes would not copy it)."""
    out = torch.empty((len(dataset), channels, size, size), dtype=torch.uint8).share_memory_()
    decoder = DataLoader(
        _Decoder(dataset, channels, size),
        batch_size=512,
        num_workers=num_workers,
        collate_fn=torch.stack,
        # Its own generator: whether a stage decodes or finds the images decoded must not
        # change the global random state its model is initialised from.
        generator=torch.Generator(),
    )
    start = 0
    for batch in decoder:
        out[start : start + len(batch)] = batch
        start += len(batch)
    return out


_CACHE: dict[str, torch.Tensor] = {}


def decoded_images(
    dataset: ImageDataset, channels: int, size: int, num_workers: int, cache_key: str | None
) -> torch.Tensor:
    """:func:`decode_all`, kept for the process's later stages under ``cache_key`` (the
    latest two sets), so pretext, SCAN and self-labeling decode a split once."""
    if cache_key is not None and cache_key in _CACHE:
        return _CACHE[cache_key]
    pixels = decode_all(dataset, channels, size, num_workers)
    if cache_key is not None:
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[cache_key] = pixels
    log.info("decoded %d images into %s", len(pixels), size_text(pixels.numel()))
    return pixels

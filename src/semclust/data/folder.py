"""Datasets read from image files: any folder of images, and the shared file handling.

The pieces other file-based loaders reuse (see ``rocov2.py``):

- :func:`read_image`: the one place where files become model input (EXIF orientation,
  transparency, 16-bit depth, channel count);
- :func:`find_image_files`, :func:`check_images` and :func:`warn_skipped`: find image files,
  decode each one once up front and report the unusable ones in a single warning;
- :class:`ImageFileDataset`: ``paths``, ``skipped`` and a ``path`` in every sample.

Nothing here writes to the image folders.
"""

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from semclust.data.datasets import ImageDataset

#: File name endings read as images (compared case-insensitively); other files are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Grey level that transparent pixels are composited on: white, as image viewers and web
#: pages show transparent icons, logos and cut-outs (black would hide dark line art).
BACKGROUND = 255

#: Modes with an alpha band; "P", "L" and "RGB" images can carry transparency in ``info`` too.
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

#: How many skipped files the warning names; ``dataset.skipped`` always holds all of them.
_WARN_LISTED = 20

#: (path, size, mtime, ctime, inode) -> problem or None. The pipeline builds the same dataset
#: several times per run; decoding every file again each time would dominate start-up.
_CHECKED: dict[tuple[str, int, int, int, int], str | None] = {}


#: (source, skipped) pairs already warned of: the pipeline builds the same dataset in every
#: stage, and one warning is enough (each run directory's skipped_files_*.csv lists them all).
_WARNED: set[tuple[str, tuple[tuple[str, str], ...]]] = set()


class SkippedImagesWarning(UserWarning):
    """Some image files could not be used and were left out of a dataset."""


def _bit_depth(image: Image.Image) -> int:
    """Bits per sample of a 16/32-bit integer image, as the file declares them."""
    if image.mode.startswith("I;16"):
        return 16
    # Mode "I" is 32 bits wide whatever the file held; TIFF says how many bits are used.
    declared = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    if isinstance(declared, tuple):
        declared = declared[0]
    return int(declared) if declared else 16


def _to_8_bit(image: Image.Image, bits: int) -> Image.Image:
    """Scale a ``bits``-deep grayscale image to "L" (65535 -> 255 for 16 bits).

    Pillow's own ``convert("L")`` clips such images at 255 instead of scaling them.
    """
    top = 2**bits - 1
    values = np.clip(np.asarray(image, dtype=np.float64), 0, top)
    return Image.fromarray(np.rint(values * (255 / top)).astype(np.uint8))


def _on_background(image: Image.Image) -> Image.Image:
    """Composite an image with transparency onto a :data:`BACKGROUND` canvas, as "RGB"."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (BACKGROUND, BACKGROUND, BACKGROUND, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def to_model_image(image: Image.Image, channels: int) -> Image.Image:
    """Bring a decoded image into the form every loader returns: "L" (1) or "RGB" (3 channels).

    In order: apply the EXIF orientation (so pixels are upright as a viewer shows them);
    scale 16/32-bit integer images to 8 bits by their bit depth; composite palette
    transparency, "LA" and "RGBA" onto white (:data:`BACKGROUND`); convert to the channel
    count (grayscale replicated to RGB, RGB to luma for one channel).
    """
    # The depth is read first: only the file's own image object knows its TIFF tags.
    bits = _bit_depth(image) if image.mode.startswith("I") else None
    image = ImageOps.exif_transpose(image)
    if bits is not None:
        image = _to_8_bit(image, bits)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = _on_background(image)
    return image.convert("L" if channels == 1 else "RGB")


def read_image(path: str | Path, channels: int) -> Image.Image:
    """Decode the image at ``path`` fully and convert it with :func:`to_model_image`."""
    with Image.open(path) as image:
        image.load()
        return to_model_image(image, channels)


def image_problem(path: str | Path, channels: int = 3) -> str | None:
    """Why the file at ``path`` cannot be used as an image, or ``None`` if it decodes fully.

    Decodes the whole file (a truncated or corrupt file often opens fine and fails only when
    its pixels are read). Results are cached per process by the file's stat signature.
    """
    try:
        stat = os.stat(path)
    except OSError as error:
        return f"cannot read file: {error.strerror}"
    if stat.st_size == 0:
        return "empty file (0 bytes)"
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if key not in _CHECKED:
        _CHECKED[key] = _decode_problem(path, channels)
    return _CHECKED[key]


def _decode_problem(path: str | Path, channels: int) -> str | None:
    try:
        read_image(path, channels)
    except PermissionError:
        return "permission denied"
    except UnidentifiedImageError:
        return "not an image: no decoder recognises the content"
    except Image.DecompressionBombError as error:
        return f"too large to decode safely: {error}"
    # Decoders raise many types on damaged data (OSError, SyntaxError, ValueError, EOFError,
    # struct.error, ...); every one of them means this file cannot be used.
    except Exception as error:
        return f"corrupt or truncated ({type(error).__name__}: {error})"
    return None


def find_image_files(
    root: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files under ``root`` ending in one of ``extensions`` (any case), sorted by path; and
    the folders that could not be listed, as ``(path, reason)``.

    Recursive and following symbolic links (each real folder is visited once). Hidden files
    and folders (names starting with ".", e.g. macOS "._x.jpg" resource forks) are ignored,
    like any file without an image extension.
    """
    endings = tuple(ending.lower() for ending in extensions)
    found: list[Path] = []
    unlistable: list[tuple[str, str]] = []
    visited: set[str] = set()

    def note_error(error: OSError) -> None:
        unlistable.append((str(error.filename), f"cannot list folder: {error.strerror}"))

    for folder, subfolders, files in os.walk(root, onerror=note_error, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [
            Path(folder, name)
            for name in files
            if not name.startswith(".") and name.lower().endswith(endings)
        ]
    return sorted(found), unlistable


def check_images(paths: Iterable[Path], channels: int) -> tuple[list[Path], list[tuple[str, str]]]:
    """Split ``paths`` into the usable ones and ``(path, reason)`` for the others."""
    usable: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        problem = image_problem(path, channels)
        if problem is None:
            usable.append(path)
        else:
            skipped.append((str(path), problem))
    return usable, skipped


def warn_skipped(skipped: Sequence[tuple[str, str]], source: Path | str) -> None:
    """One :class:`SkippedImagesWarning` naming the skipped files and why (if there are any),
    once per process for the same source and files."""
    key = (str(source), tuple((str(path), reason) for path, reason in skipped))
    if not skipped or key in _WARNED:
        return
    _WARNED.add(key)
    lines = [f"  {path}: {reason}" for path, reason in skipped[:_WARN_LISTED]]
    if len(skipped) > _WARN_LISTED:
        lines.append(f"  ... and {len(skipped) - _WARN_LISTED} more (see the dataset's `skipped`)")
    warnings.warn(
        f"skipped {len(skipped)} unusable image file(s) in {source}:\n" + "\n".join(lines),
        SkippedImagesWarning,
        stacklevel=3,
    )


def split_indices(count: int, split: str, split_seed: int) -> np.ndarray:
    """Indices of ``all``, or of a seeded 80/20 ``train``/``test`` split that ignores labels.

    The same rule as :class:`~semclust.data.datasets.DigitsDataset`.
    """
    order = np.random.default_rng(split_seed).permutation(count)
    cut = int(0.8 * count)
    selections = {
        "all": np.arange(count),
        "train": np.sort(order[:cut]),
        "test": np.sort(order[cut:]),
    }
    if split not in selections:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(selections)}")
    return selections[split]


def check_channels(channels: int) -> int:
    """``channels`` if the loaders support it (1 or 3), else a ValueError."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return channels


class ImageFileDataset(ImageDataset):
    """Base of the datasets read from files: ``paths``, ``skipped`` and ``channels``.

    Samples carry the file's ``path`` next to ``image``, ``target`` and ``index``.
    """

    #: The files used, in index order.
    paths: list[str]
    #: ``(path, reason)`` for each file left out, for the pipeline to report.
    skipped: list[tuple[str, str]]
    #: 1 for "L" images, 3 for "RGB".
    channels: int

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Image.Image:
        return read_image(self.paths[index], self.channels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**super().__getitem__(index), "path": self.paths[index]}


class FolderDataset(ImageFileDataset):
    """All images under a folder (JPEG, PNG, BMP, TIFF, WebP), in sorted path order.

    Labels: when every usable image sits inside a first-level subfolder (at any depth below
    it), the first-level subfolder names are the classes (sorted; only folders holding at
    least one usable image count). Otherwise -- a flat folder, or images at the top level
    next to subfolders -- the dataset is unlabeled (``targets`` is ``None``). Labels only
    feed the metrics.

    Every image file is decoded once when the dataset is built. Unusable files (empty,
    corrupt, truncated, not an image, unreadable) are left out, listed in ``skipped`` and
    named in one :class:`SkippedImagesWarning`. Files without an image extension and hidden
    files are ignored silently. See :func:`to_model_image` for the pixel conversion.

    Args:
        split: ``all``, or ``train`` / ``test`` for a seeded 80/20 split ignoring labels.
        path: the folder.
        channels: 1 (grayscale) or 3 (RGB).
        extensions: file name endings read as images, compared case-insensitively.
        split_seed: seed of the train/test split.
    """

    def __init__(
        self,
        split: str = "all",
        path: str | Path | None = None,
        channels: int = 3,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        split_seed: int = 0,
    ) -> None:
        if path is None:
            raise ValueError("FolderDataset needs path: the folder of images (data.path)")
        self.channels = check_channels(channels)
        root = Path(path).expanduser().absolute()
        if not root.exists():
            raise FileNotFoundError(f"image folder {root} does not exist")
        if not root.is_dir():
            raise ValueError(f"{root} is a file; data.path must be a folder of images")

        candidates, unlistable = find_image_files(root, extensions)
        usable, broken = check_images(candidates, self.channels)
        self.skipped = unlistable + broken
        warn_skipped(self.skipped, root)
        if not usable:
            raise ValueError(
                f"no usable images in {root}: found {len(candidates)} file(s) with an image "
                f"extension ({', '.join(extensions)}), {len(self.skipped)} skipped"
            )

        # Classes are decided on the whole folder, so train and test agree on the indices.
        relative = [image.relative_to(root).parts for image in usable]
        targets: np.ndarray | None = None
        self.class_names = None
        if all(len(parts) > 1 for parts in relative):
            self.class_names = sorted({parts[0] for parts in relative})
            index_of = {name: i for i, name in enumerate(self.class_names)}
            targets = np.array([index_of[parts[0]] for parts in relative], dtype=np.int64)

        chosen = split_indices(len(usable), split, split_seed)
        self.paths = [str(usable[i]) for i in chosen]
        self.targets = None if targets is None else targets[chosen]

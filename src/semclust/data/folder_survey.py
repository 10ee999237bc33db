"""A look at a folder of images before training: how many, grey or colour, how large.

:func:`survey_folder` decodes an evenly spaced sample of the files (JPEGs at a reduced size,
which is all the survey needs) and :func:`pixel_statistics` measures the mean and standard
deviation the model input is normalised with. ``data=folder`` chooses its recipe from both
(:mod:`semclust.folder_recipe`). Nothing here writes to the folder.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from semclust.data.folder import find_image_files, image_problem, to_model_image, warn_skipped

#: Images decoded to judge a folder; 512 evenly spaced files take well under a second for
#: small PNGs and a few seconds for camera JPEGs (decoded at reduced size).
SAMPLE_SIZE = 512

#: An RGB image counts as grey when its channels differ by at most this much on average
#: (0-255): JPEG compression leaves a grey scan's channels a level or two apart.
GREY_CHANNEL_SPREAD = 2.0

#: JPEGs are decoded at no less than this side for the survey (Pillow's draft mode).
_DRAFT_SIDE = 64


@dataclass(frozen=True)
class FolderSurvey:
    """What a sample of a folder's images shows (sizes as stored, before any resizing)."""

    path: str
    #: Files with an image extension under the folder, unusable ones included.
    image_count: int
    #: Sampled files that decoded.
    sampled: int
    #: Sampled files that did not decode (the dataset will skip and name them).
    unreadable: int
    #: Every decoded sample has one channel, or three equal ones.
    grayscale: bool
    median_width: int
    median_height: int

    @property
    def typical_side(self) -> int:
        """The shorter side of the median image: what survives a square resize."""
        return min(self.median_width, self.median_height)

    def describe(self) -> str:
        kind = "grayscale" if self.grayscale else "colour"
        unreadable = f", {self.unreadable:,} unreadable" if self.unreadable else ""
        return (
            f"{self.image_count:,} images, {kind}, median {self.median_width}x"
            f"{self.median_height} px (from {self.sampled:,} sampled{unreadable})"
        )


def sample_paths(paths: Sequence[Path], sample_size: int = SAMPLE_SIZE) -> list[Path]:
    """``sample_size`` evenly spaced entries of ``paths`` (all of them if fewer): the same
    files on every call, so a resumed run makes the same choices."""
    if len(paths) <= sample_size:
        return list(paths)
    picks = np.linspace(0, len(paths) - 1, sample_size).round().astype(int)
    return [paths[i] for i in np.unique(picks)]


def survey_folder(path: str | Path, sample_size: int = SAMPLE_SIZE) -> FolderSurvey:
    """Count the images under ``path`` and look at a sample of them."""
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a folder of images"
        raise FileNotFoundError(f"data.path: {root} {what}")
    files, _ = find_image_files(root)
    sizes: list[tuple[int, int]] = []
    broken: list[tuple[str, str]] = []
    grey = True
    for file in sample_paths(files, sample_size):
        try:
            size, is_grey = _look_at(file)
        except Exception:  # any decoder error: the dataset skips and names this file
            broken.append((str(file), image_problem(file) or "cannot be decoded"))
            continue
        sizes.append(size)
        grey &= is_grey
    if not sizes:
        warn_skipped(broken, root)
        raise ValueError(
            f"no usable images in {root}: {len(files)} file(s) with an image extension, none "
            "of the sampled ones decodes"
        )
    widths, heights = np.array(sizes).T
    return FolderSurvey(
        path=str(root),
        image_count=len(files),
        sampled=len(sizes),
        unreadable=len(broken),
        grayscale=grey,
        median_width=int(np.median(widths)),
        median_height=int(np.median(heights)),
    )


def _look_at(file: Path) -> tuple[tuple[int, int], bool]:
    """The stored size of an image and whether its pixels are grey."""
    with Image.open(file) as image:
        size = image.size
        if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            return size, True
        image.draft("RGB", (_DRAFT_SIDE, _DRAFT_SIDE))  # JPEG only; others decode in full
        pixels = np.asarray(to_model_image(image, 3), dtype=np.int16)
    spread = np.abs(pixels - pixels.mean(axis=2, keepdims=True)).mean()
    return size, bool(spread <= GREY_CHANNEL_SPREAD)


def pixel_statistics(
    path: str | Path, channels: int, image_size: int, sample_size: int = SAMPLE_SIZE
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (0-1 scale) of a sample of the folder's images
    as the model sees them: converted to ``channels`` and resized to ``image_size``."""
    files, _ = find_image_files(Path(path).expanduser().absolute())
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for file in sample_paths(files, sample_size):
        try:
            with Image.open(file) as image:
                image.draft("RGB" if channels == 3 else "L", (image_size, image_size))
                converted = to_model_image(image, channels)
        except Exception:  # skipped by the dataset too
            continue
        resized = converted.resize((image_size, image_size), Image.Resampling.BILINEAR)
        values = np.asarray(resized, dtype=np.float64).reshape(-1, channels) / 255.0
        total += values.sum(axis=0)
        total_sq += np.square(values).sum(axis=0)
        count += len(values)
    if count == 0:
        raise ValueError(f"no usable images in {path} to measure the pixel statistics on")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    # A constant image set would divide by zero; 1.0 leaves such pixels as they are.
    std = np.where(std < 1e-3, 1.0, std)
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]

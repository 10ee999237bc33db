"""The clustering benchmarks CIFAR-10, CIFAR-100-20 and STL-10, read through torchvision.

Each loader keeps the data in memory as arrays and returns PIL "RGB" images. With
``download=True`` torchvision fetches the archive into ``root`` when it is missing (or fails
its checksum) and reuses it otherwise.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torchvision
from PIL import Image

from semclust.data import cifar100
from semclust.data.datasets import ImageDataset

STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")


def _is_train(split: str, name: str) -> bool:
    if split not in ("train", "test"):
        raise ValueError(f"unknown {name} split {split!r}; choose train or test")
    return split == "train"


def _open(factory: Callable[..., Any], folder: Path, **kwargs: Any) -> Any:
    """``factory(**kwargs)``, turning torchvision's bare "not found" into one naming the folder."""
    try:
        return factory(**kwargs)
    except RuntimeError as error:
        hint = "" if kwargs["download"] else "; set data.options.download=true to fetch it"
        raise FileNotFoundError(
            f"{factory.__name__} files missing or corrupted in {folder}{hint} ({error})"
        ) from error


class _CIFARImages(ImageDataset):
    """Images held in torchvision's CIFAR layout: an ``(N, 32, 32, 3)`` uint8 array."""

    images: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])


class CIFAR10Dataset(_CIFARImages):
    """CIFAR-10: 50,000 train / 10,000 test 32x32 photographs in 10 classes.

    Args:
        split: ``train`` or ``test``.
        root: folder holding (or receiving) ``cifar-10-batches-py``.
        download: fetch the data into ``root`` if it is not there.
    """

    def __init__(self, split: str = "train", *, root: str, download: bool = True) -> None:
        train = _is_train(split, "CIFAR-10")
        source = _open(
            torchvision.datasets.CIFAR10,
            Path(root, torchvision.datasets.CIFAR10.base_folder),
            root=root,
            train=train,
            download=download,
        )
        self.images = source.data
        self.targets = np.asarray(source.targets, dtype=np.int64)
        self.class_names = list(source.classes)


class CIFAR20Dataset(_CIFARImages):
    """CIFAR-100 scored on its 20 superclasses ("CIFAR-100-20"), the clustering convention.

    torchvision fetches and checks the archive; its pickles are then read by
    :mod:`semclust.data.cifar100`, since torchvision's ``CIFAR100`` exposes only the 100 fine
    labels: ``targets`` are the ``coarse_labels`` (checked against
    :data:`~semclust.data.cifar100.FINE_TO_SUPERCLASS`), ``class_names`` the
    ``coarse_label_names``, and ``fine_targets`` the 100 fine labels.
    """

    def __init__(self, split: str = "train", *, root: str, download: bool = True) -> None:
        train = _is_train(split, "CIFAR-100")
        folder = Path(root, torchvision.datasets.CIFAR100.base_folder)
        _open(torchvision.datasets.CIFAR100, folder, root=root, train=train, download=download)
        data = cifar100.read_split(folder, split)
        self.images = data.images
        self.fine_targets = data.fine_labels
        self.targets = data.coarse_labels
        self.class_names = cifar100.read_meta(folder).superclass_names


class STL10Dataset(ImageDataset):
    """STL-10: 96x96 photographs, 10 classes, plus 100,000 unlabeled images.

    Splits: ``train`` (5,000), ``test`` (8,000), ``unlabeled`` (100,000; ``targets`` is
    ``None``) and ``train+unlabeled`` (train first; the unlabeled images have target -1).
    The pipeline scores a split only when all of its targets are >= 0, so a mixed split
    trains fine but yields no accuracy; SCAN pretrains on ``train+unlabeled`` and clusters
    ``train``.

    Args:
        split: one of the four splits above.
        root: folder holding (or receiving) ``stl10_binary``.
        download: fetch the data into ``root`` if it is not there.
    """

    def __init__(self, split: str = "train", *, root: str, download: bool = True) -> None:
        if split not in STL10_SPLITS:
            raise ValueError(f"unknown STL-10 split {split!r}; choose one of {list(STL10_SPLITS)}")
        source = _open(
            torchvision.datasets.STL10,
            Path(root, torchvision.datasets.STL10.base_folder),
            root=root,
            split=split,
            download=download,
        )
        self.images: np.ndarray = source.data  # (N, 3, 96, 96) uint8, rows already upright
        labels = np.asarray(source.labels, dtype=np.int64)
        self.targets = None if (labels < 0).all() else labels
        self.class_names = list(getattr(source, "classes", [])) or None

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(self.images[index].transpose(1, 2, 0)))

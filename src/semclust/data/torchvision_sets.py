"""The clustering benchmarks CIFAR-10, CIFAR-100-20 and STL-10, read through torchvision.

Each loader keeps torchvision's in-memory arrays and returns PIL "RGB" images. With
``download=True`` torchvision fetches the archive into ``root`` when it is missing (or fails
its checksum) and reuses it otherwise.
"""

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torchvision
from PIL import Image

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


def _unpickle(path: Path) -> dict[str, Any]:
    # latin1, as torchvision reads them: the CIFAR pickles were written by Python 2.
    with open(path, "rb") as file:
        return pickle.load(file, encoding="latin1")


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

    torchvision's ``CIFAR100`` exposes only the 100 fine labels, so the superclass of each
    image is read from the ``coarse_labels`` the same pickle stores, and the 20 names from
    ``coarse_label_names`` in ``meta``. ``fine_targets`` keeps the 100 fine labels.
    """

    def __init__(self, split: str = "train", *, root: str, download: bool = True) -> None:
        train = _is_train(split, "CIFAR-100")
        folder = Path(root, torchvision.datasets.CIFAR100.base_folder)
        source = _open(
            torchvision.datasets.CIFAR100, folder, root=root, train=train, download=download
        )
        self.images = source.data
        self.fine_targets = np.asarray(source.targets, dtype=np.int64)
        files = source.train_list if train else source.test_list
        coarse = [label for name, _ in files for label in _unpickle(folder / name)["coarse_labels"]]
        self.targets = np.asarray(coarse, dtype=np.int64)
        if len(self.targets) != len(self.images):
            raise ValueError(
                f"{folder}: {len(self.targets)} coarse labels for {len(self.images)} images"
            )
        self.class_names = list(_unpickle(folder / source.meta["filename"])["coarse_label_names"])


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

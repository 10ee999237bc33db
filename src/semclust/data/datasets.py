"""Base datasets. Each sample is a dict with ``image`` (untransformed), ``target`` and ``index``.

``target`` is the ground-truth class where the dataset has one and ``-1`` otherwise; it only
ever feeds metrics.
"""

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

UNLABELED = -1


class ImageDataset(Dataset):
    """Interface of the base datasets: images plus optional targets, addressed by index."""

    #: ``(N,)`` integer classes, or ``None`` for unlabeled data.
    targets: np.ndarray | None
    #: Human-readable class names where known.
    class_names: list[str] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def load_image(self, index: int) -> Any:
        """The raw image: a PIL image or a ``uint8`` tensor ``(C, H, W)``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        target = UNLABELED if self.targets is None else int(self.targets[index])
        return {"image": self.load_image(index), "target": target, "index": index}


class DigitsDataset(ImageDataset):
    """scikit-learn's bundled handwritten digits: 1,797 grayscale 8x8 images, 10 classes.

    Needs no download. ``split`` is ``all`` (the usual clustering setting), or ``train`` /
    ``test`` for a seeded 80/20 split that ignores the labels.
    """

    def __init__(self, split: str = "all", split_seed: int = 0) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are 0..16; stretch them to the usual 0..255 range.
        images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
        order = np.random.default_rng(split_seed).permutation(len(images))
        cut = int(0.8 * len(images))
        selections = {
            "all": np.arange(len(images)),
            "train": np.sort(order[:cut]),
            "test": np.sort(order[cut:]),
        }
        if split not in selections:
            raise ValueError(f"unknown digits split {split!r}; choose one of {sorted(selections)}")
        chosen = selections[split]
        self.images = torch.from_numpy(images[chosen]).unsqueeze(1)
        self.targets = digits.target[chosen].astype(np.int64)
        self.class_names = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> torch.Tensor:
        return self.images[index]


class FeatureDataset(ImageDataset):
    """Precomputed feature vectors standing in for images (a frozen backbone's cached output).

    Stages that train only cluster heads read these instead of decoding and embedding images
    again; ``load_image`` returns the ``(D,)`` feature vector.
    """

    def __init__(self, features: np.ndarray, targets: np.ndarray | None = None) -> None:
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.targets = targets

    def __len__(self) -> int:
        return len(self.features)

    def load_image(self, index: int) -> torch.Tensor:
        return self.features[index]


def _imported_when_built(module: str, name: str) -> Callable[..., ImageDataset]:
    """The loader ``module.name``, imported only when a dataset of its kind is built.

    Those modules subclass ``ImageDataset`` from this one, so importing them at the top
    would be circular.
    """

    def build(**options: Any) -> ImageDataset:
        return getattr(importlib.import_module(module), name)(**options)

    return build


_DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "digits": DigitsDataset,
    "folder": _imported_when_built("semclust.data.folder", "FolderDataset"),
    "cifar10": _imported_when_built("semclust.data.torchvision_sets", "CIFAR10Dataset"),
    "cifar20": _imported_when_built("semclust.data.torchvision_sets", "CIFAR20Dataset"),
    "stl10": _imported_when_built("semclust.data.torchvision_sets", "STL10Dataset"),
    "rocov2": _imported_when_built("semclust.data.rocov2", "ROCOv2Dataset"),
    "captions": _imported_when_built("semclust.data.captions", "CaptionsDataset"),
}


def dataset_options(data_cfg: Mapping[str, Any], split_key: str) -> dict[str, Any]:
    """The loader's keyword arguments for ``split_key``: ``options``, where a ``val_path``
    (a separate folder to score on, such as a test set) replaces ``path`` for ``val``."""
    options = dict(data_cfg.get("options") or {})
    val_path = options.pop("val_path", None)
    if split_key == "val" and val_path:
        options["path"] = val_path
    return options


def same_images(data_cfg: Mapping[str, Any]) -> bool:
    """Whether the train and val splits are the same images (embedded and mined once)."""
    return data_cfg["val_split"] == data_cfg["train_split"] and dataset_options(
        data_cfg, "val"
    ) == dataset_options(data_cfg, "train")


def build_dataset(data_cfg: Mapping[str, Any], split_key: str) -> ImageDataset:
    """Build the base dataset that ``data_cfg`` names for ``split_key`` (``train``/``val``).

    The config carries ``kind`` (which loader), ``<split_key>_split`` (which part of the data)
    and the loader's own keyword arguments under ``options``.
    """
    kind = data_cfg["kind"]
    if kind not in _DATASETS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {sorted(_DATASETS)}")
    split = data_cfg[f"{split_key}_split"]
    dataset = _DATASETS[kind](split=split, **dataset_options(data_cfg, split_key))
    if len(dataset) == 0:
        raise ValueError(f"dataset {kind!r} split {split!r} holds no images")
    return dataset

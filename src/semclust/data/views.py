"""Wrappers that turn a base dataset into the batches each stage trains on."""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from semclust.data.datasets import ImageDataset


class MultiViewDataset(Dataset):
    """Applies named transforms to each image: ``{view_name: tensor, "target", "index"}``.

    ``{"image": eval}`` gives plain evaluation batches, ``{"view_a": t, "view_b": t}`` SimCLR
    pairs and ``{"weak": w, "strong": s}`` self-labeling pairs.
    """

    def __init__(self, base: ImageDataset, transforms: Mapping[str, Callable]) -> None:
        self.base = base
        self.transforms = dict(transforms)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        views = {name: transform(sample["image"]) for name, transform in self.transforms.items()}
        return {**views, "target": sample["target"], "index": sample["index"]}


class NeighborsDataset(Dataset):
    """An anchor and one of its mined neighbours, drawn uniformly at every access.

    Returns ``{"anchor", "neighbor", "index", "neighbor_index", "target"}``.
    """

    def __init__(
        self, base: ImageDataset, neighbor_indices: np.ndarray, transform: Callable
    ) -> None:
        if neighbor_indices.ndim != 2 or len(neighbor_indices) != len(base):
            raise ValueError(
                f"neighbor_indices must be (N, k) with N = {len(base)}, "
                f"got {neighbor_indices.shape}"
            )
        self.base = base
        self.neighbor_indices = torch.from_numpy(np.ascontiguousarray(neighbor_indices))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        anchor = self.base[index]
        candidates = self.neighbor_indices[index]
        neighbor_index = int(candidates[torch.randint(len(candidates), ())])
        neighbor = self.base[neighbor_index]
        return {
            "anchor": self.transform(anchor["image"]),
            "neighbor": self.transform(neighbor["image"]),
            "index": index,
            "neighbor_index": neighbor_index,
            "target": anchor["target"],
        }


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, drop_last: bool = False
) -> DataLoader:
    """A DataLoader with the settings every stage shares."""
    return DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last and len(dataset) > batch_size,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )

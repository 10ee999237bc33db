"""Wrappers that turn a base dataset into the batches each stage trains on."""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from semclust.data.datasets import ImageDataset
from semclust.data.sampling import SampleKey, SeededShuffleSampler, seeded_views, split_key


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

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = split_key(key)
        sample = self.base[index]
        with seeded_views(seed):
            views = {
                name: transform(sample["image"]) for name, transform in self.transforms.items()
            }
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

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = split_key(key)
        anchor = self.base[index]
        candidates = self.neighbor_indices[index]
        with seeded_views(seed):
            neighbor_index = int(candidates[torch.randint(len(candidates), ())])
            neighbor = self.base[neighbor_index]
            anchor_view = self.transform(anchor["image"])
            neighbor_view = self.transform(neighbor["image"])
        return {
            "anchor": anchor_view,
            "neighbor": neighbor_view,
            "index": index,
            "neighbor_index": neighbor_index,
            "target": anchor["target"],
        }


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    drop_last: bool = False,
    seed: int | None = None,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """A DataLoader with the settings every stage shares.

    With a ``seed``, a shuffling loader draws its order and every sample's views from the
    seed, epoch and index alone (:mod:`semclust.data.sampling`), so a resumed run repeats an
    uninterrupted one exactly; the dataset must accept :class:`SampleKey` keys. Batches are
    pinned when there is a GPU, so their copy to it is queued rather than waited for.
    """
    seeded = shuffle and seed is not None
    return DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=shuffle and not seeded,
        sampler=SeededShuffleSampler(len(dataset), seed) if seeded else None,
        # The loader's own generator, so creating an iterator draws nothing from the global
        # random state the model may use.
        generator=torch.Generator().manual_seed(seed) if seeded else None,
        num_workers=num_workers,
        drop_last=drop_last and len(dataset) > batch_size,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate_fn,
    )

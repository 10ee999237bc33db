"""Training batches from decoded images, whose views are made a batch at a time.

The loader hands out a batch's decoded uint8 images (one index into the decoded tensor; a
quarter of the bytes of float views), their indices, targets, drawn neighbours and each
sample's random stream. Either the loader's collate makes the views there (in its worker
processes, on the CPU), or the batch carries its :class:`ViewPlan` to the module's device,
whichever it is, and there the module calls it
(:meth:`semclust.stages.base.CollectsValidation.on_after_batch_transfer`), making every
view of the whole batch at once. Every sample's parameters come from its own seed
(:mod:`semclust.data.sampling`, :mod:`semclust.data.sample_streams`), so a resumed epoch makes
the same views, and so does any split of the batch over DDP processes or loader workers.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from semclust.data.batch_views import BatchTransform
from semclust.data.sample_streams import SampleStreams
from semclust.data.sampling import SampleKey, mix_seed, split_key

#: The batch key holding the :class:`ViewPlan` until the device applies it.
PLAN_KEY = "view_plan"
#: The batch key of its samples' :class:`SampleStreams`: not a tensor, so the batch's move to
#: the device leaves it on the CPU, where the views draw their parameters. (Seeds in a tensor
#: would travel to the GPU and have to be read back, which waits for the device.)
STREAMS_KEY = "view_streams"


class ViewPlan:
    """The views a stage trains on: ``{output name: (source, transform)}``, where the source
    is ``anchor`` (the sample's own image) or ``neighbor`` (its drawn neighbour's)."""

    def __init__(self, views: Mapping[str, tuple[str, BatchTransform]]) -> None:
        for name, (source, _) in views.items():
            if source not in ("anchor", "neighbor"):
                raise ValueError(
                    f"view {name!r}: source must be anchor or neighbor, not {source!r}"
                )
        self.views = dict(views)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Replace the batch's decoded images with its views (on the images' device)."""
        sources = {"anchor": batch.pop("pixels"), "neighbor": batch.pop("neighbor_pixels", None)}
        streams = batch.pop(STREAMS_KEY)
        for name, (source, transform) in self.views.items():
            batch[name] = transform(sources[source], streams)
        return batch


class DecodedViews(Dataset):
    """Samples of a decoded image tensor, collated into batches that carry a :class:`ViewPlan`,
    or with ``views_in_collate`` into batches whose views the collate has made.

    ``neighbors`` ``(N, k)``: each sample's mined neighbours, one drawn per sample and batch
    (SCAN's pairs). Keys may be plain indices (evaluation: views are deterministic) or
    :class:`SampleKey`\\ s from a seeded sampler.
    """

    def __init__(
        self,
        pixels: torch.Tensor,
        targets: np.ndarray | None,
        plan: ViewPlan,
        neighbors: np.ndarray | None = None,
        views_in_collate: bool = False,
    ) -> None:
        self.pixels = pixels
        self.views_in_collate = views_in_collate
        self.targets = torch.as_tensor(
            np.full(len(pixels), -1) if targets is None else np.asarray(targets), dtype=torch.long
        )
        self.plan = plan
        self.neighbors = None if neighbors is None else torch.from_numpy(np.asarray(neighbors))

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, key: int | SampleKey) -> int | SampleKey:
        return key  # all the work is batched in collate

    def collate(self, keys: Sequence[int | SampleKey]) -> dict[str, Any]:
        indices, seeds = zip(*(split_key(key) for key in keys), strict=True)
        index = torch.tensor(indices, dtype=torch.long)
        # Evaluation keys carry no seed; their views draw nothing.
        view_seeds = [
            mix_seed(seed, 2) if seed is not None else index
            for seed, index in zip(seeds, indices, strict=True)
        ]
        batch = {
            "index": index,
            "target": self.targets[index],
            "pixels": self.pixels[index],
            STREAMS_KEY: SampleStreams(torch.tensor(view_seeds, dtype=torch.long)),
        }
        if self.neighbors is not None:
            candidates = self.neighbors[index]
            neighbor_streams = SampleStreams([mix_seed(seed, 1) for seed in view_seeds])
            drawn = neighbor_streams.randint(candidates.shape[1], (len(index),))
            neighbor_index = candidates[torch.arange(len(index)), drawn]
            batch["neighbor_index"] = neighbor_index
            batch["neighbor_pixels"] = self.pixels[neighbor_index]
        if self.views_in_collate:
            return self.plan(batch)
        batch[PLAN_KEY] = self.plan
        return batch


def apply_view_plan(batch: Any) -> Any:
    """A batch with its views made, if it carries a plan; any other batch as it is."""
    if isinstance(batch, dict) and PLAN_KEY in batch:
        return batch.pop(PLAN_KEY)(batch)
    return batch

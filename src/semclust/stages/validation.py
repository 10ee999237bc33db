"""Validation bookkeeping shared by the stage modules."""

import pytorch_lightning as pl
import torch

from semclust.callbacks import ValidationResult
from semclust.stages.common import concat_batches, gather_by_index


class CollectsValidation(pl.LightningModule):
    """Collects per-sample validation outputs and gathers them once per epoch, by index."""

    def on_validation_epoch_start(self) -> None:
        self._val_batches: list[dict[str, torch.Tensor]] = []
        self._val_gathered: dict[str, torch.Tensor] | None = None

    def collect(self, index: torch.Tensor, **tensors: torch.Tensor) -> None:
        self._val_batches.append({"index": index, **{k: v.detach() for k, v in tensors.items()}})

    def gathered(self) -> dict[str, torch.Tensor] | None:
        """This epoch's outputs from every process, one row per sample, ordered by index."""
        if getattr(self, "_val_gathered", None) is None and getattr(self, "_val_batches", None):
            batches = concat_batches(self._val_batches)
            index = batches.pop("index")
            self._val_gathered = gather_by_index(self, batches, index)
        return getattr(self, "_val_gathered", None)

    def validation_result(self) -> ValidationResult | None:
        raise NotImplementedError

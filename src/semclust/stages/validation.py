"""What the stage modules share: validation outputs gathered by index, optimizer wiring."""

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from semclust.callbacks import ValidationResult
from semclust.stages.common import concat_batches, gather_by_index


class CollectsValidation(pl.LightningModule):
    """Collects per-sample validation outputs and gathers them once per epoch, by index."""

    def __init__(self) -> None:
        super().__init__()
        self._val_batches: list[dict[str, torch.Tensor]] = []
        self._val_gathered: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_start(self) -> None:
        self._val_batches, self._val_gathered = [], None

    def collect(self, index: torch.Tensor, **tensors: torch.Tensor) -> None:
        self._val_batches.append({"index": index, **{k: v.detach() for k, v in tensors.items()}})

    def gathered(self) -> dict[str, torch.Tensor] | None:
        """This epoch's outputs from every process, one row per sample, ordered by index."""
        if self._val_gathered is None and self._val_batches:
            batches = concat_batches(self._val_batches)
            index = batches.pop("index")
            self._val_gathered = gather_by_index(self, batches, index)
        return self._val_gathered

    def validation_result(self) -> ValidationResult | None:
        raise NotImplementedError

    def optimizers_for(self, parameters: Any) -> Any:
        """``configure_optimizers``'s answer for ``parameters``, from the injected factories."""
        optimizer = self.optimizer_factory(parameters)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


class FeatureExtractor(CollectsValidation):
    """Runs a backbone over a dataset through ``trainer.validate``.

    Going through Lightning means the features are computed on every device and gathered by
    dataset index, so mining under DDP sees each image exactly once.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.collect(
            batch["index"], features=self.backbone(batch["image"]), targets=batch["target"]
        )

    def validation_result(self) -> ValidationResult | None:
        gathered = self.gathered()
        if gathered is None:
            return None
        return ValidationResult(features=gathered["features"], targets=gathered["targets"])

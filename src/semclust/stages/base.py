"""What the stages' LightningModules share: validation outputs gathered by index, the
optimizer wiring, and the plain feature extractor that mining runs."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from semclust.data.device_views import apply_view_plan
from semclust.failpoints import failpoint


@dataclass
class ValidationResult:
    """What a stage's module exposes after a validation epoch, one row per val sample."""

    features: torch.Tensor
    targets: torch.Tensor
    #: Cluster assignments; ``None`` for the pretext stage, where k-means makes them.
    predictions: torch.Tensor | None = None


def gather_by_index(
    module: pl.LightningModule, tensors: Mapping[str, torch.Tensor], index: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Gather per-sample tensors from every process and order them by dataset index.

    A distributed sampler pads the last batch with repeated samples; writing by index makes
    those repeats harmless, and the result has one row per dataset sample.
    """
    if module.trainer is not None and module.trainer.world_size > 1:
        index = module.all_gather(index).flatten(0, 1)
        tensors = {name: module.all_gather(value).flatten(0, 1) for name, value in tensors.items()}
    size = int(index.max()) + 1
    ordered = {}
    for name, value in tensors.items():
        out = value.new_zeros((size, *value.shape[1:]))
        out[index] = value
        ordered[name] = out.cpu()
    return ordered


def _channels_last(batch: Any) -> Any:
    """Image batches (4-D floating tensors) in channels-last memory order."""
    if isinstance(batch, dict):
        return {key: _channels_last(value) for key, value in batch.items()}
    if isinstance(batch, torch.Tensor) and batch.ndim == 4 and batch.is_floating_point():
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


class CollectsValidation(pl.LightningModule):
    """Collects per-sample validation outputs and gathers them once per epoch, by index."""

    def __init__(self) -> None:
        super().__init__()
        self._val_batches: list[dict[str, torch.Tensor]] = []
        self._val_gathered: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_start(self) -> None:
        self._val_batches, self._val_gathered = [], None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Views of decoded images are made here, a batch at a time on the training device.
        batch = apply_view_plan(batch)
        if self._runs_channels_last():
            batch = _channels_last(batch)
        return batch

    def on_fit_start(self) -> None:
        self._set_memory_format()

    def on_validation_start(self) -> None:
        self._set_memory_format()

    def _set_memory_format(self) -> None:
        if self._runs_channels_last():
            self.to(memory_format=torch.channels_last)

    def _runs_channels_last(self) -> bool:
        # cuDNN's fastest convolutions (above all in bf16) read NHWC, and so do oneDNN's bf16
        # ones on the CPU (docs/BENCHMARKS.md, "bf16 on the CPU"). Float32 CPU runs keep
        # NCHW, and with it their results.
        if self.device.type == "cuda":
            return True
        trainer = self._trainer  # None outside a Trainer, where `self.trainer` raises
        return trainer is not None and str(trainer.precision).startswith("bf16")

    def collect(self, index: torch.Tensor, **tensors: torch.Tensor) -> None:
        # Mixed precision hands out half-precision outputs; every later step (FAISS, k-means,
        # numpy norms) wants float32, and float16 sums overflow.
        self._val_batches.append(
            {
                "index": index,
                **{
                    k: v.detach().float() if v.is_floating_point() else v.detach()
                    for k, v in tensors.items()
                },
            }
        )

    def gathered(self) -> dict[str, torch.Tensor] | None:
        """This epoch's outputs from every process, one row per sample, ordered by index."""
        if self._val_gathered is None and self._val_batches:
            batches = {
                key: torch.cat([batch[key] for batch in self._val_batches])
                for key in self._val_batches[0]
            }
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

    Going through Lightning means the features are computed on every device, so mining
    under DDP sees each image exactly once. By default they are gathered by dataset index
    into every process (the pretext modules score them after each validation epoch).

    With ``features_path`` (mining) every process instead writes its batches' rows straight
    into a memory-mapped float32 ``.npy`` of ``num_rows`` rows, at their dataset indices, so
    no process holds all features; a distributed sampler's padded repeats write a row twice,
    harmlessly. The file is written as ``<features_path>.tmp`` and renamed into place only
    once every process has written its rows, so a crash never leaves a partial file under
    the final name. Targets are small and still gathered.
    """

    def __init__(
        self,
        backbone: nn.Module,
        features_path: Path | None = None,
        num_rows: int | None = None,
    ) -> None:
        super().__init__()
        if (features_path is None) != (num_rows is None):
            raise ValueError("features_path and num_rows go together")
        self.backbone = backbone
        self.features_path = None if features_path is None else Path(features_path)
        self.num_rows = num_rows
        self._written: np.memmap | None = None

    def partial_path(self) -> Path:
        """Where the features are written until complete."""
        if self.features_path is None:
            raise ValueError("this extractor gathers its features in memory; it writes none")
        return self.features_path.with_name(self.features_path.name + ".tmp")

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self.features_path is not None:
            self._open_features_file()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        features = self.backbone(batch["image"])
        if self._written is None:
            self.collect(batch["index"], features=features, targets=batch["target"])
            return
        self._write_rows(batch["index"], features)
        self.collect(batch["index"], targets=batch["target"])
        failpoint("mine.batch")

    def on_validation_epoch_end(self) -> None:
        if self._written is None:
            return
        self._written.flush()
        self._written = None  # unmapped: every row of this process is on disk
        strategy = self.trainer.strategy
        strategy.barrier()
        if self.trainer.is_global_zero:
            self.partial_path().replace(self.features_path)
        strategy.barrier()  # no process reads the features before they are in place

    def validation_result(self) -> ValidationResult | None:
        gathered = self.gathered()
        if gathered is None:
            return None
        if self.features_path is None:
            features = gathered["features"]
        else:  # copy-on-write map: a tensor over the file, read as it is used
            features = torch.from_numpy(np.load(self.features_path, mmap_mode="c"))
        return ValidationResult(features=features, targets=gathered["targets"])

    def _open_features_file(self) -> None:
        """Rank zero creates the ``(num_rows, feature_dim)`` file; the others open it after."""
        partial = self.partial_path()
        shape = (self.num_rows, int(self.backbone.feature_dim))
        strategy = self.trainer.strategy
        if self.trainer.is_global_zero:
            partial.parent.mkdir(parents=True, exist_ok=True)
            self._written = np.lib.format.open_memmap(
                partial, mode="w+", dtype=np.float32, shape=shape
            )
        strategy.barrier()
        if not self.trainer.is_global_zero:
            self._written = np.lib.format.open_memmap(partial, mode="r+")

    def _write_rows(self, index: torch.Tensor, features: torch.Tensor) -> None:
        # float32 whatever the precision, as collect() makes it for the in-memory gather.
        rows = features.detach().float().cpu().numpy()
        if rows.shape[1:] != self._written.shape[1:]:
            raise ValueError(
                f"the backbone gave features of shape {tuple(rows.shape)}, but its "
                f"feature_dim says {self._written.shape[1]} ({self.partial_path()})"
            )
        self._written[index.cpu().numpy()] = rows

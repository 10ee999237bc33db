"""How fast a stage trains: seconds per training epoch and images per second.

Only the training batches are timed (from the first batch's start to the last batch's end of
each epoch), not validation or checkpoints, and the first epoch (decoding, cuDNN autotuning)
is left out when there are others. The figures go into the stage's metrics in the manifest
(``training_speed``), not into ``metrics.json``, whose scores a rerun reproduces exactly.
"""

import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class TrainingSpeed(Callback):
    """Times each training epoch's batches; :meth:`summary` gives the medians."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, int]] = []  # (seconds, images) per epoch
        self._start: float | None = None
        self._images = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._start is None:
            _synchronize(module)
            self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._images += _batch_images(batch) * trainer.world_size

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._start is not None and self._images:
            _synchronize(module)
            self.epochs.append((time.perf_counter() - self._start, self._images))
        self._start = None

    def summary(self) -> dict[str, float]:
        """``train_epoch_s`` and ``train_images_per_s`` (medians over the timed epochs)."""
        timed = self.epochs[1:] or self.epochs
        if not timed:
            return {}
        return {
            "train_epoch_s": round(statistics.median(s for s, _ in timed), 3),
            "train_images_per_s": round(statistics.median(n / s for s, n in timed), 1),
        }


def _batch_images(batch: Any) -> int:
    # Every training batch of ours carries the dataset index of each of its images.
    if isinstance(batch, dict) and "index" in batch:
        return len(batch["index"])
    return 0


def _synchronize(module: pl.LightningModule) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)

"""Checkpoints a killed stage resumes from exactly: every epoch and every few minutes.

``last.ckpt`` holds what Lightning saves (weights, optimizer, scheduler, loop progress,
callback states) plus the position in the epoch's sample order and the python, numpy, torch
and CUDA random states. It is written to a temporary file and renamed into place, so a kill
at any moment leaves the previous checkpoint or the new one, never half a file.
"""

import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from semclust import budget
from semclust.budget import OutOfTime
from semclust.data.sampling import training_sampler
from semclust.failpoints import failpoint

log = logging.getLogger(__name__)


def random_states() -> dict[str, Any]:
    """Every random state a training step may draw from, as tensors and plain values
    (loadable with ``weights_only=True``)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableCheckpoint(Checkpoint):
    """Writes ``path`` after every epoch and, within an epoch, every ``every_minutes``.

    A :class:`Checkpoint`, so Lightning runs it after the other callbacks: a ``best.ckpt``
    tracker listed before it has taken in the epoch's score when its state is saved here.

    Resuming (``trainer.fit(ckpt_path=path)``) puts the training loader's sampler back at the
    saved position and the random states back as they were, so the run goes on with the
    same batches, augmentations and random draws it would have had without the stop.
    """

    def __init__(self, path: Path, stage: str, every_minutes: float | None = None) -> None:
        self.path, self.stage = Path(path), stage
        self.every_seconds = None if every_minutes is None else 60.0 * every_minutes
        self._last_save = time.monotonic()
        self._position = (0, 0)  # (epoch, batches of it done)
        self._resumed_states: dict[str, Any] | None = None
        #: The training loader and the number of processes, set by ``fit`` before training.
        self.train_loader: Any = None
        self.world_size = 1

    # what goes into the checkpoint -------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = self._position
        return {"epoch": epoch, "batches_done": batches, "random_states": random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._position = (state_dict["epoch"], state_dict["batches_done"])
        self._resumed_states = state_dict["random_states"]
        sampler = training_sampler(self.train_loader)
        if sampler is not None:  # before Lightning creates the first iterator
            epoch, batches = self._position
            processes = self.world_size
            sampler.resume_at(epoch, batches * self.train_loader.batch_size * processes)

    # when to write it --------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resumed_states is not None:
            restore_random_states(self._resumed_states)
            self._resumed_states = None
        self._last_save = time.monotonic()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._position = (trainer.current_epoch, batch_idx + 1)
        failpoint(f"{self.stage}.batch")
        due = self.every_seconds is not None and (
            time.monotonic() - self._last_save >= self.every_seconds
        )
        inside_epoch = batch_idx + 1 < trainer.num_training_batches
        if inside_epoch and budget.spent_everywhere():
            self.save(trainer)
            raise OutOfTime(f"{self.stage}: time budget spent in epoch {trainer.current_epoch}")
        if due and inside_epoch:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._position = (trainer.current_epoch + 1, 0)
        self.save(trainer)
        failpoint(f"{self.stage}.epoch")
        more_epochs = trainer.current_epoch + 1 < trainer.max_epochs
        if more_epochs and budget.spent_everywhere():
            raise OutOfTime(f"{self.stage}: time budget spent after epoch {trainer.current_epoch}")

    def save(self, trainer: pl.Trainer) -> None:
        """Write the checkpoint next to ``path`` and rename it into place (rank zero)."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        # Every rank takes part; rank zero writes. Not weights only: optimizer, loops, callbacks.
        trainer.save_checkpoint(temporary, weights_only=False)
        if trainer.is_global_zero:
            with open(temporary, "rb") as file:
                os.fsync(file.fileno())
            failpoint("checkpoint.write")
            os.replace(temporary, self.path)
        self._last_save = time.monotonic()

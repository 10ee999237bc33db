"""What every stage shares: datasets and loaders from the config, the trainer, resuming."""

import csv
from collections.abc import Sequence
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from semclust.data import MultiViewDataset, build_dataset, make_loader, view_transforms
from semclust.inference.spec import backbone_from_spec
from semclust.rundir import BACKBONE_SPEC, BACKBONE_WEIGHTS, RunDirectory, load_weights, read_json


def known_num_clusters(cfg: DictConfig) -> int | None:
    """``data.num_clusters``, or ``None`` while it is ``auto`` and not yet chosen."""
    value = cfg.data.num_clusters
    if value == "auto":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ValueError(f"data.num_clusters must be an integer >= 2 or auto, got {value!r}")
    return value


def optional_factory(factory_cfg: Any) -> Any:
    """Instantiate a config entry that may be null (e.g. no learning-rate schedule)."""
    return None if factory_cfg is None else hydra.utils.instantiate(factory_cfg)


def dataset_split(cfg: DictConfig, run: RunDirectory, split_key: str) -> Any:
    """Build a split, check that it can be clustered, and list any files it skipped."""
    dataset = build_dataset(cfg.data, split_key)
    needed = max(known_num_clusters(cfg) or 2, cfg.mine.num_neighbors + 1)
    if len(dataset) < needed:
        raise ValueError(
            f"the {split_key} split ({cfg.data[f'{split_key}_split']!r}) holds {len(dataset)} "
            f"images, but {cfg.data.num_clusters} clusters with {cfg.mine.num_neighbors} "
            f"neighbours each need at least {needed}"
        )
    skipped = getattr(dataset, "skipped", None)
    if skipped and run.is_writer():
        with open(run.skipped_files(split_key), "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped)
    return dataset


def loader(cfg: DictConfig, dataset: Any, shuffle: bool, batch_size: int) -> Any:
    """A training (``shuffle``) or evaluation loader with the data config's workers."""
    return make_loader(
        dataset, batch_size, shuffle=shuffle, num_workers=cfg.data.num_workers, drop_last=shuffle
    )


def eval_loader(cfg: DictConfig, dataset: Any) -> Any:
    """Every image once, in order, through the deterministic eval view."""
    views = MultiViewDataset(dataset, {"image": view_transforms(cfg.data).eval})
    return loader(cfg, views, shuffle=False, batch_size=cfg.data.eval_batch_size)


def load_backbone(run: RunDirectory, needed_by: str) -> tuple[torch.nn.Module, dict]:
    """The pretext stage's backbone with its weights, and its spec."""
    spec = read_json(run.require(BACKBONE_SPEC, needed_by))
    backbone = backbone_from_spec(spec)
    load_weights(backbone, run.require(BACKBONE_WEIGHTS, needed_by))
    return backbone, spec


def build_trainer(
    cfg: DictConfig,
    stage: str,
    run: RunDirectory,
    max_epochs: int,
    callbacks: Sequence[Callback] = (),
    monitor: str | None = None,
    **trainer_kwargs: Any,
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Lightning trainer for one stage, checkpointing into ``<run>/<stage>/checkpoints``.

    ``last.ckpt`` is always written so a crashed stage resumes where it stopped; with a
    ``monitor`` the lowest value's checkpoint is kept as ``best.ckpt`` too.
    """
    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoint_dir(stage),
        filename="best",
        monitor=monitor,
        mode="min",
        save_last=True,
        save_top_k=1 if monitor else 0,
        enable_version_counter=False,
    )
    logger = False
    if cfg.get("logger"):
        logger = hydra.utils.instantiate(cfg.logger, name=stage, version="")
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        default_root_dir=str(run.stage_dir(stage)),
        max_epochs=max_epochs,
        callbacks=[checkpoint, *callbacks],
        logger=logger,
        **trainer_kwargs,
    )
    return trainer, checkpoint


def fit(
    cfg: DictConfig,
    run: RunDirectory,
    stage: str,
    trainer: pl.Trainer,
    module: pl.LightningModule,
    train_loader: Any,
    val_loader: Any,
) -> None:
    """``trainer.fit``, continuing from the stage's ``last.ckpt`` when ``resume`` is on."""
    last = run.last_checkpoint(stage)
    trainer.fit(
        module,
        train_loader,
        val_loader,
        ckpt_path=str(last) if cfg.resume and last.is_file() else None,
        weights_only=True,
    )


def clear_checkpoints(run: RunDirectory, stage: str) -> None:
    """Remove a finished stage's checkpoints before it is run again from scratch."""
    for path in run.checkpoint_dir(stage).glob("*.ckpt"):
        path.unlink()

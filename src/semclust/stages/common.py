"""What every stage shares: datasets and loaders from the config, the trainer, resuming."""

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from semclust.data import (
    MultiViewDataset,
    NeighborsDataset,
    build_dataset,
    make_loader,
    view_transforms,
)
from semclust.data.batch_views import batch_view_transforms
from semclust.data.datasets import dataset_options
from semclust.data.decoded import (
    ViewMaker,
    choose_input_path,
    choose_view_maker,
    decoded_images,
)
from semclust.data.device_views import DecodedViews, ViewPlan
from semclust.inference.spec import backbone_from_spec, to_plain
from semclust.rundir import BACKBONE_SPEC, BACKBONE_WEIGHTS, RunDirectory, load_weights, read_json
from semclust.stages.checkpointing import ResumableCheckpoint
from semclust.stages.registry import stage_seed
from semclust.stages.timing import TrainingSpeed

log = logging.getLogger(__name__)

#: What decoded images depend on.
_IMAGE_KEYS = ("kind", "channels", "image_size")


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
    # Names the decoded images of this split, so later stages of the process reuse them.
    dataset.cache_key = json.dumps(
        [to_plain(cfg.data.get(key)) for key in _IMAGE_KEYS]
        + [to_plain(dataset_options(cfg.data, split_key)), cfg.data[f"{split_key}_split"]],
        default=str,
    )
    skipped = getattr(dataset, "skipped", None)
    if skipped and run.is_writer():
        with open(run.skipped_files(split_key), "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped)
    return dataset


def loader(cfg: DictConfig, dataset: Any, shuffle: bool, batch_size: int) -> Any:
    """An evaluation loader with the data config's workers (or a plain shuffled one)."""
    return make_loader(
        dataset, batch_size, shuffle=shuffle, num_workers=cfg.data.num_workers, drop_last=shuffle
    )


def training_loader(
    cfg: DictConfig,
    stage: str,
    dataset: Any,
    views: Mapping[str, str | None],
    batch_size: int,
    trainer: pl.Trainer,
    neighbors: np.ndarray | None = None,
) -> Any:
    """A stage's training loader: its order and views follow from the stage's seed and the
    epoch alone, so a resumed stage sees exactly the batches it would have seen.

    ``views`` maps each batch key to a recipe view (``pretext``, ``weak``, ``strong``,
    ``eval``), or to ``None`` for the sample as stored (cached features). With ``neighbors``
    the batch holds SCAN's pairs, ``anchor`` and ``neighbor``, one neighbour drawn per sample.
    Views are made in batches when :func:`~semclust.data.decoded.choose_input_path` says so
    (on the training device or in the loader processes, as
    :func:`~semclust.data.decoded.choose_view_maker` says), else per image in loader
    processes. ``batch_size`` is the batch of one optimizer step over all processes: under
    DDP each of the ``trainer``'s processes loads its share, so a recipe means the same on 1
    or N devices.
    """
    per_process = -(-batch_size // trainer.world_size)
    seed = stage_seed(stage, cfg.seed)
    maker = choose_view_maker(cfg.data, trainer.strategy.root_device)
    pixels = _decoded_pixels(cfg, dataset, stage, maker)
    if pixels is None:
        transforms = view_transforms(cfg.data) if any(views.values()) else None
        made = {
            name: torch.nn.Identity() if view is None else transforms.get(view)
            for name, view in views.items()
        }
        if neighbors is not None:
            wrapped: Any = NeighborsDataset(dataset, neighbors, made["anchor"])
        else:
            wrapped = MultiViewDataset(dataset, made)
        return make_loader(
            wrapped,
            per_process,
            shuffle=True,
            num_workers=cfg.data.num_workers,
            drop_last=True,
            seed=seed,
        )
    # Without views to make, a batch is one indexing operation: workers would only copy it.
    workers = cfg.data.num_workers if maker.in_loader else 0
    decoded = DecodedViews(
        pixels, dataset.targets, _view_plan(cfg, views), neighbors, maker.in_loader
    )
    return make_loader(
        decoded,
        per_process,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        seed=seed,
        collate_fn=decoded.collate,
    )


def eval_loader(cfg: DictConfig, dataset: Any) -> Any:
    """Every image once, in order, through the deterministic eval view."""
    pixels = _decoded_pixels(cfg, dataset, None)
    if pixels is None:
        views = MultiViewDataset(dataset, {"image": view_transforms(cfg.data).eval})
        return loader(cfg, views, shuffle=False, batch_size=cfg.data.eval_batch_size)
    decoded = DecodedViews(pixels, dataset.targets, _view_plan(cfg, {"image": "eval"}))
    return make_loader(
        decoded, cfg.data.eval_batch_size, False, num_workers=0, collate_fn=decoded.collate
    )


def _view_plan(cfg: DictConfig, views: Mapping[str, str | None]) -> ViewPlan:
    transforms = batch_view_transforms(cfg.data)
    return ViewPlan(
        {
            name: ("neighbor" if name == "neighbor" else "anchor", transforms.get(view))
            for name, view in views.items()
        }
    )


def _decoded_pixels(
    cfg: DictConfig, dataset: Any, stage: str | None, maker: ViewMaker | None = None
) -> torch.Tensor | None:
    """The decoded images when views are made in batches, else ``None``; a training
    ``stage`` logs which path it takes, who makes its views (``maker``) and why."""
    path = choose_input_path(cfg.data, dataset)
    if stage is not None:
        if path.batched:
            log.info(
                "%s: views made in batches %s (%s; %s)",
                stage,
                _made_by(maker, cfg.data.num_workers),
                path.reason,
                maker.reason,
            )
        else:
            log.info(
                "%s: views made per image in %d loader processes (%s)",
                stage,
                cfg.data.num_workers,
                path.reason,
            )
    if not path.batched:
        return None
    return decoded_images(
        dataset,
        cfg.data.channels,
        cfg.data.image_size,
        cfg.data.num_workers,
        getattr(dataset, "cache_key", None),
    )


def _made_by(maker: ViewMaker, num_workers: int) -> str:
    if not maker.in_loader:
        return "on the training device"
    return f"in {num_workers} loader processes" if num_workers else "in the loader's process"


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

    ``last.ckpt`` is written after every epoch and every ``checkpoint_every_minutes`` within
    one (:class:`ResumableCheckpoint`), so a killed stage resumes where it stopped; with a
    ``monitor``, the checkpoint of its lowest value is kept as ``best.ckpt`` too (returned).
    """
    run.checkpoint_dir(stage).mkdir(parents=True, exist_ok=True)
    resumable = ResumableCheckpoint(
        run.last_checkpoint(stage), stage, cfg.get("checkpoint_every_minutes")
    )
    best = None
    if monitor:
        best = ModelCheckpoint(
            dirpath=run.checkpoint_dir(stage),
            filename="best",
            monitor=monitor,
            mode="min",
            save_top_k=1,
            enable_version_counter=False,
        )
    logger = False
    if cfg.get("logger"):
        logger = hydra.utils.instantiate(cfg.logger, name=stage, version="")
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        default_root_dir=str(run.stage_dir(stage)),
        max_epochs=max_epochs,
        callbacks=[*callbacks, TrainingSpeed(), *([best] if best else []), resumable],
        logger=logger,
        **trainer_kwargs,
    )
    return trainer, best


def fit(
    cfg: DictConfig,
    run: RunDirectory,
    stage: str,
    trainer: pl.Trainer,
    module: pl.LightningModule,
    train_loader: Any,
    val_loader: Any,
) -> dict[str, float]:
    """``trainer.fit``, continuing from the stage's ``last.ckpt`` when ``resume`` is on; the
    training speed (:class:`~semclust.stages.timing.TrainingSpeed`) for the stage's metrics."""
    for callback in trainer.callbacks:
        if isinstance(callback, ResumableCheckpoint):
            callback.train_loader, callback.world_size = train_loader, trainer.world_size
    last = run.last_checkpoint(stage)
    resume_from = last if cfg.resume and _readable_checkpoint(last, stage) else None
    if resume_from is not None:
        log.info("%s: resuming from %s", stage, resume_from)
    trainer.fit(
        module,
        train_loader,
        val_loader,
        ckpt_path=None if resume_from is None else str(resume_from),
        weights_only=True,
    )
    speeds = [c.summary() for c in trainer.callbacks if isinstance(c, TrainingSpeed)]
    return speeds[0] if speeds else {}


def _readable_checkpoint(path: Path, stage: str) -> bool:
    """Whether ``path`` exists and loads; an unreadable one is set aside with a warning."""
    if not path.is_file():
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, ...: all mean "start over"
        aside = path.with_name(path.name + ".unreadable")
        path.replace(aside)
        log.warning(
            "%s: cannot read the checkpoint %s (%s: %s); it is kept as %s and the stage "
            "starts over",
            stage,
            path,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
            aside.name,
        )
        return False
    return True


def clear_checkpoints(run: RunDirectory, stage: str) -> None:
    """Remove a stage's checkpoints before it is run again from scratch."""
    for pattern in ("*.ckpt", "*.ckpt.tmp"):
        for path in run.checkpoint_dir(stage).glob(pattern):
            path.unlink()

"""What every stage shares: building the trainer, the views, the backbone; gathering outputs."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import nn

from semclust.data import ViewTransforms, build_transforms
from semclust.models import build_backbone
from semclust.models.backbones import DOWNLOAD_ARGUMENTS


def to_plain(cfg: Any) -> Any:
    """A resolved config as plain dicts and lists (safe to store in JSON and checkpoints)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def backbone_spec(backbone_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`build_backbone`, without Hydra's ``_target_``.

    Arguments that download pretrained weights are switched off: the spec travels with
    the trained weights, so rebuilding it must not fetch (or need) anything.
    """
    spec = {k: v for k, v in to_plain(backbone_cfg).items() if not k.startswith("_")}
    return {k: DOWNLOAD_ARGUMENTS.get(k, v) for k, v in spec.items()}


def backbone_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    return build_backbone(**spec)


def preprocessing_spec(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What inference needs to see images as training did (saved with every model)."""
    data = to_plain(data_cfg)
    keys = ("image_size", "channels", "mean", "std")
    return {"recipe": data["augment"]["recipe"], **{key: data[key] for key in keys}}


def view_transforms(data_cfg: Mapping[str, Any]) -> ViewTransforms:
    """The four views (pretext, weak, strong, eval) that the data config describes."""
    channels = data_cfg["channels"]
    for key in ("mean", "std"):
        if len(data_cfg[key]) != channels:
            raise ValueError(
                f"data.{key} has {len(data_cfg[key])} values but data.channels={channels}; "
                f"give one {key} per channel"
            )
    augment = dict(to_plain(data_cfg["augment"]))
    return build_transforms(
        augment.pop("recipe"),
        image_size=data_cfg["image_size"],
        mean=data_cfg["mean"],
        std=data_cfg["std"],
        **augment,
    )


def build_trainer(
    cfg: DictConfig,
    stage: str,
    stage_dir: Path,
    max_epochs: int,
    callbacks: Sequence[Callback] = (),
    monitor: str | None = None,
    **trainer_kwargs: Any,
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Lightning trainer for one stage, checkpointing into ``<stage_dir>/checkpoints``.

    ``last.ckpt`` is always written so a crashed stage resumes where it stopped; with a
    ``monitor`` the lowest value's checkpoint is kept as ``best.ckpt`` too.
    """
    checkpoint = ModelCheckpoint(
        dirpath=stage_dir / "checkpoints",
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
        default_root_dir=str(stage_dir),
        max_epochs=max_epochs,
        callbacks=[checkpoint, *callbacks],
        logger=logger,
        **trainer_kwargs,
    )
    return trainer, checkpoint


def resume_checkpoint(stage_dir: Path, resume: bool) -> str | None:
    """``last.ckpt`` of an interrupted run of this stage, if resuming is on and it exists."""
    last = stage_dir / "checkpoints" / "last.ckpt"
    return str(last) if resume and last.is_file() else None


def clear_checkpoints(stage_dir: Path) -> None:
    """Remove a finished stage's checkpoints before it is run again from scratch."""
    for path in (stage_dir / "checkpoints").glob("*.ckpt"):
        path.unlink()


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


def concat_batches(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}

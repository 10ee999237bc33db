"""What every pretext does: give the run a backbone (``pretext/backbone.safetensors``)."""

from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from semclust.inference.spec import backbone_spec
from semclust.metrics import HEADLINE_SCORES
from semclust.rundir import BACKBONE_SPEC, BACKBONE_WEIGHTS, RunDirectory, save_weights
from semclust.stages.common import (
    build_trainer,
    dataset_split,
    eval_loader,
    fit,
    known_num_clusters,
    training_loader,
)
from semclust.stages.registry import StageResult
from semclust.stages.scoring import ClusterEvaluation


def save_backbone(run: RunDirectory, backbone: torch.nn.Module, spec: dict) -> dict:
    """The backbone's weights and spec where the later stages look for them."""
    outputs = {"backbone": run.path(BACKBONE_WEIGHTS), "backbone_spec": run.path(BACKBONE_SPEC)}
    save_weights(backbone, outputs["backbone"], spec, outputs["backbone_spec"])
    return outputs


def training_split_key(cfg: DictConfig) -> str:
    """The split a pretext learns from: STL-10 style, a larger (unlabeled) ``pretext`` split
    where the data config names one, else ``train``."""
    return "pretext" if cfg.data.get("pretext_split") else "train"


class Pretext:
    """A way to get the backbone. ``pretext._target_`` names the subclass."""

    #: Whether the backbone is learnt from the run's images (a pretrained one is not).
    reads_images = True

    def prepare(self, cfg: DictConfig) -> None:
        """Adjust the composed config before any stage runs (nothing by default)."""

    def run(self, cfg: DictConfig, run: RunDirectory) -> StageResult:
        raise NotImplementedError


class TrainedPretext(Pretext):
    """A pretext task trained with Lightning; subclasses give the module and its views."""

    def build(
        self, cfg: DictConfig, backbone: torch.nn.Module
    ) -> tuple[pl.LightningModule, dict[str, str]]:
        """The LightningModule that trains ``backbone``, and the views each batch holds
        (batch key: recipe view, as :func:`~semclust.stages.common.training_loader` takes)."""
        raise NotImplementedError

    def run(self, cfg: DictConfig, run: RunDirectory) -> StageResult:
        train_set = dataset_split(cfg, run, training_split_key(cfg))
        backbone = hydra.utils.instantiate(cfg.backbone)
        module, train_views = self.build(cfg, backbone)
        return self.train_and_save(cfg, run, train_set, backbone, module, train_views)

    def train_and_save(
        self,
        cfg: DictConfig,
        run: RunDirectory,
        train_set: Any,
        backbone: torch.nn.Module,
        module: pl.LightningModule,
        train_views: dict[str, str],
    ) -> StageResult:
        """Train ``module`` on ``train_set`` (resumably), scoring k-means on the validation
        features, and save ``backbone`` (which ``module`` trains) as the run's backbone."""
        val_set = dataset_split(cfg, run, "val")
        evaluation = ClusterEvaluation(known_num_clusters(cfg), cfg.seed)
        trainer, _ = build_trainer(
            cfg,
            "pretext",
            run,
            cfg.pretext.epochs,
            [evaluation],
            check_val_every_n_epoch=cfg.pretext.val_every_n_epochs,
            gradient_clip_val=cfg.pretext.get("gradient_clip_val"),
        )
        train_loader = training_loader(
            cfg, "pretext", train_set, train_views, cfg.pretext.batch_size, trainer
        )
        speed = fit(cfg, run, "pretext", trainer, module, train_loader, eval_loader(cfg, val_set))
        outputs = save_backbone(run, backbone, backbone_spec(cfg.backbone))
        kmeans: dict[str, Any] = {
            f"kmeans_{k}": v for k, v in evaluation.latest.items() if k in HEADLINE_SCORES
        }
        # The last epoch's training metrics (for SimCLR also the projections' mean cosine and the
        # gradient's norm before clipping).
        last_epoch = {
            name.removeprefix("train/"): float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith("train/")
        }
        return outputs, {**kmeans, "training_speed": speed, "last_epoch": last_epoch}

"""SimCLR: two augmented views per image, contrasted with NT-Xent over the (global) batch."""

import logging
from collections.abc import Callable
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from semclust.losses import mean_cosine, nt_xent_loss
from semclust.models import ProjectionHead
from semclust.stages.base import FeatureExtractor
from semclust.stages.common import optional_factory
from semclust.stages.pretext.base import TrainedPretext

log = logging.getLogger(__name__)

#: Above this mean cosine between a batch's projections, SimCLR has collapsed: every image
#: maps to nearly one point, the loss sits at its chance value and the gradient vanishes.
COLLAPSED_COSINE = 0.99


class SimCLRModule(FeatureExtractor):
    """Backbone + MLP projection trained with NT-Xent on two augmented views per image.

    Under DDP the projections of all processes are gathered (with gradients) so every
    sample is contrasted with the negatives of the whole global batch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        projection_hidden_dim: int = 512,
        projection_dim: int = 128,
    ) -> None:
        super().__init__(backbone)
        self.projection = ProjectionHead(
            backbone.feature_dim, projection_hidden_dim, projection_dim
        )
        self.temperature = temperature
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(images))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        views = torch.cat([batch["view_a"], batch["view_b"]])
        z_a, z_b = self(views).chunk(2)
        if self.trainer.world_size > 1:
            z_a = self.all_gather(z_a, sync_grads=True).flatten(0, 1)
            z_b = self.all_gather(z_b, sync_grads=True).flatten(0, 1)
        loss = nt_xent_loss(z_a, z_b, self.temperature)
        batch_size = batch["view_a"].shape[0]
        self.log(
            "train/ntxent_loss",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
        )
        cosine = mean_cosine(torch.cat([z_a, z_b]))
        self.log("train/mean_cosine", cosine, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning clips after this hook, so this is the gradient as the loss made it: its
        # norm, and how often pretext.gradient_clip_val cut it (mean over the epoch's steps).
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        # As clip_grad_norm_ computes it (torch.nn.utils.get_total_norm needs torch >= 2.6).
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        self.log("train/grad_norm", norm, on_step=False, on_epoch=True, batch_size=1)
        clip = self.trainer.gradient_clip_val
        if clip is not None:
            clipped = (norm > clip).float()
            self.log("train/clipped_fraction", clipped, on_step=False, on_epoch=True, batch_size=1)

    def on_train_end(self) -> None:
        cosine = self.trainer.callback_metrics.get("train/mean_cosine")
        if cosine is not None and float(cosine) > COLLAPSED_COSINE and self.trainer.is_global_zero:
            log.warning(
                "pretext: SimCLR's projections collapsed (mean cosine %.4f in the last epoch): "
                "the backbone learnt little. A smaller pretext.gradient_clip_val or "
                "pretext.optimizer.lr, or more epochs, may get it out (docs/BENCHMARKS.md, "
                '"SimCLR\'s collapse at the start")',
                float(cosine),
            )

    def configure_optimizers(self) -> Any:
        return self.optimizers_for(self.parameters())


class SimCLRPretext(TrainedPretext):
    """``pretext=simclr``: SimCLR's module and two random pretext views per image."""

    def build(self, cfg: DictConfig, backbone: nn.Module) -> tuple[SimCLRModule, dict]:
        module = SimCLRModule(
            backbone,
            temperature=cfg.pretext.temperature,
            optimizer=hydra.utils.instantiate(cfg.pretext.optimizer),
            scheduler=optional_factory(cfg.pretext.get("scheduler")),
            projection_hidden_dim=cfg.pretext.projection_hidden_dim,
            projection_dim=cfg.pretext.projection_dim,
        )
        return module, {"view_a": "pretext", "view_b": "pretext"}

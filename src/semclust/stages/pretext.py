"""Stage 1, pretext: learn the backbone's features without labels (SimCLR or an autoencoder)."""

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from semclust.losses import nt_xent_loss
from semclust.models import ProjectionHead
from semclust.stages.validation import FeatureExtractor


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
        self.log(
            "train/ntxent_loss",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=batch["view_a"].shape[0],
        )
        return loss

    def configure_optimizers(self) -> Any:
        return self.optimizers_for(self.parameters())


class AutoencoderModule(FeatureExtractor):
    """Backbone (encoder) + :class:`ConvDecoder`, trained to reconstruct its input.

    The latent code is the backbone's feature vector, so the trained backbone feeds mining
    and SCAN unchanged. Validation collects the latent codes like any feature extractor.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decoder: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(backbone)
        self.decoder = decoder
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.backbone(images))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        loss = self.loss(self(images), images)
        self.log(
            "train/reconstruction_loss",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=images.shape[0],
        )
        return loss

    def configure_optimizers(self) -> Any:
        # The perceptual network is frozen; only encoder and decoder learn.
        return self.optimizers_for([*self.backbone.parameters(), *self.decoder.parameters()])

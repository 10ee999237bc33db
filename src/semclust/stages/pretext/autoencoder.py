"""A convolutional autoencoder: the backbone encodes, a decoder reconstructs, and the latent
code (the backbone's feature vector) feeds mining and SCAN unchanged."""

from collections.abc import Callable
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from semclust.losses.reconstruction import PerceptualLoss, ReconstructionLoss
from semclust.models.autoencoder import ConvDecoder
from semclust.stages.base import FeatureExtractor
from semclust.stages.common import optional_factory
from semclust.stages.pretext.base import TrainedPretext


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


class AutoencoderPretext(TrainedPretext):
    """``pretext=autoencoder``: the module (backbone as encoder) and the one view it
    reconstructs."""

    def build(self, cfg: DictConfig, backbone: nn.Module) -> tuple[AutoencoderModule, dict]:
        pretext = cfg.pretext
        perceptual = None
        if pretext.loss == "perceptual":
            perceptual = PerceptualLoss(
                cfg.data.mean,
                cfg.data.std,
                network=pretext.perceptual.network,
                layers=list(pretext.perceptual.layers),
                weights=pretext.perceptual.weights,
            )
        decoder = ConvDecoder(
            backbone.feature_dim,
            cfg.data.image_size,
            cfg.data.channels,
            width=pretext.decoder.width,
            upsamplings=pretext.decoder.upsamplings,
        )
        module = AutoencoderModule(
            backbone,
            decoder,
            ReconstructionLoss(pretext.loss, perceptual, pretext.perceptual.pixel_weight),
            optimizer=hydra.utils.instantiate(pretext.optimizer),
            scheduler=optional_factory(pretext.get("scheduler")),
        )
        return module, {"image": pretext.augmentation}

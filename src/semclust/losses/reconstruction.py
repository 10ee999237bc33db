"""Reconstruction losses of the autoencoder pretext: pixel (MSE, L1) and perceptual."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

# VGG19's ReLU outputs relu1_2, relu2_2, relu3_4, relu4_4 (torchvision node names): the
# layers perceptual losses usually compare (Johnson et al., 2016).
VGG19_LAYERS = ("features.3", "features.8", "features.17", "features.26")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """Mean squared distance between a frozen network's feature maps of two images.

    Images arrive normalised with the data's ``mean``/``std``; they are mapped back to
    [0, 1], grayscale is repeated to RGB, and the network's own (ImageNet) normalisation is
    applied. ``layers`` are torchvision node names (``torchvision.models.feature_extraction.
    get_graph_node_names`` lists them). ``weights="DEFAULT"`` loads the pretrained weights
    (torchvision downloads them once into ``$TORCH_HOME``); ``None`` keeps random weights,
    which still give a usable, if weaker, feature-space loss.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        network: str = "vgg19",
        layers: Sequence[str] = VGG19_LAYERS,
        weights: str | None = "DEFAULT",
    ) -> None:
        super().__init__()
        try:
            model = torchvision.models.get_model(network, weights=weights)
        except ValueError as error:
            raise ValueError(f"unknown perceptual network {network!r}: {error}") from error
        except (OSError, RuntimeError) as error:  # no internet, or a corrupt download
            raise RuntimeError(
                f"cannot load the {weights} weights of {network!r} for the perceptual loss "
                f"({error}); on a machine without internet set "
                "pretext.perceptual.weights=null (random features) or place the weights "
                "file in $TORCH_HOME/hub/checkpoints"
            ) from error
        try:
            self.features = create_feature_extractor(model, return_nodes=list(layers))
        except ValueError as error:
            raise ValueError(
                f"perceptual layers {list(layers)} are not all nodes of {network!r}: {error}"
            ) from error
        self.features.eval().requires_grad_(False)
        self.register_buffer("data_mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("data_std", torch.tensor(std).view(1, -1, 1, 1))
        self.register_buffer("net_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("net_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.features.eval()  # frozen batch-norm statistics, whatever the trainer does
        return self

    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        images = images * self.data_std + self.data_mean
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.net_mean) / self.net_std

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        both = self.features(self._network_input(torch.cat([reconstruction, target])))
        losses = []
        for maps in both.values():
            recon_maps, target_maps = maps.chunk(2)
            losses.append(F.mse_loss(recon_maps, target_maps.detach()))
        return torch.stack(losses).mean()


class ReconstructionLoss(nn.Module):
    """``mse``, ``l1`` or ``perceptual`` (plus ``pixel_weight`` times MSE, if set)."""

    def __init__(
        self,
        kind: str,
        perceptual: PerceptualLoss | None = None,
        pixel_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in ("mse", "l1", "perceptual"):
            raise ValueError(f"unknown reconstruction loss {kind!r}; choose mse, l1 or perceptual")
        if kind == "perceptual" and perceptual is None:
            raise ValueError("the perceptual loss needs its feature network")
        self.kind = kind
        self.perceptual = perceptual if kind == "perceptual" else None
        self.pixel_weight = pixel_weight

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return F.mse_loss(reconstruction, target)
        if self.kind == "l1":
            return F.l1_loss(reconstruction, target)
        loss = self.perceptual(reconstruction, target)
        if self.pixel_weight:
            loss = loss + self.pixel_weight * F.mse_loss(reconstruction, target)
        return loss

"""Feature extractors. Each maps ``(B, C, H, W)`` images to ``(B, feature_dim)`` features.

Backbones are built by :func:`build_backbone` from a name and plain keyword arguments, so a
saved model can be rebuilt from its JSON metadata without importing anything it names.
"""

from typing import Any

import torch
import torchvision
from torch import nn


class SmallCNN(nn.Module):
    """Five 3x3 conv layers, then a linear layer over a ``spatial x spatial`` grid.

    For tiny images (digits, MNIST, COIL-20). Unlike global average pooling, the final grid
    keeps where strokes are, which tells a 6 from a 9; adaptive pooling to that grid makes the
    network indifferent to the input size.
    """

    def __init__(
        self, in_channels: int = 1, width: int = 16, feature_dim: int = 128, spatial: int = 4
    ) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, width),
            block(width, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            block(2 * width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(spatial),
            nn.Flatten(),
            nn.Linear(4 * width * spatial * spatial, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


class TorchvisionBackbone(nn.Module):
    """A torchvision classification model with its classifier replaced by the identity."""

    def __init__(
        self,
        model_name: str,
        in_channels: int = 3,
        weights: str | None = None,
        cifar_stem: bool = False,
    ) -> None:
        super().__init__()
        try:
            model = torchvision.models.get_model(model_name, weights=weights)
        except ValueError as error:
            raise ValueError(f"unknown torchvision model {model_name!r}: {error}") from error
        if cifar_stem:
            if not isinstance(model, torchvision.models.ResNet):
                raise ValueError(f"cifar_stem applies to ResNets only, not {model_name!r}")
            # SCAN's CIFAR ResNet: 3x3 stride-1 stem and no max-pool keep 32x32 inputs detailed.
            model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        elif in_channels != 3:
            raise ValueError(
                f"{model_name!r} expects 3 input channels, got {in_channels}; "
                "convert images to RGB in the data config"
            )
        self.feature_dim = _replace_classifier(model, model_name)
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def _replace_classifier(model: nn.Module, model_name: str) -> int:
    """Swap the final classifier for the identity and return the feature width."""
    for attribute in ("fc", "classifier", "head", "heads"):
        layer = getattr(model, attribute, None)
        if layer is None:
            continue
        linear = layer if isinstance(layer, nn.Linear) else None
        if isinstance(layer, nn.Sequential):
            linear = next((m for m in reversed(layer) if isinstance(m, nn.Linear)), None)
        if linear is not None:
            if isinstance(layer, nn.Sequential):
                # Keep what precedes the last linear layer (pooling, dropout, pre-logits).
                index = max(i for i, m in enumerate(layer) if m is linear)
                layer[index] = nn.Identity()
            else:
                setattr(model, attribute, nn.Identity())
            return linear.in_features
    raise ValueError(f"cannot find the classifier of torchvision model {model_name!r}")


class TimmBackbone(nn.Module):
    """Any timm model, created with ``num_classes=0`` so it returns pooled features."""

    def __init__(self, model_name: str, in_channels: int = 3, pretrained: bool = False) -> None:
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            raise ValueError(f"unknown timm model {model_name!r}")
        self.model = timm.create_model(
            model_name, pretrained=pretrained, num_classes=0, in_chans=in_channels
        )
        self.feature_dim = self.model.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def resnet18_cifar(in_channels: int = 3) -> TorchvisionBackbone:
    """ResNet-18 with SCAN's CIFAR stem (3x3 conv, stride 1, no max-pool), 512-d features."""
    return TorchvisionBackbone("resnet18", in_channels=in_channels, cifar_stem=True)


_BUILDERS = {
    "small_cnn": SmallCNN,
    "resnet18_cifar": resnet18_cifar,
    "torchvision": TorchvisionBackbone,
    "timm": TimmBackbone,
}


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build a backbone by name: ``small_cnn``, ``resnet18_cifar``, ``torchvision``, ``timm``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_BUILDERS)}")
    return _BUILDERS[name](**kwargs)

"""Feature extractors. Each maps ``(B, C, H, W)`` images to ``(B, feature_dim)`` features.

Backbones are built by :func:`build_backbone` from a name and plain keyword arguments, so a
saved model can be rebuilt from its JSON metadata without importing anything it names.
"""

import difflib
from typing import Any

import torch
import torchvision
from torch import nn

from semclust.models.rotation import with_rotation_pooling


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
            # Initialised as torchvision (and SCAN) initialise every other convolution.
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
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
    """Any timm model, created with ``num_classes=0`` so it returns pooled features.

    ``pretrained=True`` downloads the weights (Hugging Face hub cache); with ``in_channels=1``
    timm folds the pretrained RGB stem into one channel.
    """

    def __init__(self, model_name: str, in_channels: int = 3, pretrained: bool = False) -> None:
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown timm model {model_name!r}{hint} (timm.list_models() lists them all)"
            )
        self.model = timm.create_model(
            model_name, pretrained=pretrained, num_classes=0, in_chans=in_channels
        )
        self.feature_dim = self.model.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def create_open_clip(
    model_name: str, pretrained: str | None = None, image_size: int | None = None
) -> nn.Module:
    """A whole open_clip model (image and text towers), as :class:`OpenClipBackbone` builds
    it: ``pretrained`` weights (downloaded on first use) or random ones, ``image_size`` for
    another input size than the model's own."""
    import open_clip

    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model_name!r}; open_clip.list_models() lists them"
        )
    extra = {"force_image_size": image_size} if image_size else {}
    return open_clip.create_model(model_name, pretrained=pretrained, **extra)


def _check_clip_channels(in_channels: int) -> None:
    if in_channels not in (1, 3):
        raise ValueError(f"CLIP encoders read 1 or 3 channels, got in_channels={in_channels}")


class OpenClipBackbone(nn.Module):
    """The image encoder of an open_clip model (CLIP, SigLIP, ...): its embedding is the feature.

    ``pretrained`` names open_clip weights (``openai``, ``laion2b_s34b_b79k``, ...; see
    ``open_clip.list_pretrained()``), downloaded on first use; ``None`` initialises randomly.
    Grayscale input is repeated to the three channels CLIP expects. ``image_size`` overrides
    the model's input size (position embeddings are resized), e.g. for small test images.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        in_channels: int = 3,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        _check_clip_channels(in_channels)
        model = create_open_clip(model_name, pretrained, image_size)
        self.visual = model.visual  # the text tower is not needed
        self.in_channels = in_channels
        self.feature_dim = int(self.visual.output_dim)

    @classmethod
    def around(cls, model: nn.Module, in_channels: int = 3) -> "OpenClipBackbone":
        """The image tower of an open_clip ``model`` built elsewhere, shared, not copied (a
        CLIP fine-tuned on captions trains it; this backbone is what is saved of it)."""
        _check_clip_channels(in_channels)
        backbone = cls.__new__(cls)
        nn.Module.__init__(backbone)
        backbone.visual = model.visual
        backbone.in_channels = in_channels
        backbone.feature_dim = int(model.visual.output_dim)
        return backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.visual(images)


def resnet18_cifar(in_channels: int = 3) -> TorchvisionBackbone:
    """ResNet-18 with SCAN's CIFAR stem (3x3 conv, stride 1, no max-pool), 512-d features."""
    return TorchvisionBackbone("resnet18", in_channels=in_channels, cifar_stem=True)


_BUILDERS = {
    "small_cnn": SmallCNN,
    "resnet18_cifar": resnet18_cifar,
    "torchvision": TorchvisionBackbone,
    "timm": TimmBackbone,
    "open_clip": OpenClipBackbone,
}

# Keyword arguments that fetch pretrained weights when a backbone is built, with the value
# that does not. Saved specs carry the latter: the weights travel in the safetensors file.
DOWNLOAD_ARGUMENTS = {"pretrained": None, "weights": None}


def native_preprocessing(spec: dict[str, Any]) -> dict[str, Any] | None:
    """Input size, mean and std the pretrained weights of a backbone spec expect.

    Read from timm's or open_clip's registry without building the model or downloading
    anything; ``None`` for backbones without pretrained weights.
    """
    name, model_name = spec.get("name"), spec.get("model_name")
    if name == "torchvision" and spec.get("weights"):
        weights = torchvision.models.get_model_weights(model_name)
        tag = spec["weights"].split(".")[-1]
        if tag not in weights.__members__:
            raise ValueError(f"unknown weights {spec['weights']!r} for torchvision {model_name!r}")
        transform = weights[tag].transforms()
        return {"image_size": transform.crop_size[0], "mean": transform.mean, "std": transform.std}
    if name == "timm" and spec.get("pretrained"):
        import timm

        config = timm.models.get_pretrained_cfg(model_name, allow_unregistered=True)
        if config is None:
            return None
        return {"image_size": config.input_size[-1], "mean": config.mean, "std": config.std}
    if name == "open_clip":
        import open_clip
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        image_size = (
            spec.get("image_size")
            or open_clip.get_model_config(model_name)["vision_cfg"]["image_size"]
        )
        weights = open_clip.get_pretrained_cfg(model_name, spec.get("pretrained") or "") or {}
        return {
            "image_size": image_size if isinstance(image_size, int) else image_size[0],
            "mean": weights.get("mean", OPENAI_DATASET_MEAN),
            "std": weights.get("std", OPENAI_DATASET_STD),
        }
    return None


def build_backbone(
    name: str, rotation_pooling: dict[str, Any] | None = None, **kwargs: Any
) -> nn.Module:
    """Build a backbone by name: ``small_cnn``, ``resnet18_cifar``, ``torchvision``, ``timm``,
    ``open_clip``.

    ``rotation_pooling`` (``{"angles": n, "fill": [...]}``, set by ``rotation_invariance``)
    wraps it so that its evaluation features are the mean over n turns of the image
    (:class:`~semclust.models.rotation.RotationPooledBackbone`).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_BUILDERS)}")
    return with_rotation_pooling(_BUILDERS[name](**kwargs), rotation_pooling)

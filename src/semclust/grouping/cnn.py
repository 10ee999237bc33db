"""The ``cnn`` method: cosine similarity of network embeddings, paired by FAISS.

The network is a torchvision classifier with its pretrained ImageNet weights (downloaded by
torchvision into its cache the first time a user runs it; ``weights="none"`` builds it with
random weights and downloads nothing) or the backbone of a semclust model (an export, run
directory or checkpoint), whose pretext / SCAN features are then what is compared.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from semclust.grouping import candidates
from semclust.grouping.methods import Method, Signatures

#: ImageNet statistics, for torchvision models without pretrained weights.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class CnnMethod(Method):
    """Embeddings of ``backbone`` (L2-normalised); similarity: their cosine, clipped at 0."""

    name = "cnn"
    # imagededup's default for CNN encodings (min_similarity_threshold=0.9).
    default_threshold = 0.9
    describes = "cosine similarity of the network's embeddings"

    def __init__(
        self,
        backbone: nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        image_size: int,
        channels: int = 3,
        device: str = "auto",
        batch_size: int = 64,
    ) -> None:
        from semclust.inference.predict import resolve_device

        self.device = resolve_device(device)
        self.backbone = backbone.eval().to(self.device)
        self.preprocess = preprocess
        self.channels = channels
        self.batch_size = batch_size
        self.decode_size = image_size  # instance attribute: depends on the network

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Any]:
        return np.zeros(0, np.float32), self.preprocess(
            image.convert("L") if self.channels == 1 else image
        )

    def signatures(self, prepared: list[tuple[np.ndarray, Any]]) -> Signatures:
        tensors = [tensor for _, tensor in prepared]
        parts = []
        with torch.inference_mode():
            for start in range(0, len(tensors), self.batch_size):
                batch = torch.stack(tensors[start : start + self.batch_size]).to(self.device)
                features = self.backbone(batch).float().flatten(1)
                parts.append(nn.functional.normalize(features, dim=1).cpu().numpy())
        return Signatures(np.concatenate(parts).astype(np.float32))

    def candidates(
        self, signatures: Signatures, threshold: float | None, neighbors: int
    ) -> np.ndarray:
        if threshold is None:
            return candidates.float_neighbor_pairs(signatures.keys, neighbors)
        return candidates.float_range_pairs(signatures.keys, threshold)

    def similarity(self, signatures: Signatures, pairs: np.ndarray) -> np.ndarray:
        keys = signatures.keys.astype(np.float64)
        cosine = np.einsum("ij,ij->i", keys[pairs[:, 0]], keys[pairs[:, 1]])
        return np.clip(cosine, 0.0, 1.0)


def build_cnn_method(model: str, weights: str | None, device: str = "auto") -> CnnMethod:
    """The cnn method for a semclust model (a path that exists) or a torchvision model name
    with ``weights`` (a torchvision weights name such as ``DEFAULT``, or ``none``)."""
    from torchvision import transforms

    if Path(model).exists():
        from semclust.inference import load_any_model

        exported = load_any_model(model)
        return CnnMethod(
            exported.model.backbone,
            exported.preprocess(),
            exported.image_size,
            exported.channels,
            device,
        )
    from semclust.models.backbones import TorchvisionBackbone, native_preprocessing

    chosen = None if weights in (None, "", "none", "None") else weights
    backbone = TorchvisionBackbone(model, weights=chosen)
    spec = {"name": "torchvision", "model_name": model, "weights": chosen}
    native = native_preprocessing(spec) or {
        "image_size": 224,
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
    }
    size = int(native["image_size"])
    # A square resize, no centre crop: a crop would hide the borders that tell copies apart.
    preprocess = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize(native["mean"], native["std"]),
        ]
    )
    return CnnMethod(backbone, preprocess, size, 3, device)

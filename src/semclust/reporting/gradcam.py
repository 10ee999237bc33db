"""Grad-CAM heatmaps of cluster assignments, with the grad-cam package (pytorch_grad_cam).

The package is imported only when heatmaps are wanted, so everything that merely imports
:mod:`semclust.reporting` works without it, and a report is written without heatmaps (saying
why) where it cannot be imported: it needs opencv, which an install may lack.
"""

import logging
from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
from torch import nn

from semclust.models.heads import head_logits
from semclust.reporting.images import overlay_heatmap

log = logging.getLogger(__name__)


class GradCamExplainer:
    """Grad-CAM heatmaps for cluster assignments.

    ``model`` maps ``(B, C, H, W)`` images to ``(B, K)`` logits of one cluster head;
    ``preprocess`` maps a PIL image to the model's normalised ``(C, H, W)`` input. The heatmap
    is taken at ``target_layer``, by default the model's last ``nn.Conv2d``.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[PIL.Image.Image], torch.Tensor],
        target_layer: nn.Module | None = None,
        batch_size: int = 32,
    ) -> None:
        if target_layer is None:
            convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
            if not convolutions:
                raise ValueError(
                    f"{type(model).__name__} has no nn.Conv2d layer to take Grad-CAM at; "
                    "pass target_layer explicitly"
                )
            target_layer = convolutions[-1]
        elif not any(module is target_layer for module in model.modules()):
            raise ValueError(f"target_layer {target_layer!r} is not a submodule of the model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.preprocess = preprocess
        self.target_layer = target_layer
        self.batch_size = batch_size

    def heatmaps(self, images: list[PIL.Image.Image], clusters: list[int]) -> list[PIL.Image.Image]:
        """Each image overlaid with the Grad-CAM of its cluster, as RGB at a visible size.

        The model's train/eval modes, ``requires_grad`` flags and ``.grad`` tensors are
        restored afterwards. The heatmap is stretched over the whole image, so with a cropping
        ``preprocess`` it is only approximately aligned.
        """
        if len(images) != len(clusters):
            raise ValueError(f"got {len(images)} images but {len(clusters)} clusters")
        if not images:
            return []
        if min(clusters) < 0:
            raise ValueError(f"clusters must be non-negative, got {min(clusters)}")
        tensors = []
        for image in images:
            tensor = self.preprocess(image)
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3:
                raise ValueError(
                    "preprocess must return a (C, H, W) tensor, got "
                    f"{getattr(tensor, 'shape', type(tensor).__name__)}"
                )
            tensors.append(tensor)
        cams = self._cams(tensors, [int(c) for c in clusters])
        return [overlay_heatmap(image, cam) for image, cam in zip(images, cams, strict=True)]

    def _cams(self, tensors: list[torch.Tensor], clusters: list[int]) -> list[np.ndarray]:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        modes = [(module, module.training) for module in self.model.modules()]
        parameters = [(p, p.requires_grad, p.grad) for p in self.model.parameters()]
        checked = _CheckedLogits(self.model, max(clusters) + 1)
        # Inputs of one shape are batched together; preprocessing need not give one size.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, tensor in enumerate(tensors):
            by_shape.setdefault(tuple(tensor.shape), []).append(index)
        cams: list[np.ndarray] = [np.empty(0)] * len(tensors)
        cam = None
        try:
            # Gradients flow from the input instead, so no parameter gradient is computed.
            for parameter, _, _ in parameters:
                parameter.requires_grad_(False)
            # Callers usually predict under no_grad or inference_mode; Grad-CAM needs autograd.
            with torch.inference_mode(False), torch.enable_grad():
                cam = GradCAM(model=checked, target_layers=[self.target_layer])
                cam.compute_input_gradient = True
                for indices in by_shape.values():
                    for start in range(0, len(indices), self.batch_size):
                        chunk = indices[start : start + self.batch_size]
                        batch = torch.stack([tensors[i] for i in chunk])
                        targets = [ClassifierOutputTarget(clusters[i]) for i in chunk]
                        for i, heatmap in zip(chunk, cam(batch, targets), strict=True):
                            cams[i] = heatmap
        finally:
            if cam is not None:
                cam.activations_and_grads.release()
            for module, training in modes:
                module.train(training)
            for parameter, requires_grad, grad in parameters:
                parameter.requires_grad_(requires_grad)
                parameter.grad = grad
        return cams


class _CheckedLogits(nn.Module):
    """The model, failing clearly unless it returns ``(B, K)`` logits with enough clusters."""

    def __init__(self, model: nn.Module, clusters_needed: int) -> None:
        super().__init__()
        self.model = model
        self.clusters_needed = clusters_needed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
            raise ValueError(
                f"the model must map {len(images)} images to ({len(images)}, K) logits "
                f"of one cluster head, got shape {tuple(logits.shape)}"
            )
        if logits.shape[1] < self.clusters_needed:
            raise ValueError(
                f"cluster {self.clusters_needed - 1} is out of range for a model with "
                f"{logits.shape[1]} clusters"
            )
        return logits


class _SingleHead(nn.Module):
    """A clustering model as Grad-CAM wants it: images in, the one head's ``(B, K)`` logits out
    (the model itself returns a list with one entry per head)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # A rotation-pooled backbone runs once per turn; the maps explain the upright turn.
        backbone = getattr(self.model.backbone, "unpooled", None)
        if backbone is not None:
            return self.model.cluster_heads(backbone(images))[0]
        return head_logits(self.model, images)[1]


def grad_cam_for(
    model: nn.Module, preprocess: Callable[[PIL.Image.Image], torch.Tensor]
) -> tuple[GradCamExplainer | None, str | None]:
    """A Grad-CAM explainer of a one-head clustering model, or None and why not."""
    try:
        import pytorch_grad_cam  # noqa: F401  (it needs opencv, which an install may lack)
    except ImportError as error:
        reason = f"the grad-cam package could not be imported ({error})"
        log.warning("report without heatmaps: %s", reason)
        return None, reason
    try:
        return GradCamExplainer(_SingleHead(model), preprocess), None
    except ValueError as error:  # e.g. a vision transformer: no convolution to explain
        return None, str(error)

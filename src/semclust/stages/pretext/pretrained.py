"""A frozen pretrained network instead of a pretext task (timm, torchvision, open_clip)."""

import logging
import time
from typing import Any

from omegaconf import DictConfig

from semclust.inference.spec import backbone_spec, to_plain
from semclust.models.backbones import build_backbone, native_preprocessing
from semclust.rundir import RunDirectory
from semclust.stages.pretext.base import Pretext, save_backbone
from semclust.stages.registry import StageResult

log = logging.getLogger(__name__)


def pretrained_backbone_arguments(cfg: DictConfig) -> dict[str, Any]:
    """``build_backbone`` arguments of ``cfg.backbone`` with pretrained weights switched on
    (``pretext.download_weights=false`` builds the same network randomly initialised)."""
    spec = backbone_spec(cfg.backbone)
    name = spec["name"]
    if name not in ("timm", "torchvision", "open_clip"):
        raise ValueError(
            f"pretext=pretrained needs a backbone with pretrained weights: backbone=timm, "
            f"backbone=torchvision or backbone=clip, not {name!r}"
        )
    configured = to_plain(cfg.backbone)
    if not cfg.pretext.download_weights:
        return spec
    if name == "timm":
        return {**spec, "pretrained": True}
    if name == "torchvision":
        return {**spec, "weights": configured.get("weights") or "DEFAULT"}
    if not configured.get("pretrained"):
        raise ValueError(
            "backbone.pretrained must name the open_clip weights for pretext=pretrained, "
            f"e.g. openai (open_clip.list_pretrained() lists those of {spec['model_name']!r})"
        )
    return {**spec, "pretrained": configured["pretrained"]}


def match_native_preprocessing(cfg: DictConfig, spec: dict[str, Any], pretext: str) -> None:
    """Set ``cfg.data``'s image size, mean and std to those the weights of the backbone
    ``spec`` expect (nothing for a backbone without pretrained weights)."""
    native = native_preprocessing(spec)
    if native is None:
        return
    mean, std = [float(v) for v in native["mean"]], [float(v) for v in native["std"]]
    if cfg.data.channels == 1:  # grayscale repeated to RGB: one value for the one channel
        mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
    log.info(
        "pretext=%s: images at %d px, mean %s, std %s, as the network expects "
        "(pretext.match_preprocessing=false keeps the data config's)",
        pretext,
        native["image_size"],
        [round(v, 4) for v in mean],
        [round(v, 4) for v in std],
    )
    cfg.data.image_size = int(native["image_size"])
    cfg.data.mean, cfg.data.std = mean, std


class PretrainedPretext(Pretext):
    """``pretext=pretrained``: build the configured network with its weights and save it as
    the run's backbone; nothing is trained."""

    reads_images = False  # the network's own weights, whatever the run's images

    def prepare(self, cfg: DictConfig) -> None:
        """Show images to the network as its weights were trained to see them (input size,
        mean, std), unless ``pretext.match_preprocessing=false``."""
        if cfg.pretext.match_preprocessing:
            match_native_preprocessing(cfg, pretrained_backbone_arguments(cfg), "pretrained")

    def run(self, cfg: DictConfig, run: RunDirectory) -> StageResult:
        spec = pretrained_backbone_arguments(cfg)
        started = time.perf_counter()
        backbone = build_backbone(**spec)
        outputs = save_backbone(run, backbone, backbone_spec(spec))
        parameters = sum(p.numel() for p in backbone.parameters())
        return outputs, {
            "pretrained_weights": str(spec.get("pretrained") or spec.get("weights")),
            "feature_dim": int(backbone.feature_dim),
            "parameters": int(parameters),
            "load_time_s": round(time.perf_counter() - started, 2),
        }

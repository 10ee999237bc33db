"""CLIP fine-tuned on (image, caption) pairs: both towers of an open_clip model learn with
CLIP's symmetric contrastive loss, and the image tower becomes the run's backbone."""

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import hydra
import open_clip
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from open_clip.loss import ClipLoss
from torch import nn

from semclust.inference.spec import to_plain
from semclust.models.backbones import OpenClipBackbone, create_open_clip
from semclust.models.rotation import with_rotation_pooling
from semclust.rundir import RunDirectory
from semclust.stages.base import FeatureExtractor
from semclust.stages.common import dataset_split, optional_factory
from semclust.stages.pretext.base import TrainedPretext, training_split_key
from semclust.stages.pretext.pretrained import match_native_preprocessing
from semclust.stages.registry import StageResult

log = logging.getLogger(__name__)

#: CLIP's cap on the learnt logit scale (a temperature of 0.01), as open_clip trains it.
MAX_LOGIT_SCALE = math.log(100)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    eta_min: float = 0.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per optimiser step: the rate rises linearly over the first ``warmup_fraction`` of
    ``total_steps``, then decays to ``eta_min`` along a cosine (CLIP's schedule)."""
    warmup = min(int(round(warmup_fraction * total_steps)), total_steps - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, total_steps - warmup), eta_min=eta_min
    )
    if warmup <= 0:
        return cosine
    rise = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, cosine], milestones=[warmup])


def _decays(name: str, parameter: nn.Parameter) -> bool:
    """Whether weight decay applies: not to gains, biases, other parameters of fewer than
    two dimensions and the logit scale (open_clip's training rule)."""
    return not (
        parameter.ndim < 2
        or "bn" in name
        or "ln" in name
        or "bias" in name
        or "logit_scale" in name
    )


class ClipCaptionsModule(FeatureExtractor):
    """An open_clip model trained on (image, caption) pairs with the symmetric CLIP loss.

    The image embedding comes from ``backbone`` (an :class:`OpenClipBackbone` sharing the
    model's image tower, so grayscale images are read as at inference), the caption
    embedding from the model's text tower; ``tokens[index]`` is the tokenised caption of
    image ``index``. The logit scale is the model's own learnable one, capped at 100.
    Under DDP every process contrasts its images with the captions of the whole global
    batch (open_clip's gathered ``local_loss``). Validation collects the image embeddings.
    """

    def __init__(
        self,
        backbone: OpenClipBackbone,
        clip: nn.Module,
        tokens: torch.Tensor,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(backbone)
        self.clip = clip
        # Not saved with the checkpoints: the captions are rebuilt from the data.
        self.register_buffer("tokens", tokens, persistent=False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.clip_loss = ClipLoss()
        #: Mean training loss of each finished epoch (kept in the checkpoints).
        self.epoch_losses: list[float] = []
        self._loss_sum, self._loss_count = 0.0, 0

    def on_fit_start(self) -> None:
        super().on_fit_start()
        world_size = self.trainer.world_size
        self.clip_loss = ClipLoss(
            local_loss=world_size > 1,
            gather_with_grad=world_size > 1,
            cache_labels=True,
            rank=self.global_rank,
            world_size=world_size,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        image_features = F.normalize(self.backbone(images), dim=-1)
        text_features = self.clip.encode_text(self.tokens[batch["index"]], normalize=True)
        logit_scale = self.clip.logit_scale.exp()
        loss = self.clip_loss(image_features, text_features, logit_scale)
        with torch.no_grad():  # of this process's pairs: each image's best caption its own?
            similarity = image_features @ text_features.T
            hits = similarity.argmax(dim=1) == torch.arange(len(images), device=images.device)
        per_epoch = {"on_step": False, "on_epoch": True, "batch_size": images.shape[0]}
        self.log("train/clip_loss", loss, prog_bar=True, **per_epoch)
        self.log("train/image_to_caption_top1", hits.float().mean(), **per_epoch)
        self.log("train/logit_scale", logit_scale.detach(), **per_epoch)
        self._loss_sum += float(loss.detach())
        self._loss_count += 1
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def on_train_epoch_end(self) -> None:
        if self._loss_count:
            self.epoch_losses.append(self._loss_sum / self._loss_count)
        self._loss_sum, self._loss_count = 0.0, 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # With the current epoch's running sum: a resumed epoch reports the same mean.
        checkpoint["clip_losses"] = {
            "epochs": list(self.epoch_losses),
            "sum": self._loss_sum,
            "count": self._loss_count,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        losses = checkpoint.get("clip_losses", {})
        self.epoch_losses = list(losses.get("epochs", []))
        self._loss_sum, self._loss_count = losses.get("sum", 0.0), losses.get("count", 0)

    def configure_optimizers(self) -> Any:
        trained = [(n, p) for n, p in self.clip.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in trained if _decays(n, p)]},
            {"params": [p for n, p in trained if not _decays(n, p)], "weight_decay": 0.0},
        ]
        optimizer = self.optimizer_factory([group for group in groups if group["params"]])
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def clip_arguments(cfg: DictConfig) -> dict[str, Any]:
    """The configured open_clip backbone's arguments, with its pretrained weights."""
    configured = {k: v for k, v in to_plain(cfg.backbone).items() if not k.startswith("_")}
    if configured.get("name") != "open_clip":
        raise ValueError(
            "pretext=clip_captions fine-tunes the image and text towers of an open_clip "
            "model: use backbone=clip (backbone.model_name=ViT-B-16 backbone.pretrained=openai);"
            f" backbone.name is {configured.get('name')!r}"
        )
    return configured


def training_captions(dataset: Any, cfg: DictConfig) -> list[str]:
    """The caption of every image of ``dataset``, or an error saying where captions come from."""
    captions = getattr(dataset, "captions", None)
    if captions is None:
        raise ValueError(
            "pretext=clip_captions learns from (image, caption) pairs, but "
            f"data.kind={cfg.data.kind} has no captions: use data=captions data.csv=FILE (a "
            "CSV with the columns path,caption) or data=rocov2 data.root=DIR"
        )
    paths: Sequence[str] = getattr(dataset, "paths", [str(i) for i in range(len(captions))])
    empty = [path for path, caption in zip(paths, captions, strict=True) if not caption.strip()]
    if empty:
        raise ValueError(
            f"{len(empty)} training images have an empty caption, e.g. {', '.join(empty[:3])}"
        )
    return list(captions)


class ClipCaptionsPretext(TrainedPretext):
    """``pretext=clip_captions``: fine-tune an open_clip model on the dataset's (image,
    caption) pairs and save its image tower as the backbone (``backbone.json`` names the
    plain open_clip backbone, so inference rebuilds it without this module)."""

    def prepare(self, cfg: DictConfig) -> None:
        """Show images at the network's own input size, mean and std, unless
        ``pretext.match_preprocessing=false``."""
        if cfg.pretext.match_preprocessing:
            match_native_preprocessing(cfg, clip_arguments(cfg), "clip_captions")

    def run(self, cfg: DictConfig, run: RunDirectory) -> StageResult:
        arguments = clip_arguments(cfg)
        train_set = dataset_split(cfg, run, training_split_key(cfg))
        captions = training_captions(train_set, cfg)
        model_name, pretrained = arguments["model_name"], arguments.get("pretrained")
        clip = create_open_clip(model_name, pretrained, arguments.get("image_size"))
        if getattr(clip, "logit_bias", None) is not None:
            raise ValueError(
                f"{model_name} is trained with a sigmoid loss (SigLIP: it has a logit bias); "
                "pretext=clip_captions trains with CLIP's softmax loss: choose a CLIP model"
            )
        self._lock(clip, cfg.pretext)
        tokenizer = open_clip.get_tokenizer(model_name, context_length=clip.context_length)
        log.info(
            "pretext=clip_captions: %s (%s) on %d image-caption pairs",
            model_name,
            f"{pretrained} weights" if pretrained else "random weights",
            len(captions),
        )
        # Saved as the spec describes it, rotation pooling included (rotation_invariance).
        backbone = with_rotation_pooling(
            OpenClipBackbone.around(clip, arguments.get("in_channels", 3)),
            arguments.get("rotation_pooling"),
        )
        module = ClipCaptionsModule(
            backbone,
            clip,
            tokenizer(captions),
            optimizer=hydra.utils.instantiate(cfg.pretext.optimizer),
            scheduler=optional_factory(cfg.pretext.get("scheduler")),
        )
        views = {"image": cfg.pretext.augmentation}
        outputs, metrics = self.train_and_save(cfg, run, train_set, backbone, module, views)
        losses = module.epoch_losses  # restored from the checkpoint when resumed
        return outputs, {
            **metrics,
            "pretrained_weights": str(pretrained),
            "caption_pairs": len(captions),
            "logit_scale": float(clip.logit_scale.detach().exp()),
            **(
                {"clip_loss_first_epoch": losses[0], "clip_loss_last_epoch": losses[-1]}
                if losses
                else {}
            ),
        }

    @staticmethod
    def _lock(clip: nn.Module, pretext: DictConfig) -> None:
        """Freeze the towers ``pretext.lock_image`` / ``lock_text`` name, but for their last
        ``unlocked_*`` layer groups (open_clip's ``--lock-image`` / ``--lock-text``)."""
        if pretext.lock_image:
            clip.lock_image_tower(unlocked_groups=pretext.unlocked_image_groups)
        if pretext.lock_text:
            clip.lock_text_tower(unlocked_layers=pretext.unlocked_text_layers)

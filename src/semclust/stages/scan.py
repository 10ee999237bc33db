"""Stage 3, SCAN: cluster heads trained so that mined neighbours agree.

Several heads are trained with the SCAN loss (summed); the head and epoch with the lowest
validation SCAN loss are kept, no labels involved. With a frozen backbone and
``scan.cached_features`` the heads learn from the mine stage's cached features (no
augmentation) and are put on the backbone afterwards.
"""

from collections.abc import Callable
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from semclust.losses import scan_loss
from semclust.models import ClusteringModel
from semclust.rundir import RunDirectory
from semclust.stages.base import CollectsValidation, ValidationResult
from semclust.stages.cluster_heads import (
    CachedFeatures,
    cached_split,
    checkpoint_metadata,
    feature_loader,
    load_neighbors,
    save_clustering_model,
    uses_cached_features,
)
from semclust.stages.common import (
    build_trainer,
    dataset_split,
    eval_loader,
    fit,
    load_backbone,
    optional_factory,
    training_loader,
)
from semclust.stages.registry import Stage, StageResult, register
from semclust.stages.scoring import ClusterEvaluation, final_scores

_EPS = 1e-8


def scan_validation_losses(
    probabilities: torch.Tensor, neighbor_indices: torch.Tensor, entropy_weight: float
) -> torch.Tensor:
    """SCAN loss of each head over the whole validation set, every (anchor, neighbour) pair.

    Args:
        probabilities: ``(N, H, K)`` cluster probabilities of every sample under each head.
        neighbor_indices: ``(N, k)`` mined neighbours within the validation set.

    Returns ``(H,)`` losses; the lowest picks the head to keep, without labels.
    """
    neighbor_probs = probabilities[neighbor_indices]  # (N, k, H, K)
    agreement = torch.einsum("nhc,nkhc->nhk", probabilities, neighbor_probs)
    consistency = -torch.log(agreement.clamp_min(_EPS)).mean(dim=(0, 2))
    mean_probs = probabilities.mean(dim=0)
    entropy = -(mean_probs * torch.log(mean_probs.clamp_min(_EPS))).sum(dim=1)
    return consistency - entropy_weight * entropy


class ScanModule(CollectsValidation):
    """Trains every cluster head of a :class:`ClusteringModel` with the SCAN loss (summed).

    With ``update_backbone=False`` the backbone stays frozen (eval mode, no gradients) and only
    the heads learn. After each validation epoch the head with the lowest SCAN loss on the
    validation neighbours becomes ``best_head``.
    """

    def __init__(
        self,
        model: ClusteringModel,
        entropy_weight: float,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        update_backbone: bool = True,
        val_neighbors: np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Plain values saved in every checkpoint so evaluate.py can rebuild the model.
        self.metadata = dict(metadata or {})
        self.model = model
        self.entropy_weight = entropy_weight
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.update_backbone = update_backbone
        self.val_neighbors = None if val_neighbors is None else torch.from_numpy(val_neighbors)
        self.best_head = 0
        if not update_backbone:
            self.model.backbone.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        if not self.update_backbone:
            self.model.backbone.eval()  # keep the frozen batch-norm statistics

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = torch.cat([batch["anchor"], batch["neighbor"]])
        with torch.set_grad_enabled(self.update_backbone):
            features = self.model.backbone(images)
        anchor_logits, neighbor_logits = self.model.cluster_heads(features).chunk(2, dim=1)
        terms = [
            scan_loss(a, n, self.entropy_weight, across_processes=True)
            for a, n in zip(anchor_logits, neighbor_logits, strict=True)
        ]
        total = torch.stack([t.total for t in terms]).sum()
        batch_size = batch["anchor"].shape[0]
        self.log_dict(
            {
                "train/scan_loss": total,
                "train/consistency": torch.stack([t.consistency for t in terms]).mean(),
                "train/entropy": torch.stack([t.entropy for t in terms]).mean(),
            },
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
            prog_bar=True,
        )
        return total

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        features = self.model.backbone(batch["image"])
        logits = self.model.cluster_heads(features).transpose(0, 1)  # (B, H, K)
        self.collect(batch["index"], features=features, logits=logits, targets=batch["target"])

    def on_validation_epoch_end(self) -> None:
        gathered = self.gathered()
        if gathered is None or self.val_neighbors is None or self.trainer.sanity_checking:
            return
        if len(self.val_neighbors) != len(gathered["logits"]):
            raise ValueError(
                f"validation neighbours cover {len(self.val_neighbors)} samples "
                f"but the validation set has {len(gathered['logits'])}; "
                "rerun the mine stage"
            )
        losses = scan_validation_losses(
            F.softmax(gathered["logits"].float(), dim=2), self.val_neighbors, self.entropy_weight
        )
        self.best_head = int(losses.argmin())
        self.log("val/lowest_loss", losses.min(), sync_dist=False)
        self.log("val/best_head", float(self.best_head), sync_dist=False)

    def validation_result(self) -> ValidationResult | None:
        gathered = self.gathered()
        if gathered is None:
            return None
        return ValidationResult(
            features=gathered["features"],
            targets=gathered["targets"],
            predictions=gathered["logits"][:, self.best_head].argmax(dim=1),
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["semclust"] = {**self.metadata, "best_head": self.best_head}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_head = int(checkpoint.get("semclust", {}).get("best_head", 0))

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("ScanModule was built for evaluation only (no optimizer)")
        parameters = (
            self.model.parameters()
            if self.update_backbone
            else self.model.cluster_heads.parameters()
        )
        return self.optimizers_for(parameters)


def run_scan(cfg: DictConfig, run: RunDirectory) -> StageResult:
    """Train the heads, keep the lowest-loss one, save the model with that head."""
    backbone, spec = load_backbone(run, "scan")
    cached = uses_cached_features(cfg.scan)
    if cached:
        train_set, val_set = cached_split(run, "train", "scan"), cached_split(run, "val", "scan")
        view = None  # the cached features as they are
        val_loader = feature_loader(cfg, val_set)
        trained_backbone: torch.nn.Module = CachedFeatures(backbone.feature_dim)
    else:
        train_set, val_set = dataset_split(cfg, run, "train"), dataset_split(cfg, run, "val")
        view = cfg.scan.augmentation
        val_loader = eval_loader(cfg, val_set)
        trained_backbone = backbone
    num_neighbors = cfg.scan.num_neighbors
    train_neighbors = load_neighbors(run, "train", "scan", len(train_set), num_neighbors)
    val_neighbors = load_neighbors(run, "val", "scan", len(val_set), num_neighbors)
    trained = ClusteringModel(trained_backbone, cfg.data.num_clusters, cfg.scan.num_heads)
    module = ScanModule(
        trained,
        entropy_weight=cfg.scan.entropy_weight,
        optimizer=hydra.utils.instantiate(cfg.scan.optimizer),
        scheduler=optional_factory(cfg.scan.get("scheduler")),
        update_backbone=cfg.scan.update_backbone,
        val_neighbors=val_neighbors,
        metadata=checkpoint_metadata(cfg, "scan", spec, cfg.scan.num_heads, cached),
    )
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, checkpoint = build_trainer(
        cfg, "scan", run, cfg.scan.epochs, [evaluation], monitor="val/lowest_loss"
    )
    train_loader = training_loader(
        cfg,
        "scan",
        train_set,
        {"anchor": view, "neighbor": view},
        cfg.scan.batch_size,
        trainer,
        neighbors=train_neighbors,
    )
    speed = fit(cfg, run, "scan", trainer, module, train_loader, val_loader)
    # Keep the epoch and head with the lowest validation SCAN loss: no labels involved.
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    module.on_load_checkpoint(best)
    head_losses = {
        "best_head": module.best_head,
        "best_val_scan_loss": float(checkpoint.best_model_score),
        "cached_features": cached,
    }
    trained.cluster_heads.keep(module.best_head)
    module.best_head = 0
    scores = final_scores(cfg, module, val_loader)
    model = ClusteringModel(backbone, cfg.data.num_clusters, 1)
    model.cluster_heads = trained.cluster_heads
    outputs = save_clustering_model(
        model, run, "scan", spec, cfg, head_index=head_losses["best_head"]
    )
    return outputs, {**scores, **head_losses, "training_speed": speed}


register(
    Stage(
        "scan",
        order=30,
        run=run_scan,
        partitions=True,
        table_rows={"scan": "SCAN"},
        seed_offset=2,
        consumes=("pretext", "mine"),
    )
)

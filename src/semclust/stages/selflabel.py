"""Stage 4, self-labeling: fine-tune on the model's own confident predictions.

SCAN's model is kept instead when too few images are confidently labeled, or when the
self-labeled clusters are worse by label-free measures (clusters left empty, or a silhouette
that dropped). With a frozen backbone and
``selflabel.cached_features`` the head is refined on the cached features, where the weak and
the strong view are the same vector.
"""

from collections.abc import Callable
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from semclust.inference.spec import clustering_model_from_spec
from semclust.losses import confidence_cross_entropy
from semclust.models import ClusteringModel
from semclust.rundir import RunDirectory, load_weights, model_spec, model_weights, read_json
from semclust.stages.base import CollectsValidation, ValidationResult
from semclust.stages.cluster_heads import (
    CachedFeatures,
    cached_split,
    checkpoint_metadata,
    feature_loader,
    save_clustering_model,
    uses_cached_features,
)
from semclust.stages.common import (
    build_trainer,
    dataset_split,
    eval_loader,
    fit,
    optional_factory,
    training_loader,
)
from semclust.stages.registry import Stage, StageResult, StageSkipped, register
from semclust.stages.scoring import ClusterEvaluation, final_scores


class SelfLabelModule(CollectsValidation):
    """Cross-entropy on strong views against confident pseudo-labels of weak views.

    ``model`` must have a single head (SCAN's chosen one). With ``ema_decay`` an exponential
    moving average of the weights is kept, validated and exported instead of the raw weights.
    With ``update_backbone=False`` only the head learns; the backbone stays in eval mode.
    """

    def __init__(
        self,
        model: ClusteringModel,
        threshold: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        class_balancing: bool = True,
        ema_decay: float | None = None,
        metadata: dict[str, Any] | None = None,
        update_backbone: bool = True,
    ) -> None:
        super().__init__()
        # Plain values saved in every checkpoint so evaluate.py can rebuild the model.
        self.metadata = dict(metadata or {})
        if len(model.cluster_heads.heads) != 1:
            raise ValueError("self-labeling refines one head; keep SCAN's best head first")
        self.model = model
        self.threshold = threshold
        self.class_balancing = class_balancing
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.update_backbone = update_backbone
        if not update_backbone:
            self.model.backbone.requires_grad_(False)
        self.ema = None
        if ema_decay:
            self.ema = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )

    @property
    def final_model(self) -> ClusteringModel:
        """The weights to evaluate and export: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            weak_logits = self.model(batch["weak"])[0]
        strong_logits = self.model(batch["strong"])[0]
        loss, confident = confidence_cross_entropy(
            weak_logits,
            strong_logits,
            self.threshold,
            self.class_balancing,
            across_processes=True,  # the global batch's confident set, as one process sees it
        )
        self.log_dict(
            {"train/selflabel_loss": loss, "train/confident_fraction": confident.float().mean()},
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["weak"].shape[0],
        )
        return loss

    def on_train_epoch_start(self) -> None:
        if not self.update_backbone:
            self.model.backbone.eval()  # keep the frozen batch-norm statistics

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        model = self.final_model
        features = model.backbone(batch["image"])
        logits = model.cluster_heads(features)[0]
        self.collect(batch["index"], features=features, logits=logits, targets=batch["target"])

    def on_validation_epoch_end(self) -> None:
        gathered = self.gathered()
        if gathered is None or self.trainer.sanity_checking:
            return
        max_prob = F.softmax(gathered["logits"].float(), dim=1).max(dim=1).values
        self.log(
            "val/confident_fraction", (max_prob > self.threshold).float().mean(), sync_dist=False
        )

    def validation_result(self) -> ValidationResult | None:
        gathered = self.gathered()
        if gathered is None:
            return None
        return ValidationResult(
            features=gathered["features"],
            targets=gathered["targets"],
            predictions=gathered["logits"].argmax(dim=1),
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["semclust"] = {**self.metadata, "best_head": 0, "ema": self.ema is not None}

    def configure_optimizers(self) -> Any:
        model = self.model if self.update_backbone else self.model.cluster_heads
        return self.optimizers_for(model.parameters())


def run_selflabel(cfg: DictConfig, run: RunDirectory) -> StageResult:
    """Refine SCAN's model on its confident predictions; keep SCAN's if that cannot help."""
    spec = read_json(run.require(model_spec("scan"), "selflabel"))
    scan_model = clustering_model_from_spec(spec)
    load_weights(scan_model, run.require(model_weights("scan"), "selflabel"))
    cached = uses_cached_features(cfg.selflabel)
    if cached:
        train_set = cached_split(run, "train", "selflabel")
        val_set = cached_split(run, "val", "selflabel")
        model = ClusteringModel(
            CachedFeatures(scan_model.backbone.feature_dim), spec["num_clusters"], 1
        )
        model.cluster_heads = scan_model.cluster_heads
        views = {"weak": None, "strong": None}  # the cached features as they are
        train_eval_loader, val_loader = feature_loader(cfg, train_set), feature_loader(cfg, val_set)
    else:
        train_set, val_set = dataset_split(cfg, run, "train"), dataset_split(cfg, run, "val")
        model = scan_model
        views = {"weak": "weak", "strong": "strong"}
        train_eval_loader, val_loader = eval_loader(cfg, train_set), eval_loader(cfg, val_set)

    confident = _confident_fraction(cfg, model, train_eval_loader)
    if confident < cfg.selflabel.min_confident_fraction:
        raise StageSkipped(
            f"only {confident:.1%} of the training images have a SCAN confidence above "
            f"{cfg.selflabel.threshold} (need {cfg.selflabel.min_confident_fraction:.1%}); "
            "self-labeling skipped and the SCAN result kept. Lower selflabel.threshold or "
            "train SCAN longer."
        )

    module = SelfLabelModule(
        model,
        threshold=cfg.selflabel.threshold,
        optimizer=hydra.utils.instantiate(cfg.selflabel.optimizer),
        scheduler=optional_factory(cfg.selflabel.get("scheduler")),
        class_balancing=cfg.selflabel.class_balancing,
        ema_decay=cfg.selflabel.ema_decay,
        metadata=checkpoint_metadata(cfg, "selflabel", spec["backbone"], 1, cached),
        update_backbone=cfg.selflabel.update_backbone,
    )
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, _ = build_trainer(
        cfg,
        "selflabel",
        run,
        cfg.selflabel.epochs,
        [evaluation],
        check_val_every_n_epoch=cfg.selflabel.val_every_n_epochs,
    )
    train_loader = training_loader(
        cfg, "selflabel", train_set, views, cfg.selflabel.batch_size, trainer
    )
    speed = fit(cfg, run, "selflabel", trainer, module, train_loader, val_loader)
    scores = final_scores(cfg, module, val_loader)
    scan_scores = run.read_manifest()["stages"].get("scan", {}).get("metrics", {})
    worse = worse_than_scan(cfg.selflabel, scan_scores, scores)
    if worse:
        raise StageSkipped(f"{worse}; the SCAN result is kept.")
    final = module.final_model
    if cached:
        scan_model.cluster_heads = final.cluster_heads
        final = scan_model
    outputs = save_clustering_model(final, run, "selflabel", spec["backbone"], cfg, head_index=0)
    return outputs, {
        **scores,
        "train_confident_fraction_before": confident,
        "cached_features": cached,
        "training_speed": speed,
    }


def worse_than_scan(
    settings: DictConfig, scan_scores: dict[str, Any], scores: dict[str, Any]
) -> str | None:
    """Why the self-labeled clusters, judged without labels, are worse than SCAN's; else None.

    Two label-free checks on the validation images: fewer clusters used (a collapse), and a
    silhouette (each model's clusters in its own features) lower by more than
    ``settings.max_silhouette_drop``. The second is how self-labeling fails when SCAN's
    confident predictions are too often wrong to learn from: it drifts, clusters grow or
    shrink, and they overlap more (CIFAR-10 on the small CNN, docs/BENCHMARKS.md).
    """
    scan_clusters = scan_scores.get("clusters_used")
    kept_fraction = settings.min_clusters_kept_fraction
    if scan_clusters is not None and scores["clusters_used"] < kept_fraction * scan_clusters:
        return (
            f"self-labeling collapsed the clusters from {scan_clusters} to "
            f"{scores['clusters_used']} used"
        )
    max_drop = settings.get("max_silhouette_drop")
    before, after = scan_scores.get("silhouette"), scores.get("silhouette")
    if None in (max_drop, before, after) or after >= before - max_drop:
        return None
    return (
        f"self-labeling lowered the silhouette of the validation clusters from {before:.3f} "
        f"to {after:.3f}, by more than selflabel.max_silhouette_drop={max_drop}"
    )


def _confident_fraction(cfg: DictConfig, model: ClusteringModel, loader: Any) -> float:
    """Share of the training images the SCAN model already labels confidently."""
    extractor = SelfLabelModule(model, cfg.selflabel.threshold, optimizer=None)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.validate(extractor, loader, verbose=False)
    logits = extractor.gathered()["logits"].float()
    return float((logits.softmax(dim=1).max(dim=1).values > cfg.selflabel.threshold).float().mean())


register(
    Stage(
        "selflabel",
        order=40,
        run=run_selflabel,
        partitions=True,
        table_rows={"selflabel": "SCAN + self-labeling"},
        seed_offset=3,
        consumes=("pretext", "mine", "scan"),
    )
)

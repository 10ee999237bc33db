"""Runs the stages in order, passes artifacts between them and writes the manifest.

``train(cfg)`` is what ``train.py`` calls; tests call it with a composed config.
"""

import csv
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from semclust.artifacts import (
    BACKBONE_SPEC,
    BACKBONE_WEIGHTS,
    SCAN_SPEC,
    SCAN_WEIGHTS,
    STAGES,
    TRAIN_NEIGHBORS,
    VAL_NEIGHBORS,
    RunDirectory,
    load_weights,
    read_json,
    save_weights,
    write_json,
)
from semclust.callbacks import ClusterEvaluation, evaluate_clusters, kmeans_predictions
from semclust.data import MultiViewDataset, NeighborsDataset, build_dataset, make_loader
from semclust.models import ClusteringModel
from semclust.stages.common import (
    backbone_from_spec,
    backbone_spec,
    build_trainer,
    clear_checkpoints,
    preprocessing_spec,
    resume_checkpoint,
    to_plain,
    view_transforms,
)
from semclust.stages.mine import FeatureExtractor, mine_neighbors, neighbor_accuracy
from semclust.stages.pretext import SimCLRModule
from semclust.stages.scan import ScanModule
from semclust.stages.selflabel import SelfLabelModule

log = logging.getLogger(__name__)

HEADLINE = ("acc", "nmi", "ari")
LABEL_FREE = ("silhouette", "calinski_harabasz", "davies_bouldin")


class StageSkipped(Exception):
    """A stage decided not to change the result; the message says why."""


def _optional(factory_cfg: Any) -> Any:
    """Instantiate a config entry that may be null (e.g. no learning-rate schedule)."""
    return None if factory_cfg is None else hydra.utils.instantiate(factory_cfg)


def _loader(cfg: DictConfig, dataset: Any, shuffle: bool, batch_size: int) -> Any:
    return make_loader(
        dataset, batch_size, shuffle=shuffle, num_workers=cfg.data.num_workers, drop_last=shuffle
    )


def _dataset(cfg: DictConfig, run: RunDirectory, split_key: str) -> Any:
    """Build a split, check that it can be clustered, and list any files it skipped."""
    dataset = build_dataset(cfg.data, split_key)
    needed = max(cfg.data.num_clusters, cfg.mine.num_neighbors + 1)
    if len(dataset) < needed:
        raise ValueError(
            f"the {split_key} split ({cfg.data[f'{split_key}_split']!r}) holds {len(dataset)} "
            f"images, but {cfg.data.num_clusters} clusters with {cfg.mine.num_neighbors} "
            f"neighbours each need at least {needed}"
        )
    skipped = getattr(dataset, "skipped", None)
    if skipped and run.is_writer():
        with open(run.root / f"skipped_files_{split_key}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped)
    return dataset


def _pretext_split_key(cfg: DictConfig) -> str:
    """STL-10 style: the pretext stage may learn from a larger (unlabeled) split."""
    return "pretext" if cfg.data.get("pretext_split") else "train"


def _eval_loader(cfg: DictConfig, dataset: Any) -> Any:
    return _loader(
        cfg,
        MultiViewDataset(dataset, {"image": view_transforms(cfg.data).eval}),
        shuffle=False,
        batch_size=cfg.data.eval_batch_size,
    )


def _fit(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    train_loader: Any,
    val_loader: Any,
    stage_dir: Path,
    cfg: DictConfig,
) -> None:
    trainer.fit(
        module,
        train_loader,
        val_loader,
        ckpt_path=resume_checkpoint(stage_dir, cfg.resume),
        weights_only=True,
    )


def _final_scores(cfg: DictConfig, module: pl.LightningModule, val_loader: Any) -> dict:
    """Score ``module`` once more on the validation set through the evaluation callback."""
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[evaluation]
    )
    trainer.validate(module, val_loader, verbose=False)
    return evaluation.latest


def _load_backbone(run: RunDirectory, needed_by: str) -> tuple[torch.nn.Module, dict]:
    spec = read_json(run.require(BACKBONE_SPEC, needed_by))
    backbone = backbone_from_spec(spec)
    load_weights(backbone, run.require(BACKBONE_WEIGHTS, needed_by))
    return backbone, spec


def _load_neighbors(
    run: RunDirectory,
    artifact: tuple[str, str],
    needed_by: str,
    dataset_size: int,
    num_neighbors: int,
) -> np.ndarray:
    path = run.require(artifact, needed_by)
    neighbors = np.load(path)
    if len(neighbors) != dataset_size:
        raise ValueError(
            f"{path} holds neighbours of {len(neighbors)} images but the dataset "
            f"now has {dataset_size}; rerun the mine stage"
        )
    if num_neighbors > neighbors.shape[1]:
        raise ValueError(
            f"{needed_by}.num_neighbors={num_neighbors} but only "
            f"{neighbors.shape[1]} were mined; raise mine.num_neighbors and rerun "
            "the mine stage"
        )
    return neighbors[:, :num_neighbors]


def _save_clustering_model(
    model: ClusteringModel, stage_dir: Path, backbone: dict, cfg: DictConfig, **extra: Any
) -> dict[str, Path]:
    """Export weights (safetensors) and the JSON that rebuilds and preprocesses for them."""
    spec = {
        "backbone": backbone,
        "num_clusters": cfg.data.num_clusters,
        "num_heads": len(model.cluster_heads.heads),
        "preprocessing": preprocessing_spec(cfg.data),
        **extra,
    }
    weights, spec_path = stage_dir / "model.safetensors", stage_dir / "model.json"
    save_weights(model, weights, spec, spec_path)
    return {"weights": weights, "spec": spec_path}


def _checkpoint_metadata(cfg: DictConfig, stage: str, backbone: dict, num_heads: int) -> dict:
    return {
        "stage": stage,
        "backbone": backbone,
        "num_clusters": cfg.data.num_clusters,
        "num_heads": num_heads,
        "data": to_plain(cfg.data),
    }


# stages -----------------------------------------------------------------------------------


def run_pretext(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """SimCLR on the training split; saves the backbone."""
    stage_dir = run.stage_dir("pretext")
    views = view_transforms(cfg.data)
    train_set = _dataset(cfg, run, _pretext_split_key(cfg))
    val_set = _dataset(cfg, run, "val")
    pairs = MultiViewDataset(train_set, {"view_a": views.pretext, "view_b": views.pretext})
    backbone = hydra.utils.instantiate(cfg.backbone)
    module = SimCLRModule(
        backbone,
        temperature=cfg.pretext.temperature,
        optimizer=hydra.utils.instantiate(cfg.pretext.optimizer),
        scheduler=_optional(cfg.pretext.get("scheduler")),
        projection_hidden_dim=cfg.pretext.projection_hidden_dim,
        projection_dim=cfg.pretext.projection_dim,
    )
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, _ = build_trainer(
        cfg,
        "pretext",
        stage_dir,
        cfg.pretext.epochs,
        [evaluation],
        check_val_every_n_epoch=cfg.pretext.val_every_n_epochs,
    )
    _fit(
        trainer,
        module,
        _loader(cfg, pairs, True, cfg.pretext.batch_size),
        _eval_loader(cfg, val_set),
        stage_dir,
        cfg,
    )
    outputs = {"backbone": run.path(BACKBONE_WEIGHTS), "backbone_spec": run.path(BACKBONE_SPEC)}
    save_weights(
        backbone, outputs["backbone"], backbone_spec(cfg.backbone), outputs["backbone_spec"]
    )
    return outputs, {f"kmeans_{k}": v for k, v in evaluation.latest.items() if k in HEADLINE}


def run_mine(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Embed train and val sets, mine neighbours, and score k-means on the features."""
    stage_dir = run.stage_dir("mine")
    backbone, _ = _load_backbone(run, "mine")
    extractor = FeatureExtractor(backbone)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    outputs: dict[str, Path] = {}
    metrics: dict[str, Any] = {}
    embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split_key in ("train", "val"):
        if split_key == "val" and cfg.data.val_split == cfg.data.train_split:
            embedded["val"] = embedded["train"]  # same images: no need to embed them twice
        else:
            trainer.validate(
                extractor, _eval_loader(cfg, _dataset(cfg, run, split_key)), verbose=False
            )
            result = extractor.validation_result()
            embedded[split_key] = (result.features.numpy(), result.targets.numpy())
        features, targets = embedded[split_key]
        neighbors = mine_neighbors(features, cfg.mine.num_neighbors, use_gpu=cfg.mine.use_gpu)
        if run.is_writer():
            for name, array in (
                ("features", features),
                ("targets", targets),
                ("neighbors", neighbors),
            ):
                outputs[f"{split_key}_{name}"] = stage_dir / f"{split_key}_{name}.npy"
                np.save(outputs[f"{split_key}_{name}"], array)
        metrics[f"{split_key}_images"] = len(features)
        if (targets >= 0).all():
            metrics[f"{split_key}_neighbor_accuracy"] = neighbor_accuracy(neighbors, targets)
    # The k-means baseline: fit on the pretext features of the validation images.
    val_features, val_targets = embedded["val"]
    predictions = kmeans_predictions(val_features, cfg.data.num_clusters, cfg.seed)
    scores = evaluate_clusters(val_features, predictions, val_targets)
    metrics["kmeans"] = {k: v for k, v in scores.items() if k != "cohesion"}
    return outputs, metrics


def run_scan(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Train several cluster heads with the SCAN loss; keep the lowest-loss head."""
    stage_dir = run.stage_dir("scan")
    backbone, spec = _load_backbone(run, "scan")
    train_set, val_set = _dataset(cfg, run, "train"), _dataset(cfg, run, "val")
    train_neighbors = _load_neighbors(
        run, TRAIN_NEIGHBORS, "scan", len(train_set), cfg.scan.num_neighbors
    )
    val_neighbors = _load_neighbors(
        run, VAL_NEIGHBORS, "scan", len(val_set), cfg.scan.num_neighbors
    )
    model = ClusteringModel(backbone, cfg.data.num_clusters, cfg.scan.num_heads)
    module = ScanModule(
        model,
        entropy_weight=cfg.scan.entropy_weight,
        optimizer=hydra.utils.instantiate(cfg.scan.optimizer),
        scheduler=_optional(cfg.scan.get("scheduler")),
        update_backbone=cfg.scan.update_backbone,
        val_neighbors=val_neighbors,
        metadata=_checkpoint_metadata(cfg, "scan", spec, cfg.scan.num_heads),
    )
    transform = view_transforms(cfg.data).get(cfg.scan.augmentation)
    pairs = NeighborsDataset(train_set, train_neighbors, transform)
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, checkpoint = build_trainer(
        cfg, "scan", stage_dir, cfg.scan.epochs, [evaluation], monitor="val/lowest_loss"
    )
    val_loader = _eval_loader(cfg, val_set)
    _fit(
        trainer, module, _loader(cfg, pairs, True, cfg.scan.batch_size), val_loader, stage_dir, cfg
    )
    # Keep the epoch and head with the lowest validation SCAN loss: no labels involved.
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(best["state_dict"])
    module.on_load_checkpoint(best)
    head_losses = {
        "best_head": module.best_head,
        "best_val_scan_loss": float(checkpoint.best_model_score),
    }
    model.cluster_heads.keep(module.best_head)
    module.best_head = 0
    scores = _final_scores(cfg, module, val_loader)
    outputs = _save_clustering_model(
        model, stage_dir, spec, cfg, stage="scan", head_index=head_losses["best_head"]
    )
    return outputs, {**scores, **head_losses}


def _confident_fraction(cfg: DictConfig, model: ClusteringModel, dataset: Any) -> float:
    """Share of the training images the SCAN model already labels confidently."""
    extractor = SelfLabelModule(model, cfg.selflabel.threshold, optimizer=None)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.validate(extractor, _eval_loader(cfg, dataset), verbose=False)
    logits = extractor.gathered()["logits"].float()
    return float((logits.softmax(dim=1).max(dim=1).values > cfg.selflabel.threshold).float().mean())


def run_selflabel(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Refine SCAN's model on its confident predictions; keep SCAN's if that cannot help."""
    stage_dir = run.stage_dir("selflabel")
    spec = read_json(run.require(SCAN_SPEC, "selflabel"))
    model = ClusteringModel(backbone_from_spec(spec["backbone"]), spec["num_clusters"], 1)
    load_weights(model, run.require(SCAN_WEIGHTS, "selflabel"))
    train_set, val_set = _dataset(cfg, run, "train"), _dataset(cfg, run, "val")

    confident = _confident_fraction(cfg, model, train_set)
    if confident < cfg.selflabel.min_confident_fraction:
        raise StageSkipped(
            f"only {confident:.1%} of the training images have a SCAN confidence above "
            f"{cfg.selflabel.threshold} (need {cfg.selflabel.min_confident_fraction:.1%}); "
            "self-labeling skipped and the SCAN result kept. Lower selflabel.threshold or "
            "train SCAN longer."
        )

    views = view_transforms(cfg.data)
    module = SelfLabelModule(
        model,
        threshold=cfg.selflabel.threshold,
        optimizer=hydra.utils.instantiate(cfg.selflabel.optimizer),
        scheduler=_optional(cfg.selflabel.get("scheduler")),
        class_balancing=cfg.selflabel.class_balancing,
        ema_decay=cfg.selflabel.ema_decay,
        metadata=_checkpoint_metadata(cfg, "selflabel", spec["backbone"], 1),
    )
    pairs = MultiViewDataset(train_set, {"weak": views.weak, "strong": views.strong})
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, _ = build_trainer(
        cfg,
        "selflabel",
        stage_dir,
        cfg.selflabel.epochs,
        [evaluation],
        check_val_every_n_epoch=cfg.selflabel.val_every_n_epochs,
    )
    val_loader = _eval_loader(cfg, val_set)
    _fit(
        trainer,
        module,
        _loader(cfg, pairs, True, cfg.selflabel.batch_size),
        val_loader,
        stage_dir,
        cfg,
    )
    scores = _final_scores(cfg, module, val_loader)
    scan_clusters = (
        run.read_manifest()["stages"].get("scan", {}).get("metrics", {}).get("clusters_used")
    )
    kept_fraction = cfg.selflabel.min_clusters_kept_fraction
    if scan_clusters is not None and scores["clusters_used"] < kept_fraction * scan_clusters:
        raise StageSkipped(
            f"self-labeling collapsed the clusters from {scan_clusters} to "
            f"{scores['clusters_used']} used; the SCAN result is kept."
        )
    outputs = _save_clustering_model(
        module.final_model, stage_dir, spec["backbone"], cfg, stage="selflabel", head_index=0
    )
    return outputs, {**scores, "train_confident_fraction_before": confident}


RUNNERS: dict[str, Callable[[DictConfig, RunDirectory], tuple[dict, dict]]] = {
    "pretext": run_pretext,
    "mine": run_mine,
    "scan": run_scan,
    "selflabel": run_selflabel,
}


# the pipeline -----------------------------------------------------------------------------


def _wait_for_all_processes() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def quiet_lightning() -> None:
    """Keep the console to what a user acts on."""
    # Lightning's per-trainer banners (GPU/TPU availability, cloud-logging tips) repeat for
    # every stage; warnings and errors still show.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    # Lightning's own use of a torch API deprecated in torch 2.10+; nothing of ours.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Small datasets end up with few batches per epoch; we log per epoch anyway.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured stages in order and return the run's ``metrics.json`` content."""
    quiet_lightning()
    requested = list(cfg.stages)
    unknown = [stage for stage in requested if stage not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {list(STAGES)}")
    run = RunDirectory(cfg.paths.run_dir)
    log.info("run directory: %s", run.root.resolve())
    for stage in (s for s in STAGES if s in requested):
        stage_dir = run.stage_dir(stage)
        if run.stage_status(stage) in ("completed", "skipped"):
            clear_checkpoints(stage_dir)  # a finished stage asked for again starts afresh
        stage_config = {
            "data": to_plain(cfg.data),
            "backbone": to_plain(cfg.backbone),
            stage: to_plain(cfg[stage]),
            "seed": cfg.seed,
        }
        run.record_stage(stage, "running", stage_config)
        pl.seed_everything(cfg.seed + STAGES.index(stage), workers=True, verbose=False)
        started = time.perf_counter()
        try:
            outputs, metrics = RUNNERS[stage](cfg, run)
        except StageSkipped as reason:
            log.warning("%s: %s", stage, reason)
            run.record_stage(
                stage,
                "skipped",
                stage_config,
                note=str(reason),
                wall_time_s=time.perf_counter() - started,
            )
            continue
        except BaseException as error:
            run.record_stage(
                stage,
                "failed",
                stage_config,
                note=f"{type(error).__name__}: {error}",
                wall_time_s=time.perf_counter() - started,
            )
            raise
        run.record_stage(
            stage,
            "completed",
            stage_config,
            outputs,
            metrics,
            wall_time_s=time.perf_counter() - started,
        )
        _wait_for_all_processes()  # later stages on every rank read what rank zero wrote
    summary = summarize(run)
    write_json(run.metrics_path, summary)
    if cfg.get("report") and summary["final_stage"] and run.is_writer():
        from semclust.evaluation import write_run_report  # UMAP and Grad-CAM load lazily

        summary["report"] = str(write_run_report(run.root))
        log.info("report: %s", summary["report"])
    print(format_table(summary))
    return summary


def summarize(run: RunDirectory) -> dict[str, Any]:
    """Top-level ACC/NMI/ARI of the last completed clustering stage, per-stage beside them.

    ``stages`` holds every recorded stage's status and scalar metrics, plus a ``kmeans`` row:
    k-means on the pretext features of the validation images, measured by the mine stage.
    """
    recorded = run.read_manifest()["stages"]
    summary: dict[str, Any] = {"run_dir": str(run.root), "final_stage": None, "stages": {}}
    for stage in STAGES:
        entry = recorded.get(stage)
        if entry is None:
            continue
        metrics = {k: v for k, v in entry["metrics"].items() if not isinstance(v, dict)}
        summary["stages"][stage] = {"status": entry["status"], **metrics}
        if stage == "mine" and "kmeans" in entry["metrics"]:
            summary["stages"]["kmeans"] = entry["metrics"]["kmeans"]
        if stage in ("scan", "selflabel") and entry["status"] == "completed":
            summary["final_stage"] = stage
    if summary["final_stage"]:
        final = summary["stages"][summary["final_stage"]]
        summary.update({key: final[key] for key in HEADLINE + LABEL_FREE if key in final})
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """The closing table: k-means on pretext features, SCAN, self-labeling.

    ACC/NMI/ARI where the data has labels; otherwise the label-free silhouette,
    Calinski-Harabasz and Davies-Bouldin scores.
    """
    names = {
        "kmeans": "k-means (pretext features)",
        "scan": "SCAN",
        "selflabel": "SCAN + self-labeling",
    }
    entries = {key: summary["stages"].get(key) for key in names}
    labeled = any(entry and "acc" in entry for entry in entries.values())
    columns = (
        dict(zip(HEADLINE, ("ACC", "NMI", "ARI"), strict=True))
        if labeled
        else dict(zip(LABEL_FREE, ("silhouette", "CH", "DB"), strict=True))
    )
    rows = [f"{'method':<28}" + "".join(f"{title:>12}" for title in columns.values())]
    for key, name in names.items():
        entry = entries[key]
        if entry is None:
            continue
        if entry.get("status", "completed") != "completed":
            rows.append(f"{name:<28}{entry['status']:>36}")
            continue
        cells = [f"{entry[k]:>12.4f}" if k in entry else f"{'n/a':>12}" for k in columns]
        rows.append(f"{name:<28}{''.join(cells)}")
    rows.append(f"final stage: {summary['final_stage']}   run: {summary['run_dir']}")
    return "\n".join(rows)

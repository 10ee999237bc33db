"""Runs the stages in order, passes artifacts between them and writes the manifest.

``train(cfg)`` is what ``train.py`` calls; tests call it with a composed config.
"""

import csv
import hashlib
import json
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
    TRAIN_FEATURES,
    TRAIN_NEIGHBORS,
    TRAIN_TARGETS,
    VAL_FEATURES,
    VAL_NEIGHBORS,
    VAL_TARGETS,
    MissingArtifactError,
    RunDirectory,
    load_weights,
    read_json,
    save_weights,
    write_json,
)
from semclust.callbacks import ClusterEvaluation, evaluate_clusters, kmeans_predictions
from semclust.data import (
    FeatureDataset,
    MultiViewDataset,
    NeighborsDataset,
    build_dataset,
    make_loader,
)
from semclust.losses.reconstruction import PerceptualLoss, ReconstructionLoss
from semclust.models import ClusteringModel
from semclust.models.autoencoder import ConvDecoder
from semclust.models.backbones import build_backbone, native_preprocessing
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
from semclust.stages.pretext import AutoencoderModule, SimCLRModule
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
    needed = max(_known_num_clusters(cfg) or 2, cfg.mine.num_neighbors + 1)
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


def _checkpoint_metadata(
    cfg: DictConfig, stage: str, backbone: dict, num_heads: int, cached_features: bool
) -> dict:
    return {
        "stage": stage,
        "cached_features": cached_features,
        "backbone": backbone,
        "num_clusters": cfg.data.num_clusters,
        "num_heads": num_heads,
        "data": to_plain(cfg.data),
    }


# stages -----------------------------------------------------------------------------------


def run_pretext(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Learn the backbone (SimCLR or an autoencoder), or take a pretrained one; save it."""
    if cfg.pretext.name == "pretrained":
        return _take_pretrained(cfg, run)
    builders = {"simclr": _simclr_training, "autoencoder": _autoencoder_training}
    if cfg.pretext.name not in builders:
        raise ValueError(
            f"unknown pretext {cfg.pretext.name!r}; choose simclr, autoencoder or pretrained"
        )
    stage_dir = run.stage_dir("pretext")
    train_set = _dataset(cfg, run, _pretext_split_key(cfg))
    val_set = _dataset(cfg, run, "val")
    backbone = hydra.utils.instantiate(cfg.backbone)
    module, train_views = builders[cfg.pretext.name](cfg, backbone)
    evaluation = ClusterEvaluation(_known_num_clusters(cfg), cfg.seed)
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
        _loader(cfg, MultiViewDataset(train_set, train_views), True, cfg.pretext.batch_size),
        _eval_loader(cfg, val_set),
        stage_dir,
        cfg,
    )
    outputs = {"backbone": run.path(BACKBONE_WEIGHTS), "backbone_spec": run.path(BACKBONE_SPEC)}
    save_weights(
        backbone, outputs["backbone"], backbone_spec(cfg.backbone), outputs["backbone_spec"]
    )
    return outputs, {f"kmeans_{k}": v for k, v in evaluation.latest.items() if k in HEADLINE}


def _simclr_training(cfg: DictConfig, backbone: torch.nn.Module) -> tuple[Any, dict]:
    """SimCLR's module and its two random views per image."""
    module = SimCLRModule(
        backbone,
        temperature=cfg.pretext.temperature,
        optimizer=hydra.utils.instantiate(cfg.pretext.optimizer),
        scheduler=_optional(cfg.pretext.get("scheduler")),
        projection_hidden_dim=cfg.pretext.projection_hidden_dim,
        projection_dim=cfg.pretext.projection_dim,
    )
    views = view_transforms(cfg.data)
    return module, {"view_a": views.pretext, "view_b": views.pretext}


def _autoencoder_training(cfg: DictConfig, backbone: torch.nn.Module) -> tuple[Any, dict]:
    """The autoencoder's module (backbone as encoder) and the one view it reconstructs."""
    pretext = cfg.pretext
    perceptual = None
    if pretext.loss == "perceptual":
        perceptual = PerceptualLoss(
            cfg.data.mean,
            cfg.data.std,
            network=pretext.perceptual.network,
            layers=list(pretext.perceptual.layers),
            weights=pretext.perceptual.weights,
        )
    decoder = ConvDecoder(
        backbone.feature_dim,
        cfg.data.image_size,
        cfg.data.channels,
        width=pretext.decoder.width,
        upsamplings=pretext.decoder.upsamplings,
    )
    module = AutoencoderModule(
        backbone,
        decoder,
        ReconstructionLoss(pretext.loss, perceptual, pretext.perceptual.pixel_weight),
        optimizer=hydra.utils.instantiate(pretext.optimizer),
        scheduler=_optional(pretext.get("scheduler")),
    )
    return module, {"image": view_transforms(cfg.data).get(pretext.augmentation)}


def _take_pretrained(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """pretext=pretrained: build the configured network with its weights and save it as the
    run's backbone; nothing is trained."""
    spec = pretrained_backbone_arguments(cfg)
    started = time.perf_counter()
    backbone = build_backbone(**spec)
    outputs = {"backbone": run.path(BACKBONE_WEIGHTS), "backbone_spec": run.path(BACKBONE_SPEC)}
    save_weights(backbone, outputs["backbone"], backbone_spec(spec), outputs["backbone_spec"])
    parameters = sum(p.numel() for p in backbone.parameters())
    return outputs, {
        "pretrained_weights": str(spec.get("pretrained") or spec.get("weights")),
        "feature_dim": int(backbone.feature_dim),
        "parameters": int(parameters),
        "load_time_s": round(time.perf_counter() - started, 2),
    }


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


def run_mine(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Embed train and val sets, mine neighbours, and score k-means on the features.

    Features are cached per split under a key of the backbone weights and the data config,
    so running the stage again (other ``num_neighbors``, say) reuses them. With
    ``data.num_clusters=auto`` the number of clusters is chosen here, on the train features.
    """
    stage_dir = run.stage_dir("mine")
    backbone, _ = _load_backbone(run, "mine")
    extractor = FeatureExtractor(backbone)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    keys_path = stage_dir / "features_key.json"
    old_keys = read_json(keys_path) if keys_path.is_file() else {}
    weights_digest = _file_digest(run.path(BACKBONE_WEIGHTS))
    new_keys: dict[str, str] = {}
    outputs: dict[str, Path] = {}
    metrics: dict[str, Any] = {"reused_cached_features": []}
    embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split_key in ("train", "val"):
        if split_key == "val" and cfg.data.val_split == cfg.data.train_split:
            embedded["val"] = embedded["train"]  # same images: no need to embed them twice
            new_keys["val"] = new_keys["train"]
        else:
            dataset = _dataset(cfg, run, split_key)
            new_keys[split_key] = _features_key(weights_digest, cfg, split_key, len(dataset))
            unchanged = old_keys.get(split_key) == new_keys[split_key]
            cached = _cached_features(stage_dir, split_key) if unchanged else None
            if cached is not None:
                embedded[split_key] = cached
                metrics["reused_cached_features"].append(split_key)
                log.info("mine: reusing the cached %s features", split_key)
            else:
                trainer.validate(extractor, _eval_loader(cfg, dataset), verbose=False)
                result = extractor.validation_result()
                embedded[split_key] = (result.features.numpy(), result.targets.numpy())
        features, targets = embedded[split_key]
        neighbors = mine_neighbors(features, cfg.mine.num_neighbors, use_gpu=cfg.mine.use_gpu)
        for name, array in (
            ("features", features),
            ("targets", targets),
            ("neighbors", neighbors),
        ):
            outputs[f"{split_key}_{name}"] = stage_dir / f"{split_key}_{name}.npy"
            reused = name != "neighbors" and split_key in metrics["reused_cached_features"]
            if run.is_writer() and not reused:  # cached features are already on disk
                np.save(outputs[f"{split_key}_{name}"], array)
        metrics[f"{split_key}_images"] = len(features)
        if (targets >= 0).all():
            metrics[f"{split_key}_neighbor_accuracy"] = neighbor_accuracy(neighbors, targets)
    write_json(keys_path, new_keys)
    if _known_num_clusters(cfg) is None:
        metrics["num_clusters"] = choose_num_clusters(
            cfg, run, embedded["train"][0], "pretext features of the train split"
        )
    # The k-means baseline: fit on the pretext features of the validation images.
    val_features, val_targets = embedded["val"]
    predictions = kmeans_predictions(val_features, cfg.data.num_clusters, cfg.seed)
    scores = evaluate_clusters(val_features, predictions, val_targets)
    metrics["kmeans"] = {k: v for k, v in scores.items() if k != "cohesion"}
    return outputs, metrics


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _features_key(weights_digest: str, cfg: DictConfig, split_key: str, size: int) -> str:
    """What cached features depend on: the backbone's weights, the images and their views."""
    digest = hashlib.sha256(weights_digest.encode())
    data = to_plain(cfg.data)
    described = {
        "kind": data["kind"],
        "split": data[f"{split_key}_split"],
        "options": data.get("options"),
        "preprocessing": preprocessing_spec(cfg.data),
        "images": size,
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _cached_features(stage_dir: Path, split_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    paths = [stage_dir / f"{split_key}_{name}.npy" for name in ("features", "targets")]
    if not all(path.is_file() for path in paths):
        return None
    return np.load(paths[0]), np.load(paths[1])


def _known_num_clusters(cfg: DictConfig) -> int | None:
    """``data.num_clusters``, or ``None`` while it is ``auto`` and not yet chosen."""
    value = cfg.data.num_clusters
    if value == "auto":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ValueError(f"data.num_clusters must be an integer >= 2 or auto, got {value!r}")
    return value


def choose_num_clusters(
    cfg: DictConfig, run: RunDirectory, features: np.ndarray, described: str
) -> dict[str, Any]:
    """``data.num_clusters=auto``: sweep K with k-means, save the table and the elbow and
    silhouette plots under ``<run>/choose_k/``, pick K, record why in the manifest, and set
    ``cfg.data.num_clusters`` for the stages that follow."""
    from semclust.choose_k import choose_k

    settings = cfg.choose_k
    k_max = min(settings.k_max, len(features) - 1)
    if k_max < settings.k_min:
        raise ValueError(
            f"choose_k.k_min={settings.k_min} but {len(features)} images allow at most "
            f"K={len(features) - 1}"
        )
    started = time.perf_counter()
    out_dir = run.stage_dir("choose_k")
    chosen, reason, files = choose_k(
        features,
        list(range(settings.k_min, k_max + 1)),
        cfg.seed,
        out_dir,
        settings.criterion,
        settings.sample_size,
        # Every process picks the same K from the same gathered features; one writes.
        write=run.is_writer(),
    )
    choice = {
        "value": int(chosen),
        "criterion": settings.criterion,
        "reason": reason,
        "swept": [settings.k_min, k_max],
        "features": described,
        "files": {name: str(path.relative_to(run.root)) for name, path in files.items()},
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    write_json(out_dir / "choice.json", choice)
    run.record("num_clusters", choice)
    log.info("data.num_clusters=auto: K=%d (%s)", chosen, reason)
    cfg.data.num_clusters = int(chosen)
    return choice


def _resolve_num_clusters(cfg: DictConfig, run: RunDirectory, stage: str) -> None:
    """Stages after mine take an ``auto`` K from the choice the mine stage recorded."""
    if _known_num_clusters(cfg) is not None or stage in ("pretext", "mine", "classic"):
        return
    choice_path = run.root / "choose_k" / "choice.json"
    if not choice_path.is_file():
        raise MissingArtifactError(
            f"stage {stage!r} runs with data.num_clusters=auto, but no K was chosen yet "
            f"({choice_path} is missing); run the mine stage first, or give "
            "data.num_clusters a number"
        )
    cfg.data.num_clusters = int(read_json(choice_path)["value"])


# Cluster heads on a frozen backbone can learn from the cached features directly.


def _uses_cached_features(stage_cfg: DictConfig) -> bool:
    return not stage_cfg.update_backbone and stage_cfg.cached_features


def _cached_split(run: RunDirectory, split_key: str, needed_by: str) -> FeatureDataset:
    features_artifact, targets_artifact = {
        "train": (TRAIN_FEATURES, TRAIN_TARGETS),
        "val": (VAL_FEATURES, VAL_TARGETS),
    }[split_key]
    features = np.load(run.require(features_artifact, needed_by))
    return FeatureDataset(features, np.load(run.require(targets_artifact, needed_by)))


def _feature_loader(cfg: DictConfig, dataset: FeatureDataset) -> Any:
    return _loader(
        cfg,
        MultiViewDataset(dataset, {"image": torch.nn.Identity()}),
        shuffle=False,
        batch_size=cfg.data.eval_batch_size,
    )


class _CachedFeatures(torch.nn.Module):
    """Stands in for a frozen backbone whose outputs were cached: passes features through."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def run_scan(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Train several cluster heads with the SCAN loss; keep the lowest-loss head.

    With a frozen backbone and ``scan.cached_features`` the heads learn from the mine
    stage's cached features (no augmentation) and are put on the backbone afterwards.
    """
    stage_dir = run.stage_dir("scan")
    backbone, spec = _load_backbone(run, "scan")
    cached = _uses_cached_features(cfg.scan)
    if cached:
        train_set, val_set = _cached_split(run, "train", "scan"), _cached_split(run, "val", "scan")
        transform: Any = torch.nn.Identity()
        val_loader = _feature_loader(cfg, val_set)
        trained_backbone: torch.nn.Module = _CachedFeatures(backbone.feature_dim)
    else:
        train_set, val_set = _dataset(cfg, run, "train"), _dataset(cfg, run, "val")
        transform = view_transforms(cfg.data).get(cfg.scan.augmentation)
        val_loader = _eval_loader(cfg, val_set)
        trained_backbone = backbone
    train_neighbors = _load_neighbors(
        run, TRAIN_NEIGHBORS, "scan", len(train_set), cfg.scan.num_neighbors
    )
    val_neighbors = _load_neighbors(
        run, VAL_NEIGHBORS, "scan", len(val_set), cfg.scan.num_neighbors
    )
    trained = ClusteringModel(trained_backbone, cfg.data.num_clusters, cfg.scan.num_heads)
    module = ScanModule(
        trained,
        entropy_weight=cfg.scan.entropy_weight,
        optimizer=hydra.utils.instantiate(cfg.scan.optimizer),
        scheduler=_optional(cfg.scan.get("scheduler")),
        update_backbone=cfg.scan.update_backbone,
        val_neighbors=val_neighbors,
        metadata=_checkpoint_metadata(cfg, "scan", spec, cfg.scan.num_heads, cached),
    )
    pairs = NeighborsDataset(train_set, train_neighbors, transform)
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, checkpoint = build_trainer(
        cfg, "scan", stage_dir, cfg.scan.epochs, [evaluation], monitor="val/lowest_loss"
    )
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
        "cached_features": cached,
    }
    trained.cluster_heads.keep(module.best_head)
    module.best_head = 0
    scores = _final_scores(cfg, module, val_loader)
    model = ClusteringModel(backbone, cfg.data.num_clusters, 1)
    model.cluster_heads = trained.cluster_heads
    outputs = _save_clustering_model(
        model, stage_dir, spec, cfg, stage="scan", head_index=head_losses["best_head"]
    )
    return outputs, {**scores, **head_losses}


def _confident_fraction(cfg: DictConfig, model: ClusteringModel, loader: Any) -> float:
    """Share of the training images the SCAN model already labels confidently."""
    extractor = SelfLabelModule(model, cfg.selflabel.threshold, optimizer=None)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.validate(extractor, loader, verbose=False)
    logits = extractor.gathered()["logits"].float()
    return float((logits.softmax(dim=1).max(dim=1).values > cfg.selflabel.threshold).float().mean())


def run_selflabel(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Refine SCAN's model on its confident predictions; keep SCAN's if that cannot help.

    With a frozen backbone and ``selflabel.cached_features`` the head is refined on the
    cached features, where the weak and the strong view are the same vector.
    """
    stage_dir = run.stage_dir("selflabel")
    spec = read_json(run.require(SCAN_SPEC, "selflabel"))
    scan_model = ClusteringModel(backbone_from_spec(spec["backbone"]), spec["num_clusters"], 1)
    load_weights(scan_model, run.require(SCAN_WEIGHTS, "selflabel"))
    cached = _uses_cached_features(cfg.selflabel)
    if cached:
        train_set = _cached_split(run, "train", "selflabel")
        val_set = _cached_split(run, "val", "selflabel")
        model = ClusteringModel(
            _CachedFeatures(scan_model.backbone.feature_dim), spec["num_clusters"], 1
        )
        model.cluster_heads = scan_model.cluster_heads
        weak = strong = torch.nn.Identity()
        train_eval_loader, val_loader = (
            _feature_loader(cfg, train_set),
            _feature_loader(cfg, val_set),
        )
    else:
        train_set, val_set = _dataset(cfg, run, "train"), _dataset(cfg, run, "val")
        model = scan_model
        views = view_transforms(cfg.data)
        weak, strong = views.weak, views.strong
        train_eval_loader, val_loader = _eval_loader(cfg, train_set), _eval_loader(cfg, val_set)

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
        scheduler=_optional(cfg.selflabel.get("scheduler")),
        class_balancing=cfg.selflabel.class_balancing,
        ema_decay=cfg.selflabel.ema_decay,
        metadata=_checkpoint_metadata(cfg, "selflabel", spec["backbone"], 1, cached),
        update_backbone=cfg.selflabel.update_backbone,
    )
    pairs = MultiViewDataset(train_set, {"weak": weak, "strong": strong})
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer, _ = build_trainer(
        cfg,
        "selflabel",
        stage_dir,
        cfg.selflabel.epochs,
        [evaluation],
        check_val_every_n_epoch=cfg.selflabel.val_every_n_epochs,
    )
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
    final = module.final_model
    if cached:
        scan_model.cluster_heads = final.cluster_heads
        final = scan_model
    outputs = _save_clustering_model(
        final, stage_dir, spec["backbone"], cfg, stage="selflabel", head_index=0
    )
    return outputs, {
        **scores,
        "train_confident_fraction_before": confident,
        "cached_features": cached,
    }


def run_classic(cfg: DictConfig, run: RunDirectory) -> tuple[dict, dict]:
    """Classic clustering methods compared on one kind of features, chosen label-free.

    ``classic.features``: ``pretext`` (the mine stage's features of the validation images:
    SimCLR, autoencoder or pretrained), ``pixels`` or ``hog`` (of the validation images).
    """
    from semclust.classic import compare_methods, format_comparison, write_comparison

    stage_dir = run.stage_dir("classic")
    source = cfg.classic.features
    if source == "pretext":
        val = _cached_split(run, "val", "classic")
        features, targets = val.features.numpy(), val.targets
    elif source in ("pixels", "hog"):
        features, targets = image_features(cfg, run, source)
    else:
        raise ValueError(f"unknown classic.features {source!r}; choose pretext, pixels or hog")
    metrics: dict[str, Any] = {"features": source, "feature_dim": int(features.shape[1])}
    if _known_num_clusters(cfg) is None:
        choice_path = run.root / "choose_k" / "choice.json"
        if source == "pretext" and choice_path.is_file():
            cfg.data.num_clusters = int(read_json(choice_path)["value"])
        else:
            metrics["num_clusters"] = choose_num_clusters(
                cfg, run, features, f"{source} features of the validation split"
            )
    labeled = targets is not None and (targets >= 0).all()
    comparison = compare_methods(
        features,
        cfg.data.num_clusters,
        methods=to_plain(cfg.classic.methods),
        reductions=to_plain(cfg.classic.reductions),
        seed=cfg.seed,
        targets=targets if labeled else None,
        select_by=cfg.classic.select_by,
        score_sample_size=cfg.classic.score_sample_size,
        score_space=cfg.classic.score_space,
    )
    outputs = write_comparison(comparison, stage_dir) if run.is_writer() else {}
    print(format_comparison(comparison))
    best = comparison.best
    metrics.update(
        {
            "method": best["method"],
            "reduction": best["reduction"],
            "params": best.get("params"),
            "select_by": comparison.select_by,
            "score_space": cfg.classic.score_space,
            "reason": comparison.reason,
            "candidates": len(comparison.rows),
            **{key: best[key] for key in (*HEADLINE, *LABEL_FREE) if best.get(key) is not None},
            "clusters_used": int(best["clusters_found"]),
        }
    )
    return outputs, metrics


def image_features(cfg: DictConfig, run: RunDirectory, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels or HOG descriptors of the validation images, as the eval view shows them."""
    from semclust.classic import hog_features

    dataset = _dataset(cfg, run, "val")
    images, targets = [], []
    for batch in _eval_loader(cfg, dataset):
        images.append(batch["image"].numpy())
        targets.append(batch["target"].numpy())
    stacked = np.concatenate(images)
    if kind == "hog":
        return hog_features(stacked), np.concatenate(targets)
    return stacked.reshape(len(stacked), -1), np.concatenate(targets)


RUNNERS: dict[str, Callable[[DictConfig, RunDirectory], tuple[dict, dict]]] = {
    "pretext": run_pretext,
    "mine": run_mine,
    "scan": run_scan,
    "selflabel": run_selflabel,
    "classic": run_classic,
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
    # Frozen networks (perceptual loss, frozen backbones) stay in eval mode on purpose.
    warnings.filterwarnings(
        "ignore", message=r".*module\(s\) in eval mode at the start of training"
    )
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
    _match_pretrained_preprocessing(cfg)
    for stage in (s for s in STAGES if s in requested):
        _resolve_num_clusters(cfg, run, stage)
        stage_dir = run.stage_dir(stage)
        if run.stage_status(stage) in ("completed", "skipped"):
            clear_checkpoints(stage_dir)  # a finished stage asked for again starts afresh
        stage_config = {
            "data": to_plain(cfg.data),
            "backbone": to_plain(cfg.backbone),
            stage: to_plain(cfg[stage]),
            "seed": cfg.seed,
        }
        if _known_num_clusters(cfg) is None:
            stage_config["choose_k"] = to_plain(cfg.choose_k)
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
    has_model = summary["final_stage"] in ("scan", "selflabel")
    if cfg.get("report") and has_model and run.is_writer():
        from semclust.evaluation import write_run_report  # UMAP and Grad-CAM load lazily

        summary["report"] = str(write_run_report(run.root))
        log.info("report: %s", summary["report"])
    print(format_table(summary))
    return summary


def _match_pretrained_preprocessing(cfg: DictConfig) -> None:
    """pretext=pretrained: show images to the network as its weights were trained to see them
    (input size, mean, std), unless ``pretext.match_preprocessing=false``."""
    if cfg.pretext.name != "pretrained" or not cfg.pretext.match_preprocessing:
        return
    native = native_preprocessing(pretrained_backbone_arguments(cfg))
    if native is None:
        return
    mean, std = [float(v) for v in native["mean"]], [float(v) for v in native["std"]]
    if cfg.data.channels == 1:  # grayscale repeated to RGB: one value for the one channel
        mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
    log.info(
        "pretext=pretrained: images at %d px, mean %s, std %s, as the network expects "
        "(pretext.match_preprocessing=false keeps the data config's)",
        native["image_size"],
        [round(v, 4) for v in mean],
        [round(v, 4) for v in std],
    )
    cfg.data.image_size = int(native["image_size"])
    cfg.data.mean, cfg.data.std = mean, std


def summarize(run: RunDirectory) -> dict[str, Any]:
    """Top-level ACC/NMI/ARI of the last completed clustering stage, per-stage beside them.

    ``stages`` holds every recorded stage's status and scalar metrics, plus a ``kmeans`` row:
    k-means on the pretext features of the validation images, measured by the mine stage.
    A run of the classic stage alone reports the classic pick as its result.
    """
    manifest = run.read_manifest()
    recorded = manifest["stages"]
    summary: dict[str, Any] = {"run_dir": str(run.root), "final_stage": None, "stages": {}}
    if "num_clusters" in manifest:
        summary["num_clusters"] = manifest["num_clusters"]
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
    classic = recorded.get("classic", {})
    if summary["final_stage"] is None and classic.get("status") == "completed":
        summary["final_stage"] = "classic"
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
        "classic": "classic (label-free pick)",
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

"""Stage 2, mining: embed every image and find its nearest neighbours with FAISS.

Every process writes its features straight into ``mine/{split}_features.npy`` (memory-mapped,
renamed into place when complete), and the search reads that file in chunks, so neither holds
all features in one process (the k-means baseline below still loads the validation features).
They are cached per split under a key of the backbone weights and the data config, so running
the stage again (other ``num_neighbors``, say) reuses them. With ``data.num_clusters=auto``
the number of clusters is chosen here, on the train features.
"""

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from semclust.clustering.neighbors import (
    AUTO_EXACT_MAX_ROWS,
    MinedNeighbors,
    neighbor_accuracy,
    search_neighbors,
)
from semclust.clustering.scores import evaluate_clusters, kmeans_predictions
from semclust.data.datasets import same_images
from semclust.failpoints import failpoint
from semclust.fingerprints import file_digest
from semclust.inference.spec import preprocessing_spec, to_plain
from semclust.rundir import (
    BACKBONE_WEIGHTS,
    FEATURES_KEY,
    RunDirectory,
    mined,
    read_json,
    write_json,
)
from semclust.stages.base import FeatureExtractor
from semclust.stages.common import dataset_split, eval_loader, known_num_clusters, load_backbone
from semclust.stages.num_clusters import choose_num_clusters
from semclust.stages.registry import Stage, StageResult, register

log = logging.getLogger(__name__)


def run_mine(cfg: DictConfig, run: RunDirectory) -> StageResult:
    """Embed train and val sets, mine neighbours, and score k-means on the features."""
    backbone, _ = load_backbone(run, "mine")
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    keys_path = run.path(FEATURES_KEY)
    old_keys = read_json(keys_path) if keys_path.is_file() else {}
    weights_digest = file_digest(run.path(BACKBONE_WEIGHTS))
    new_keys: dict[str, str] = {}
    outputs: dict[str, Path] = {}
    metrics: dict[str, Any] = {"reused_cached_features": []}
    embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    mined_by_split: dict[str, MinedNeighbors] = {}
    for split_key in ("train", "val"):
        features_path = run.path(mined(split_key, "features"))
        if split_key == "val" and same_images(cfg.data):
            embedded["val"] = embedded["train"]  # same images: no need to embed them twice
            new_keys["val"] = new_keys["train"]
            if run.is_writer():
                _copy_file(run.path(mined("train", "features")), features_path)
        else:
            dataset = dataset_split(cfg, run, split_key)
            new_keys[split_key] = _features_key(weights_digest, cfg, split_key, len(dataset))
            unchanged = old_keys.get(split_key) == new_keys[split_key]
            cached = _cached_features(run, split_key) if unchanged else None
            if cached is not None:
                embedded[split_key] = cached
                metrics["reused_cached_features"].append(split_key)
                log.info("mine: reusing the cached %s features", split_key)
            else:
                if run.is_writer() and split_key in old_keys:
                    # Its features are about to be replaced: until the new key is written at
                    # the end, no crash may leave a key that vouches for them.
                    old_keys.pop(split_key)
                    write_json(keys_path, old_keys)
                extractor = FeatureExtractor(backbone, features_path, num_rows=len(dataset))
                trainer.validate(extractor, eval_loader(cfg, dataset), verbose=False)
                targets = extractor.validation_result().targets.numpy()
                embedded[split_key] = (np.load(features_path, mmap_mode="r"), targets)
                failpoint("mine.embedded")
        features, targets = embedded[split_key]
        if split_key == "val" and same_images(cfg.data):
            mined_by_split["val"] = mined_by_split["train"]  # same images, same neighbours
        else:
            mined_by_split[split_key] = _mine(cfg, features)
        mined_neighbors = mined_by_split[split_key]
        neighbors = mined_neighbors.neighbors
        # auto may pick differently per split (by size): the train split's names the stage.
        metrics.setdefault("neighbor_index", mined_neighbors.index)
        metrics[f"{split_key}_neighbor_index"] = mined_neighbors.index
        metrics[f"{split_key}_recall_at_k"] = mined_neighbors.recall
        if mined_neighbors.params:
            metrics[f"{split_key}_neighbor_index_params"] = mined_neighbors.params
        outputs[f"{split_key}_features"] = features_path  # written by the extraction (or cached)
        for name, array in (("targets", targets), ("neighbors", neighbors)):
            outputs[f"{split_key}_{name}"] = run.path(mined(split_key, name))
            reused = name == "targets" and split_key in metrics["reused_cached_features"]
            if run.is_writer() and not reused:  # cached targets are already on disk
                np.save(outputs[f"{split_key}_{name}"], array)
        metrics[f"{split_key}_images"] = len(features)
        if (targets >= 0).all():
            metrics[f"{split_key}_neighbor_accuracy"] = neighbor_accuracy(neighbors, targets)
    write_json(keys_path, new_keys)
    num_clusters = known_num_clusters(cfg)
    if num_clusters is None:
        metrics["num_clusters"] = choose_num_clusters(
            cfg, run, embedded["train"][0], "pretext features of the train split"
        )
        num_clusters = metrics["num_clusters"]["value"]
    # The k-means baseline: fit on the pretext features of the validation images.
    val_features, val_targets = embedded["val"]
    predictions = kmeans_predictions(val_features, num_clusters, cfg.seed)
    scores = evaluate_clusters(val_features, predictions, val_targets)
    metrics["kmeans"] = {k: v for k, v in scores.items() if k != "cohesion"}
    return outputs, metrics


def _mine(cfg: DictConfig, features: np.ndarray) -> MinedNeighbors:
    mine = cfg.mine
    return search_neighbors(
        features,
        mine.num_neighbors,
        mine.get("index", "exact"),
        use_gpu=mine.use_gpu,
        nprobe=mine.get("nprobe"),
        ef_search=mine.get("ef_search"),
        target_recall=mine.get("target_recall", 0.95),
        recall_sample=mine.get("recall_sample", 1000),
        exact_max_rows=mine.get("exact_max_rows", AUTO_EXACT_MAX_ROWS),
        rerank_factor=mine.get("rerank_factor"),
        seed=cfg.seed,
    )


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


def _copy_file(source: Path, destination: Path) -> None:
    """``source`` copied to ``destination`` through a temporary name (never half a file)."""
    temporary = destination.with_name(destination.name + ".tmp")
    shutil.copyfile(source, temporary)
    temporary.replace(destination)


def _cached_features(run: RunDirectory, split_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    paths = [run.path(mined(split_key, name)) for name in ("features", "targets")]
    if not all(path.is_file() for path in paths):
        return None
    # Memory-mapped: the search reads them in chunks instead of holding a second copy.
    return np.load(paths[0], mmap_mode="r"), np.load(paths[1])


register(
    Stage(
        "mine",
        order=20,
        run=run_mine,
        needs_num_clusters=False,
        table_rows={"kmeans": "k-means (pretext features)"},
        seed_offset=1,
        consumes=("pretext",),
    )
)

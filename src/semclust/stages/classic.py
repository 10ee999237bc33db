"""Stage 5, classic: k-means, agglomerative, GMM, DBSCAN, HDBSCAN, spectral clustering and
BIRCH (after no reduction, PCA or UMAP, or LLE or a spectral embedding) on one kind of
features, the best chosen without labels.

``classic.features``: ``pretext`` (the mine stage's features of the validation images:
SimCLR, autoencoder or pretrained), ``pixels`` or ``hog`` (of the validation images). It runs
after the other stages or alone.
"""

from typing import Any

import numpy as np
from omegaconf import DictConfig

from semclust.clustering.comparison_io import format_comparison, write_comparison
from semclust.clustering.features import hog_features
from semclust.clustering.selection import compare_methods
from semclust.data.device_views import apply_view_plan
from semclust.inference.spec import to_plain
from semclust.metrics import HEADLINE_SCORES, LABEL_FREE_SCORES
from semclust.rundir import K_CHOICE, RunDirectory, read_json
from semclust.stages.cluster_heads import cached_split
from semclust.stages.common import dataset_split, eval_loader, known_num_clusters
from semclust.stages.num_clusters import choose_num_clusters
from semclust.stages.registry import Stage, StageResult, register


def run_classic(cfg: DictConfig, run: RunDirectory) -> StageResult:
    """Every configured (reduction, method) candidate, compared; the pick's scores."""
    source = cfg.classic.features
    if source == "pretext":
        val = cached_split(run, "val", "classic")
        features, targets = val.features.numpy(), val.targets
    elif source in ("pixels", "hog"):
        features, targets = image_features(cfg, run, source)
    else:
        raise ValueError(f"unknown classic.features {source!r}; choose pretext, pixels or hog")
    metrics: dict[str, Any] = {"features": source, "feature_dim": int(features.shape[1])}
    num_clusters = known_num_clusters(cfg)
    if num_clusters is None:
        choice_path = run.path(K_CHOICE)
        if source == "pretext" and choice_path.is_file():
            num_clusters = int(read_json(choice_path)["value"])
        else:
            metrics["num_clusters"] = choose_num_clusters(
                cfg, run, features, f"{source} features of the validation split"
            )
            num_clusters = metrics["num_clusters"]["value"]
    labeled = targets is not None and (targets >= 0).all()
    comparison = compare_methods(
        features,
        num_clusters,
        methods=to_plain(cfg.classic.methods),
        reductions=to_plain(cfg.classic.reductions),
        seed=cfg.seed,
        targets=targets if labeled else None,
        select_by=cfg.classic.select_by,
        score_sample_size=cfg.classic.score_sample_size,
        score_space=cfg.classic.score_space,
    )
    outputs = write_comparison(comparison, run.stage_dir("classic")) if run.is_writer() else {}
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
            **{
                key: best[key]
                for key in (*HEADLINE_SCORES, *LABEL_FREE_SCORES)
                if best.get(key) is not None
            },
            "clusters_used": int(best["clusters_found"]),
        }
    )
    return outputs, metrics


def image_features(cfg: DictConfig, run: RunDirectory, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels or HOG descriptors of the validation images, as the eval view shows them."""
    images, targets = [], []
    for batch in map(apply_view_plan, eval_loader(cfg, dataset_split(cfg, run, "val"))):
        images.append(batch["image"].numpy())
        targets.append(batch["target"].numpy())
    stacked = np.concatenate(images)
    if kind == "hog":
        return hog_features(stacked), np.concatenate(targets)
    return stacked.reshape(len(stacked), -1), np.concatenate(targets)


register(
    Stage(
        "classic",
        order=50,
        run=run_classic,
        needs_num_clusters=False,
        partitions=True,
        table_rows={"classic": "classic (label-free pick)"},
        seed_offset=4,
        consumes=lambda cfg: ("mine",) if cfg.classic.features == "pretext" else (),
    )
)

"""Classic clustering of any feature matrix, and a label-free choice among the candidates.

The features may come from the pretext stage's backbone, raw pixels or HOG descriptors
(:func:`hog_features`). Each candidate is one optional reduction (PCA or UMAP) followed by one
method (k-means, agglomerative, Gaussian mixture, DBSCAN or HDBSCAN); :func:`compare_methods`
runs them all and keeps the one that the label-free scores prefer. Labels, where given, only
add ACC/NMI/ARI to the table; they never take part in the choice.

Everything here is numpy and scikit-learn (plus scikit-image for HOG and umap-learn for UMAP,
both imported only when used), so it runs without torch, Lightning or Hydra.
"""

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from semclust.metrics import clustering_scores, label_free_scores

METHODS = ("kmeans", "agglomerative", "dbscan", "gmm", "hdbscan")
REDUCTIONS = ("none", "pca", "umap")
SELECTION_CRITERIA = ("silhouette", "calinski_harabasz", "davies_bouldin", "mean_rank")
SCORE_SPACES = ("input", "reduced")

#: The parameters each method accepts; anything else is a typo and raises.
METHOD_PARAMS = {
    "kmeans": ("n_init",),
    "agglomerative": ("linkage", "max_samples"),
    "gmm": ("covariance_type", "n_init", "max_iter", "reg_covar"),
    "dbscan": ("eps", "min_samples", "eps_quantile"),
    "hdbscan": ("min_cluster_size", "min_samples"),
}
DEFAULT_COMPONENTS = {"pca": 50, "umap": 10}
#: The comparison ``semclust cluster`` runs (configs/classic/default.yaml spells out the same).
DEFAULT_REDUCTIONS = (
    {"name": "none"},
    {"name": "pca", "n_components": 50},
    {"name": "umap", "n_components": 10, "n_neighbors": 15, "min_dist": 0.0},
)
DEFAULT_METHODS = (
    {"name": "kmeans"},
    {"name": "agglomerative", "linkage": "ward", "max_samples": 20_000},
    {"name": "gmm", "covariance_type": "diag", "n_init": 1},
    {"name": "dbscan", "eps": "auto", "min_samples": 10, "eps_quantile": 0.5},
    {"name": "hdbscan", "min_cluster_size": "auto", "min_samples": 5},
)
# DBSCAN's auto eps looks at the k-distance of at most this many seeded query points: the
# quantile of a few thousand distances is as good as that of all of them, and it keeps the
# neighbour search at O(sample * N) instead of O(N²).
_EPS_SAMPLE_SIZE = 2_000

_SCORE_KEYS = ("silhouette", "calinski_harabasz", "davies_bouldin")
_HIGHER_IS_BETTER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}
_LATE_COLUMNS = (
    *(f"rank_{key}" for key in _SCORE_KEYS),
    "mean_rank",
    "acc",
    "nmi",
    "ari",
    "wall_time_s",
    "note",
)
_SCORE_NAMES = {
    "silhouette": "silhouette",
    "calinski_harabasz": "Calinski-Harabasz",
    "davies_bouldin": "Davies-Bouldin",
}


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def check_features(features: Any) -> np.ndarray:
    """``features`` as a finite float64 ``(N, D)`` array with N >= 2, or a ValueError."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array, got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"features need at least 2 rows and 1 column, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(
            f"features hold NaN or infinite values in {bad_rows.size} rows "
            f"(first: {bad_rows[:5].tolist()})"
        )
    return array


def _check_num_clusters(num_clusters: Any, num_samples: int) -> int:
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, int | np.integer):
        raise ValueError(f"num_clusters must be an integer, got {num_clusters!r}")
    if not 2 <= num_clusters < num_samples:
        raise ValueError(f"num_clusters must be in [2, N) = [2, {num_samples}), got {num_clusters}")
    return int(num_clusters)


def _check_choice(value: Any, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value


def hog_features(images: np.ndarray, **hog_options: Any) -> np.ndarray:
    """Histogram-of-oriented-gradients descriptors, one row per image of ``(N, C, H, W)``.

    ``hog_options`` go to :func:`skimage.feature.hog` and override the defaults: 9
    orientations, 2x2-cell blocks, L2-Hys block normalisation and cells of
    ``min(8, min(H, W) // 4)`` pixels. Colour images use the strongest channel's gradient.
    """
    from skimage.feature import hog

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) array, got {images.shape}")
    _, channels, height, width = images.shape
    # Dalal and Triggs' 8x8-pixel cells suit images of 32 px and more. Smaller images (8-px
    # digits, 28-px MNIST) get cells a quarter of their side, so there are still 4x4 cells, i.e.
    # 3x3 overlapping blocks that say where edges are, not just which directions occur.
    cell = max(1, min(8, min(height, width) // 4))
    options: dict[str, Any] = {
        "orientations": 9,
        "pixels_per_cell": (cell, cell),
        "cells_per_block": (2, 2),
        "block_norm": "L2-Hys",
        **hog_options,
    }
    cells = (height // options["pixels_per_cell"][0], width // options["pixels_per_cell"][1])
    block = options["cells_per_block"]
    if cells[0] < block[0] or cells[1] < block[1]:
        raise ValueError(
            f"{height}x{width} images hold {cells[0]}x{cells[1]} cells of "
            f"{options['pixels_per_cell']} pixels, fewer than one {block} block; "
            "pass smaller pixels_per_cell or cells_per_block"
        )
    if channels == 1:
        pixels = images[:, 0]
    else:
        pixels = np.moveaxis(images, 1, -1)
        options["channel_axis"] = -1
    options["feature_vector"] = True
    return np.stack([hog(image, **options) for image in pixels]).astype(np.float64)


def reduce_features(
    features: Any, name: str, seed: int, n_components: int | None = None, **options: Any
) -> np.ndarray:
    """The features after reduction ``name``: ``none`` (as they are), ``pca`` or ``umap``.

    ``n_components`` defaults to 50 for PCA (capped at min(N, D)) and 10 for UMAP; other
    options go to :class:`sklearn.decomposition.PCA` or :class:`umap.UMAP` unchanged.
    """
    _check_choice(name, REDUCTIONS, "reduction")
    features = check_features(features)
    if name == "none":
        if n_components is not None or options:
            given = {"n_components": n_components, **options} if n_components else options
            raise ValueError(f"reduction 'none' takes no options, got {given}")
        return features
    if n_components is None:
        n_components = DEFAULT_COMPONENTS[name]
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    if name == "pca":
        n_components = min(int(n_components), *features.shape)
        return PCA(n_components, random_state=seed, **options).fit_transform(features)
    import umap

    # A seed forces UMAP onto one job anyway; saying so avoids its warning.
    options.setdefault("n_jobs", 1)
    reducer = umap.UMAP(n_components=int(n_components), random_state=seed, **options)
    return np.asarray(reducer.fit_transform(features), dtype=np.float64)


def cluster_labels(
    name: str, features: Any, num_clusters: int, seed: int, **params: Any
) -> np.ndarray:
    """Cluster labels of each row by method ``name`` (see :data:`METHODS`).

    - ``kmeans``: k-means++ initialisation, ``n_init`` (10) restarts.
    - ``agglomerative``: ``linkage`` ("ward", "complete", "average" or "single"); refuses more
      than ``max_samples`` (20,000) rows, whose N² distances would not fit in memory.
    - ``gmm``: Gaussian mixture, ``covariance_type`` ("full"), ``n_init`` (1), ``max_iter``
      (100), ``reg_covar`` (1e-6); each row goes to its most probable component.
    - ``dbscan``: ``eps`` ("auto") and ``min_samples`` (10). With ``eps="auto"`` a fraction
      ``eps_quantile`` (0.5) of the points are core points (see :func:`auto_dbscan_eps`);
      higher quantiles chain clusters together in high-dimensional features (on the 8x8
      digits, 0.7 already merges the ten digits into three or four clusters).
    - ``hdbscan``: ``min_cluster_size`` ("auto": max(5, N // (4 * num_clusters)), a quarter of
      a cluster's size if the clusters were balanced) and ``min_samples`` (None: the same).

    The density methods label noise -1 and use ``num_clusters`` only in their auto heuristics.
    """
    labels, _ = _fit_labels(name, check_features(features), num_clusters, seed, params)
    return labels


def auto_dbscan_eps(features: np.ndarray, min_samples: int, quantile: float, seed: int) -> float:
    """DBSCAN's eps from the k-distance curve: the ``quantile`` of each point's distance to its
    ``min_samples``-th nearest neighbour (itself included, as DBSCAN counts it).

    A point is a DBSCAN core point exactly when that distance is at most eps, so this eps makes
    about a fraction ``quantile`` of the points core points: the densest ones, whatever the
    scale of the features. Estimated on a seeded sample of at most 2,000 query points.
    """
    rng = np.random.default_rng(seed)
    num_samples = len(features)
    queries = rng.choice(num_samples, size=min(num_samples, _EPS_SAMPLE_SIZE), replace=False)
    distances, _ = (
        NearestNeighbors(n_neighbors=min_samples).fit(features).kneighbors(features[queries])
    )
    # Duplicated points give a distance of 0, and DBSCAN needs eps > 0.
    return max(float(np.quantile(distances[:, -1], quantile)), 1e-12)


def _check_params(method: str, params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(METHOD_PARAMS[method]))
    if unknown:
        raise ValueError(
            f"unknown parameters {unknown} for {method}; it takes {list(METHOD_PARAMS[method])}"
        )


def _fit_labels(
    name: str, features: np.ndarray, num_clusters: int, seed: int, params: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """The labels and the parameters actually used (auto values resolved)."""
    _check_choice(name, METHODS, "clustering method")
    _check_params(name, params)
    num_samples = len(features)
    num_clusters = _check_num_clusters(num_clusters, num_samples)
    if name == "kmeans":
        used = {"n_init": params.get("n_init", 10)}
        model = KMeans(num_clusters, init="k-means++", random_state=seed, **used)
    elif name == "agglomerative":
        limit = int(params.get("max_samples", 20_000))
        if num_samples > limit:
            # Without a connectivity graph the merge tree needs all N² pairwise distances.
            raise ValueError(
                f"agglomerative clustering of {num_samples} samples needs about "
                f"{num_samples**2 * 4 / 2**30:.0f} GiB for its pairwise distances; "
                f"skipped above max_samples={limit}"
            )
        used = {"linkage": params.get("linkage", "ward")}
        model = AgglomerativeClustering(num_clusters, **used)
    elif name == "gmm":
        used = {
            "covariance_type": params.get("covariance_type", "full"),
            "n_init": params.get("n_init", 1),
            "max_iter": params.get("max_iter", 100),
            "reg_covar": params.get("reg_covar", 1e-6),
        }
        model = GaussianMixture(num_clusters, random_state=seed, **used)
    elif name == "dbscan":
        min_samples = int(params.get("min_samples", 10))
        if not 1 <= min_samples <= num_samples:
            raise ValueError(f"min_samples must be in [1, N={num_samples}], got {min_samples}")
        eps = params.get("eps", "auto")
        used = {"eps": eps, "min_samples": min_samples}
        if eps == "auto":
            quantile = float(params.get("eps_quantile", 0.5))
            if not 0 < quantile <= 1:
                raise ValueError(f"eps_quantile must be in (0, 1], got {quantile}")
            eps = auto_dbscan_eps(features, min_samples, quantile, seed)
            used = {"eps": eps, "eps_auto_quantile": quantile, "min_samples": min_samples}
        elif isinstance(eps, bool) or not isinstance(eps, int | float) or eps <= 0:
            raise ValueError(f"eps must be 'auto' or a positive number, got {eps!r}")
        model = DBSCAN(eps=float(eps), min_samples=min_samples)
    else:
        min_cluster_size = params.get("min_cluster_size", "auto")
        if min_cluster_size == "auto":
            min_cluster_size = max(5, num_samples // (4 * num_clusters))
        min_cluster_size = min(int(min_cluster_size), num_samples)
        if min_cluster_size < 2:
            raise ValueError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
        used = {"min_cluster_size": min_cluster_size, "min_samples": params.get("min_samples")}
        # copy=True: HDBSCAN may otherwise overwrite the caller's array in place.
        model = HDBSCAN(copy=True, **used)
    return np.asarray(model.fit_predict(features), dtype=np.int64), used


def assign_noise(space: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels where each noise point (-1) joins the cluster with the nearest centroid in
    ``space``, renumbered 0..K'-1. All-noise labels stay as they are."""
    noise = labels < 0
    clusters = np.unique(labels[~noise])
    if clusters.size == 0:
        return labels
    labels = labels.copy()
    if noise.any():
        centroids = np.stack([space[labels == cluster].mean(axis=0) for cluster in clusters])
        labels[noise] = clusters[pairwise_distances_argmin(space[noise], centroids)]
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


@dataclass
class Comparison:
    """What :func:`compare_methods` found: every candidate and the one picked."""

    rows: list[dict]  # one per (reduction, method) candidate, best first
    best: dict  # the selected row
    predictions: np.ndarray  # (N,) labels of the selected candidate, 0..K'-1
    select_by: str
    reason: str  # one sentence: why ``best`` was picked, with its numbers


def _spec(spec: Any, choices: Sequence[str], what: str) -> tuple[str, dict[str, Any]]:
    """``{"name": ..., **options}`` (or just the name) as (name, options)."""
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in options:
        raise ValueError(f"each {what} needs a 'name' ({', '.join(choices)}), got {options}")
    name = _check_choice(options.pop("name"), choices, what)
    return name, options


def _short(params: Mapping[str, Any]) -> str:
    def value(item: Any) -> str:
        return f"{item:.4g}" if isinstance(item, float) else str(item)

    return ", ".join(f"{key}={value(item)}" for key, item in params.items() if item is not None)


def _label(row: Mapping[str, Any]) -> str:
    reduction = row["reduction"]
    if row["reduction_params"]:
        reduction += f"({row['reduction_params']})"
    return f"{row['method']} on {reduction}"


def compare_methods(
    features: Any,
    num_clusters: int,
    methods: Sequence[Mapping[str, Any] | str],
    reductions: Sequence[Mapping[str, Any] | str],
    seed: int,
    targets: Any | None = None,
    select_by: str = "mean_rank",
    score_sample_size: int = 5000,
    score_space: str = "reduced",
) -> Comparison:
    """Every (reduction, method) candidate on the L2-normalised features, scored and ranked.

    ``methods`` are like ``{"name": "dbscan", "eps": "auto"}`` and ``reductions`` like
    ``{"name": "pca", "n_components": 50}`` (see :func:`cluster_labels` and
    :func:`reduce_features`). Density methods' noise points join the nearest centroid in the
    space they were clustered in, so each candidate is a full partition.

    ``score_space="reduced"`` scores each candidate in the space it clustered, which favours
    UMAP, whose embedding widens the gaps between manifolds (right when the classes are
    curved manifolds, as MNIST's are; see docs/BENCHMARKS.md); ``"input"`` scores all of them
    in one space, the L2-normalised input features, which favours methods that cut that space
    into convex pieces (k-means). The
    pick is the best by ``select_by``: silhouette (cosine, on a seeded sample of
    ``score_sample_size`` points), Calinski-Harabasz, Davies-Bouldin, or ``mean_rank``, the
    mean of the three ranks (ties to the higher silhouette). Candidates with fewer than two
    clusters, or that fail, get a ``note`` and no scores, and are never picked. ``targets``
    (-1 = unknown) only add ACC/NMI/ARI on the labelled rows.
    """
    features = check_features(features)
    num_samples = len(features)
    num_clusters = _check_num_clusters(num_clusters, num_samples)
    _check_choice(select_by, SELECTION_CRITERIA, "select_by")
    _check_choice(score_space, SCORE_SPACES, "score_space")
    method_specs = [_spec(method, METHODS, "clustering method") for method in methods]
    for name, params in method_specs:
        _check_params(name, params)
    reduction_specs = [_spec(reduction, REDUCTIONS, "reduction") for reduction in reductions]
    for name, options in reduction_specs:
        if name == "none" and options:
            raise ValueError(f"reduction 'none' takes no options, got {options}")
    if not method_specs or not reduction_specs:
        raise ValueError("compare_methods needs at least one method and one reduction")
    labelled = None
    if targets is not None:
        targets = np.asarray(targets)
        if targets.shape != (num_samples,) or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(
                f"targets must be ({num_samples},) integers (-1 = unknown), "
                f"got {targets.dtype} of shape {targets.shape}"
            )
        labelled = targets >= 0

    normalized = l2_normalize(features)
    rows: list[dict[str, Any]] = []
    candidate_predictions: list[np.ndarray | None] = []
    for reduction, options in reduction_specs:
        start = perf_counter()
        try:
            space, reduction_error = reduce_features(normalized, reduction, seed, **options), None
        except Exception as error:  # reported on each of its candidates' rows
            space, reduction_error = None, f"{reduction} failed: {type(error).__name__}: {error}"
        reduction_time = perf_counter() - start
        if space is not None and reduction != "none":  # the component count actually used
            others = {key: item for key, item in options.items() if key != "n_components"}
            options = {"n_components": space.shape[1], **others}
        for method, params in method_specs:
            row: dict[str, Any] = {
                "selected": False,
                "reduction": reduction,
                "reduction_params": _short(options),
                "method": method,
                "params": _short(params),
                "clusters_found": None,
                "noise_fraction": None,
                **dict.fromkeys(_SCORE_KEYS),
                **dict.fromkeys(("acc", "nmi", "ari") if labelled is not None else ()),
                "wall_time_s": None,
                "note": reduction_error,
            }
            predictions = None
            if space is not None:
                start = perf_counter()
                try:
                    labels, used = _fit_labels(method, space, num_clusters, seed, params)
                    row["params"] = _short(used)
                    row["clusters_found"] = int(np.unique(labels[labels >= 0]).size)
                    row["noise_fraction"] = float((labels < 0).mean())
                    if row["clusters_found"]:
                        predictions = assign_noise(space, labels)
                    else:
                        row["note"] = f"found no cluster: all {num_samples} points are noise"
                except Exception as error:  # one failing candidate must not end the comparison
                    row["note"] = f"{type(error).__name__}: {error}"
                row["wall_time_s"] = round(reduction_time + perf_counter() - start, 3)
            if predictions is not None:
                scores = label_free_scores(
                    normalized if score_space == "input" else space,
                    predictions,
                    silhouette_sample_size=score_sample_size,
                    seed=seed,
                )
                row.update({key: scores.get(key) for key in _SCORE_KEYS})
                if not scores:
                    found = row["clusters_found"]
                    row["note"] = (
                        f"found {found} cluster{'s' * (found != 1)}; "
                        f"the scores need 2 to N-1 = {num_samples - 1}"
                    )
                if labelled is not None and labelled.any():
                    truth = clustering_scores(predictions[labelled], targets[labelled])
                    row.update({key: truth[key] for key in ("acc", "nmi", "ari")})
            rows.append(row)
            candidate_predictions.append(predictions)

    order = _rank(rows, select_by)
    best_index = order[0]
    rows[best_index]["selected"] = True
    invalid = sorted(set(range(len(rows))) - set(order))
    reason = _reason(rows, order, select_by, len(invalid), score_space)
    rows = [_in_column_order(row) for row in rows]
    return Comparison(
        rows=[rows[index] for index in [*order, *invalid]],
        best=rows[best_index],
        predictions=candidate_predictions[best_index],
        select_by=select_by,
        reason=reason,
    )


def _in_column_order(row: dict[str, Any]) -> dict[str, Any]:
    """The row with the ranks and label scores next to the label-free scores, notes last."""
    first = [key for key in row if key not in _LATE_COLUMNS]
    return {key: row[key] for key in [*first, *_LATE_COLUMNS] if key in row}


def _rank(rows: list[dict[str, Any]], select_by: str) -> list[int]:
    """Indices of the valid rows, best first; adds the rank columns for ``mean_rank``."""
    valid = [index for index, row in enumerate(rows) if row["note"] is None]
    if not valid:
        notes = "; ".join(f"{_label(row)}: {row['note']}" for row in rows)
        raise ValueError(f"no candidate gave a usable partition of 2+ clusters: {notes}")

    def oriented(key: str) -> np.ndarray:
        # To 12 significant digits: the same partition, numbered differently, sums in another
        # order, and such rounding noise must tie rather than rank.
        values = np.array([float(f"{rows[index][key]:.12g}") for index in valid])
        return -values if _HIGHER_IS_BETTER[key] else values

    silhouette = oriented("silhouette")
    if select_by == "mean_rank":
        for row in rows:
            row.update({f"rank_{key}": None for key in _SCORE_KEYS} | {"mean_rank": None})
        ranks = np.stack([rankdata(oriented(key)) for key in _SCORE_KEYS])
        for column, index in enumerate(valid):
            for key, rank in zip(_SCORE_KEYS, ranks[:, column], strict=True):
                rows[index][f"rank_{key}"] = float(rank)
            rows[index]["mean_rank"] = float(ranks[:, column].mean())
        primary = ranks.mean(axis=0)
    else:
        primary = oriented(select_by)
    # Lower is better in both keys; lexsort's last key is the primary one, and it is stable,
    # so full ties keep the candidates' order.
    return [valid[position] for position in np.lexsort((silhouette, primary))]


def _reason(
    rows: list[dict[str, Any]], order: list[int], select_by: str, invalid: int, score_space: str
) -> str:
    best = rows[order[0]]
    scores = (
        f"silhouette {best['silhouette']:.3f}, Calinski-Harabasz "
        f"{best['calinski_harabasz']:.1f}, Davies-Bouldin {best['davies_bouldin']:.3f}"
    )
    if select_by == "mean_rank":
        claim = f"the best mean rank {best['mean_rank']:.2f} over the three label-free scores"
        key = "mean_rank"
    else:
        adjective = "highest" if _HIGHER_IS_BETTER[select_by] else "lowest"
        claim = f"the {adjective} {_SCORE_NAMES[select_by]}"
        key = select_by
    sentence = f"{_label(best)} has {claim} among {len(order)} valid candidates ({scores}, " + (
        "on the L2-normalised input features)"
        if score_space == "input"
        else "each in the space it clustered)"
    )
    if len(order) > 1:
        runner_up = rows[order[1]]
        value = format(
            runner_up[key], {"mean_rank": ".2f", "calinski_harabasz": ".1f"}.get(key, ".3f")
        )
        sentence += f"; runner-up {_label(runner_up)} with {key} {value}"
    if invalid:
        sentence += f"; {invalid} candidates gave no usable partition"
    return sentence + "."


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_comparison(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """``comparison.csv`` (every candidate, best first), ``comparison.json`` (select_by,
    reason, best and rows) and ``predictions.npy`` (the pick's int64 labels) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out_dir / "comparison.csv",
        "summary": out_dir / "comparison.json",
        "predictions": out_dir / "predictions.npy",
    }
    with paths["table"].open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=_columns(comparison.rows), restval="")
        writer.writeheader()
        for row in comparison.rows:
            writer.writerow({key: "" if item is None else item for key, item in row.items()})
    summary = {
        "select_by": comparison.select_by,
        "reason": comparison.reason,
        "best": comparison.best,
        "rows": comparison.rows,
    }
    paths["summary"].write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    np.save(paths["predictions"], np.asarray(comparison.predictions, dtype=np.int64))
    return paths


def format_comparison(comparison: Comparison) -> str:
    """A console table of the candidates, best first, the pick marked with ``*``."""
    with_acc = any(row.get("acc") is not None for row in comparison.rows)
    header = ["", "method", "reduction", "K found", "noise", "sil", "CH", "DB"]
    header += ["ACC"] if with_acc else []
    header += ["time s", "note"]

    def number(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    table = [header]
    for row in comparison.rows:
        reduction = row["reduction"]
        if row["reduction_params"]:
            reduction += f"({row['reduction_params']})"
        cells = [
            "*" if row["selected"] else "",
            row["method"],
            reduction,
            number(row["clusters_found"], "d"),
            number(row["noise_fraction"], ".1%"),
            number(row["silhouette"], ".3f"),
            number(row["calinski_harabasz"], ".1f"),
            number(row["davies_bouldin"], ".3f"),
        ]
        cells += [number(row.get("acc"), ".3f")] if with_acc else []
        cells += [number(row["wall_time_s"], ".2f"), row["note"] or ""]
        table.append(cells)
    widths = [max(len(cells[column]) for cells in table) for column in range(len(header))]
    left = {0, 1, 2, len(header) - 1}
    lines = [
        "  ".join(
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in table
    ]
    return "\n".join([*lines, f"Selected by {comparison.select_by}: {comparison.reason}"])


def cluster_feature_file(
    features_path: str | Path,
    out_dir: str | Path,
    num_clusters: int | str = "auto",
    methods: Sequence[str] | None = None,
    reductions: Sequence[str] | None = None,
    select_by: str = "mean_rank",
    targets: str | Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
    score_space: str = "reduced",
) -> tuple[Comparison, dict[str, Path]]:
    """``semclust cluster``: the default comparison on a saved feature matrix.

    ``features_path`` is an ``(N, D)`` ``.npy`` file or a run directory (its mine stage's
    validation features and targets). ``num_clusters="auto"`` sweeps K first (see
    :mod:`semclust.choose_k`). Next to ``embeddings.npy`` of ``semclust predict``, the pick's
    clusters are also written per image path (``assignments.csv``).
    """
    from semclust.choose_k import choose_k

    source = Path(features_path)
    labels_path = Path(targets) if targets else None
    if source.is_dir():
        source, labels_path = (
            source / "mine/val_features.npy",
            labels_path or (source / "mine/val_targets.npy"),
        )
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist (give an .npy file or a run directory)")
    features = check_features(np.load(source, mmap_mode="r"))
    labels = np.load(labels_path) if labels_path and labels_path.is_file() else None
    if labels is not None and len(labels) != len(features):
        raise ValueError(f"{labels_path} holds {len(labels)} targets for {len(features)} rows")
    chosen = [dict(m) for m in DEFAULT_METHODS if methods is None or m["name"] in methods]
    unknown = set(methods or ()) - set(METHODS)
    if unknown or not chosen:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    spaces = [dict(r) for r in DEFAULT_REDUCTIONS if reductions is None or r["name"] in reductions]
    unknown = set(reductions or ()) - set(REDUCTIONS)
    if unknown or not spaces:
        raise ValueError(
            f"unknown reductions {sorted(unknown)}; choose from {', '.join(REDUCTIONS)}"
        )
    if str(num_clusters) != "auto":
        try:
            num_clusters = int(num_clusters)
        except ValueError:
            raise ValueError(f"-k must be a number or auto, got {num_clusters!r}") from None
    out_dir = Path(out_dir)
    if (out_dir / "comparison.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} holds an earlier comparison; pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Path] = {}
    if str(num_clusters) == "auto":
        k_values = list(range(2, min(20, len(features) - 1) + 1))
        num_clusters, reason, files = choose_k(features, k_values, seed, out_dir)
        outputs.update(k_sweep=files["table"], elbow=files["elbow"], silhouette=files["silhouette"])
        print(f"K={num_clusters}: {reason}")
    labeled = labels is not None and (labels >= 0).all()
    comparison = compare_methods(
        features,
        num_clusters,
        chosen,
        spaces,
        seed,
        labels if labeled else None,
        select_by,
        score_space=score_space,
    )
    outputs.update(write_comparison(comparison, out_dir))
    predictions_csv = source.parent / "predictions.csv"
    if predictions_csv.is_file():
        with predictions_csv.open(newline="") as file:
            paths = [row["path"] for row in csv.DictReader(file)]
        if len(paths) == len(features):
            outputs["assignments"] = out_dir / "assignments.csv"
            with outputs["assignments"].open("w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["path", "cluster"])
                writer.writerows(zip(paths, comparison.predictions.tolist(), strict=True))
    print(format_comparison(comparison))
    return comparison, outputs

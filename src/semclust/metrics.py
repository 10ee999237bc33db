"""Clustering metrics: Hungarian ACC, many-to-one ACC, NMI, ARI and per-cluster cohesion.

Labels only ever feed these metrics; nothing here is used to train or select a model.
"""

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

#: The scores against ground truth, and the label-free ones, as the tables show them.
HEADLINE_SCORES = ("acc", "nmi", "ari")
LABEL_FREE_SCORES = ("silhouette", "calinski_harabasz", "davies_bouldin")
#: Each score's short name in tables and closing lines.
SCORE_TITLES = {
    "acc": "ACC",
    "nmi": "NMI",
    "ari": "ARI",
    "silhouette": "silhouette",
    "calinski_harabasz": "CH",
    "davies_bouldin": "DB",
}


def _as_label_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0):
        raise ValueError(f"{name} must hold non-negative integers")
    return array.astype(np.int64)


def contingency_matrix(predictions: Any, targets: Any) -> np.ndarray:
    """Counts ``C[cluster, class]`` of samples assigned to each cluster per true class."""
    predictions = _as_label_array(predictions, "predictions")
    targets = _as_label_array(targets, "targets")
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions and targets differ in length: {predictions.size} vs {targets.size}"
        )
    counts = np.zeros((predictions.max(initial=-1) + 1, targets.max(initial=-1) + 1), np.int64)
    np.add.at(counts, (predictions, targets), 1)
    return counts


def hungarian_match(predictions: Any, targets: Any) -> dict[int, int]:
    """One-to-one map cluster -> class that maximises the number of agreeing samples."""
    counts = contingency_matrix(predictions, targets)
    clusters, classes = linear_sum_assignment(counts, maximize=True)
    return dict(zip(clusters.tolist(), classes.tolist(), strict=True))


def hungarian_accuracy(predictions: Any, targets: Any) -> float:
    """Clustering accuracy under the best one-to-one matching of clusters to classes.

    With more clusters than classes, the unmatched clusters count as wrong; use
    :func:`many_to_one_accuracy` for over-clustering.
    """
    counts = contingency_matrix(predictions, targets)
    if counts.sum() == 0:
        raise ValueError("cannot score an empty set of predictions")
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def many_to_one_accuracy(predictions: Any, targets: Any) -> float:
    """Accuracy when every cluster is mapped to its majority class (for over-clustering)."""
    counts = contingency_matrix(predictions, targets)
    if counts.sum() == 0:
        raise ValueError("cannot score an empty set of predictions")
    return float(counts.max(axis=1).sum() / counts.sum())


def l2_normalize(features: Any) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as a new array.

    Float64 input stays float64; anything else becomes float32 first (the norm of half-
    precision features overflows).
    """
    array = np.asarray(features)
    dtype = np.float64 if array.dtype == np.float64 else np.float32
    array = np.asarray(array, dtype=dtype)
    return array / np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), 1e-12)


def cluster_cohesion(features: Any, predictions: Any) -> dict[int, dict[str, float]]:
    """Per cluster: its size and the mean cosine similarity of its members to their centroid.

    Features are L2-normalised first; the centroid is the mean of the normalised members.
    Clusters without members are left out.
    """
    features = np.asarray(features, dtype=np.float64)
    predictions = _as_label_array(predictions, "predictions")
    if features.ndim != 2 or features.shape[0] != predictions.size:
        raise ValueError(
            f"features must be (N, D) with N = {predictions.size}, got {features.shape}"
        )
    features = l2_normalize(features)
    cohesion = {}
    for cluster in np.unique(predictions):
        members = features[predictions == cluster]
        centroid = members.mean(axis=0)
        centroid /= max(np.linalg.norm(centroid), 1e-12)
        cohesion[int(cluster)] = {
            "size": int(len(members)),
            "cohesion": float((members @ centroid).mean()),
        }
    return cohesion


def clustering_scores(predictions: Any, targets: Any | None = None) -> dict[str, float]:
    """ACC, NMI, ARI and many-to-one ACC (the one to read when over-clustering).

    Without targets only the number of non-empty clusters is reported.
    """
    predictions = _as_label_array(predictions, "predictions")
    scores: dict[str, float] = {"clusters_used": int(np.unique(predictions).size)}
    if targets is None:
        return scores
    targets = _as_label_array(targets, "targets")
    scores["acc"] = hungarian_accuracy(predictions, targets)
    scores["nmi"] = float(normalized_mutual_info_score(targets, predictions))
    scores["ari"] = float(adjusted_rand_score(targets, predictions))
    scores["acc_many_to_one"] = many_to_one_accuracy(predictions, targets)
    return scores


def label_free_scores(
    features: Any, predictions: Any, silhouette_sample_size: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Scores that need no labels: silhouette (cosine, higher is better), Calinski-Harabasz
    (higher) and Davies-Bouldin (lower), on L2-normalised features.

    Silhouette costs O(N²); above ``silhouette_sample_size`` samples it is estimated on a
    seeded random subset. With fewer than two non-empty clusters the three scores are absent.
    """
    features = np.asarray(features, dtype=np.float64)
    predictions = _as_label_array(predictions, "predictions")
    scores: dict[str, float] = {}
    if not 2 <= np.unique(predictions).size < len(predictions):
        return scores
    normalized = l2_normalize(features)
    sample_size = silhouette_sample_size if len(predictions) > silhouette_sample_size else None
    scores["silhouette"] = float(
        silhouette_score(
            normalized, predictions, metric="cosine", sample_size=sample_size, random_state=seed
        )
    )
    scores["calinski_harabasz"] = float(calinski_harabasz_score(normalized, predictions))
    scores["davies_bouldin"] = float(davies_bouldin_score(normalized, predictions))
    return scores

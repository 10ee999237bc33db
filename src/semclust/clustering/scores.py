"""Scores of a clustering of deep features: k-means on them when no model assigns clusters,
then ACC/NMI/ARI (where labels exist), the label-free scores and per-cluster cohesion."""

from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from semclust.clustering.torch_search import cuda_device, fits_on_device, kmeans_torch
from semclust.metrics import cluster_cohesion, clustering_scores, l2_normalize, label_free_scores


def kmeans_predictions(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """k-means (k-means++ initialisation, 10 restarts) on L2-normalised features; on the
    GPU when there is one."""
    device = cuda_device()
    if device is not None and fits_on_device(*features.shape, device):
        return kmeans_torch(features, num_clusters, seed, device)
    normalized = l2_normalize(np.asarray(features, dtype=np.float32))
    return KMeans(num_clusters, n_init=10, random_state=seed).fit_predict(normalized)


def evaluate_clusters(
    features: np.ndarray, predictions: np.ndarray, targets: np.ndarray | None
) -> dict[str, Any]:
    """ACC/NMI/ARI where labels exist; always the label-free scores and, per cluster, its
    size and cohesion (plus the mean cohesion)."""
    # Targets of -1 mark unknown labels; ACC/NMI/ARI are computed only when none is unknown.
    labeled = targets is not None and (targets >= 0).all()
    scores: dict[str, Any] = clustering_scores(predictions, targets if labeled else None)
    scores.update(label_free_scores(features, predictions))
    cohesion = cluster_cohesion(features, predictions)
    scores["mean_cohesion"] = float(np.mean([c["cohesion"] for c in cohesion.values()]))
    scores["cohesion"] = {str(k): v for k, v in cohesion.items()}
    return scores

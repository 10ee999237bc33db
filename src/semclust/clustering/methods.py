"""The classic clustering methods: k-means, agglomerative, Gaussian mixture, DBSCAN, HDBSCAN.

Each takes an ``(N, D)`` matrix and a number of clusters and gives one label per row; the
density methods label noise -1, and :func:`assign_noise` turns their labels into a full
partition.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from semclust.clustering.features import check_choice, check_features

METHODS = ("kmeans", "agglomerative", "dbscan", "gmm", "hdbscan")
#: The parameters each method accepts; anything else is a typo and raises.
METHOD_PARAMS = {
    "kmeans": ("n_init",),
    "agglomerative": ("linkage", "max_samples"),
    "gmm": ("covariance_type", "n_init", "max_iter", "reg_covar"),
    "dbscan": ("eps", "min_samples", "eps_quantile"),
    "hdbscan": ("min_cluster_size", "min_samples"),
}
# DBSCAN's auto eps looks at the k-distance of at most this many seeded query points: the
# quantile of a few thousand distances is as good as that of all of them, and it keeps the
# neighbour search at O(sample * N) instead of O(N²).
_EPS_SAMPLE_SIZE = 2_000


def check_num_clusters(num_clusters: Any, num_samples: int) -> int:
    """``num_clusters`` as an int in [2, N), or a ValueError."""
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, int | np.integer):
        raise ValueError(f"num_clusters must be an integer, got {num_clusters!r}")
    if not 2 <= num_clusters < num_samples:
        raise ValueError(f"num_clusters must be in [2, N) = [2, {num_samples}), got {num_clusters}")
    return int(num_clusters)


def check_method_params(method: str, params: Mapping[str, Any]) -> None:
    """A ValueError naming any parameter that ``method`` does not take (see METHOD_PARAMS)."""
    unknown = sorted(set(params) - set(METHOD_PARAMS[method]))
    if unknown:
        raise ValueError(
            f"unknown parameters {unknown} for {method}; it takes {list(METHOD_PARAMS[method])}"
        )


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
    labels, _ = fit_labels(name, check_features(features), num_clusters, seed, params)
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


def fit_labels(
    name: str, features: np.ndarray, num_clusters: int, seed: int, params: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """The labels of method ``name`` on checked ``features`` (see :func:`check_features`),
    and the parameters actually used, auto values resolved (for the comparison table)."""
    check_choice(name, METHODS, "clustering method")
    check_method_params(name, params)
    num_samples = len(features)
    num_clusters = check_num_clusters(num_clusters, num_samples)
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

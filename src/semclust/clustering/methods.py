"""The classic clustering methods: k-means, agglomerative, Gaussian mixture, DBSCAN, HDBSCAN,
spectral clustering and BIRCH.

Each takes an ``(N, D)`` matrix and a number of clusters and gives one label per row; the
density methods label noise -1, and :func:`assign_noise` turns their labels into a full
partition.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.cluster import (
    DBSCAN,
    HDBSCAN,
    AgglomerativeClustering,
    Birch,
    KMeans,
    SpectralClustering,
)
from sklearn.metrics import pairwise_distances_argmin
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from semclust.clustering.features import check_choice, check_features
from semclust.clustering.neighbor_graph import (
    connected_knn_graph,
    eigengap_neighbors,
    resolve_neighbors,
)
from semclust.clustering.settings import METHODS, check_method_params

#: How spectral clustering turns its embedding into labels (sklearn's ``assign_labels``).
ASSIGN_LABELS = ("kmeans", "cluster_qr", "discretize")
#: Eigen solvers of spectral clustering without pyamg (sklearn's ``eigen_solver``).
EIGEN_SOLVERS = ("lobpcg", "arpack", "amg")
# DBSCAN's auto eps looks at the k-distance of at most this many seeded query points: the
# quantile of a few thousand distances is as good as that of all of them, and it keeps the
# neighbour search at O(sample * N) instead of O(N²).
_EPS_SAMPLE_SIZE = 2_000
#: Halvings or doublings of BIRCH's threshold before it gives up.
_BIRCH_ADJUSTMENTS = 20


def check_num_clusters(num_clusters: Any, num_samples: int) -> int:
    """``num_clusters`` as an int in [2, N), or a ValueError."""
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, int | np.integer):
        raise ValueError(f"num_clusters must be an integer, got {num_clusters!r}")
    if not 2 <= num_clusters < num_samples:
        raise ValueError(f"num_clusters must be in [2, N) = [2, {num_samples}), got {num_clusters}")
    return int(num_clusters)


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

    - ``spectral``: spectral clustering of the symmetric kNN graph (see
      :func:`~semclust.clustering.neighbor_graph.connected_knn_graph`; components are joined),
      ``n_neighbors`` ("auto": of 3 to 30, the count whose graph has the largest relative
      eigengap at ``num_clusters``, see
      :func:`~semclust.clustering.neighbor_graph.eigengap_neighbors`),
      ``assign_labels`` ("kmeans", or "cluster_qr", "discretize") and ``eigen_solver``
      ("lobpcg", or "arpack", "amg" with pyamg; lobpcg gave arpack's labels on the digits,
      COIL-20 and MNIST in 0.7 s instead of 10 s at 10k rows, 0.6 s instead of 0.2 s on
      COIL-20's 1,440).
    - ``birch``: a BIRCH tree of subclusters of radius at most ``threshold``, whose centroids
      Ward's linkage merges into ``num_clusters`` clusters; ``threshold`` ("auto": half the
      ``threshold_quantile`` (0.5) of the nearest-neighbour distances, see
      :func:`auto_birch_threshold`), ``branching_factor`` (50). The threshold is halved until
      there are at least ``num_clusters`` subclusters and doubled while there are more than
      ``max_subclusters`` (20,000), whose Ward merge would need their N² distances.

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


def auto_birch_threshold(features: np.ndarray, quantile: float, seed: int) -> float:
    """BIRCH's threshold: half the ``quantile`` of each point's distance to its nearest
    other point (on a seeded sample of at most 2,000 query points).

    Two points make a subcluster of radius half their distance, so with ``quantile=0.5`` about
    the closer half of the nearest-neighbour pairs may share a subcluster, whatever the scale
    of the features (sklearn's fixed 0.5 puts L2-normalised features into a handful of
    subclusters: 13 on the digits).
    """
    # The distance to the 2nd nearest, the point itself counted first: its nearest other.
    return auto_dbscan_eps(features, 2, quantile, seed) / 2


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
    elif name == "spectral":
        return _spectral_labels(features, num_clusters, seed, params)
    elif name == "birch":
        return _birch_labels(features, num_clusters, seed, params)
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


def _spectral_labels(
    features: np.ndarray, num_clusters: int, seed: int, params: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Spectral clustering of the connected kNN graph (see :func:`cluster_labels`)."""
    num_samples = len(features)
    requested = params.get("n_neighbors", "auto")
    gaps: dict[int, float] = {}
    if requested == "auto":
        n_neighbors, gaps = eigengap_neighbors(features, num_clusters, seed=seed)
    else:
        n_neighbors = resolve_neighbors(requested, num_samples, num_clusters)
    used: dict[str, Any] = {
        "n_neighbors": n_neighbors,
        "assign_labels": check_choice(
            params.get("assign_labels", "kmeans"), ASSIGN_LABELS, "assign_labels"
        ),
        "eigen_solver": check_choice(
            params.get("eigen_solver", "lobpcg"), EIGEN_SOLVERS, "eigen_solver"
        ),
    }
    if gaps:
        used["relative_eigengap"] = round(gaps[n_neighbors], 4)
    graph, components = connected_knn_graph(features, n_neighbors)
    if components > 1:
        used["components_joined"] = components
    model = SpectralClustering(
        num_clusters,
        affinity="precomputed",
        random_state=seed,
        **{key: used[key] for key in ("assign_labels", "eigen_solver")},
    )
    return np.asarray(model.fit_predict(graph), dtype=np.int64), used


def _birch_labels(
    features: np.ndarray, num_clusters: int, seed: int, params: Mapping[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """BIRCH with its threshold adjusted to give num_clusters to max_subclusters subclusters
    (see :func:`cluster_labels`)."""
    threshold = params.get("threshold", "auto")
    used: dict[str, Any] = {}
    if threshold == "auto":
        quantile = float(params.get("threshold_quantile", 0.5))
        if not 0 < quantile <= 1:
            raise ValueError(f"threshold_quantile must be in (0, 1], got {quantile}")
        threshold = auto_birch_threshold(features, quantile, seed)
        used["threshold_auto_quantile"] = quantile
    elif isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        raise ValueError(f"threshold must be 'auto' or a positive number, got {threshold!r}")
    branching_factor = params.get("branching_factor", 50)
    if not isinstance(branching_factor, int) or isinstance(branching_factor, bool):
        raise ValueError(f"branching_factor must be an integer >= 2, got {branching_factor!r}")
    if branching_factor < 2:
        raise ValueError(f"branching_factor must be an integer >= 2, got {branching_factor}")
    max_subclusters = params.get("max_subclusters", 20_000)
    if not isinstance(max_subclusters, int) or max_subclusters < num_clusters:
        raise ValueError(
            f"max_subclusters must be an integer >= num_clusters={num_clusters}, "
            f"got {max_subclusters!r}"
        )
    # The tree alone first (n_clusters=None); the Ward merge of its subclusters runs once their
    # count is right. Refitting the tree is cheap next to that merge.
    threshold = float(threshold)
    for _ in range(_BIRCH_ADJUSTMENTS):
        model = Birch(
            threshold=threshold,
            branching_factor=branching_factor,
            n_clusters=None,
            compute_labels=False,
        ).fit(features)
        subclusters = len(model.subcluster_centers_)
        if num_clusters <= subclusters <= max_subclusters:
            break
        threshold = threshold / 2 if subclusters < num_clusters else threshold * 2
    else:
        raise ValueError(
            f"BIRCH found {subclusters} subclusters at threshold {model.threshold:.4g}, outside "
            f"[num_clusters, max_subclusters] = [{num_clusters}, {max_subclusters}]"
        )
    model.set_params(n_clusters=num_clusters).partial_fit()
    used = {
        "threshold": threshold,
        **used,
        "branching_factor": branching_factor,
        "subclusters": subclusters,
    }
    return np.asarray(model.predict(features), dtype=np.int64), used


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

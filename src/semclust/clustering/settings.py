"""The defaults of the classic comparison and of the K sweep, in one place.

:class:`ClassicSettings` and :class:`ChooseKSettings` are plain dataclasses: the training
config registers them as Hydra structured configs (groups ``classic`` and ``choose_k``, name
``default``), and ``semclust cluster`` and the library functions read the same defaults from
them. The names each option accepts live here too, so that the training config is checked
before scikit-learn or torch load. This module imports neither Hydra nor OmegaConf.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Reductions of :mod:`semclust.clustering.features`.
REDUCTIONS = ("none", "pca", "umap", "lle", "spectral_embedding")
#: Methods of :mod:`semclust.clustering.methods`.
METHODS = ("kmeans", "agglomerative", "dbscan", "gmm", "hdbscan", "spectral", "birch")
#: The parameters each method accepts; anything else is a typo and raises.
METHOD_PARAMS = {
    "kmeans": ("n_init",),
    "agglomerative": ("linkage", "max_samples"),
    "gmm": ("covariance_type", "n_init", "max_iter", "reg_covar"),
    "dbscan": ("eps", "min_samples", "eps_quantile"),
    "hdbscan": ("min_cluster_size", "min_samples"),
    "spectral": ("n_neighbors", "assign_labels", "eigen_solver"),
    "birch": ("threshold", "threshold_quantile", "branching_factor", "max_subclusters"),
}
#: What picks the comparison's candidate (:mod:`semclust.clustering.selection`).
SELECTION_CRITERIA = ("silhouette", "calinski_harabasz", "davies_bouldin", "mean_rank")
SCORE_SPACES = ("input", "reduced")
#: Criteria for K (:mod:`semclust.clustering.choose_k`) read from the k-means sweep.
SWEEP_CRITERIA = ("silhouette", "elbow", "calinski_harabasz", "davies_bouldin")
#: Criteria for K that need the kNN graph (the mined neighbours, or an exact search).
GRAPH_CRITERIA = ("communities", "eigengap", "merge")
CRITERIA = (*SWEEP_CRITERIA, "communities", "eigengap", "gmm_bic", "merge")


def check_method_params(method: str, params: Mapping[str, Any]) -> None:
    """A ValueError naming any parameter that ``method`` does not take (see METHOD_PARAMS)."""
    unknown = sorted(set(params) - set(METHOD_PARAMS[method]))
    if unknown:
        raise ValueError(
            f"unknown parameters {unknown} for {method}; it takes {list(METHOD_PARAMS[method])}"
        )


#: The reductions compared by default. Each runs on the L2-normalised features;
#: ``n_components`` is capped at min(N, D) for PCA. UMAP takes any umap.UMAP option;
#: min_dist 0 packs clusters tightly, which suits clustering.
DEFAULT_REDUCTIONS: tuple[dict[str, Any], ...] = (
    {"name": "none"},
    {"name": "pca", "n_components": 50},
    {"name": "umap", "n_components": 10, "n_neighbors": 15, "min_dist": 0.0},
)
#: The methods compared by default. k-means, agglomerative, GMM, spectral and BIRCH make
#: ``num_clusters`` clusters; the density methods find their own number, and their noise
#: points join the nearest cluster centroid.
DEFAULT_METHODS: tuple[dict[str, Any], ...] = (
    {"name": "kmeans"},
    # Ward's merge tree needs all N² distances: skipped (noted in the table) above max_samples.
    {"name": "agglomerative", "linkage": "ward", "max_samples": 20_000},
    # diag: about 1 s on 10k x 128 features on one core; a full 128x128 covariance per
    # component took 30 s there (and 8k parameters per component to estimate from ~1k points).
    {"name": "gmm", "covariance_type": "diag", "n_init": 1},
    # eps auto: the eps that makes a fraction eps_quantile of the points DBSCAN core points.
    {"name": "dbscan", "eps": "auto", "min_samples": 10, "eps_quantile": 0.5},
    # min_cluster_size auto: max(5, N // (4 * num_clusters)), a quarter of a balanced cluster;
    # min_samples 5 (sklearn's default equals min_cluster_size) leaves less of the data as
    # noise.
    {"name": "hdbscan", "min_cluster_size": "auto", "min_samples": 5},
    # n_neighbors auto: the count of 3-30 with the largest relative eigengap at K (COIL-20:
    # 4, 0.99 ACC, where a tenth of a cluster, 7, gave 0.90). assign_labels kmeans:
    # on the digits at least as good as cluster_qr at every neighbour count from 5 to 60
    # (0.81 vs 0.79 ACC at the auto 18). eigen_solver lobpcg: arpack's labels, 0.7 s instead
    # of 10 s on 10k x 128 features.
    {
        "name": "spectral",
        "n_neighbors": "auto",
        "assign_labels": "kmeans",
        "eigen_solver": "lobpcg",
    },
    # threshold auto: half the threshold_quantile of the nearest-neighbour distances, so the
    # closer half of the nearest pairs may share a subcluster; Ward then merges the subclusters.
    {"name": "birch", "threshold": "auto", "threshold_quantile": 0.5, "branching_factor": 50},
)


@dataclass
class ClassicSettings:
    """Classic clustering of one feature matrix: every (reduction, method) pair is a
    candidate, all are scored label-free, and the best is kept."""

    #: Which features: pretext (what the pretext stage's backbone gives: SimCLR, autoencoder
    #: or a pretrained network), pixels (the flattened images) or hog (histograms of oriented
    #: gradients).
    features: str = "pretext"
    #: ``{"name": ..., **options}`` per reduction (see :data:`DEFAULT_REDUCTIONS`).
    reductions: list[dict[str, Any]] = field(
        default_factory=lambda: [dict(reduction) for reduction in DEFAULT_REDUCTIONS]
    )
    #: ``{"name": ..., **params}`` per method (see :data:`DEFAULT_METHODS`).
    methods: list[dict[str, Any]] = field(
        default_factory=lambda: [dict(method) for method in DEFAULT_METHODS]
    )
    #: What picks the candidate: silhouette, calinski_harabasz, davies_bouldin, or mean_rank
    #: (the mean of the three ranks, ties to the higher silhouette). Labels never take part.
    select_by: str = "mean_rank"
    #: Where the scores are computed: reduced (each candidate in the space it clustered;
    #: favours UMAP) or input (the L2-normalised features, one space for every candidate;
    #: favours k-means). reduced picked the better candidate in 17 of 18 runs on digits and
    #: MNIST (docs/BENCHMARKS.md).
    score_space: str = "reduced"
    #: Silhouette costs O(N²): above this many samples it is estimated on a seeded subset.
    score_sample_size: int = 5000


#: The criteria computed next to the chosen one, for the explanation (manifest and plot).
DEFAULT_K_COMPARE: tuple[str, ...] = ("silhouette", "eigengap", "gmm_bic")


@dataclass
class ChooseKSettings:
    """Choosing K without labels for ``data.num_clusters=auto`` (K in [k_min, k_max]).

    Criteria (:mod:`semclust.clustering.choose_k`): from a k-means sweep on the
    L2-normalised features silhouette, elbow, calinski_harabasz, davies_bouldin; communities
    (Louvain communities of SCAN's neighbour graph); eigengap (of the kNN graph's normalised
    Laplacian), gmm_bic (Gaussian mixtures on principal
    components), merge (over-cluster, then merge pieces by neighbour agreement)."""

    k_min: int = 2
    #: 30, so that COIL-20's K=20 lies inside the range rather than on its edge.
    k_max: int = 30
    #: The criterion whose K is used. communities: within ±1 of the true K on the digits,
    #: MNIST and COIL-20 features of seeds 0-2, where gmm_bic said 26 on MNIST and 29 on
    #: COIL-20, silhouette 14 on digits and 30 on COIL-20 (docs/BENCHMARKS.md, "Choosing K
    #: (issue 15)").
    criterion: str = "communities"
    #: Criteria also computed and recorded (manifest, plot), not used for the choice.
    compare: list[str] = field(default_factory=lambda: list(DEFAULT_K_COMPARE))
    #: Silhouette costs O(N²): above this many samples it is estimated on a seeded subset.
    sample_size: int = 5000
    #: Neighbours of the kNN graph (eigengap, merge) when no mined neighbours match the
    #: features (the mine stage's are used when they do).
    num_neighbors: int = 20
    #: communities: Louvain's modularity resolution (higher: more, smaller communities).
    #: 1.2: at 1.0 one COIL-20 seed said 18 (docs/BENCHMARKS.md).
    communities_resolution: float = 1.2
    #: communities: Louvain runs whose median count is K.
    communities_repeats: int = 5
    #: communities: a community counts as a cluster when it holds this share of an average
    #: cluster at k_max (smaller ones are stray outliers).
    communities_min_size: float = 0.5
    #: communities: read the count in units of the median community (SCAN's entropy term
    #: expects clusters of about equal size) when at least this share of the counted images
    #: lie in communities within 20 % of the median size; null keeps the plain count.
    #: COIL-20 seed 1's folder run: 23 communities, 20 in median units, 65 % of the images
    #: in median-sized ones; unequal blobs 15-36 % (docs/BENCHMARKS.md, "Choosing K").
    communities_equal_share: float | None = 0.5
    #: merge: k-means pieces to start from (0: 3 × k_max).
    merge_over_clusters: int = 0
    #: merge: two groups merge while this share of the smaller one's neighbour pairs crosses.
    merge_threshold: float = 0.1
    #: merge: a group counts as a cluster when it holds this share of an average piece.
    merge_min_size_fraction: float = 0.5
    #: gmm_bic: principal components of the L2-normalised features the mixtures are fitted on.
    gmm_dimensions: int = 16
    #: gmm_bic: full (few components make full covariances cheap) or diag.
    gmm_covariance_type: str = "full"

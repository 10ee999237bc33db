"""``communities``: K as the number of communities in SCAN's own neighbour graph.

SCAN trains each image to agree with its nearest neighbours, so the groups it can find are
the groups of that graph. :func:`communities_k` splits the kNN graph into communities with
the Louvain method (modularity, Blondel et al. 2008; networkx's implementation) and counts
those large enough to be a cluster. The graph is the one SCAN will use: its neighbour count
follows the images per cluster (:func:`neighbors_per_cluster`), which depends on K, so the
two are settled together: start from the most neighbours, count, size the neighbours for
that K, count again, until the count of neighbours stays (two or three rounds).

Measured in docs/BENCHMARKS.md ("Choosing K"): within ±1 of the true K on digits, MNIST and
COIL-20 features where the k-means sweep, GMM BIC and the eigengap each miss one of them.
"""

from collections.abc import Sequence

import networkx as nx
import numpy as np

from semclust.clustering.k_criteria import KEstimate, check_neighbors, knn_affinity

#: SCAN's neighbours: about this share of a cluster's images, within these bounds. Measured
#: on COIL-20 (72 views per object): 10 neighbours gave 0.88 ACC, 20 gave 0.84; MNIST and
#: the SCAN paper's CIFAR runs (thousands of images per cluster) use 20.
NEIGHBOR_SHARE = 1 / 7
NEIGHBOR_RANGE = (5, 20)

#: Rounds of (count communities, size the neighbours) at most; they settle in two or three.
_ROUNDS = 5


def neighbors_per_cluster(images: int, clusters: int, available: int | None = None) -> int:
    """SCAN's neighbour count for ``images`` in ``clusters`` clusters: a seventh of a
    cluster, at least 5, at most 20 (and at most the ``available`` mined ones)."""
    low, high = NEIGHBOR_RANGE
    count = min(max(round(images / max(clusters, 1) * NEIGHBOR_SHARE), low), high)
    return int(min(count, available) if available else count)


def community_sizes(neighbors: np.ndarray, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Sizes of the Louvain communities of the symmetric kNN graph, largest first."""
    graph = nx.from_scipy_sparse_array(knn_affinity(neighbors))
    communities = nx.community.louvain_communities(graph, resolution=resolution, seed=seed)
    return np.array(sorted((len(c) for c in communities), reverse=True))


def communities_k(
    neighbors: np.ndarray,
    k_values: Sequence[int],
    seed: int = 0,
    resolution: float = 1.2,
    min_size_fraction: float = 0.5,
    repeats: int = 5,
) -> KEstimate:
    """K = the communities of the neighbour graph holding at least ``min_size_fraction`` of
    an average cluster at the largest K (smaller ones are stray outliers), clipped to
    ``k_values``; the median count of ``repeats`` Louvain runs (seeds ``seed``, ``seed + 1``,
    ...: one run's count varies by one or two on COIL-20). The graph takes the first
    :func:`neighbors_per_cluster` columns of ``neighbors`` for that K (see the module
    docstring)."""
    ks = sorted(int(k) for k in k_values)
    neighbors = check_neighbors(neighbors, len(neighbors))
    images, available = neighbors.shape
    min_size = min_size_fraction * images / ks[-1]
    used = min(NEIGHBOR_RANGE[1], available)
    tried: list[int] = []
    while True:
        runs = [community_sizes(neighbors[:, :used], resolution, seed + r) for r in range(repeats)]
        counts = [int(np.sum(sizes >= min_size)) for sizes in runs]
        counted = int(np.median(counts))
        sizes = runs[counts.index(min(counts, key=lambda c: abs(c - counted)))]  # plotted
        k = int(np.clip(counted, ks[0], ks[-1]))
        tried.append(used)
        following = neighbors_per_cluster(images, k, available)
        if following in tried or len(tried) == _ROUNDS:
            break
        used = following
    reason = (
        f"{counted} of the {len(sizes)} Louvain communities (resolution {resolution:g}) of "
        f"the {used}-neighbour graph hold at least {min_size:.0f} images"
    )
    if len(set(counts)) > 1:
        reason += f" (median of {repeats} runs: {', '.join(map(str, counts))})"
    if len(tried) > 1:
        reason += f" (neighbours sized to the images per cluster: {' -> '.join(map(str, tried))})"
    if k != counted:
        reason += f"; clipped to K={k} within [{ks[0]}, {ks[-1]}]"
    return KEstimate(
        "communities",
        k,
        reason + ".",
        [float(i) for i in range(1, len(sizes) + 1)],
        [float(s) for s in sizes],
        x_label="community (largest first)",
        y_label=f"images ({used} neighbours)",
        threshold=float(min_size),
    )

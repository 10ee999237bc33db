"""``communities``: K as the number of communities in SCAN's own neighbour graph.

SCAN trains each image to agree with its nearest neighbours, so the groups it can find are
the groups of that graph. :func:`communities_k` splits the kNN graph into communities with
the Louvain method (modularity, Blondel et al. 2008; networkx's implementation) and counts
those large enough to be a cluster. The graph is the one SCAN will use: its neighbour count
follows the images per cluster (:func:`neighbors_per_cluster`), which depends on K, so the
two are settled together: start from the most neighbours, count, size the neighbours for
that K, count again, until the count of neighbours stays (two or three rounds).

The count is then read in units of the median community when the communities look equally
large (at least half of their images lie in communities within :data:`SIZE_BAND` of the
median size), as SCAN's entropy term expects clusters to be: on real features a few clusters
fall apart in two communities while others merge, so the count is off by one or two where
the images in median-sized communities are not (COIL-20, seed 1's folder run: 22 or 23
communities of 25 to 102 images whose median, 72, is one object's views; 1,440 images make
20 such). Clusters of unequal size (no common size) keep the plain count.

Measured in docs/BENCHMARKS.md ("Choosing K"): the true K on the digits, MNIST and COIL-20
features of seeds 0-2, where the plain count said 11 on digits and 22 on one COIL-20 seed,
and the k-means sweep, GMM BIC and the eigengap each miss on one of them.
"""

from collections.abc import Sequence
from dataclasses import dataclass

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


#: A community is "of the median size" within this share of it.
SIZE_BAND = 0.2


@dataclass(frozen=True)
class CommunityCount:
    """One Louvain run's communities, counted (see :func:`count_communities`)."""

    sizes: np.ndarray  # every community's images, largest first
    counted: int  # those holding at least the minimum size
    median_size: float  # the median of the counted ones (0 when none)
    equal_share: float  # the counted images in communities within SIZE_BAND of the median
    by_size: int  # the counted images in median-sized communities
    k: int  # by_size where equal_share reaches the required share, else counted


def count_communities(
    sizes: np.ndarray, min_size: float, equal_share: float | None = 0.5
) -> CommunityCount:
    """Count the communities of at least ``min_size`` images; where ``equal_share`` of their
    images lie in communities within :data:`SIZE_BAND` of the median size, read the count
    in median-sized communities instead (``equal_share=None``: never)."""
    kept = sizes[sizes >= min_size]
    if not len(kept):
        return CommunityCount(sizes, 0, 0.0, 0.0, 0, 0)
    median_size = float(np.median(kept))
    typical = np.abs(kept / median_size - 1) <= SIZE_BAND
    share = float(kept[typical].sum() / kept.sum())
    by_size = max(1, round(float(kept.sum()) / median_size))
    use_size = equal_share is not None and share >= equal_share
    return CommunityCount(
        sizes, len(kept), median_size, share, by_size, by_size if use_size else len(kept)
    )


def communities_k(
    neighbors: np.ndarray,
    k_values: Sequence[int],
    seed: int = 0,
    resolution: float = 1.2,
    min_size_fraction: float = 0.5,
    repeats: int = 5,
    equal_share: float | None = 0.5,
) -> KEstimate:
    """K = the communities of the neighbour graph holding at least ``min_size_fraction`` of
    an average cluster at the largest K (smaller ones are stray outliers), read in units of
    their median size where ``equal_share`` of their images lie in median-sized communities
    (None: the plain count; see :func:`count_communities`), clipped to ``k_values``; the
    median of ``repeats`` Louvain runs (seeds ``seed``, ``seed + 1``, ...: one run's count
    varies by one or two on COIL-20). The graph takes the first
    :func:`neighbors_per_cluster` columns of ``neighbors`` for that K (see the module
    docstring)."""
    ks = sorted(int(k) for k in k_values)
    neighbors = check_neighbors(neighbors, len(neighbors))
    images, available = neighbors.shape
    min_size = min_size_fraction * images / ks[-1]
    used = min(NEIGHBOR_RANGE[1], available)
    tried: list[int] = []
    while True:
        runs = [
            count_communities(
                community_sizes(neighbors[:, :used], resolution, seed + r),
                min_size,
                equal_share,
            )
            for r in range(repeats)
        ]
        found = int(np.median([run.k for run in runs]))
        shown = min(runs, key=lambda run: abs(run.k - found))  # the run the reason and plot show
        k = int(np.clip(found, ks[0], ks[-1]))
        tried.append(used)
        following = neighbors_per_cluster(images, k, available)
        if following in tried or len(tried) == _ROUNDS:
            break
        used = following
    reason = _communities_reason(shown, resolution, used, min_size, equal_share)
    if len({run.k for run in runs}) > 1:
        reason += f" (median of {repeats} runs: {', '.join(str(run.k) for run in runs)})"
    if len(tried) > 1:
        reason += f" (neighbours sized to the images per cluster: {' -> '.join(map(str, tried))})"
    if k != found:
        reason += f"; clipped to K={k} within [{ks[0]}, {ks[-1]}]"
    return KEstimate(
        "communities",
        k,
        reason + ".",
        [float(i) for i in range(1, len(shown.sizes) + 1)],
        [float(s) for s in shown.sizes],
        x_label="community (largest first)",
        y_label=f"images ({used} neighbours)",
        threshold=float(min_size),
        typical=shown.median_size if equal_share is not None else None,
    )


def _communities_reason(
    run: CommunityCount,
    resolution: float,
    used: int,
    min_size: float,
    equal_share: float | None,
) -> str:
    counted = (
        f"{run.counted} of the {len(run.sizes)} Louvain communities (resolution "
        f"{resolution:g}) of the {used}-neighbour graph hold at least {min_size:.0f} images"
    )
    if equal_share is None or run.by_size == run.counted:
        return counted
    median = (
        f"as many images as {run.by_size} communities of their median size "
        f"({run.median_size:.0f} images; {run.equal_share:.0%} of the images lie in "
        f"communities within {SIZE_BAND:.0%} of it)"
    )
    if run.k == run.by_size:
        return f"{counted}; together they hold {median}"
    return f"{counted} (together {median}: sizes too unequal to go by, so the count stands)"

"""The symmetric k-nearest-neighbour graph of a feature space, made connected, and its
spectrum.

Spectral clustering (:mod:`~semclust.clustering.methods`) and the spectral embedding
(:mod:`~semclust.clustering.features`) both work on this graph. Neighbours are Euclidean in
the space they are given (on L2-normalised features, the same as by cosine similarity).
How many neighbours spectral clustering links is read off the spectrum
(:func:`eigengap_neighbors`): the count whose graph falls most clearly into K groups.
"""

from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

#: Without a number of clusters to read the spectrum for: a tenth of an average cluster,
#: within these bounds (:func:`auto_neighbors`).
AUTO_NEIGHBOR_SHARE = 1 / 10
AUTO_NEIGHBOR_RANGE = (5, 20)
#: How strongly a joining edge links two components: a one-sided kNN edge's weight, so a cut
#: through it is cheap and the components stay apart unless the data say otherwise.
_JOIN_WEIGHT = 0.5


#: The neighbour counts :func:`eigengap_neighbors` compares. On COIL-20's learned features
#: 4 neighbours gave spectral clustering 0.99 ACC and the tenth-of-a-cluster rule's 7 gave
#: 0.90 (docs/BENCHMARKS.md): each object's views form a ring that few neighbours follow.
EIGENGAP_NEIGHBOR_CANDIDATES = (3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)
#: Dense eigendecomposition up to this many samples (exact, and sure to resolve repeated
#: eigenvalues such as those of disconnected cliques); ARPACK above it.
DENSE_EIGEN_MAX_SAMPLES = 3000


def auto_neighbors(num_samples: int, num_clusters: int) -> int:
    """``n_neighbors="auto"``: round(N / num_clusters / 10), at least 5, at most 20 (and at
    most N - 1)."""
    low, high = AUTO_NEIGHBOR_RANGE
    share = round(num_samples / max(num_clusters, 1) * AUTO_NEIGHBOR_SHARE)
    return int(min(max(share, low), high, num_samples - 1))


def resolve_neighbors(value: Any, num_samples: int, num_clusters: int | None) -> int:
    """``n_neighbors`` as an int in [2, N), ``"auto"`` resolved by :func:`auto_neighbors`
    (``num_clusters=None``: no auto), or a ValueError naming it."""
    if value == "auto" and num_clusters is not None:
        return auto_neighbors(num_samples, num_clusters)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        allowed = "'auto' or an integer" if num_clusters is not None else "an integer"
        raise ValueError(f"n_neighbors must be {allowed}, got {value!r}")
    if not 2 <= value < num_samples:
        raise ValueError(f"n_neighbors must be in [2, N) = [2, {num_samples}), got {value}")
    return int(value)


def connected_knn_graph(
    features: np.ndarray, n_neighbors: int, neighbors: np.ndarray | None = None
) -> tuple[scipy.sparse.csr_matrix, int]:
    """The affinity ``(A + Aᵀ) / 2`` of the 0/1 kNN graph ``A`` (each row's ``n_neighbors``
    nearest other rows), and the number of connected components it had.

    A graph in several components gives spectral methods one zero eigenvalue per component,
    so small islands (a few outliers near one another) would take the place of clusters.
    Components are therefore joined by the edges of a minimum spanning tree over one
    representative each (the member nearest the component's mean), with weight 1/2: a tree of
    single weak edges that a cut separates cheaply. Its distance matrix is C x C for C
    components, at most N / (n_neighbors + 1).

    ``neighbors``: each row's nearest other rows, nearest first, at least ``n_neighbors`` of
    them (computed here when None), so that several counts share one search.
    """
    if neighbors is None:
        connectivity = (
            NearestNeighbors(n_neighbors=n_neighbors)
            .fit(features)
            .kneighbors_graph(mode="connectivity")
        )
    else:
        connectivity = _connectivity(neighbors[:, :n_neighbors])
    graph = (0.5 * (connectivity + connectivity.T)).tocsr()
    count, component = connected_components(graph, directed=False)
    if count == 1:
        return graph, 1
    representatives = np.empty(count, dtype=np.int64)
    for index in range(count):
        members = np.flatnonzero(component == index)
        centre = features[members].mean(axis=0, keepdims=True)
        representatives[index] = members[pairwise_distances(centre, features[members]).argmin()]
    distances = pairwise_distances(features[representatives])
    # The spanning tree reads 0 as "no edge": a tiny offset keeps coinciding representatives
    # (duplicates split between components) joined.
    distances += 1e-12
    np.fill_diagonal(distances, 0.0)
    tree = minimum_spanning_tree(distances).tocoo()
    rows, cols = representatives[tree.row], representatives[tree.col]
    joins = scipy.sparse.csr_matrix(
        (np.full(2 * rows.size, _JOIN_WEIGHT), (np.r_[rows, cols], np.r_[cols, rows])),
        shape=graph.shape,
    )
    return (graph + joins).tocsr(), int(count)


def _connectivity(neighbors: np.ndarray) -> scipy.sparse.csr_matrix:
    """The 0/1 directed kNN graph of ``(N, k)`` neighbour indices, as kneighbors_graph makes it."""
    num_samples, k = neighbors.shape
    rows = np.repeat(np.arange(num_samples), k)
    return scipy.sparse.csr_matrix(
        (np.ones(rows.size), (rows, neighbors.ravel())), shape=(num_samples, num_samples)
    )


def graph_spectrum(
    graph: scipy.sparse.spmatrix,
    count: int,
    seed: int = 0,
    dense_max_samples: int = DENSE_EIGEN_MAX_SAMPLES,
) -> np.ndarray:
    """The ``count`` smallest eigenvalues (ascending) of the normalised Laplacian
    ``I - D^-1/2 W D^-1/2`` of a symmetric non-negative affinity ``W``; a dense
    decomposition up to ``dense_max_samples`` nodes, ARPACK above."""
    num_samples = graph.shape[0]
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = scipy.sparse.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    normalized = (scale @ graph @ scale).tocsr()
    count = min(count, num_samples)
    if num_samples <= dense_max_samples or count >= num_samples - 1:
        top = np.linalg.eigvalsh(normalized.toarray())[::-1][:count]
    else:
        start = np.random.default_rng(seed).uniform(0.5, 1.0, num_samples)
        top = scipy.sparse.linalg.eigsh(
            normalized,
            k=count,
            which="LA",
            v0=start,
            ncv=min(num_samples, max(4 * count, 60)),
            tol=1e-8,
            return_eigenvectors=False,
        )
    return np.sort(np.clip(1.0 - np.asarray(top), 0.0, 2.0))


def eigengap_neighbors(
    features: np.ndarray,
    num_clusters: int,
    candidates: tuple[int, ...] = EIGENGAP_NEIGHBOR_CANDIDATES,
    seed: int = 0,
) -> tuple[int, dict[int, float]]:
    """The neighbour count whose connected kNN graph splits most clearly into
    ``num_clusters`` groups, and the relative eigengap of every count tried.

    A graph of K loosely joined groups has K eigenvalues near 0 and then a jump (von Luxburg,
    2007), so the count with the largest relative gap ``(λ_{K+1} - λ_K) / λ_{K+1}`` of its
    normalised Laplacian is chosen. Too few neighbours break the graph into more pieces than
    K, and the gap then says nothing about K: counts whose plain kNN graph has more than K
    components are not taken, nor counts of N - 1 or more. With none left, the densest count
    tried is used (or :func:`auto_neighbors` for tiny sets).
    """
    num_samples = len(features)
    usable = [k for k in sorted(set(candidates)) if 2 <= k < num_samples - 1]
    if not usable:
        return auto_neighbors(num_samples, num_clusters), {}
    nearest = (
        NearestNeighbors(n_neighbors=usable[-1]).fit(features).kneighbors(return_distance=False)
    )
    gaps: dict[int, float] = {}
    for k in usable:
        graph, pieces = connected_knn_graph(features, k, neighbors=nearest)
        if pieces > num_clusters:
            continue
        # A joined graph has one component, so ARPACK need not resolve repeated zeros: it
        # gave the dense spectrum to 1e-14 on COIL-20's graphs, 5x faster.
        spectrum = graph_spectrum(graph, num_clusters + 1, seed, dense_max_samples=500)
        if len(spectrum) <= num_clusters or spectrum[num_clusters] <= 0:
            continue
        gaps[k] = float(
            (spectrum[num_clusters] - spectrum[num_clusters - 1]) / spectrum[num_clusters]
        )
    if not gaps:
        return usable[-1], {}
    return max(gaps, key=lambda k: (gaps[k], -k)), gaps

"""Label-free estimates of the number of clusters K beyond the k-means sweep.

- ``eigengap``: the largest gap between consecutive eigenvalues of the normalised Laplacian
  of the symmetrised kNN graph (von Luxburg, 2007, section 8.3): K nearly disconnected groups
  give K eigenvalues near 0, then a jump.
- ``gmm_bic``: the K whose Gaussian mixture (on PCA-reduced L2-normalised features) has the
  lowest Bayesian information criterion.
- ``merge``: over-cluster with k-means, then merge the pieces whose members' neighbours fall
  in each other (SCAN's neighbour consistency) while that agreement stays above a threshold;
  K is the number of groups left.

Each returns a :class:`KEstimate`: the K, a one-sentence reason with the numbers, and the curve
it read (for the manifest and the plot). numpy, SciPy and scikit-learn only.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from semclust.clustering.neighbor_graph import graph_spectrum
from semclust.clustering.neighbors import exact_neighbors
from semclust.metrics import l2_normalize


@dataclass
class KEstimate:
    """One criterion's answer: ``k``, why, and the curve it was read from (``x`` against
    ``y``, with axis labels), ready for JSON."""

    criterion: str
    k: int
    reason: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    x_label: str = "number of clusters K"
    y_label: str = ""
    #: A level the criterion compares the curve with (merge: its threshold), or None.
    threshold: float | None = None
    #: The typical value the criterion reads the curve in (communities: the median size).
    typical: float | None = None

    def as_dict(self) -> dict:
        """Plain types only, for the manifest."""
        return {
            "k": int(self.k),
            "reason": self.reason,
            "curve": {
                "x": self.x,
                "y": self.y,
                "x_label": self.x_label,
                "y_label": self.y_label,
                "threshold": self.threshold,
                "typical": self.typical,
            },
        }


def knn_graph(features: np.ndarray, num_neighbors: int) -> np.ndarray:
    """Each row's ``num_neighbors`` nearest rows by cosine similarity (exact search, self
    excluded), as an ``(N, k)`` index array: the mine stage's neighbours, for features that
    were not mined."""
    if not 1 <= num_neighbors < len(features):
        raise ValueError(
            f"num_neighbors must be in [1, N) = [1, {len(features)}), got {num_neighbors}"
        )
    features = np.ascontiguousarray(features, dtype=np.float32)
    return exact_neighbors(features, np.arange(len(features)), num_neighbors)


def check_neighbors(neighbors: np.ndarray, num_samples: int) -> np.ndarray:
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2 or len(neighbors) != num_samples or neighbors.shape[1] < 1:
        raise ValueError(
            f"neighbors must be (N, k) with N = {num_samples} rows, got shape {neighbors.shape}"
        )
    if neighbors.max() >= num_samples:
        raise ValueError(f"neighbors index row {neighbors.max()}, beyond N = {num_samples}")
    return neighbors.astype(np.int64, copy=False)


def knn_affinity(neighbors: np.ndarray) -> scipy.sparse.csr_matrix:
    """The symmetric 0/1 kNN graph (an edge where either row lists the other); -1 entries
    (no neighbour found) and self-loops are dropped."""
    num_samples, k = neighbors.shape
    rows = np.repeat(np.arange(num_samples), k)
    cols = neighbors.ravel()
    keep = (cols >= 0) & (cols != rows)
    graph = scipy.sparse.csr_matrix(
        (np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(num_samples, num_samples)
    )
    graph = graph.maximum(graph.T).tocsr()
    graph.data[:] = 1.0
    return graph


def laplacian_spectrum(neighbors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """The ``count`` smallest eigenvalues (ascending) of the normalised Laplacian
    ``I - D^-1/2 A D^-1/2`` of the symmetrised kNN graph ``A``."""
    return graph_spectrum(knn_affinity(neighbors), count, seed)


def eigengap_k(neighbors: np.ndarray, k_values: Sequence[int], seed: int = 0) -> KEstimate:
    """K with the largest gap ``λ_{K+1} - λ_K`` among ``k_values`` in the normalised-Laplacian
    spectrum of the kNN graph (``neighbors``: ``(N, k)`` row indices)."""
    ks = sorted(int(k) for k in k_values)
    neighbors = check_neighbors(neighbors, len(neighbors))
    spectrum = laplacian_spectrum(neighbors, ks[-1] + 1, seed)
    usable = [k for k in ks if k < len(spectrum)]
    if not usable:
        raise ValueError(f"{len(neighbors)} samples give no eigengap for K in {ks}")
    gaps = [float(spectrum[k] - spectrum[k - 1]) for k in usable]
    best = int(np.argmax(gaps))
    ranked = np.argsort(gaps)[::-1]
    reason = (
        f"largest eigengap λ{usable[best] + 1}-λ{usable[best]} = {gaps[best]:.4f} of the kNN "
        f"graph's normalised Laplacian ({neighbors.shape[1]} neighbours) at K={usable[best]}"
    )
    if len(usable) > 1:
        second = int(ranked[1])
        reason += f" (next: {gaps[second]:.4f} at K={usable[second]})"
    return KEstimate(
        "eigengap",
        usable[best],
        reason + ".",
        [float(k) for k in usable],
        gaps,
        y_label="eigengap λ(K+1) - λ(K)",
    )


def reduce_for_gmm(features: np.ndarray, dimensions: int, seed: int) -> np.ndarray:
    """L2-normalised features projected on their first ``dimensions`` principal axes (capped
    at min(N - 1, D))."""
    normalized = l2_normalize(features)
    dimensions = max(1, min(dimensions, normalized.shape[1], len(normalized) - 1))
    if dimensions == normalized.shape[1]:
        return normalized.astype(np.float64)
    return PCA(dimensions, random_state=seed).fit_transform(normalized).astype(np.float64)


def gmm_bic_k(
    features: np.ndarray,
    k_values: Sequence[int],
    seed: int,
    dimensions: int = 16,
    covariance_type: str = "full",
    max_samples: int = 20_000,
) -> KEstimate:
    """K with the lowest BIC of a Gaussian mixture on the features reduced to ``dimensions``
    principal components (fitted on a seeded sample of ``max_samples`` rows above that)."""
    if covariance_type == "full":
        # Each of the fewest (k_min) components gets at least 2 samples per parameter of its
        # mean and full covariance, d(d+3)/2: small sets are fitted in fewer dimensions.
        per_component = len(features) / (2 * min(int(k) for k in k_values))
        while dimensions > 1 and dimensions * (dimensions + 3) / 2 > per_component:
            dimensions -= 1
    reduced = reduce_for_gmm(features, dimensions, seed)
    if len(reduced) > max_samples:
        sample = np.random.default_rng(seed).choice(len(reduced), max_samples, replace=False)
        reduced = reduced[np.sort(sample)]
    ks = sorted(int(k) for k in k_values if int(k) < len(reduced))
    if not ks:
        raise ValueError(f"{len(reduced)} samples are too few for K in {sorted(k_values)}")
    bics = []
    for k in ks:
        mixture = GaussianMixture(
            k, covariance_type=covariance_type, n_init=1, reg_covar=1e-5, random_state=seed
        )
        bics.append(float(mixture.fit(reduced).bic(reduced)))
    best = int(np.argmin(bics))
    reason = (
        f"lowest BIC {bics[best]:.1f} of a {covariance_type}-covariance Gaussian mixture on "
        f"{reduced.shape[1]} principal components at K={ks[best]}"
    )
    if len(ks) > 1:
        second = sorted(range(len(ks)), key=lambda i: bics[i])[1]
        reason += f" (next: {bics[second]:.1f} at K={ks[second]})"
    return KEstimate(
        "gmm_bic",
        ks[best],
        reason + ".",
        [float(k) for k in ks],
        bics,
        y_label="GMM BIC (lower is better)",
    )


def neighbor_links(labels: np.ndarray, neighbors: np.ndarray, num_groups: int) -> np.ndarray:
    """``counts[a, b]``: how many (sample in a, its neighbour in b) pairs there are."""
    rows = np.repeat(labels, neighbors.shape[1])
    cols = neighbors.ravel()
    valid = cols >= 0
    counts = np.zeros((num_groups, num_groups), np.float64)
    np.add.at(counts, (rows[valid], labels[cols[valid]]), 1.0)
    return counts


def merge_curve(
    counts: np.ndarray, sizes: np.ndarray, num_neighbors: int
) -> tuple[list[int], list[float], list[np.ndarray]]:
    """Greedy merging of groups by neighbour agreement.

    The agreement of groups A and B is ``(n(A→B) + n(B→A)) / (2 k min(|A|, |B|))``: the share
    of the smaller group's neighbour pairs that cross to the other (1: all of them). The two
    groups that agree most merge first. Returns, for each number of groups from the start down
    to 2, the best agreement left at that point and the group of every piece then.
    """
    counts = counts.astype(np.float64).copy()
    sizes = sizes.astype(np.float64).copy()
    alive = list(range(len(sizes)))
    member_of = np.arange(len(sizes))
    group_counts, best_links, memberships = [], [], []
    while len(alive) > 1:
        sub = counts[np.ix_(alive, alive)]
        smaller = np.minimum.outer(sizes[alive], sizes[alive])
        link = (sub + sub.T) / (2.0 * num_neighbors * np.maximum(smaller, 1.0))
        np.fill_diagonal(link, -np.inf)
        i, j = np.unravel_index(int(np.argmax(link)), link.shape)
        group_counts.append(len(alive))
        best_links.append(float(link[i, j]))
        memberships.append(member_of.copy())
        keep, gone = alive[i], alive[j]
        counts[keep, :] += counts[gone, :]
        counts[:, keep] += counts[:, gone]
        sizes[keep] += sizes[gone]
        member_of[member_of == gone] = keep
        alive.remove(gone)
    return group_counts, best_links, memberships


def merge_k(
    features: np.ndarray,
    neighbors: np.ndarray,
    k_values: Sequence[int],
    seed: int,
    over_clusters: int = 60,
    threshold: float = 0.1,
    min_size_fraction: float = 0.5,
) -> KEstimate:
    """Over-cluster into ``over_clusters`` k-means pieces and merge while two groups' neighbour
    agreement (see :func:`merge_curve`) is at least ``threshold``; K is the number of groups
    left that hold at least ``min_size_fraction`` of an average piece (stray pieces of
    outliers do not count), clipped to ``k_values``."""
    ks = sorted(int(k) for k in k_values)
    neighbors = check_neighbors(neighbors, len(features))
    over = min(over_clusters, len(features) - 1)
    if over < 2:
        raise ValueError(f"{len(features)} samples are too few to over-cluster")
    labels = KMeans(over, init="k-means++", n_init=3, random_state=seed).fit_predict(
        l2_normalize(features)
    )
    sizes = np.bincount(labels, minlength=over)
    group_counts, best_links, memberships = merge_curve(
        neighbor_links(labels, neighbors, over), sizes, neighbors.shape[1]
    )
    min_size = min_size_fraction * len(features) / over
    stop = next((i for i, link in enumerate(best_links) if link < threshold), None)
    if stop is None:  # everything merged: one group
        counted, left = 1, 1
    else:
        group_sizes = np.bincount(memberships[stop], weights=sizes, minlength=over)
        counted = int(np.sum(group_sizes >= min_size))
        left = group_counts[stop]
    k = int(np.clip(counted, ks[0], ks[-1]))
    reason = (
        f"{over} k-means pieces merged while neighbour agreement ≥ {threshold:g} "
        f"({neighbors.shape[1]} neighbours) leave {left} groups, {counted} of them at least "
        f"{min_size:.0f} samples"
    )
    if k != counted:
        reason += f"; clipped to K={k} within [{ks[0]}, {ks[-1]}]"
    return KEstimate(
        "merge",
        k,
        reason + ".",
        [float(c) for c in group_counts],
        best_links,
        x_label="groups left while merging",
        y_label="best neighbour agreement left",
        threshold=threshold,
    )

"""Groups as connected components of the threshold graph, and one representative each.

Images are the nodes and every pair at or above the threshold an edge, so a chain of links
(X~A~B~Y) puts X and Y in one group even when X and Y are not alike themselves.
"""

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def component_labels(count: int, edges: np.ndarray) -> np.ndarray:
    """The component of each of ``count`` nodes joined by ``edges`` ``(M, 2)``; components
    are numbered in order of their lowest node."""
    if count == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix(
        (np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(count, count)
    )
    _, labels = connected_components(graph, directed=False)
    # scipy numbers components by discovery; renumber by lowest member for stable output.
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels].astype(np.int64)


def representatives(labels: np.ndarray, edges: np.ndarray, similarities: np.ndarray) -> np.ndarray:
    """The representative node of each component (indexed by label): the member whose links
    add up to the most similarity, the lowest node among equals (a singleton is its own)."""
    weight = np.zeros(len(labels), np.float64)
    np.add.at(weight, edges[:, 0], similarities)
    np.add.at(weight, edges[:, 1], similarities)
    nodes = np.arange(len(labels))
    ranked = np.lexsort((nodes, -weight, labels))  # by label, then heaviest, then lowest
    chosen = np.zeros(int(labels.max()) + 1 if len(labels) else 0, np.int64)
    is_first = np.r_[True, labels[ranked][1:] != labels[ranked][:-1]] if len(labels) else []
    chosen[labels[ranked][is_first]] = ranked[is_first]
    return chosen

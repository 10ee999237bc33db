"""One batch of signatures into groups: candidate pairs, their exact similarity, the links
at or above the threshold, connected components and representatives. And the sample behind
``--threshold auto``.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from semclust.grouping.components import component_labels, representatives
from semclust.grouping.methods import Method, Signatures
from semclust.grouping.threshold import ThresholdChoice, choose_threshold

#: Pairs compared per progress-bar step.
_PAIR_CHUNK = 2048


@dataclass
class Linked:
    """The groups of one set of signatures."""

    #: Component of each row (numbered by lowest row).
    labels: np.ndarray
    #: Representative row of each component (indexed by label).
    representatives: np.ndarray
    #: Similarity of each row to its component's representative (1 for the representative).
    to_representative: np.ndarray
    candidate_pairs: int
    linked_pairs: int


def pair_similarities(
    method: Method,
    signatures: Signatures,
    pairs: np.ndarray,
    progress: bool,
    what: str,
    workers: int = 1,
) -> np.ndarray:
    """``method.similarity`` of ``pairs``, in chunks behind a progress bar; in ``workers``
    threads for the methods whose comparisons release the GIL."""
    chunks = [pairs[start : start + _PAIR_CHUNK] for start in range(0, len(pairs), _PAIR_CHUNK)]
    threads = max(1, workers) if method.parallel_pairs else 1
    parts = []
    with (
        ThreadPoolExecutor(max_workers=threads) as pool,
        tqdm(total=len(pairs), desc=what, unit="pair", disable=not progress) as bar,
    ):
        for part in pool.map(lambda chunk: method.similarity(signatures, chunk), chunks):
            parts.append(part)
            bar.update(len(part))
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def link(
    method: Method,
    signatures: Signatures,
    threshold: float,
    neighbors: int,
    progress: bool = True,
    workers: int = 1,
) -> Linked:
    """Group ``signatures``: connected components of the pairs at or above ``threshold``."""
    count = len(signatures)
    pairs = method.candidates(signatures, threshold, neighbors)
    similarities = pair_similarities(
        method, signatures, pairs, progress, "comparing pairs", workers
    )
    kept = similarities >= threshold
    edges, edge_similarities = pairs[kept], similarities[kept]
    labels = component_labels(count, edges)
    chosen = representatives(labels, edges, edge_similarities)

    to_representative = np.ones(count, np.float64)
    rows = np.arange(count)
    members = rows[chosen[labels] != rows]
    if len(members):
        wanted = np.stack([members, chosen[labels[members]]], axis=1)
        wanted.sort(axis=1)
        # Members linked straight to their representative: the similarity is known.
        keys = wanted[:, 0] * count + wanted[:, 1]
        values = np.full(len(members), np.nan)
        if len(edges):
            edge_keys = edges[:, 0] * count + edges[:, 1]
            order = np.argsort(edge_keys)
            position = np.minimum(np.searchsorted(edge_keys[order], keys), len(order) - 1)
            known = edge_keys[order][position] == keys
            values[known] = edge_similarities[order[position[known]]]
        unknown = np.isnan(values)
        if unknown.any():
            values[unknown] = pair_similarities(
                method, signatures, wanted[unknown], False, "", workers
            )
        to_representative[members] = values
    return Linked(labels, chosen, to_representative, len(pairs), len(edges))


def sample_threshold(
    method: Method,
    signatures: Signatures,
    sample_size: int,
    neighbors: int,
    seed: int,
    workers: int = 1,
) -> ThresholdChoice:
    """The ``auto`` threshold from ``sample_size`` images of ``signatures`` and their
    ``neighbors`` nearest candidates (the pairs found among all of ``signatures``)."""
    count = len(signatures)
    size = min(sample_size, count)
    sampled = np.zeros(count, bool)
    sampled[np.random.default_rng(seed).choice(count, size, replace=False)] = True
    pairs = method.candidates(signatures, None, neighbors)
    pairs = pairs[sampled[pairs[:, 0]] | sampled[pairs[:, 1]]]
    similarities = pair_similarities(method, signatures, pairs, False, "", workers)
    described = (
        f"{len(pairs):,} pairs of {size:,} sampled images and their {neighbors} nearest "
        f"candidates by {method.name}"
    )
    return choose_threshold(similarities, method.step, method.default_threshold, described)

"""Candidate pairs from FAISS indexes: Hamming range and k-nearest search on packed hashes,
cosine range and k-nearest search on L2-normalised vectors.

Every function returns unique pairs ``(i, j)`` with ``i < j`` as an ``(M, 2)`` int64 array,
sorted. The searches are FAISS's exact (flat) ones, run in chunks of queries so memory stays
bounded: a popcount or a BLAS product per pair costs nanoseconds, so the N x N scan is not
what limits a folder; the expensive exact similarities are computed on the pairs found here
only, about N x neighbors of them.
"""

import numpy as np

#: Queries per FAISS call: bounds the memory of one range search's results.
_CHUNK = 4096
#: More linked pairs than this means the threshold links (nearly) everything to everything.
MAX_PAIRS = 50_000_000


def unique_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Sorted unique ``(min, max)`` pairs of two index arrays, self-pairs dropped."""
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    keep = (first != second) & (first >= 0) & (second >= 0)
    low = np.minimum(first[keep], second[keep])
    high = np.maximum(first[keep], second[keep])
    if not len(low):
        return np.zeros((0, 2), np.int64)
    base = int(high.max()) + 1
    packed = np.unique(low * base + high)
    return np.stack([packed // base, packed % base], axis=1)


def _range_pairs(index, queries: np.ndarray, radius: float, what: str) -> np.ndarray:
    """Pairs within ``radius`` of each other among the indexed rows (queries = the rows)."""
    found: list[np.ndarray] = []
    total = 0
    for start in range(0, len(queries), _CHUNK):
        limits, _, labels = index.range_search(queries[start : start + _CHUNK], radius)
        counts = np.diff(limits.astype(np.int64))
        rows = np.repeat(np.arange(start, start + len(counts), dtype=np.int64), counts)
        keep = rows < labels  # each pair once, no self-pairs
        found.append(np.stack([rows[keep], labels[keep].astype(np.int64)], axis=1))
        total += int(keep.sum())
        if total > MAX_PAIRS:
            raise ValueError(
                f"the threshold links more than {MAX_PAIRS:,} pairs of {what}; it is too low "
                "for this folder (raise it, or try --threshold auto)"
            )
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def binary_range_pairs(codes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair of packed binary codes ``(N, bytes)`` at most ``max_distance`` bits apart."""
    import faiss

    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if len(codes) < 2 or max_distance < 0:
        return np.zeros((0, 2), np.int64)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    # FAISS returns distances strictly below the radius.
    return _range_pairs(index, codes, max_distance + 1, "hashes")


def binary_neighbor_pairs(codes: np.ndarray, neighbors: int) -> np.ndarray:
    """Each packed binary code with its ``neighbors`` nearest by Hamming distance."""
    import faiss

    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if len(codes) < 2 or neighbors < 1:
        return np.zeros((0, 2), np.int64)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    k = min(neighbors + 1, len(codes))
    found = [index.search(codes[s : s + _CHUNK], k)[1] for s in range(0, len(codes), _CHUNK)]
    return _knn_to_pairs(np.concatenate(found))


def float_neighbor_pairs(vectors: np.ndarray, neighbors: int) -> np.ndarray:
    """Each L2-normalised vector with its ``neighbors`` nearest by cosine similarity."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2 or neighbors < 1:
        return np.zeros((0, 2), np.int64)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    k = min(neighbors + 1, len(vectors))
    found = [index.search(vectors[s : s + _CHUNK], k)[1] for s in range(0, len(vectors), _CHUNK)]
    return _knn_to_pairs(np.concatenate(found))


def float_range_pairs(vectors: np.ndarray, min_cosine: float) -> np.ndarray:
    """Every pair of L2-normalised vectors with cosine similarity of at least ``min_cosine``
    (and a little below: callers filter on the exact similarity)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        return np.zeros((0, 2), np.int64)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    # FAISS keeps inner products strictly above the radius; float32 rounding needs slack.
    return _range_pairs(index, vectors, float(min_cosine) - 1e-4, "embeddings")


def _knn_to_pairs(labels: np.ndarray) -> np.ndarray:
    rows = np.repeat(np.arange(len(labels), dtype=np.int64), labels.shape[1])
    return unique_pairs(rows, labels.ravel())

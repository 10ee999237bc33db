"""Nearest neighbours by cosine similarity (exact FAISS search), and how often they agree."""

import faiss
import numpy as np

from semclust.metrics import l2_normalize


def mine_neighbors(
    features: np.ndarray,
    num_neighbors: int,
    use_gpu: bool | None = None,
    query_batch_size: int = 65536,
) -> np.ndarray:
    """Indices ``(N, k)`` of each sample's ``k`` nearest neighbours by cosine similarity.

    Features are L2-normalised and searched with an exact inner-product FAISS index; the
    sample itself is never among its neighbours, even when it has exact duplicates. Queries
    run in batches so memory stays O(N·k). ``use_gpu=None`` uses a GPU when FAISS has one.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    num_samples = features.shape[0]
    if not 1 <= num_neighbors < num_samples:
        raise ValueError(
            f"cannot mine {num_neighbors} neighbours among {num_samples} samples; "
            f"num_neighbors must be between 1 and {num_samples - 1}"
        )
    # FAISS takes C-contiguous float32 only; casting before normalising keeps the arithmetic
    # in float32 whatever the input's dtype (l2_normalize keeps float64 as float64).
    features = l2_normalize(np.ascontiguousarray(features, dtype=np.float32))
    index = faiss.IndexFlatIP(features.shape[1])
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if use_gpu is None:
        use_gpu = has_gpu
    if use_gpu:
        if not has_gpu:
            raise RuntimeError("mine.use_gpu=true, but this FAISS build sees no GPU")
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(features)
    neighbors = np.empty((num_samples, num_neighbors), dtype=np.int64)
    for start in range(0, num_samples, query_batch_size):
        stop = min(start + query_batch_size, num_samples)
        # One extra result, so the sample itself can be dropped wherever it ranks.
        _, found = index.search(features[start:stop], num_neighbors + 1)
        is_self = found == np.arange(start, stop)[:, None]
        # Stable sort moves the self entry (if any) to the end; otherwise the last one drops.
        order = np.argsort(is_self, axis=1, kind="stable")
        neighbors[start:stop] = np.take_along_axis(found, order, axis=1)[:, :num_neighbors]
    return neighbors


def neighbor_accuracy(neighbor_indices: np.ndarray, targets: np.ndarray) -> float:
    """Share of mined neighbours that carry their anchor's label."""
    return float((targets[neighbor_indices] == targets[:, None]).mean())

"""Nearest neighbours by cosine similarity with FAISS, and how often they agree.

Three indexes, all over L2-normalised float32 features with inner product:

- ``exact``: a flat index, every query against every row (O(N²) work, exact);
- ``ivf``: IVF-Flat with ``nlist ≈ 4·√N`` lists, trained on a sample; ``nprobe`` lists are
  scanned per query (tuned on a sample of queries to reach a target recall unless given);
- ``hnsw``: an HNSW graph (``IndexHNSWFlat``), CPU only; ``efSearch`` tuned like ``nprobe``.

``auto`` takes ``exact`` up to :data:`AUTO_EXACT_MAX_ROWS` rows and an approximate index
above (see docs/BENCHMARKS.md, "Neighbour mining at scale"). Features may be a memory-mapped
``.npy`` (``np.load(path, mmap_mode="r")``): they are normalised and added to the index in
chunks, and queried in chunks, so memory stays about the index plus one chunk.
"""

import logging
import math
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch

from semclust.clustering.torch_search import cuda_device, exact_neighbors_torch, fits_on_device
from semclust.metrics import l2_normalize

log = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "ivf", "hnsw", "auto")
#: ``auto`` searches exactly up to this many rows: exact search of 10^5 rows took 247 s on
#: a 2-core VM, and grows as N² (docs/BENCHMARKS.md, "Neighbour mining at scale").
AUTO_EXACT_MAX_ROWS = 100_000
#: The approximate index ``auto`` takes above the threshold: IVF built and searched faster
#: than HNSW at 10^5 and 10^6 rows in that benchmark, and also runs on GPU.
AUTO_APPROXIMATE = "ivf"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
#: Rows normalised and added to an index at a time (bounds the extra memory).
ADD_CHUNK_ROWS = 65536
#: Queries used to tune ``nprobe`` / ``efSearch`` when they are not given.
TUNE_QUERIES = 200


@dataclass
class MinedNeighbors:
    """What :func:`search_neighbors` found, and how."""

    #: ``(N, k)`` int64 indices of each row's neighbours, best first, never the row itself.
    neighbors: np.ndarray
    #: The index used: ``exact``, ``ivf`` or ``hnsw`` (``auto`` resolved).
    index: str
    #: recall@k against exact search on a sample of queries: 1.0 for ``exact`` by
    #: definition, ``None`` when not measured (``recall_sample=0``).
    recall: float | None
    #: Parameters of the index (``nlist``, ``nprobe``, ``ef_search``, ...).
    params: dict = field(default_factory=dict)


def mine_neighbors(
    features: np.ndarray,
    num_neighbors: int,
    use_gpu: bool | None = None,
    query_batch_size: int = 65536,
    index: str = "exact",
    **options,
) -> np.ndarray:
    """Indices ``(N, k)`` of each sample's ``k`` nearest neighbours by cosine similarity.

    Features are L2-normalised and searched with an inner-product FAISS index (exact by
    default); the sample itself is never among its neighbours, even when it has exact
    duplicates. Queries run in batches so memory stays O(N·k). ``use_gpu=None`` uses a GPU
    when FAISS has one. ``index`` and ``options`` are those of :func:`search_neighbors`
    (which also reports the index used and the measured recall).
    """
    options.setdefault("recall_sample", 0)
    mined = search_neighbors(
        features,
        num_neighbors,
        index,
        use_gpu=use_gpu,
        query_batch_size=query_batch_size,
        **options,
    )
    return mined.neighbors


def search_neighbors(
    features: np.ndarray,
    num_neighbors: int,
    index: str = "auto",
    *,
    use_gpu: bool | None = None,
    query_batch_size: int = 65536,
    nprobe: int | None = None,
    ef_search: int | None = None,
    target_recall: float = 0.95,
    recall_sample: int = 1000,
    exact_max_rows: int = AUTO_EXACT_MAX_ROWS,
    seed: int = 0,
) -> MinedNeighbors:
    """Each row's ``num_neighbors`` nearest other rows by cosine similarity.

    ``index`` is one of :data:`INDEX_KINDS`. For ``ivf`` / ``hnsw``, ``nprobe`` /
    ``ef_search`` left ``None`` are tuned on :data:`TUNE_QUERIES` sampled queries to reach
    ``target_recall`` against exact search; the returned recall is then measured on another
    ``recall_sample`` queries (0 skips it). ``features`` may be memory-mapped.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    num_samples = features.shape[0]
    if not 1 <= num_neighbors < num_samples:
        raise ValueError(
            f"cannot mine {num_neighbors} neighbours among {num_samples} samples; "
            f"num_neighbors must be between 1 and {num_samples - 1}"
        )
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {', '.join(INDEX_KINDS)}, got {index!r}")
    torch_device = _torch_exact_device(use_gpu, features)
    if torch_device is not None and index in ("auto", "exact"):
        # Exact search on the GPU beats any approximate index on the CPU wherever it fits.
        neighbors = exact_neighbors_torch(features, num_neighbors, torch_device)
        return MinedNeighbors(neighbors, "exact", 1.0, {"device": str(torch_device)})
    use_gpu = _resolve_gpu(use_gpu) if torch_device is None else False
    kind = choose_index(num_samples, use_gpu, exact_max_rows) if index == "auto" else index
    if kind == "hnsw" and use_gpu:
        raise RuntimeError(
            "FAISS has no GPU HNSW index: use mine.index=ivf or exact with mine.use_gpu"
        )
    search, params = build_index(features, kind, use_gpu=use_gpu, seed=seed)
    if kind != "exact":
        given = nprobe if kind == "ivf" else ef_search
        if given is None:
            given = tune_search(search, features, num_neighbors, kind, target_recall, seed, use_gpu)
        set_search_parameter(search, kind, given, use_gpu)
        params["nprobe" if kind == "ivf" else "ef_search"] = int(given)
    neighbors = np.empty((num_samples, num_neighbors), dtype=np.int64)
    for start in range(0, num_samples, query_batch_size):
        stop = min(start + query_batch_size, num_samples)
        # One extra result, so the sample itself can be dropped wherever it ranks.
        _, found = search.search(_normalized(features, start, stop), num_neighbors + 1)
        neighbors[start:stop] = drop_self(found, np.arange(start, stop), num_neighbors)
    if kind != "exact":
        _repair_missing(neighbors, features, use_gpu)
    recall: float | None = 1.0
    if kind != "exact":
        recall = None
        if recall_sample > 0:
            recall = neighbor_recall(neighbors, features, recall_sample, seed + 1, use_gpu)
    return MinedNeighbors(neighbors, kind, recall, params)


def choose_index(
    num_rows: int, use_gpu: bool = False, exact_max_rows: int = AUTO_EXACT_MAX_ROWS
) -> str:
    """What ``index=auto`` takes for ``num_rows`` rows: exact up to ``exact_max_rows``,
    then :data:`AUTO_APPROXIMATE` (never HNSW on GPU, where FAISS has none)."""
    if num_rows <= exact_max_rows:
        return "exact"
    return "ivf" if use_gpu else AUTO_APPROXIMATE


def drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of ``k + 1`` results per query, without the query's own row.

    A stable sort moves the self entry (if any) to the end; otherwise the last one drops.
    """
    is_self = found == rows[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")
    return np.take_along_axis(found, order, axis=1)[:, :k]


def exact_neighbors(
    features: np.ndarray,
    rows: np.ndarray,
    num_neighbors: int,
    use_gpu: bool = False,
    chunk_rows: int = 262144,
) -> np.ndarray:
    """Exact neighbours ``(len(rows), k)`` of just ``rows`` among all rows (self excluded).

    The database is scanned in chunks of ``chunk_rows``, so a memory-mapped ``features``
    is never loaded whole: the cost is ``len(rows)·N·D``, the memory one chunk.
    """
    rows = np.asarray(rows, dtype=np.int64)
    torch_device = _torch_exact_device(use_gpu, features)
    if torch_device is not None:
        return exact_neighbors_torch(features, num_neighbors, torch_device, rows)
    queries = l2_normalize(np.ascontiguousarray(features[rows], dtype=np.float32))
    want = min(num_neighbors + 1, features.shape[0])
    scores, found = [], []
    for start in range(0, features.shape[0], chunk_rows):
        stop = min(start + chunk_rows, features.shape[0])
        flat = faiss.IndexFlatIP(features.shape[1])
        if use_gpu:
            flat = faiss.index_cpu_to_all_gpus(flat)
        flat.add(_normalized(features, start, stop))
        chunk_scores, chunk_found = flat.search(queries, min(want, stop - start))
        scores.append(chunk_scores)
        found.append(np.where(chunk_found >= 0, chunk_found + start, -1))
    all_scores, all_found = np.concatenate(scores, axis=1), np.concatenate(found, axis=1)
    best = np.argsort(-all_scores, axis=1, kind="stable")[:, :want]
    return drop_self(np.take_along_axis(all_found, best, axis=1), rows, num_neighbors)


def recall_at_k(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each row's reference neighbours that ``found`` also lists (order and
    duplicates ignored), i.e. recall@k with ``k = reference.shape[1]``."""
    if found.shape[0] != reference.shape[0]:
        raise ValueError(f"found has {found.shape[0]} rows, reference {reference.shape[0]}")
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, reference, strict=True)]
    return float(np.sum(hits) / reference.size)


def neighbor_recall(
    neighbors: np.ndarray,
    features: np.ndarray,
    sample_size: int = 1000,
    seed: int = 0,
    use_gpu: bool = False,
) -> float:
    """recall@k of mined ``neighbors`` against exact search, on ``sample_size`` rows drawn
    at random (seeded); exact search runs for just those rows against all rows."""
    num_samples = neighbors.shape[0]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(num_samples, size=min(sample_size, num_samples), replace=False))
    reference = exact_neighbors(features, rows, neighbors.shape[1], use_gpu)
    return recall_at_k(neighbors[rows], reference)


def neighbor_accuracy(neighbor_indices: np.ndarray, targets: np.ndarray) -> float:
    """Share of mined neighbours that carry their anchor's label."""
    return float((targets[neighbor_indices] == targets[:, None]).mean())


def _faiss_has_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _torch_exact_device(use_gpu: bool | None, features: np.ndarray) -> torch.device | None:
    """The CUDA device for an exact search in torch: when a GPU is wanted (or not ruled
    out), FAISS cannot use it (the PyPI wheels are CPU builds), and the features fit."""
    if use_gpu is False or _faiss_has_gpu():
        return None
    device = cuda_device()
    if device is None or not fits_on_device(features.shape[0], features.shape[1], device):
        return None
    return device


def _resolve_gpu(use_gpu: bool | None) -> bool:
    has_gpu = _faiss_has_gpu()
    if use_gpu is None:
        return has_gpu
    if use_gpu and not has_gpu:
        raise RuntimeError("mine.use_gpu=true, but this FAISS build sees no GPU")
    return bool(use_gpu)


def _normalized(features: np.ndarray, start: int, stop: int) -> np.ndarray:
    # FAISS takes C-contiguous float32 only; casting before normalising keeps the arithmetic
    # in float32 whatever the input's dtype (l2_normalize keeps float64 as float64).
    return l2_normalize(np.ascontiguousarray(features[start:stop], dtype=np.float32))


def _add_in_chunks(index: faiss.Index, features: np.ndarray) -> None:
    for start in range(0, features.shape[0], ADD_CHUNK_ROWS):
        index.add(_normalized(features, start, min(start + ADD_CHUNK_ROWS, features.shape[0])))


def build_index(
    features: np.ndarray, kind: str, *, use_gpu: bool = False, seed: int = 0
) -> tuple[faiss.Index, dict]:
    """A filled ``exact`` / ``ivf`` / ``hnsw`` inner-product index over the normalised
    ``features`` (added in chunks), and its build parameters."""
    if kind == "exact":
        return _build_flat(features, use_gpu), {}
    if kind == "ivf":
        return _build_ivf(features, use_gpu, seed)
    if kind == "hnsw":
        return _build_hnsw(features)
    raise ValueError(f"no index {kind!r}: exact, ivf or hnsw")


def set_search_parameter(index: faiss.Index, kind: str, value: int, use_gpu: bool) -> None:
    """Set ``nprobe`` (ivf) or ``efSearch`` (hnsw)."""
    _set_parameter(index, "nprobe" if kind == "ivf" else "efSearch", value, use_gpu)


def tune_search(
    index: faiss.Index,
    features: np.ndarray,
    k: int,
    kind: str,
    target: float = 0.95,
    seed: int = 0,
    use_gpu: bool = False,
) -> int:
    """The smallest ``nprobe`` (ivf: 8, 16, ... up to nlist) or ``efSearch`` (hnsw:
    max(16, k+1), doubling up to 4096) whose recall@k on :data:`TUNE_QUERIES` sampled
    queries reaches ``target`` against exact search (the largest tried if none does)."""
    if kind == "ivf":
        nlist = getattr(index, "nlist", 4096)  # a multi-GPU replica set has no nlist
        return _tune(index, features, k, "nprobe", 8, nlist, target, seed, use_gpu)
    return _tune(index, features, k, "efSearch", max(16, k + 1), 4096, target, seed, use_gpu)


def _build_flat(features: np.ndarray, use_gpu: bool) -> faiss.Index:
    index = faiss.IndexFlatIP(features.shape[1])
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    _add_in_chunks(index, features)
    return index


def _build_ivf(features: np.ndarray, use_gpu: bool, seed: int) -> tuple[faiss.Index, dict]:
    num_samples, dim = features.shape
    # ~4·√N lists, at least 39 training points each (FAISS's k-means minimum).
    nlist = max(1, min(round(4 * math.sqrt(num_samples)), num_samples // 39))
    train_size = min(num_samples, max(40 * nlist, 10_000))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(num_samples, size=train_size, replace=False))
    training = l2_normalize(np.ascontiguousarray(features[sample], dtype=np.float32))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.train(training)
    del training
    _add_in_chunks(index, features)
    return index, {"nlist": nlist, "train_size": train_size}


def _build_hnsw(features: np.ndarray) -> tuple[faiss.Index, dict]:
    index = faiss.IndexHNSWFlat(features.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    _add_in_chunks(index, features)
    return index, {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}


def _set_parameter(index: faiss.Index, name: str, value: int, use_gpu: bool) -> None:
    space = faiss.GpuParameterSpace() if use_gpu else faiss.ParameterSpace()
    space.set_index_parameter(index, name, int(value))


def _tune(
    index: faiss.Index,
    features: np.ndarray,
    k: int,
    name: str,
    first: int,
    limit: int,
    target: float,
    seed: int,
    use_gpu: bool,
) -> int:
    """The smallest of ``first, 2·first, ...`` (capped at ``limit``) whose recall@k on
    :data:`TUNE_QUERIES` sampled queries reaches ``target``."""
    num_samples = features.shape[0]
    rng = np.random.default_rng(seed + 2)
    rows = np.sort(rng.choice(num_samples, size=min(TUNE_QUERIES, num_samples), replace=False))
    reference = exact_neighbors(features, rows, k, use_gpu)
    queries = l2_normalize(np.ascontiguousarray(features[rows], dtype=np.float32))
    value = min(first, limit)
    while True:
        _set_parameter(index, name, value, use_gpu)
        _, found = index.search(queries, k + 1)
        recall = recall_at_k(drop_self(found, rows, k), reference)
        log.debug("mine: %s=%d gives recall@%d %.4f", name, value, k, recall)
        if recall >= target or value >= limit:
            if recall < target:
                log.warning("mine: %s=%d reaches recall@%d %.4f only", name, value, k, recall)
            return value
        value = min(2 * value, limit)


def _repair_missing(neighbors: np.ndarray, features: np.ndarray, use_gpu: bool) -> None:
    """Rows where an approximate index found fewer than ``k`` others (``-1``) get their
    exact neighbours instead."""
    missing = np.flatnonzero((neighbors < 0).any(axis=1))
    if missing.size:
        log.info("mine: %d rows had too few candidates; searching them exactly", missing.size)
        neighbors[missing] = exact_neighbors(features, missing, neighbors.shape[1], use_gpu)

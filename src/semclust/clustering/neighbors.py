"""Nearest neighbours by cosine similarity with FAISS, and how often they agree.

Four indexes, all over L2-normalised float32 features with inner product (built in
:mod:`~semclust.clustering.faiss_indexes`):

- ``exact``: a flat index, every query against every row (O(N²) work, exact);
- ``ivf``: IVF-Flat with ``nlist ≈ 4·√N`` lists, trained on a sample; ``nprobe`` lists are
  scanned per query (tuned on a sample of queries to reach a target recall unless given);
- ``ivfpq``: the same lists over product-quantised rows (``D/8`` bytes each); the
  ``rerank_factor·k`` best candidates by PQ are re-ranked by exact inner products read from
  the features; ``nprobe`` and ``rerank_factor`` tuned together, on the re-ranked result;
- ``hnsw``: an HNSW graph (``IndexHNSWFlat``), CPU only; ``efSearch`` tuned like ``nprobe``.

``auto`` takes ``exact`` up to :data:`AUTO_EXACT_MAX_ROWS` rows, ``ivf`` above, and ``ivfpq``
where IVF-Flat's copy of the features would pass :data:`AUTO_FLAT_MAX_BYTES` (see
docs/BENCHMARKS.md, "Neighbour mining at scale"). Features may be a memory-mapped ``.npy``
(``np.load(path, mmap_mode="r")``): they are normalised and added to the index in chunks, and
queried in chunks, so memory stays about the index plus one chunk.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np
import torch

from semclust.clustering.faiss_indexes import (
    IVF_KINDS,
    build_index,
    drop_self,
    normalized_rows,
    rows_searcher,
    set_search_parameter,
    tune_doubling,
    tune_reranked,
)
from semclust.clustering.torch_search import cuda_device, exact_neighbors_torch, fits_on_device

log = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "ivf", "ivfpq", "hnsw", "auto")
#: ``auto`` searches exactly up to this many rows: exact search of 10^5 rows took 247 s on
#: a 2-core VM, and grows as N² (docs/BENCHMARKS.md, "Neighbour mining at scale").
AUTO_EXACT_MAX_ROWS = 100_000
#: The approximate index ``auto`` takes above the threshold: IVF built and searched faster
#: than HNSW at 10^5 and 10^6 rows in that benchmark, and also runs on GPU.
AUTO_APPROXIMATE = "ivf"
#: ``auto`` takes ``ivfpq`` instead of ``ivf`` where IVF-Flat's copy of the features
#: (N·D·4 bytes) would pass this (4.2·10^6 rows of 512-D): below it IVF-Flat built faster
#: and searched as fast at recall 1.0, so PQ only pays where memory forces it
#: (docs/BENCHMARKS.md, "IVF-PQ in auto").
AUTO_FLAT_MAX_BYTES = 8 * 2**30
#: Queries used to tune ``nprobe`` / ``efSearch`` when they are not given.
TUNE_QUERIES = 200


@dataclass
class MinedNeighbors:
    """What :func:`search_neighbors` found, and how."""

    #: ``(N, k)`` int64 indices of each row's neighbours, best first, never the row itself.
    neighbors: np.ndarray
    #: The index used: ``exact``, ``ivf``, ``ivfpq`` or ``hnsw`` (``auto`` resolved).
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
    rerank_factor: int | None = None,
    seed: int = 0,
) -> MinedNeighbors:
    """Each row's ``num_neighbors`` nearest other rows by cosine similarity.

    ``index`` is one of :data:`INDEX_KINDS`. For ``ivf`` / ``ivfpq`` / ``hnsw``, ``nprobe``
    / ``ef_search`` left ``None`` are tuned on :data:`TUNE_QUERIES` sampled queries to reach
    ``target_recall`` against exact search; the returned recall is then measured on another
    ``recall_sample`` queries (0 skips it). ``ivfpq`` re-ranks ``rerank_factor ×
    num_neighbors`` candidates per query exactly (``None``: tuned with ``nprobe``).
    ``features`` may be memory-mapped.
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
    if index == "auto":
        kind = choose_index(num_samples, use_gpu, exact_max_rows, features.shape[1])
    else:
        kind = index
    if kind == "hnsw" and use_gpu:
        raise RuntimeError(
            "FAISS has no GPU HNSW index: use mine.index=ivf or exact with mine.use_gpu"
        )
    index_built, params = build_index(features, kind, use_gpu=use_gpu, seed=seed)
    search = rows_searcher(index_built, features, kind, num_neighbors)
    if kind != "exact":
        given = {"nprobe": nprobe, "ef_search": ef_search, "rerank_factor": rerank_factor}
        tuned = tune_search(
            index_built,
            features,
            num_neighbors,
            kind,
            target_recall,
            seed,
            use_gpu,
            search,
            **given,
        )
        params.update(tuned)
    neighbors = np.empty((num_samples, num_neighbors), dtype=np.int64)
    for start in range(0, num_samples, query_batch_size):
        stop = min(start + query_batch_size, num_samples)
        rows = np.arange(start, stop)
        neighbors[start:stop] = search(normalized_rows(features, slice(start, stop)), rows)
    if kind != "exact":
        _repair_missing(neighbors, features, use_gpu)
    recall: float | None = 1.0
    if kind != "exact":
        recall = None
        if recall_sample > 0:
            recall = neighbor_recall(neighbors, features, recall_sample, seed + 1, use_gpu)
    return MinedNeighbors(neighbors, kind, recall, params)


def choose_index(
    num_rows: int,
    use_gpu: bool = False,
    exact_max_rows: int = AUTO_EXACT_MAX_ROWS,
    dim: int | None = None,
) -> str:
    """What ``index=auto`` takes for ``num_rows`` rows of ``dim`` dimensions: exact up to
    ``exact_max_rows``, then :data:`AUTO_APPROXIMATE` (never HNSW on GPU, where FAISS has
    none), or ``ivfpq`` where IVF-Flat's copy of the features would pass
    :data:`AUTO_FLAT_MAX_BYTES` (``dim=None``: never)."""
    if num_rows <= exact_max_rows:
        return "exact"
    if dim is not None and 4 * num_rows * dim > AUTO_FLAT_MAX_BYTES:
        return "ivfpq"
    return "ivf" if use_gpu else AUTO_APPROXIMATE


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
    queries = normalized_rows(features, rows)
    want = min(num_neighbors + 1, features.shape[0])
    scores, found = [], []
    for start in range(0, features.shape[0], chunk_rows):
        stop = min(start + chunk_rows, features.shape[0])
        flat = faiss.IndexFlatIP(features.shape[1])
        if use_gpu:
            flat = faiss.index_cpu_to_all_gpus(flat)
        flat.add(normalized_rows(features, slice(start, stop)))
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


def tune_search(
    index: faiss.Index,
    features: np.ndarray,
    k: int,
    kind: str,
    target: float = 0.95,
    seed: int = 0,
    use_gpu: bool = False,
    search: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    *,
    nprobe: int | None = None,
    ef_search: int | None = None,
    rerank_factor: int | None = None,
) -> dict:
    """Set the search parameters of ``index`` (and of ``search``, its
    :func:`rows_searcher`): those given as they are, the others tuned on
    :data:`TUNE_QUERIES` sampled queries to reach recall@k ``target`` against exact search.

    ivf / hnsw: the smallest ``nprobe`` / ``efSearch`` that does (:func:`tune_doubling`);
    ivfpq: ``nprobe`` and ``rerank_factor`` (:func:`tune_reranked`), on the re-ranked
    result. Returns them: ``nprobe``, ``ef_search``, or ``nprobe``, ``rerank_factor`` and
    ``shortlist``.
    """
    search = search or rows_searcher(index, features, kind, k)
    name = "nprobe" if kind in IVF_KINDS else "ef_search"
    tuned = {name: nprobe if kind in IVF_KINDS else ef_search}
    if kind == "ivfpq":
        tuned["rerank_factor"] = rerank_factor
    if None in tuned.values():
        rows, recall_of = _tuning_queries(features, k, seed, use_gpu)
        queries = normalized_rows(features, rows)
        if kind == "ivfpq":
            tuned["nprobe"], tuned["rerank_factor"] = tune_reranked(
                search, queries, rows, recall_of, target, nprobe, rerank_factor, use_gpu
            )
        else:
            tuned[name] = tune_doubling(
                index, kind, k, search, queries, rows, recall_of, target, use_gpu
            )
    set_search_parameter(index, kind, tuned[name], use_gpu)
    if kind == "ivfpq":
        search.factor = tuned["rerank_factor"]
        tuned["shortlist"] = search.shortlist
    return {key: int(value) for key, value in tuned.items()}


def _tuning_queries(
    features: np.ndarray, k: int, seed: int, use_gpu: bool
) -> tuple[np.ndarray, Callable[[np.ndarray], float]]:
    """:data:`TUNE_QUERIES` sampled rows, and the recall@k of their found neighbours
    against an exact search of just those rows."""
    num_samples = features.shape[0]
    rng = np.random.default_rng(seed + 2)
    rows = np.sort(rng.choice(num_samples, size=min(TUNE_QUERIES, num_samples), replace=False))
    reference = exact_neighbors(features, rows, k, use_gpu)
    return rows, lambda found: recall_at_k(found, reference)


def _repair_missing(neighbors: np.ndarray, features: np.ndarray, use_gpu: bool) -> None:
    """Rows where an approximate index found fewer than ``k`` others (``-1``) get their
    exact neighbours instead."""
    missing = np.flatnonzero((neighbors < 0).any(axis=1))
    if missing.size:
        log.info("mine: %d rows had too few candidates; searching them exactly", missing.size)
        neighbors[missing] = exact_neighbors(features, missing, neighbors.shape[1], use_gpu)

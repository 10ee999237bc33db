"""The FAISS indexes that neighbour mining searches, filled from (memory-mapped) features.

Every index holds L2-normalised float32 rows and scores by inner product (cosine similarity):

- ``exact``: ``IndexFlatIP``, a copy of the features;
- ``ivf``: IVF-Flat, ``nlist ≈ 4·√N`` lists trained on a sample, a copy of the features;
- ``ivfpq``: the same lists with product-quantised residuals, ``m ≈ D/8`` bytes a row at
  8 bits (64 B at D = 512 instead of 2 KiB): its approximate scores only shortlist
  candidates, which :class:`RerankedSearch` orders by exact cosine similarity computed from
  the features (memory-mapped), so it holds only the codes while its ranking is exact;
- ``hnsw``: ``IndexHNSWFlat`` (CPU only), a graph over a copy of the features.

Rows are normalised and added in chunks of :data:`ADD_CHUNK_ROWS`, so a memory-mapped ``.npy``
is never loaded whole.
"""

import logging
import math
from collections.abc import Callable

import faiss
import numpy as np

from semclust.metrics import l2_normalize

log = logging.getLogger(__name__)

#: The index kinds :func:`build_index` makes.
BUILT_KINDS = ("exact", "ivf", "ivfpq", "hnsw")
#: The kinds searched with ``nprobe`` (the others: ``efSearch`` for hnsw, nothing for exact).
IVF_KINDS = ("ivf", "ivfpq")
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
#: Rows normalised and added to an index at a time (bounds the extra memory).
ADD_CHUNK_ROWS = 65536
#: Bits per product-quantiser code: 256 centroids per sub-vector, one byte each.
PQ_BITS = 8
#: Dimensions per byte of PQ code (m = D / this): 64 B a row at D = 512 with its 8 B id,
#: 28x less than IVF-Flat's (docs/BENCHMARKS.md, "Neighbour mining at scale").
PQ_DIMS_PER_CODE = 8
#: Training points per PQ centroid, 16,384 rows at 8 bits (FAISS's default, 256, trained
#: twice as long at 10^5 rows: 49 s against 23 s on a busy 2-core VM); coarser codes cost
#: little, since the shortlist is re-ranked exactly.
PQ_POINTS_PER_CENTROID = 64
#: ``ivfpq`` re-ranks this many × k candidates per query by exact inner product (the
#: tuning's first value) ...
RERANK_FACTOR = 4
#: ... and the tuning doubles it up to this.
RERANK_MAX_FACTOR = 64
#: Doubling nprobe must gain this much recall@k to be preferred to a longer shortlist.
MIN_RECALL_GAIN = 0.005
#: Queries searched and re-ranked at a time: their shortlists' ids, scores and ordering take
#: about 40 B per candidate (8192 queries × 641 candidates ≈ 210 MB).
RERANK_QUERY_ROWS = 8192


def normalized_rows(features: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    """``features[rows]`` as C-contiguous L2-normalised float32 (what FAISS takes).

    Casting before normalising keeps the arithmetic in float32 whatever the input's dtype
    (``l2_normalize`` keeps float64 as float64).
    """
    return l2_normalize(np.ascontiguousarray(features[rows], dtype=np.float32))


def add_in_chunks(index: faiss.Index, features: np.ndarray) -> None:
    """Add the normalised ``features`` to ``index``, :data:`ADD_CHUNK_ROWS` rows at a time."""
    for start in range(0, features.shape[0], ADD_CHUNK_ROWS):
        index.add(normalized_rows(features, slice(start, start + ADD_CHUNK_ROWS)))


def build_index(
    features: np.ndarray, kind: str, *, use_gpu: bool = False, seed: int = 0
) -> tuple[faiss.Index, dict]:
    """A filled index of ``kind`` (one of :data:`BUILT_KINDS`) over the normalised
    ``features``, and its build parameters."""
    if kind == "exact":
        return _on_gpus(faiss.IndexFlatIP(features.shape[1]), use_gpu, features), {}
    if kind in IVF_KINDS:
        return _build_ivf(features, kind, use_gpu, seed)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(features.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        add_in_chunks(index, features)
        return index, {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    raise ValueError(f"no index {kind!r}: {', '.join(BUILT_KINDS)}")


def set_search_parameter(index: faiss.Index, kind: str, value: int, use_gpu: bool) -> None:
    """Set ``nprobe`` (ivf, ivfpq) or ``efSearch`` (hnsw)."""
    set_parameter(index, "nprobe" if kind in IVF_KINDS else "efSearch", value, use_gpu)


def set_parameter(index: faiss.Index, name: str, value: int, use_gpu: bool) -> None:
    """Set one named search parameter of a CPU or GPU index."""
    space = faiss.GpuParameterSpace() if use_gpu else faiss.ParameterSpace()
    space.set_index_parameter(index, name, int(value))


def pq_subquantizers(dim: int) -> int:
    """``m``, the bytes of PQ code per row: the largest divisor of ``dim`` not above
    ``dim / PQ_DIMS_PER_CODE`` (FAISS splits a row into ``m`` equal sub-vectors)."""
    target = max(1, dim // PQ_DIMS_PER_CODE)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def row_norms(features: np.ndarray) -> np.ndarray:
    """The L2 norm of every row (float32, floored at 1e-12 like ``l2_normalize``), read in
    chunks of :data:`ADD_CHUNK_ROWS`."""
    norms = np.empty(features.shape[0], dtype=np.float32)
    for start in range(0, features.shape[0], ADD_CHUNK_ROWS):
        chunk = np.asarray(features[start : start + ADD_CHUNK_ROWS], dtype=np.float32)
        norms[start : start + len(chunk)] = np.linalg.norm(chunk, axis=1)
    return np.maximum(norms, 1e-12)


class RerankedSearch:
    """Neighbours from an IVF-PQ index: its best ``factor × num_neighbors`` candidates per
    query, re-ranked by exact cosine similarity computed from ``features``.

    Called as ``search(queries, rows)`` (``queries`` the normalised ``features[rows]``), it
    gives int64 ``(len(rows), num_neighbors)``, best first, each row itself excluded, ``-1``
    where fewer candidates were found. The inner products are computed by FAISS straight
    from ``features``: a memory-mapped float32 ``.npy`` (what mining writes) is read where it
    lies; another dtype or layout is copied to float32 once, whole, in memory. The row norms
    are computed once, in chunks.
    """

    def __init__(
        self, index: faiss.Index, features: np.ndarray, num_neighbors: int, factor: int
    ) -> None:
        self.index = index
        self.num_neighbors = num_neighbors
        self.factor = factor
        self.database = features
        if features.dtype != np.float32 or not features.flags.c_contiguous:
            self.database = np.ascontiguousarray(features, dtype=np.float32)
        self.norms = row_norms(self.database)

    @property
    def shortlist(self) -> int:
        return self.factor * self.num_neighbors

    def __call__(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        found = np.empty((len(rows), self.num_neighbors), dtype=np.int64)
        for start in range(0, len(rows), RERANK_QUERY_ROWS):
            chunk = slice(start, start + RERANK_QUERY_ROWS)
            found[chunk] = self._search(queries[chunk], rows[chunk])
        return found

    def _search(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        _, candidates = self.index.search(queries, self.shortlist + 1)  # +1: the row itself
        usable = (candidates >= 0) & (candidates != rows[:, None])
        candidates = np.ascontiguousarray(np.where(usable, candidates, -1))
        scores = np.empty(candidates.shape, dtype=np.float32)
        # scores[i, j] = queries[i] · database[candidates[i, j]] (-inf where the id is -1).
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(scores),
            faiss.swig_ptr(np.ascontiguousarray(queries, dtype=np.float32)),
            faiss.swig_ptr(self.database),
            faiss.swig_ptr(candidates),
            self.database.shape[1],
            len(queries),
            candidates.shape[1],
        )
        scores = np.where(usable, scores / self.norms[np.where(usable, candidates, 0)], -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.num_neighbors]
        best = np.take_along_axis(candidates, order, axis=1)
        return np.where(np.take_along_axis(usable, order, axis=1), best, -1)


def rows_searcher(
    index: faiss.Index, features: np.ndarray, kind: str, num_neighbors: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``search(queries, rows)``: the ``num_neighbors`` neighbours of ``rows`` (their
    normalised features are ``queries``) found by ``index``, each row itself excluded.

    For ``ivfpq`` a :class:`RerankedSearch` with :data:`RERANK_FACTOR` (until tuned).
    """
    if kind == "ivfpq":
        return RerankedSearch(index, features, num_neighbors, RERANK_FACTOR)

    def search(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # One extra result, so the row itself can be dropped wherever it ranks.
        _, found = index.search(queries, num_neighbors + 1)
        return drop_self(found, rows, num_neighbors)

    return search


def drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of ``k + 1`` results per query, without the query's own row.

    A stable sort moves the self entry (if any) to the end; otherwise the last one drops.
    """
    is_self = found == rows[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")
    return np.take_along_axis(found, order, axis=1)[:, :k]


def tune_doubling(
    index: faiss.Index,
    kind: str,
    k: int,
    search: Callable[[np.ndarray, np.ndarray], np.ndarray],
    queries: np.ndarray,
    rows: np.ndarray,
    recall_of: Callable[[np.ndarray], float],
    target: float,
    use_gpu: bool = False,
) -> int:
    """The smallest ``nprobe`` (ivf: 8, 16, ... up to nlist) or ``efSearch`` (hnsw:
    max(16, k+1), doubling up to 4096) with ``recall_of(search(queries, rows)) >=
    target`` (the largest tried if none does)."""
    if kind in IVF_KINDS:
        name, value, limit = "nprobe", 8, getattr(index, "nlist", 4096)  # replicas: no nlist
    else:
        name, value, limit = "efSearch", max(16, k + 1), 4096
    value = min(value, limit)
    while True:
        set_parameter(index, name, value, use_gpu)
        recall = recall_of(search(queries, rows))
        log.debug("mine: %s=%d gives recall@%d %.4f", name, value, k, recall)
        if recall >= target or value >= limit:
            if recall < target:
                log.warning("mine: %s=%d reaches recall@%d %.4f only", name, value, k, recall)
            return value
        value = min(2 * value, limit)


def tune_reranked(
    search: RerankedSearch,
    queries: np.ndarray,
    rows: np.ndarray,
    recall_of: Callable[[np.ndarray], float],
    target: float,
    nprobe: int | None = None,
    factor: int | None = None,
    use_gpu: bool = False,
) -> tuple[int, int]:
    """``nprobe`` and the shortlist factor (those not given) for ``search`` to reach
    ``recall_of(search(queries, rows)) >= target``; sets and returns them.

    From nprobe 8 and factor :data:`RERANK_FACTOR`, each step doubles nprobe if that gains
    at least :data:`MIN_RECALL_GAIN`, else doubles the factor (up to
    :data:`RERANK_MAX_FACTOR`): once the lists scanned hold the true neighbours, only a
    longer shortlist gets past PQ's coarse ranking of them. Stops at the target, or with a
    warning when neither can grow.
    """
    limit = getattr(search.index, "nlist", 4096)  # a multi-GPU replica set has no nlist
    probe = nprobe or min(8, limit)
    search.factor = factor or RERANK_FACTOR

    def recall_with(value: int) -> float:
        set_parameter(search.index, "nprobe", value, use_gpu)
        return recall_of(search(queries, rows))

    recall = recall_with(probe)
    while recall < target:
        more_probes = None
        if nprobe is None and probe < limit:
            more_probes = min(2 * probe, limit)
            gained = recall_with(more_probes)
            if gained - recall >= MIN_RECALL_GAIN:
                probe, recall = more_probes, gained
                continue
            set_parameter(search.index, "nprobe", probe, use_gpu)
        if factor is None and search.factor < RERANK_MAX_FACTOR:
            search.factor = min(2 * search.factor, RERANK_MAX_FACTOR)
            recall = recall_of(search(queries, rows))
        elif more_probes is not None:  # small gains, but nothing else left to grow
            probe, recall = more_probes, gained
        else:
            log.warning(
                "mine: ivfpq reaches recall@%d %.4f only (nprobe %d, shortlist %d)",
                search.num_neighbors,
                recall,
                probe,
                search.shortlist,
            )
            break
        log.debug("mine: nprobe=%d, shortlist %d: recall %.4f", probe, search.shortlist, recall)
    set_parameter(search.index, "nprobe", probe, use_gpu)
    return probe, search.factor


def _on_gpus(index: faiss.Index, use_gpu: bool, features: np.ndarray) -> faiss.Index:
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    add_in_chunks(index, features)
    return index


def _build_ivf(
    features: np.ndarray, kind: str, use_gpu: bool, seed: int
) -> tuple[faiss.Index, dict]:
    num_samples, dim = features.shape
    # ~4·√N lists, at least 39 training points each (FAISS's k-means minimum).
    nlist = max(1, min(round(4 * math.sqrt(num_samples)), num_samples // 39))
    train_size = min(num_samples, max(40 * nlist, 10_000))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(num_samples, size=train_size, replace=False))
    quantizer = faiss.IndexFlatIP(dim)
    params: dict = {"nlist": nlist, "train_size": train_size}
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        # A PQ code's k-means needs at least 2**bits training points; tiny sets get fewer bits.
        bits = min(PQ_BITS, int(math.log2(train_size)))
        m = pq_subquantizers(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)
        index.pq.cp.seed = seed
        index.pq.cp.max_points_per_centroid = PQ_POINTS_PER_CENTROID
        params.update({"m": m, "bits": bits})
    index.cp.seed = seed
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.train(normalized_rows(features, sample))
    add_in_chunks(index, features)
    return index, params

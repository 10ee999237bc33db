"""IVF-PQ with exact re-ranking (issue 14): recall against exact search, the re-ranking
itself, its tuning, and what ``auto`` makes of it."""

import faiss
import numpy as np
import pytest

from semclust.clustering import neighbors
from semclust.clustering.faiss_indexes import (
    RERANK_FACTOR,
    RerankedSearch,
    build_index,
    drop_self,
    normalized_rows,
    pq_subquantizers,
    set_search_parameter,
)
from semclust.clustering.neighbors import (
    AUTO_FLAT_MAX_BYTES,
    choose_index,
    mine_neighbors,
    recall_at_k,
    search_neighbors,
)


def clustered(num_samples: int = 3000, dim: int = 32, centres: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    labels = rng.integers(0, centres, size=num_samples)
    return (means[labels] + 0.5 * rng.normal(size=(num_samples, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return clustered()


@pytest.fixture(scope="module")
def exact(features) -> np.ndarray:
    return mine_neighbors(features, 10, use_gpu=False)


def test_ivfpq_reaches_the_target_recall_after_reranking(features, exact):
    mined = search_neighbors(features, 10, "ivfpq", use_gpu=False, recall_sample=500)
    assert mined.index == "ivfpq"
    assert mined.neighbors.shape == (len(features), 10) and mined.neighbors.dtype == np.int64
    assert (mined.neighbors >= 0).all()
    assert not (mined.neighbors == np.arange(len(features))[:, None]).any()
    assert recall_at_k(mined.neighbors, exact) >= 0.95
    assert mined.recall >= 0.95  # the sampled estimate, as the manifest records it
    params = mined.params
    assert (params["m"], params["bits"]) == (4, 8)  # 32-D rows: 4 bytes of code each
    assert params["shortlist"] == params["rerank_factor"] * 10
    assert 1 <= params["nprobe"] <= params["nlist"]


def test_without_the_exact_reranking_the_same_check_fails(features, exact, monkeypatch):
    """A planted bug: candidates kept in PQ's own order. The recall check above must catch
    it, and so must the recall measured for the manifest."""

    def pq_order_only(self, queries, rows):
        _, found = self.index.search(queries, self.num_neighbors + 1)
        return drop_self(found, rows, self.num_neighbors)

    monkeypatch.setattr(RerankedSearch, "__call__", pq_order_only)
    mined = search_neighbors(features, 10, "ivfpq", use_gpu=False, recall_sample=500)
    assert recall_at_k(mined.neighbors, exact) < 0.9
    assert mined.recall < 0.9


def test_a_shortlist_of_every_row_reranks_to_the_exact_neighbours():
    features = np.random.default_rng(1).normal(size=(400, 16)).astype(np.float32)
    features[::7] *= 5.0  # norms differ: the scores must be cosines, not raw products
    index, _ = build_index(features, "ivfpq", seed=0)
    set_search_parameter(index, "ivfpq", index.nlist, False)  # every list scanned
    search = RerankedSearch(index, features, 6, factor=100)  # 600 candidates >= 399 rows
    rows = np.arange(400)
    found = search(normalized_rows(features, slice(None)), rows)
    np.testing.assert_array_equal(found, mine_neighbors(features, 6, use_gpu=False))


def test_too_few_candidates_are_marked_and_searched_exactly():
    features = clustered(num_samples=300, dim=16, centres=3)
    index, _ = build_index(features, "ivfpq", seed=0)
    set_search_parameter(index, "ivfpq", 1, False)  # one list: some rows find few others
    search = RerankedSearch(index, features, 150, factor=1)
    found = search(normalized_rows(features, slice(None)), np.arange(300))
    assert (found == -1).any()  # fewer than k candidates in a row's own list
    mined = search_neighbors(features, 150, "ivfpq", use_gpu=False, nprobe=1, rerank_factor=1)
    assert (mined.neighbors >= 0).all()  # repaired by an exact search of those rows
    exact = search_neighbors(features, 150, "exact", use_gpu=False).neighbors
    short = np.flatnonzero((found == -1).any(axis=1))
    for row in short:
        assert set(mined.neighbors[row]) == set(exact[row]), row


def test_given_nprobe_and_rerank_factor_are_used(features):
    mined = search_neighbors(
        features, 5, "ivfpq", use_gpu=False, nprobe=3, rerank_factor=2, recall_sample=0
    )
    assert (mined.params["nprobe"], mined.params["rerank_factor"]) == (3, 2)
    assert mined.params["shortlist"] == 10 and mined.recall is None


def test_the_tuning_lengthens_the_shortlist_once_more_lists_stop_helping(features):
    """4 bytes of code rank 32-D neighbours coarsely: scanning more lists cannot fix that,
    re-ranking more candidates does."""
    mined = search_neighbors(features, 10, "ivfpq", use_gpu=False, recall_sample=0)
    assert mined.params["rerank_factor"] > RERANK_FACTOR
    assert mined.params["nprobe"] < mined.params["nlist"]  # no pointless full scan


def test_reranking_reads_other_dtypes_and_memory_mapped_files(tmp_path, features, exact):
    np.save(tmp_path / "half.npy", features.astype(np.float16))
    mapped = np.load(tmp_path / "half.npy", mmap_mode="r")
    mined = search_neighbors(mapped, 10, "ivfpq", use_gpu=False, query_batch_size=700)
    assert recall_at_k(mined.neighbors, exact) >= 0.95


def test_product_quantiser_sizes():
    assert pq_subquantizers(512) == 64  # 64 bytes a row instead of 2 KiB
    assert pq_subquantizers(128) == 16
    assert pq_subquantizers(100) == 10  # the largest divisor of 100 up to 12
    assert pq_subquantizers(7) == 1
    index, params = build_index(clustered(num_samples=100, dim=16), "ivfpq", seed=0)
    assert params["bits"] == 6  # 100 training rows: 64 centroids per code at most
    assert isinstance(index, faiss.IndexIVFPQ)


def test_auto_takes_ivfpq_where_ivf_flat_would_hold_too_much(monkeypatch):
    rows_at_limit = AUTO_FLAT_MAX_BYTES // (4 * 512)
    assert choose_index(rows_at_limit, dim=512) == "ivf"
    assert choose_index(rows_at_limit + 1, dim=512) == "ivfpq"
    assert choose_index(rows_at_limit + 1, use_gpu=True, dim=512) == "ivfpq"
    assert choose_index(10**8) == "ivf"  # without a dimension, the flat index is taken to fit
    small = clustered(num_samples=400)
    monkeypatch.setattr(neighbors, "AUTO_FLAT_MAX_BYTES", 4 * 400 * 32 - 1)
    mined = search_neighbors(small, 3, "auto", use_gpu=False, exact_max_rows=100)
    assert mined.index == "ivfpq"

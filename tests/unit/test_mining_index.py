"""Approximate neighbour indexes (issue 14): recall against exact search, ``auto``, and the
recall measurement itself."""

import numpy as np
import pytest

from semclust.clustering.neighbors import (
    AUTO_EXACT_MAX_ROWS,
    choose_index,
    exact_neighbors,
    mine_neighbors,
    neighbor_recall,
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


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_reach_the_target_recall(features, exact, index):
    mined = search_neighbors(features, 10, index, use_gpu=False, recall_sample=500)
    assert mined.index == index
    assert mined.neighbors.shape == (len(features), 10)
    assert mined.neighbors.dtype == np.int64
    assert (mined.neighbors >= 0).all()
    assert not (mined.neighbors == np.arange(len(features))[:, None]).any()
    assert recall_at_k(mined.neighbors, exact) >= 0.95
    assert mined.recall >= 0.95  # the sampled estimate agrees
    assert ("nprobe" if index == "ivf" else "ef_search") in mined.params


def test_fixed_nprobe_is_used(features):
    mined = search_neighbors(features, 5, "ivf", use_gpu=False, nprobe=3, recall_sample=0)
    assert mined.params["nprobe"] == 3
    assert mined.recall is None


def test_exact_index_reports_recall_one_without_measuring(features, exact):
    mined = search_neighbors(features, 10, "exact", use_gpu=False)
    assert (mined.index, mined.recall, mined.params) == ("exact", 1.0, {})
    np.testing.assert_array_equal(mined.neighbors, exact)


def test_auto_picks_exact_for_small_sets(features, exact):
    assert choose_index(len(features)) == "exact"
    assert choose_index(AUTO_EXACT_MAX_ROWS) == "exact"
    assert choose_index(AUTO_EXACT_MAX_ROWS + 1) == "ivf"
    assert choose_index(AUTO_EXACT_MAX_ROWS + 1, use_gpu=True) == "ivf"  # no GPU HNSW
    mined = search_neighbors(features, 10, "auto", use_gpu=False)
    assert mined.index == "exact"
    np.testing.assert_array_equal(mined.neighbors, exact)
    small = features[:400]
    assert search_neighbors(small, 3, "auto", use_gpu=False, exact_max_rows=100).index == "ivf"


def test_unknown_index_raises(features):
    with pytest.raises(ValueError, match="index must be one of"):
        search_neighbors(features, 3, "lsh", use_gpu=False)


def test_recall_at_k_constructed_cases():
    reference = np.array([[1, 2, 3, 4], [0, 2, 3, 4]])
    assert recall_at_k(reference, reference) == 1.0
    assert recall_at_k(reference[:, ::-1], reference) == 1.0  # order does not matter
    half_wrong = np.array([[1, 2, 7, 8], [0, 2, 7, 8]])
    assert recall_at_k(half_wrong, reference) == 0.5
    assert recall_at_k(np.array([[1, 2, 3, 9], [5, 6, 7, 8]]), reference) == pytest.approx(3 / 8)


def test_neighbor_recall_against_exact(features, exact):
    assert neighbor_recall(exact, features, sample_size=200, seed=3) == 1.0
    wrong = exact.copy()
    wrong[:, 5:] = (wrong[:, 5:] + 1500) % len(features)  # half of each row replaced
    wrong_recall = neighbor_recall(wrong, features, sample_size=200, seed=3)
    assert 0.5 <= wrong_recall < 0.55  # a shifted index can still land on a true neighbour


def test_exact_neighbors_of_some_rows_match_full_search_in_chunks(features, exact):
    rows = np.array([0, 7, 1234, 2999])
    np.testing.assert_array_equal(exact_neighbors(features, rows, 10, chunk_rows=333), exact[rows])


@pytest.mark.parametrize("index", ["exact", "ivf", "ivfpq", "hnsw"])
def test_search_from_a_memory_mapped_npy(tmp_path, features, exact, index):
    np.save(tmp_path / "features.npy", features)
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    mined = search_neighbors(mapped, 10, index, use_gpu=False, query_batch_size=700)
    if index == "exact":
        np.testing.assert_array_equal(mined.neighbors, exact)
    else:
        assert recall_at_k(mined.neighbors, exact) >= 0.95


def test_config_checks_cover_the_mine_index_options(compose_config):
    from semclust.config_checks import ConfigError, check_config

    check_config(compose_config("train", ["mine.index=ivf", "mine.nprobe=16"]))
    check_config(compose_config("train", ["mine.index=ivfpq", "mine.rerank_factor=8"]))
    for override, key in [
        ("mine.index=lsh", "mine.index"),
        ("mine.nprobe=0", "mine.nprobe"),
        ("mine.ef_search=-1", "mine.ef_search"),
        ("mine.rerank_factor=0", "mine.rerank_factor"),
        ("mine.target_recall=0", "mine.target_recall"),
        ("mine.target_recall=1.5", "mine.target_recall"),
        ("mine.recall_sample=-1", "mine.recall_sample"),
        ("mine.exact_max_rows=-5", "mine.exact_max_rows"),
    ]:
        with pytest.raises(ConfigError, match=key):
            check_config(compose_config("train", [override]))

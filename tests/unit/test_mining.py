"""Neighbour mining against a brute-force cosine-similarity search."""

import faiss
import numpy as np
import pytest

from semclust.clustering.neighbors import mine_neighbors, neighbor_accuracy


def brute_force_neighbors(features: np.ndarray, k: int) -> np.ndarray:
    normalised = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarities = normalised.astype(np.float64) @ normalised.T.astype(np.float64)
    np.fill_diagonal(similarities, -np.inf)
    return np.argsort(-similarities, axis=1, kind="stable")[:, :k]


def random_features(num_samples: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_samples, dim)) * rng.uniform(0.5, 5.0, size=(num_samples, 1))


def assert_no_self(neighbors: np.ndarray) -> None:
    assert not (neighbors == np.arange(len(neighbors))[:, None]).any()


@pytest.mark.parametrize(("num_samples", "dim", "k"), [(2, 3, 1), (20, 4, 3), (57, 8, 10)])
def test_matches_brute_force_top_k_in_order(num_samples: int, dim: int, k: int):
    features = random_features(num_samples, dim, seed=num_samples)
    neighbors = mine_neighbors(features, k, use_gpu=False)
    assert neighbors.shape == (num_samples, k)
    assert neighbors.dtype == np.int64
    np.testing.assert_array_equal(neighbors, brute_force_neighbors(features, k))
    assert_no_self(neighbors)


@pytest.mark.parametrize("query_batch_size", [1, 7, 50])
def test_query_batches_give_the_same_result(query_batch_size: int):
    features = random_features(50, 6, seed=1)
    whole = mine_neighbors(features, 5, use_gpu=False)
    batched = mine_neighbors(features, 5, use_gpu=False, query_batch_size=query_batch_size)
    np.testing.assert_array_equal(batched, whole)
    np.testing.assert_array_equal(batched, brute_force_neighbors(features, 5))


@pytest.mark.parametrize("query_batch_size", [4, 65536])
@pytest.mark.parametrize("copies", [2, 3, 5])
def test_exact_duplicates_never_list_the_sample_itself(copies: int, query_batch_size: int):
    unique = random_features(10, 5, seed=copies)
    features = np.tile(unique, (copies, 1))  # row i duplicates rows i +- 10, i +- 20, ...
    k = copies - 1
    neighbors = mine_neighbors(features, k, use_gpu=False, query_batch_size=query_batch_size)
    assert_no_self(neighbors)
    for i, row in enumerate(neighbors):
        assert set(row.tolist()) == {j for j in range(len(features)) if j % 10 == i % 10} - {i}


def test_all_identical_rows_list_every_other_sample():
    features = np.ones((6, 3), dtype=np.float32)
    neighbors = mine_neighbors(features, 5, use_gpu=False)
    for i, row in enumerate(neighbors):
        assert sorted(row.tolist()) == [j for j in range(6) if j != i]


@pytest.mark.parametrize("k", [0, -1, 8, 9])
def test_invalid_number_of_neighbors_raises(k: int):
    with pytest.raises(ValueError, match="num_neighbors must be between 1 and 7"):
        mine_neighbors(random_features(8, 3, seed=0), k, use_gpu=False)


def test_features_must_be_two_dimensional():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mine_neighbors(np.ones(5), 1, use_gpu=False)


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="this FAISS build sees a GPU")
def test_use_gpu_without_a_gpu_raises():
    with pytest.raises(RuntimeError, match="sees no GPU"):
        mine_neighbors(random_features(8, 3, seed=0), 2, use_gpu=True)


def test_neighbor_accuracy_hand_made_case():
    targets = np.array([0, 0, 0, 1])
    neighbors = np.array([[1, 2], [0, 3], [0, 1], [0, 1]])
    # Matches per row: 2, 1, 2, 0 out of 8 neighbours.
    assert neighbor_accuracy(neighbors, targets) == pytest.approx(5 / 8)


def test_neighbor_accuracy_is_one_within_the_class_and_zero_across():
    targets = np.array([0, 1, 0, 1, 0, 1])
    neighbors = np.array([[2, 4], [3, 5], [0, 4], [1, 5], [0, 2], [1, 3]])
    assert neighbor_accuracy(neighbors, targets) == 1.0
    across = np.array([[1, 3], [0, 2], [1, 5], [0, 4], [3, 5], [2, 4]])
    assert neighbor_accuracy(across, targets) == 0.0

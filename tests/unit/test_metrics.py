"""Clustering metrics against hand-computed cases, brute force and scikit-learn."""

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from semclust.metrics import (
    cluster_cohesion,
    clustering_scores,
    contingency_matrix,
    hungarian_accuracy,
    hungarian_match,
    many_to_one_accuracy,
)


def naive_contingency(predictions: list[int], targets: list[int]) -> list[list[int]]:
    counts = [[0] * (max(targets) + 1) for _ in range(max(predictions) + 1)]
    for p, t in zip(predictions, targets, strict=True):
        counts[p][t] += 1
    return counts


def brute_force_accuracy(predictions: list[int], targets: list[int]) -> float:
    """Best one-to-one matching by trying every injective map between clusters and classes."""
    counts = naive_contingency(predictions, targets)
    rows, cols = len(counts), len(counts[0])
    if rows <= cols:
        best = max(
            sum(counts[r][perm[r]] for r in range(rows))
            for perm in itertools.permutations(range(cols), rows)
        )
    else:
        best = max(
            sum(counts[perm[c]][c] for c in range(cols))
            for perm in itertools.permutations(range(rows), cols)
        )
    return best / len(predictions)


def naive_cohesion(features: np.ndarray, predictions: list[int]) -> dict[int, tuple[int, float]]:
    result = {}
    for cluster in sorted(set(predictions)):
        members = []
        for row, p in zip(features.tolist(), predictions, strict=True):
            if p == cluster:
                norm = math.sqrt(sum(x * x for x in row))
                members.append([x / norm for x in row])
        centroid = [sum(m[d] for m in members) / len(members) for d in range(len(members[0]))]
        norm = math.sqrt(sum(x * x for x in centroid))
        centroid = [x / norm for x in centroid]
        sims = [sum(a * b for a, b in zip(m, centroid, strict=True)) for m in members]
        result[cluster] = (len(members), sum(sims) / len(sims))
    return result


def random_labels(size: int, num_labels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_labels, size)


class TestHungarianAccuracy:
    @pytest.mark.parametrize(("size", "num_classes"), [(1, 1), (10, 3), (100, 10), (500, 20)])
    def test_any_permutation_of_the_labels_scores_one(self, size: int, num_classes: int):
        for seed in range(3):
            targets = random_labels(size, num_classes, seed)
            permutation = np.random.default_rng(seed + 10).permutation(num_classes)
            predictions = permutation[targets]
            assert hungarian_accuracy(predictions, targets) == 1.0
            assert many_to_one_accuracy(predictions, targets) == 1.0

    def test_hand_made_case(self):
        # Cluster 0 holds class 1 twice, cluster 1 class 0 twice, cluster 2 one of 0 and of 2.
        predictions, targets = [0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]
        assert hungarian_accuracy(predictions, targets) == pytest.approx(5 / 6)
        assert hungarian_match(predictions, targets) == {0: 1, 1: 0, 2: 2}

    def test_more_clusters_than_classes_leaves_extra_clusters_wrong(self):
        predictions, targets = [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]
        assert hungarian_accuracy(predictions, targets) == pytest.approx(4 / 6)
        assert many_to_one_accuracy(predictions, targets) == 1.0

    def test_fewer_clusters_than_classes(self):
        predictions, targets = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
        assert hungarian_accuracy(predictions, targets) == pytest.approx(4 / 6)
        assert hungarian_match(predictions, targets) == {0: 0, 1: 2}

    @pytest.mark.parametrize(("num_clusters", "num_classes"), [(3, 3), (5, 3), (2, 6), (6, 6)])
    def test_matches_brute_force_matching(self, num_clusters: int, num_classes: int):
        for seed in range(5):
            predictions = random_labels(40, num_clusters, seed).tolist()
            targets = random_labels(40, num_classes, seed + 50).tolist()
            assert hungarian_accuracy(predictions, targets) == pytest.approx(
                brute_force_accuracy(predictions, targets)
            )

    def test_empty_input_raises(self):
        with pytest.raises(ValueError, match="empty"):
            hungarian_accuracy([], [])


class TestManyToOneAccuracy:
    def test_hand_made_case(self):
        # Majorities: cluster 0 -> 2 of class 0, cluster 1 -> 3 of class 1, cluster 2 -> 1.
        predictions = [0, 0, 0, 1, 1, 1, 1, 2]
        targets = [0, 0, 1, 1, 1, 1, 0, 2]
        assert many_to_one_accuracy(predictions, targets) == pytest.approx(6 / 8)

    def test_is_never_below_hungarian_accuracy(self):
        for seed in range(5):
            predictions, targets = random_labels(60, 8, seed), random_labels(60, 4, seed + 1)
            assert many_to_one_accuracy(predictions, targets) >= hungarian_accuracy(
                predictions, targets
            )


class TestContingencyMatrix:
    def test_hand_made_case(self):
        counts = contingency_matrix([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2])
        np.testing.assert_array_equal(counts, [[0, 2, 0], [2, 0, 0], [1, 0, 1]])

    @pytest.mark.parametrize(("num_clusters", "num_classes"), [(1, 1), (4, 7), (9, 2)])
    def test_matches_loop_reference(self, num_clusters: int, num_classes: int):
        predictions = random_labels(80, num_clusters, 0).tolist()
        targets = random_labels(80, num_classes, 1).tolist()
        counts = contingency_matrix(predictions, targets)
        assert counts.dtype == np.int64
        np.testing.assert_array_equal(counts, naive_contingency(predictions, targets))

    @pytest.mark.parametrize(
        ("predictions", "targets", "message"),
        [
            ([0, -1, 1], [0, 1, 1], "non-negative"),
            ([0, 1, 1], [0, 1, -2], "non-negative"),
            ([0.0, 1.0], [0, 1], "non-negative integers"),
            ([0, 1, 1], [0, 1], "differ in length"),
            ([[0, 1], [1, 0]], [[0, 1], [1, 0]], "one-dimensional"),
        ],
    )
    def test_rejects_bad_labels(self, predictions, targets, message: str):
        for metric in (
            contingency_matrix,
            hungarian_accuracy,
            many_to_one_accuracy,
            clustering_scores,
        ):
            with pytest.raises(ValueError, match=message):
                metric(predictions, targets)


class TestClusteringScores:
    @pytest.mark.parametrize(("num_clusters", "num_classes"), [(3, 3), (10, 5), (4, 8)])
    def test_values_match_their_definitions(self, num_clusters: int, num_classes: int):
        targets = random_labels(200, num_classes, 2)
        noise = random_labels(200, num_clusters, 3)
        predictions = np.where(
            np.random.default_rng(4).random(200) < 0.6, targets % num_clusters, noise
        )
        scores = clustering_scores(predictions, targets)
        assert set(scores) == {"clusters_used", "acc", "nmi", "ari", "acc_many_to_one"}
        assert scores["clusters_used"] == len(set(predictions.tolist()))
        assert scores["acc"] == pytest.approx(
            brute_force_accuracy(predictions.tolist(), targets.tolist())
        )
        assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(targets, predictions))
        assert scores["ari"] == pytest.approx(adjusted_rand_score(targets, predictions))
        assert scores["acc_many_to_one"] == pytest.approx(
            many_to_one_accuracy(predictions, targets)
        )
        assert 0.0 < scores["nmi"] < 1.0
        assert 0.0 < scores["ari"] < 1.0

    def test_perfect_clustering_scores_one_everywhere(self):
        targets = random_labels(50, 5, 5)
        scores = clustering_scores((targets + 2) % 5, targets)
        for key in ("acc", "nmi", "ari", "acc_many_to_one"):
            assert scores[key] == pytest.approx(1.0)

    def test_without_targets_only_counts_used_clusters(self):
        assert clustering_scores([0, 3, 3, 7]) == {"clusters_used": 3}


class TestClusterCohesion:
    def test_identical_members_have_cohesion_one(self):
        features = np.array([[1.0, 2.0, 2.0]] * 4)
        result = cluster_cohesion(features, [5, 5, 5, 5])
        assert result.keys() == {5}
        assert result[5]["size"] == 4
        assert result[5]["cohesion"] == pytest.approx(1.0)

    def test_two_orthogonal_members_have_cohesion_one_over_root_two(self):
        result = cluster_cohesion(np.array([[3.0, 0.0], [0.0, 0.5]]), [0, 0])
        assert result[0]["cohesion"] == pytest.approx(1 / math.sqrt(2))

    def test_empty_clusters_are_left_out_and_sizes_counted(self):
        features = np.random.default_rng(6).normal(size=(5, 3))
        result = cluster_cohesion(features, [0, 2, 2, 0, 2])
        assert result.keys() == {0, 2}
        assert (result[0]["size"], result[2]["size"]) == (2, 3)

    @pytest.mark.parametrize(("size", "num_clusters", "dim"), [(10, 2, 3), (60, 7, 16)])
    def test_matches_loop_reference_and_ignores_feature_scale(
        self, size: int, num_clusters: int, dim: int
    ):
        rng = np.random.default_rng(size)
        features = rng.normal(size=(size, dim))
        predictions = random_labels(size, num_clusters, size + 1).tolist()
        scales = rng.uniform(0.1, 10.0, size=(size, 1))
        expected = naive_cohesion(features, predictions)
        for result in (
            cluster_cohesion(features, predictions),
            cluster_cohesion(features * scales, predictions),
        ):
            assert result.keys() == expected.keys()
            for cluster, (members, cohesion) in expected.items():
                assert result[cluster]["size"] == members
                assert result[cluster]["cohesion"] == pytest.approx(cohesion)

    @pytest.mark.parametrize(
        ("features", "predictions", "message"),
        [
            (np.ones((3, 2)), [0, 1], r"features must be \(N, D\) with N = 2, got \(3, 2\)"),
            (np.ones(3), [0, 1, 1], r"features must be \(N, D\) with N = 3, got \(3,\)"),
            (np.ones((2, 2)), [0, -1], "predictions must hold non-negative integers"),
        ],
    )
    def test_rejects_bad_inputs(self, features, predictions, message):
        with pytest.raises(ValueError, match=message):
            cluster_cohesion(features, predictions)

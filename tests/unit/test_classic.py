"""Classic clustering: each method and reduction on separated blobs, and the label-free choice
among candidates (scored in one common space, never by labels)."""

import csv
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, silhouette_score

from semclust.clustering.comparison_io import format_comparison, write_comparison
from semclust.clustering.features import hog_features, reduce_features
from semclust.clustering.methods import METHODS, assign_noise, cluster_labels
from semclust.clustering.selection import compare_methods
from semclust.metrics import l2_normalize

SEED = 0


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """300 points in 16-D around 4 centres, far apart in direction too (for the L2 norm)."""
    features, targets = make_blobs(
        n_samples=300, centers=4, n_features=16, cluster_std=1.0, random_state=SEED
    )
    return features, targets


def _row(comparison, method: str, reduction: str = "none") -> dict:
    return next(
        row for row in comparison.rows if row["method"] == method and row["reduction"] == reduction
    )


@pytest.mark.parametrize("method", METHODS)
def test_each_method_recovers_separated_blobs(blobs, method):
    features, targets = blobs
    normalized = l2_normalize(features)
    labels = cluster_labels(method, normalized, 4, SEED)
    assert labels.shape == targets.shape
    if method in ("dbscan", "hdbscan"):
        assert (labels < 0).mean() < 0.5  # auto parameters leave most points in clusters
        labels = assign_noise(normalized, labels)
    assert adjusted_rand_score(targets, labels) > 0.9


def test_density_methods_report_noise_and_ignore_num_clusters(blobs):
    features, _ = blobs
    normalized = l2_normalize(features)
    for num_clusters in (2, 7):
        labels = cluster_labels("hdbscan", normalized, num_clusters, SEED, min_cluster_size=20)
        assert np.unique(labels[labels >= 0]).size == 4
    labels = cluster_labels("dbscan", normalized, 4, SEED, eps_quantile=0.3)
    assert (labels == -1).any()


def test_assign_noise_joins_the_nearest_centroid_and_renumbers():
    space = np.array([[0.0], [0.2], [10.0], [10.2], [9.0], [0.9], [50.0]])
    labels = np.array([3, 3, 7, 7, -1, -1, -1])
    assert assign_noise(space, labels).tolist() == [0, 0, 1, 1, 1, 0, 1]
    all_noise = np.full(3, -1)
    assert assign_noise(space[:3], all_noise).tolist() == [-1, -1, -1]


def test_unknown_method_and_parameters_raise_with_the_value(blobs):
    features, _ = blobs
    with pytest.raises(ValueError, match="'optics'.*kmeans"):
        cluster_labels("optics", features, 4, SEED)
    with pytest.raises(ValueError, match="linkage"):
        cluster_labels("kmeans", features, 4, SEED, linkage="ward")
    with pytest.raises(ValueError, match="eps"):
        cluster_labels("dbscan", features, 4, SEED, eps="big")


@pytest.mark.parametrize(
    ("features", "num_clusters", "message"),
    [
        (np.zeros(10), 2, "2-D"),
        (np.zeros((1, 3)), 2, "at least 2 rows"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 2.0]]), 2, "NaN"),
        (np.zeros((10, 3)), 1, r"\[2, 10\)"),
        (np.zeros((10, 3)), 10, r"\[2, 10\)"),
    ],
)
def test_invalid_inputs_raise(features, num_clusters, message):
    with pytest.raises(ValueError, match=message):
        cluster_labels("kmeans", features, num_clusters, SEED)


@pytest.mark.needs("umap")
def test_reductions_give_the_right_shapes(blobs):
    features, _ = blobs
    np.testing.assert_array_equal(reduce_features(features, "none", SEED), features)
    assert reduce_features(features, "pca", SEED, n_components=5).shape == (300, 5)
    assert reduce_features(features, "pca", SEED).shape == (300, 16)  # 50 capped at D
    assert reduce_features(features[:6], "pca", SEED, n_components=50).shape == (6, 6)
    embedding = reduce_features(features, "umap", SEED, n_components=3, n_neighbors=10)
    assert embedding.shape == (300, 3) and np.isfinite(embedding).all()
    with pytest.raises(ValueError, match="'tsne'"):
        reduce_features(features, "tsne", SEED)
    with pytest.raises(ValueError, match="no options"):
        reduce_features(features, "none", SEED, n_components=3)


def test_compare_picks_a_correct_candidate_on_blobs(blobs):
    features, targets = blobs
    comparison = compare_methods(
        features,
        4,
        methods=[{"name": name} for name in METHODS],
        reductions=[{"name": "none"}, {"name": "pca", "n_components": 8}],
        seed=SEED,
        targets=targets,
    )
    assert len(comparison.rows) == 2 * len(METHODS)
    assert adjusted_rand_score(targets, comparison.predictions) > 0.99
    assert comparison.best["selected"] and comparison.rows[0] is comparison.best
    assert sum(row["selected"] for row in comparison.rows) == 1
    mean_ranks = [row["mean_rank"] for row in comparison.rows]
    assert mean_ranks == sorted(mean_ranks)
    for row in comparison.rows:
        assert row["clusters_found"] == 4 and row["acc"] > 0.99
        assert {"rank_silhouette", "rank_calinski_harabasz", "rank_davies_bouldin"} <= set(row)
        assert row["wall_time_s"] >= 0
    assert f"{comparison.best['mean_rank']:.2f}" in comparison.reason
    assert comparison.best["method"] in comparison.reason


@pytest.mark.parametrize(
    ("select_by", "best_is"),
    [("silhouette", max), ("calinski_harabasz", max), ("davies_bouldin", min)],
)
def test_single_score_selection_takes_its_extreme(blobs, select_by, best_is):
    features, _ = blobs
    noisy = features + np.random.default_rng(SEED).normal(scale=6.0, size=features.shape)
    comparison = compare_methods(
        noisy, 4, ["kmeans", "gmm", "agglomerative"], ["none"], SEED, select_by=select_by
    )
    assert comparison.best[select_by] == best_is(row[select_by] for row in comparison.rows)
    assert "mean_rank" not in comparison.best


@pytest.mark.needs("umap")
def test_input_score_space_scores_on_the_normalised_input_not_the_reduced_space(blobs):
    features, _ = blobs
    comparison = compare_methods(
        features,
        4,
        methods=[{"name": "kmeans"}],
        reductions=[{"name": "umap", "n_components": 2, "min_dist": 0.0}],
        seed=SEED,
        score_sample_size=120,
        score_space="input",
    )
    normalized = l2_normalize(features)
    input_space = silhouette_score(
        normalized, comparison.predictions, metric="cosine", sample_size=120, random_state=SEED
    )
    assert comparison.best["silhouette"] == pytest.approx(input_space)
    embedding = reduce_features(normalized, "umap", SEED, n_components=2, min_dist=0.0)
    own_space = silhouette_score(
        embedding, comparison.predictions, metric="cosine", sample_size=120, random_state=SEED
    )
    assert abs(own_space - input_space) > 0.01


def test_noise_points_are_assigned_and_counted(blobs):
    features, _ = blobs
    comparison = compare_methods(
        features, 4, [{"name": "dbscan", "eps_quantile": 0.3}], ["none"], SEED
    )
    predictions = comparison.predictions
    assert 0 < comparison.best["noise_fraction"] < 1
    assert predictions.min() == 0 and (predictions >= 0).all()
    assert np.unique(predictions).tolist() == list(range(comparison.best["clusters_found"]))


def test_degenerate_and_failing_candidates_are_reported_not_selected(blobs):
    features, _ = blobs
    comparison = compare_methods(
        features,
        4,
        methods=[
            {"name": "dbscan", "eps": 100.0},
            {"name": "gmm", "covariance_type": "bogus"},
            {"name": "kmeans"},
        ],
        reductions=["none"],
        seed=SEED,
    )
    assert comparison.best["method"] == "kmeans"
    one_cluster = _row(comparison, "dbscan")
    assert one_cluster["clusters_found"] == 1 and "1 cluster" in one_cluster["note"]
    assert one_cluster["silhouette"] is None and not one_cluster["selected"]
    failed = _row(comparison, "gmm")
    assert "bogus" in failed["note"] and failed["silhouette"] is None
    assert "2 candidates gave no usable partition" in comparison.reason
    assert [row["method"] for row in comparison.rows][0] == "kmeans"


def test_all_noise_is_reported_not_scored(blobs):
    features, targets = blobs
    comparison = compare_methods(
        features, 4, [{"name": "dbscan", "eps": 1e-6}, "kmeans"], ["none"], SEED, targets=targets
    )
    all_noise = _row(comparison, "dbscan")
    assert all_noise["clusters_found"] == 0 and all_noise["noise_fraction"] == 1.0
    assert "all 300 points are noise" in all_noise["note"] and all_noise["acc"] is None
    assert comparison.best["method"] == "kmeans"


def test_no_valid_candidate_raises_with_the_notes(blobs):
    features, _ = blobs
    with pytest.raises(ValueError, match="no candidate.*dbscan on none: found 1 cluster"):
        compare_methods(features, 4, [{"name": "dbscan", "eps": 100.0}], ["none"], SEED)


def test_targets_never_change_the_selection(blobs):
    features, targets = blobs
    # Noisy blobs, so that the candidates differ and labels could tell them apart.
    noisy = features + np.random.default_rng(SEED).normal(scale=5.0, size=features.shape)
    shuffled = np.random.default_rng(1).permutation(targets)
    results = [
        compare_methods(
            noisy,
            4,
            ["kmeans", "agglomerative", {"name": "gmm", "covariance_type": "diag"}, "hdbscan"],
            ["none", {"name": "pca", "n_components": 3}],
            SEED,
            targets=given,
            # Scored on the input, the label-free pick here is not the best by ACC.
            score_space="input",
        )
        for given in (None, targets, shuffled)
    ]
    first = results[0]
    assert "acc" not in first.best and "acc" in results[1].best
    # The labels would have picked another candidate here; they must not have been asked.
    assert results[1].best["acc"] < max(row["acc"] for row in results[1].rows)
    for result in results[1:]:
        assert (result.best["method"], result.best["reduction"]) == (
            first.best["method"],
            first.best["reduction"],
        )
        np.testing.assert_array_equal(result.predictions, first.predictions)
        assert [row["mean_rank"] for row in result.rows] == [row["mean_rank"] for row in first.rows]


def test_bad_names_and_select_by_raise_naming_the_value(blobs):
    features, _ = blobs
    with pytest.raises(ValueError, match="'best'"):
        compare_methods(features, 4, ["kmeans"], ["none"], SEED, select_by="best")
    with pytest.raises(ValueError, match="'optics'"):
        compare_methods(features, 4, [{"name": "optics"}], ["none"], SEED)
    with pytest.raises(ValueError, match="'tsne'"):
        compare_methods(features, 4, ["kmeans"], [{"name": "tsne"}], SEED)
    with pytest.raises(ValueError, match="min_samples"):
        compare_methods(features, 4, [{"name": "kmeans", "min_samples": 3}], ["none"], SEED)
    with pytest.raises(ValueError, match="targets"):
        compare_methods(features, 4, ["kmeans"], ["none"], SEED, targets=np.zeros(3, int))


def test_partial_labels_score_only_the_labelled_rows(blobs):
    features, targets = blobs
    partial = targets.copy()
    partial[::2] = -1
    comparison = compare_methods(features, 4, ["kmeans"], ["none"], SEED, targets=partial)
    assert comparison.best["acc"] == pytest.approx(1.0)


def test_write_comparison_writes_readable_files(blobs, tmp_path):
    features, targets = blobs
    comparison = compare_methods(
        features,
        4,
        ["kmeans", {"name": "dbscan", "eps": 100.0}],
        ["none", {"name": "pca", "n_components": 4}],
        SEED,
        targets=targets,
    )
    paths = write_comparison(comparison, tmp_path / "classic")
    assert set(paths) == {"table", "summary", "predictions"}

    with paths["table"].open() as file:
        table = list(csv.DictReader(file))
    assert len(table) == 4
    assert table[0]["selected"] == "True" and table[0]["method"] == comparison.best["method"]
    assert float(table[0]["silhouette"]) == pytest.approx(comparison.best["silhouette"])
    assert table[-1]["silhouette"] == "" and "1 cluster" in table[-1]["note"]

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not valid JSON")

    summary = json.loads(paths["summary"].read_text(), parse_constant=no_constants)
    assert summary["select_by"] == "mean_rank" and summary["reason"] == comparison.reason
    assert summary["best"]["method"] == comparison.best["method"] and len(summary["rows"]) == 4

    predictions = np.load(paths["predictions"])
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(predictions, comparison.predictions)


def test_format_comparison_marks_the_pick(blobs):
    features, targets = blobs
    comparison = compare_methods(
        features, 4, ["kmeans", {"name": "dbscan", "eps": 100.0}], ["none"], SEED, targets=targets
    )
    text = format_comparison(comparison)
    lines = text.splitlines()
    assert "ACC" in lines[0] and "sil" in lines[0] and "K found" in lines[0]
    assert lines[1].startswith("*") and "kmeans" in lines[1]
    assert not lines[2].startswith("*") and "1 cluster" in lines[2]
    assert comparison.reason in text
    without_labels = format_comparison(compare_methods(features, 4, ["kmeans"], ["none"], SEED))
    assert "ACC" not in without_labels.splitlines()[0]


def _striped(num_images: int, channels: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    images = rng.random((num_images, channels, size, size)) * 0.05
    images[0, :, ::4, :] += 1.0  # horizontal stripes
    images[1, :, :, ::4] += 1.0  # vertical stripes
    return images


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 16), (1, 28), (3, 32)])
def test_hog_features_shape_and_content(channels, size):
    images = _striped(3, channels, size)
    features = hog_features(images)
    # Cells of min(8, size // 4) pixels: 4x4 cells, 3x3 blocks of 2x2 cells, 9 orientations.
    assert features.shape == (3, 3 * 3 * 2 * 2 * 9)
    assert np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])
    np.testing.assert_allclose(hog_features(images[:1]), features[:1])


def test_hog_features_take_uint8_and_options():
    images = (_striped(2, 3, 32) * 200).astype(np.uint8)
    assert hog_features(images, pixels_per_cell=(16, 16)).shape == (2, 2 * 2 * 9)
    with pytest.raises(ValueError, match="cells"):
        hog_features(images, pixels_per_cell=(32, 32))
    with pytest.raises(ValueError, match="N, C, H, W"):
        hog_features(images[0])


def test_agglomerative_refuses_more_rows_than_memory_allows(blobs):
    features, _ = blobs
    with pytest.raises(ValueError, match="pairwise distances; skipped above max_samples=100"):
        cluster_labels("agglomerative", features, 4, seed=0, max_samples=100)
    comparison = compare_methods(
        features,
        4,
        methods=[{"name": "kmeans"}, {"name": "agglomerative", "max_samples": 100}],
        reductions=[{"name": "none"}],
        seed=0,
    )
    refused = next(row for row in comparison.rows if row["method"] == "agglomerative")
    assert "max_samples=100" in refused["note"] and not refused["selected"]


def test_reduced_score_space_scores_each_candidate_where_it_clustered(blobs):
    features, _ = blobs
    comparison = compare_methods(
        features,
        4,
        methods=[{"name": "kmeans"}],
        reductions=[{"name": "pca", "n_components": 3}],
        seed=SEED,
        score_sample_size=120,
        score_space="reduced",
    )
    embedding = reduce_features(l2_normalize(features), "pca", SEED, n_components=3)
    own_space = silhouette_score(
        embedding, comparison.predictions, metric="cosine", sample_size=120, random_state=SEED
    )
    assert comparison.best["silhouette"] == pytest.approx(own_space)
    assert "each in the space it clustered" in comparison.reason
    with pytest.raises(ValueError, match="unknown score_space 'umap'"):
        compare_methods(features, 4, ["kmeans"], ["none"], SEED, score_space="umap")

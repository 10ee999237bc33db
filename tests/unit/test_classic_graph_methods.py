"""Spectral clustering and BIRCH among the classic methods, and the locally linear and spectral
embeddings among the reductions: each on data with a known answer, and bad options named."""

import warnings

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_circles, make_moons
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score

from semclust.clustering.features import reduce_features
from semclust.clustering.methods import cluster_labels, fit_labels
from semclust.clustering.neighbor_graph import (
    EIGENGAP_NEIGHBOR_CANDIDATES,
    auto_neighbors,
    connected_knn_graph,
    eigengap_neighbors,
)
from semclust.clustering.selection import compare_methods
from semclust.clustering.settings import DEFAULT_METHODS
from semclust.metrics import l2_normalize

SEED = 0


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """300 L2-normalised points in 16-D around 4 centres, as the comparison gives them."""
    features, targets = make_blobs(
        n_samples=300, centers=4, n_features=16, cluster_std=1.0, random_state=SEED
    )
    return l2_normalize(features), targets


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_circles(n_samples=400, factor=0.4, noise=0.04, random_state=SEED),
        lambda: make_moons(n_samples=400, noise=0.05, random_state=SEED),
    ],
    ids=["rings", "moons"],
)
def test_spectral_follows_curved_clusters_where_kmeans_cuts_across(make):
    features, targets = make()
    spectral = cluster_labels("spectral", features, 2, SEED)
    kmeans = cluster_labels("kmeans", features, 2, SEED)
    assert adjusted_rand_score(targets, spectral) > 0.9
    assert adjusted_rand_score(targets, kmeans) < 0.5


def test_auto_neighbors_is_a_tenth_of_a_cluster_within_bounds():
    assert auto_neighbors(1440, 20) == 7  # COIL-20: 72 images per class
    assert auto_neighbors(1797, 10) == 18  # digits
    assert auto_neighbors(10_000, 10) == 20  # MNIST test: at most 20
    assert auto_neighbors(100, 10) == 5  # at least 5
    assert auto_neighbors(4, 2) == 3  # at most N - 1


def crossing_rings(seed: int, rings: int = 6, points: int = 72) -> tuple[np.ndarray, np.ndarray]:
    """COIL-20's shape: each object a ring of views (here a noisy circle in a random plane of
    4-D space), the rings' centres close enough that they pass near one another."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    features, targets = [], []
    for ring in range(rings):
        centre = rng.normal(0, 0.3, 4)
        first, second = np.linalg.qr(rng.normal(size=(4, 2)))[0].T
        circle = centre + np.outer(np.cos(angles), first) + np.outer(np.sin(angles), second)
        features.append(circle + rng.normal(0, 0.01, (points, 4)))
        targets += [ring] * points
    return np.vstack(features), np.array(targets)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_neighbors_follow_the_rings_by_the_eigengap(seed):
    features, targets = crossing_rings(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lobpcg's tolerance notes
        auto, used = fit_labels("spectral", features, 6, SEED, {})
        seven, _ = fit_labels("spectral", features, 6, SEED, {"n_neighbors": 7})
        fifteen, _ = fit_labels("spectral", features, 6, SEED, {"n_neighbors": 15})
    assert used["n_neighbors"] in EIGENGAP_NEIGHBOR_CANDIDATES and used["n_neighbors"] <= 5
    assert 0 < used["relative_eigengap"] <= 1
    assert adjusted_rand_score(targets, auto) >= 0.9
    # Denser graphs link the rings where they pass close: the fixed counts do worse.
    assert adjusted_rand_score(targets, auto) > adjusted_rand_score(targets, seven)
    assert adjusted_rand_score(targets, seven) > adjusted_rand_score(targets, fifteen)


def test_the_eigengap_rule_passes_over_graphs_in_more_pieces_than_clusters():
    # Four tight far-apart blobs: 3 neighbours already join each blob, but the rule must not
    # take a count whose graph has more than 4 components (then the gap says nothing of K).
    centers = [[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]]
    features, targets = make_blobs(n_samples=120, centers=centers, random_state=SEED)
    chosen, gaps = eigengap_neighbors(features, 4)
    assert chosen in gaps and gaps[chosen] == max(gaps.values())
    assert adjusted_rand_score(targets, cluster_labels("spectral", features, 4, SEED)) == 1.0
    # Twelve pieces (three sub-blobs per blob) asked for as 4: the 3-neighbour graph of each
    # sub-blob splits the data into 12 pieces and is not taken.
    sub = np.vstack(
        [
            make_blobs(30, centers=[[x, y]], cluster_std=0.1, random_state=i)[0]
            for i, (x, y) in enumerate([(a + d, b) for a, b in centers for d in (0, 10, 20)])
        ]
    )
    _, sub_gaps = eigengap_neighbors(sub, 4, candidates=(3, 40, 60))
    assert 3 not in sub_gaps


def test_disconnected_graph_is_joined_without_warnings():
    # Four far-apart blobs and a far-off island of 8 points: 5 nearest neighbours leave 5
    # components, more than the 4 clusters asked for.
    centers = [[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]]
    features, targets = make_blobs(n_samples=200, centers=centers, random_state=SEED)
    island = np.random.default_rng(SEED).normal(loc=100.0, scale=0.5, size=(8, 2))
    features = np.vstack([features, island])
    graph, components = connected_knn_graph(features, 5)
    assert components == 5
    assert connected_components(graph, directed=False)[0] == 1
    assert (graph != graph.T).nnz == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's "Graph is not fully connected" included
        labels, used = fit_labels("spectral", features, 4, SEED, {"n_neighbors": 5})
    assert used["components_joined"] == 5
    assert len(np.unique(labels)) == 4
    # Five groups in four clusters: two share one, but none is split.
    blob_clusters = [set(labels[:200][targets == blob]) for blob in range(4)]
    assert all(len(clusters) == 1 for clusters in blob_clusters)
    assert len(set(labels[200:])) == 1


@pytest.mark.parametrize("num_clusters", [3, 4, 6])
def test_birch_gives_exactly_num_clusters(blobs, num_clusters):
    features, targets = blobs
    labels, used = fit_labels("birch", features, num_clusters, SEED, {})
    assert np.unique(labels).tolist() == list(range(num_clusters))
    assert num_clusters <= used["subclusters"] < len(features)
    if num_clusters == 4:
        assert adjusted_rand_score(targets, labels) > 0.9


def test_birch_threshold_adapts_to_the_subcluster_bounds(blobs):
    features, targets = blobs
    # sklearn's default threshold on unit vectors: too few subclusters, so it is halved.
    labels, used = fit_labels("birch", features, 4, SEED, {"threshold": 2.0})
    assert used["threshold"] < 2.0 and used["subclusters"] >= 4
    assert adjusted_rand_score(targets, labels) > 0.9
    # A tiny threshold leaves every point alone: doubled until at most max_subclusters.
    _, used = fit_labels("birch", features, 4, SEED, {"threshold": 1e-6, "max_subclusters": 50})
    assert 4 <= used["subclusters"] <= 50 and used["threshold"] > 1e-6


@pytest.mark.parametrize(("name", "components"), [("lle", 10), ("spectral_embedding", 4)])
def test_neighbor_embeddings_keep_blobs_apart(blobs, name, components):
    features, targets = blobs
    embedding = reduce_features(features, name, SEED, num_clusters=4)
    assert embedding.shape == (300, components) and np.isfinite(embedding).all()
    scaled = embedding / embedding.std()
    classifier = LogisticRegression(max_iter=2000).fit(scaled, targets)
    assert classifier.score(scaled, targets) == 1.0  # linearly separable
    if name == "spectral_embedding":  # as many components as clusters: k-means finds them
        labels = KMeans(4, n_init=10, random_state=SEED).fit_predict(embedding)
        assert adjusted_rand_score(targets, labels) > 0.9
    small = reduce_features(features, name, SEED, n_components=3, n_neighbors=10)
    assert small.shape == (300, 3) and np.isfinite(small).all()


def test_neighbor_embeddings_cap_their_components(blobs):
    features, _ = blobs
    assert reduce_features(features[:, :4], "lle", SEED, n_components=10).shape == (300, 4)
    assert reduce_features(features[:8], "spectral_embedding", SEED, n_neighbors=3).shape == (8, 6)
    # auto without a number of clusters: 10 components.
    assert reduce_features(features, "spectral_embedding", SEED).shape == (300, 10)


def test_new_candidates_run_in_the_comparison(blobs):
    features, targets = blobs
    comparison = compare_methods(
        features,
        4,
        methods=["kmeans", "spectral", "birch"],
        reductions=["none", "spectral_embedding"],
        seed=SEED,
        targets=targets,
    )
    assert len(comparison.rows) == 6
    for row in comparison.rows:
        assert row["note"] is None and row["clusters_found"] == 4
        # Not BIRCH on the embedding: there each blob is a point but one, drawn out along the
        # fourth component, and Ward's merge of unweighted subcluster centroids splits it.
        if (row["method"], row["reduction"]) != ("birch", "spectral_embedding"):
            assert row["ari"] > 0.9
    spectral = next(row for row in comparison.rows if row["method"] == "spectral")
    assert "relative_eigengap=" in spectral["params"]  # auto: the count read off the spectrum
    embedded = next(row for row in comparison.rows if row["reduction"] == "spectral_embedding")
    assert embedded["reduction_params"] == "n_components=4"  # auto: the 4 clusters
    assert {method["name"] for method in DEFAULT_METHODS} >= {"spectral", "birch"}


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("spectral", {"n_neighbors": 1}, "n_neighbors must be in"),
        ("spectral", {"n_neighbors": "many"}, "n_neighbors must be 'auto' or an integer"),
        ("spectral", {"n_neighbors": 300}, r"n_neighbors must be in \[2, N\)"),
        ("spectral", {"assign_labels": "bogus"}, "assign_labels 'bogus'"),
        ("spectral", {"eigen_solver": "bogus"}, "eigen_solver 'bogus'"),
        ("spectral", {"linkage": "ward"}, r"unknown parameters \['linkage'\] for spectral"),
        ("birch", {"threshold": -1.0}, "threshold must be 'auto' or a positive number"),
        ("birch", {"threshold": "big"}, "threshold must be"),
        ("birch", {"threshold_quantile": 0}, "threshold_quantile must be in"),
        ("birch", {"branching_factor": 1}, "branching_factor must be an integer >= 2"),
        ("birch", {"max_subclusters": 2}, "max_subclusters must be an integer >= num_clusters"),
    ],
)
def test_bad_method_parameters_are_named(blobs, method, params, message):
    features, _ = blobs
    with pytest.raises(ValueError, match=message):
        cluster_labels(method, features, 4, SEED, **params)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("lle", {"n_neighbors": "auto"}, "n_neighbors must be an integer"),
        ("lle", {"n_neighbors": 1}, "n_neighbors must be in"),
        ("spectral_embedding", {"n_components": 0}, "n_components must be at least 1"),
        ("spectral_embedding", {"affinity": "rbf"}, "takes no affinity"),
        ("lle", {"n_components": "auto"}, "n_components of lle must be an integer"),
        ("spectral_embedding", {"n_components": "all"}, "'auto' or an integer, got 'all'"),
    ],
)
def test_bad_reduction_options_are_named(blobs, name, options, message):
    features, _ = blobs
    with pytest.raises(ValueError, match=message):
        reduce_features(features, name, SEED, **options)

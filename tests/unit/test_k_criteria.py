"""The K criteria beyond the k-means sweep (communities, eigengap, GMM BIC, over-cluster-and-
merge) find the K of data built to have it, and data.num_clusters=auto records every criterion
and why."""

import numpy as np
import pytest
from omegaconf import OmegaConf
from sklearn.datasets import make_blobs

from semclust.clustering.choose_k import estimate_k, write_k_choice
from semclust.clustering.graph_communities import (
    communities_k,
    count_communities,
    neighbors_per_cluster,
)
from semclust.clustering.k_criteria import (
    eigengap_k,
    gmm_bic_k,
    knn_graph,
    laplacian_spectrum,
    merge_curve,
    merge_k,
)
from semclust.clustering.k_plot import k_criteria_png
from semclust.clustering.settings import ChooseKSettings
from semclust.rundir import RunDirectory, mined, read_json
from semclust.stages.num_clusters import choose_num_clusters

SEED = 0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def blobs(true_k: int, samples_per_cluster: int = 60, dims: int = 12) -> np.ndarray:
    features, _ = make_blobs(
        samples_per_cluster * true_k,
        n_features=dims,
        centers=true_k,
        cluster_std=1.0,
        random_state=SEED,
    )
    return features


def cliques(sizes: list[int]) -> np.ndarray:
    """Neighbours of disconnected cliques: each row lists every other row of its clique."""
    starts = np.cumsum([0, *sizes])
    width = max(sizes) - 1
    rows = []
    for start, size in zip(starts, sizes, strict=False):
        members = np.arange(start, start + size)
        for row in members:
            others = members[members != row]
            rows.append(np.resize(others, width))  # a smaller clique repeats its members
    return np.array(rows)


@pytest.mark.parametrize("sizes", [[10, 10, 10, 10], [8, 12, 15], [6] * 7])
def test_eigengap_counts_disconnected_cliques(sizes):
    neighbors = cliques(sizes)
    spectrum = laplacian_spectrum(neighbors, len(sizes) + 2)
    assert spectrum[: len(sizes)] == pytest.approx(0.0, abs=1e-8)
    assert spectrum[len(sizes)] > 0.5  # a clique's next eigenvalue is n/(n-1)
    estimate = eigengap_k(neighbors, range(2, 10))
    assert estimate.k == len(sizes)
    assert f"at K={len(sizes)}" in estimate.reason


@pytest.mark.parametrize("true_k", [3, 6])
def test_every_criterion_finds_the_k_of_separated_blobs(true_k):
    features = blobs(true_k)
    neighbors = knn_graph(features, 10)
    ks = range(2, 10)
    assert eigengap_k(neighbors, ks).k == true_k
    assert communities_k(neighbors, ks, SEED).k == true_k
    assert gmm_bic_k(features, ks, SEED, dimensions=8).k == true_k
    assert merge_k(features, neighbors, ks, SEED, over_clusters=24).k == true_k


def test_knn_graph_excludes_the_row_itself_and_checks_its_size():
    features = blobs(3, samples_per_cluster=10)
    neighbors = knn_graph(features, 5)
    assert neighbors.shape == (30, 5)
    assert not (neighbors == np.arange(30)[:, None]).any()
    with pytest.raises(ValueError, match=r"\[1, 30\)"):
        knn_graph(features, 30)


def test_merge_curve_joins_the_most_agreeing_groups_first():
    # Pieces 0+1 and 2+3 send half their neighbour pairs to each other, the pairs 1%.
    counts = np.array([[50, 48, 1, 1], [48, 50, 1, 1], [1, 1, 50, 48], [1, 1, 48, 50]], dtype=float)
    sizes = np.array([10, 10, 10, 10])
    group_counts, links, memberships = merge_curve(counts, sizes, num_neighbors=10)
    assert group_counts == [4, 3, 2]
    assert links[0] == pytest.approx((48 + 48) / (2 * 10 * 10))
    assert links[2] == pytest.approx(8 / (2 * 10 * 20))  # the two pairs: 8 crossing links
    pairs = memberships[2]
    assert pairs[0] == pairs[1] and pairs[2] == pairs[3] and pairs[0] != pairs[2]


def test_merge_on_one_cluster_says_so_and_keeps_k_min():
    features = np.random.default_rng(SEED).normal(size=(200, 8))
    estimate = merge_k(features, knn_graph(features, 10), range(2, 8), SEED, over_clusters=20)
    assert estimate.k == 2
    assert "leave 1 groups" in estimate.reason and "clipped to K=2" in estimate.reason


def test_estimate_k_uses_communities_by_default_and_records_the_others():
    features = blobs(4)
    choice = estimate_k(features, range(2, 9), SEED)
    assert ChooseKSettings().criterion == "communities" and choice.criterion == "communities"
    assert choice.k == 4 and choice.reason.startswith("communities: 4 of the 4 Louvain")
    assert set(choice.estimates) == {"communities", *ChooseKSettings().compare}
    assert "Others: silhouette 4, eigengap 4, gmm_bic 4 (3 of 3 agree)" in choice.reason
    curve = choice.criteria()["silhouette"]["curve"]
    assert curve["x"] == list(range(2, 9)) and len(curve["y"]) == 7
    png = k_criteria_png(choice.criteria(), choice.k)
    assert png.startswith(PNG_SIGNATURE)


def test_a_failing_compared_criterion_is_recorded_but_the_chosen_one_raises():
    features = blobs(3, samples_per_cluster=20)
    settings = ChooseKSettings(criterion="gmm_bic", compare=["elbow"])
    choice = estimate_k(features, [2, 3], SEED, settings)
    assert choice.k == 3 and "at least 3 values" in choice.failures["elbow"]
    assert choice.criteria()["elbow"] == {"error": choice.failures["elbow"]}
    with pytest.raises(ValueError, match="at least 3 values"):
        estimate_k(features, [2, 3], SEED, ChooseKSettings(criterion="elbow", compare=[]))
    with pytest.raises(ValueError, match="unknown criteria"):
        estimate_k(features, [2, 3], SEED, ChooseKSettings(criterion="gap"))


def test_write_k_choice_skips_the_sweep_files_without_a_sweep(tmp_path):
    choice = estimate_k(
        blobs(3), range(2, 6), SEED, ChooseKSettings(criterion="eigengap", compare=["merge"])
    )
    files = write_k_choice(choice, tmp_path)
    assert set(files) == {"criteria"} and choice.table == []
    assert files["criteria"].read_bytes().startswith(PNG_SIGNATURE)


def _config(**choose_k) -> OmegaConf:
    settings = {**vars(ChooseKSettings()), **choose_k}
    return OmegaConf.create({"seed": SEED, "choose_k": settings})


def test_auto_writes_every_criterion_to_the_manifest_and_reads_mined_neighbours(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.claim()
    features = blobs(3).astype(np.float32)
    neighbors = knn_graph(features, 7)
    run.stage_dir("mine")
    np.save(run.path(mined("train", "features")), features)
    np.save(run.path(mined("train", "neighbors")), neighbors)
    entry = choose_num_clusters(_config(k_max=8), run, features, "test features")
    manifest = read_json(run.manifest_path)["num_clusters"]
    assert manifest == read_json(run.path(("choose_k", "choice.json"))) == entry
    assert entry["value"] == 3 and entry["criterion"] == "communities"
    assert entry["neighbors"] == "mined train neighbours (7)"
    assert (
        entry["reason"].startswith("communities: 3 of the 3") and "7-neighbour" in entry["reason"]
    )
    assert {"communities", "gmm_bic", "silhouette", "eigengap"} <= set(entry["criteria"])
    for name in entry["criteria"]:
        assert entry["criteria"][name]["k"] == 3
        assert entry["criteria"][name]["reason"]
    assert "7 neighbours" in entry["criteria"]["eigengap"]["reason"]
    for name in ("criteria", "silhouette", "elbow", "table"):
        assert (run.root / entry["files"][name]).is_file()
    # Other features than the mined ones get their own kNN graph.
    other = choose_num_clusters(_config(k_max=8), run, features[::-1].copy(), "reversed")
    assert other["neighbors"].startswith("exact search") and other["value"] == 3


def test_auto_sweeps_no_further_than_the_images_allow(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.claim()
    features = blobs(2, samples_per_cluster=6)
    entry = choose_num_clusters(_config(k_max=30, compare=[]), run, features, "12 images")
    assert entry["swept"] == [2, 11] and entry["value"] == 2  # the two blobs
    with pytest.raises(ValueError, match="allow at most K=11"):
        choose_num_clusters(_config(k_min=12, k_max=30), run, features, "12 images")


def test_gmm_bic_fits_small_sets_in_fewer_dimensions():
    features = blobs(3, samples_per_cluster=25, dims=16)  # 75 samples: 18 per parameter set
    estimate = gmm_bic_k(features, range(2, 8), SEED, dimensions=16)
    assert "on 4 principal components" in estimate.reason  # 4·7/2 = 14 ≤ 75/4 < 5·8/2
    assert estimate.k == 3


@pytest.mark.parametrize(
    ("images", "clusters", "available", "expected"),
    [(1440, 20, 20, 10), (10_000, 10, 20, 20), (200, 10, 20, 5), (10_000, 10, 12, 12)],
)
def test_neighbours_are_a_seventh_of_a_cluster(images, clusters, available, expected):
    assert neighbors_per_cluster(images, clusters, available) == expected


def test_communities_count_only_cluster_sized_ones_and_size_the_graph_to_k():
    # Three cliques of 100 and a stray pair: the pair is a community but not a cluster.
    neighbors = cliques([100, 100, 100, 2])[:, :20]
    estimate = communities_k(neighbors, range(2, 11), SEED)
    assert estimate.k == 3 and estimate.threshold == pytest.approx(0.5 * 302 / 10)
    assert estimate.y[:3] == [100.0, 100.0, 100.0] and estimate.y[3] == 2.0
    # 302 images in 3 clusters: a seventh of 100 is 14 neighbours, so the graph is redone.
    assert "neighbours sized to the images per cluster: 20 -> 14" in estimate.reason
    assert "of the 14-neighbour graph" in estimate.reason


def test_communities_of_equal_size_are_read_in_median_sized_ones():
    # Eight clusters of 50, one of which the graph splits into two halves with no edge between.
    neighbors = cliques([50] * 7 + [25, 25])[:, :20]
    estimate = communities_k(neighbors, range(2, 13), SEED)
    assert estimate.k == 8 and estimate.typical == 50.0
    assert "9 of the 9 Louvain communities" in estimate.reason
    assert "they hold as many images as 8 communities of their median size (50 images" in (
        estimate.reason
    )
    plain = communities_k(neighbors, range(2, 13), SEED, equal_share=None)
    assert plain.k == 9 and plain.typical is None and "median" not in plain.reason


def test_communities_of_unequal_size_keep_the_plain_count():
    # Sizes falling from 120 to 30: no common size, so halves and merges cannot be told apart.
    sizes = [120, 100, 85, 70, 60, 50, 40, 30]
    estimate = communities_k(cliques(sizes)[:, :20], range(2, 13), SEED)
    assert estimate.k == 8
    assert "sizes too unequal to go by, so the count stands" in estimate.reason


@pytest.mark.parametrize(
    ("sizes", "equal_share", "expected"),
    [
        # COIL-20, seed 1's folder run: two objects split, two shared among three communities.
        ([94, 90, 89, 85] + [72] * 11 + [55, 54, 50, 47, 31, 28, 25], 0.5, (22, 20, 20)),
        ([94, 90, 89, 85] + [72] * 11 + [55, 54, 50, 47, 31, 28, 25], None, (22, 20, 22)),
        ([300, 100, 100, 100, 5], 0.5, (4, 6, 6)),  # a merge of three, and a stray outlier
        ([300, 150, 75, 40], 0.5, (4, 5, 4)),  # unequal: none within 20 % of the median
        ([], 0.5, (0, 0, 0)),
    ],
)
def test_count_communities(sizes, equal_share, expected):
    count = count_communities(np.array(sizes), 24, equal_share)
    assert (count.counted, count.by_size, count.k) == expected


def test_communities_clip_to_the_range_and_read_few_mined_neighbours():
    neighbors = cliques([10] * 6)  # 9 neighbours each: fewer than 20 mined
    estimate = communities_k(neighbors, range(2, 5), SEED)
    assert estimate.k == 4 and "clipped to K=4 within [2, 4]" in estimate.reason
    assert "sized to the images per cluster: 9 -> 5" in estimate.reason  # 9 mined, 60 / 4 / 7 < 5

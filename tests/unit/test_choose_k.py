"""Choosing K: the sweep finds the true K of separated blobs, kneedle finds a drawn elbow, and
the reasons, table and plots say what was found."""

import csv

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from semclust.clustering.choose_k import elbow_k, pick_k, plot_k_sweep, sweep_k, write_k_table

SEED = 0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def five_blobs_table() -> list[dict]:
    features, _ = make_blobs(
        n_samples=250, centers=5, n_features=16, cluster_std=1.0, random_state=SEED
    )
    return sweep_k(features, range(2, 10), SEED)


@pytest.mark.parametrize("true_k", [3, 5, 7])
def test_silhouette_finds_the_true_k_of_separated_blobs(true_k):
    features, _ = make_blobs(
        n_samples=50 * true_k, centers=true_k, n_features=16, cluster_std=1.0, random_state=SEED
    )
    table = sweep_k(features, range(2, 10), SEED)
    assert [row["k"] for row in table] == list(range(2, 10))
    k, _ = pick_k(table, "silhouette")
    assert k == true_k


def test_sweep_rows_hold_every_score(five_blobs_table):
    for row in five_blobs_table:
        assert set(row) == {"k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"}
        assert -1 <= row["silhouette"] <= 1 and row["calinski_harabasz"] > 0
    inertias = [row["inertia"] for row in five_blobs_table]
    assert inertias == sorted(inertias, reverse=True)  # more clusters never fit worse here


def test_sweep_is_reproducible_and_sorts_k(five_blobs_table):
    features, _ = make_blobs(
        n_samples=250, centers=5, n_features=16, cluster_std=1.0, random_state=SEED
    )
    again = sweep_k(features, [5, 3, 5], SEED)
    assert [row["k"] for row in again] == [3, 5]
    assert again[1] == next(row for row in five_blobs_table if row["k"] == 5)


def test_elbow_on_a_drawn_curve():
    k_values = list(range(1, 11))
    inertias = [100, 70, 40, 10, 9, 8, 7, 6, 5, 4]
    assert elbow_k(k_values, inertias) == 4
    order = np.random.default_rng(SEED).permutation(10)
    assert elbow_k(np.array(k_values)[order], np.array(inertias)[order]) == 4
    # 1/K on 2..11, both axes scaled: the gap below the chord is 0.389 at K=4, 0.400 at K=5
    # and 0.370 at K=6.
    assert elbow_k(range(2, 12), [1000 / k for k in range(2, 12)]) == 5
    assert elbow_k([2, 3, 4, 5], [40, 30, 20, 10]) == 2  # a straight line has no elbow


def test_elbow_rejects_mismatched_input():
    with pytest.raises(ValueError, match="as many"):
        elbow_k([2, 3, 4], [3.0, 2.0])
    with pytest.raises(ValueError, match="distinct"):
        elbow_k([2, 2, 4], [3.0, 2.0, 1.0])


@pytest.mark.parametrize(
    ("criterion", "best_is"),
    [("silhouette", max), ("calinski_harabasz", max), ("davies_bouldin", min)],
)
def test_pick_k_takes_the_extreme_and_says_the_numbers(five_blobs_table, criterion, best_is):
    k, reason = pick_k(five_blobs_table, criterion)
    best = best_is(five_blobs_table, key=lambda row: row[criterion])
    assert k == best["k"] == 5
    assert f"{best[criterion]:.3f} at K=5" in reason and "among K=2..9" in reason
    runner_up = sorted(row[criterion] for row in five_blobs_table)[-2 if best_is is max else 1]
    assert f"runner-up {runner_up:.3f}" in reason
    assert "elbow" in reason


def test_pick_k_by_elbow_mentions_the_silhouette(five_blobs_table):
    k, reason = pick_k(five_blobs_table, "elbow")
    assert k == 5  # the five blobs
    silhouette = {row["k"]: row["silhouette"] for row in five_blobs_table}
    top = max(silhouette, key=silhouette.get)
    assert f"at K=5 among K=2..9 (silhouette there {silhouette[5]:.3f};" in reason
    assert f"highest silhouette {silhouette[top]:.3f} at K={top})" in reason


def test_pick_k_rejects_unknown_criteria_and_empty_tables(five_blobs_table):
    with pytest.raises(ValueError, match="'gap'"):
        pick_k(five_blobs_table, "gap")
    with pytest.raises(ValueError, match="empty"):
        pick_k([], "silhouette")


@pytest.mark.parametrize(
    ("k_values", "message"),
    [([], "empty"), ([1, 3], r"\[2, 30\)"), ([2, 30], r"\[2, 30\)"), ([2.5], "integer")],
)
def test_invalid_k_ranges_raise(k_values, message):
    features = np.random.default_rng(SEED).normal(size=(30, 4))
    with pytest.raises(ValueError, match=message):
        sweep_k(features, k_values, SEED)


def test_plots_are_png_files(five_blobs_table, tmp_path):
    paths = plot_k_sweep(five_blobs_table, 5, tmp_path / "plots")
    assert set(paths) == {"elbow", "silhouette"}
    for path in paths.values():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_k_table_csv_round_trips(five_blobs_table, tmp_path):
    path = write_k_table(five_blobs_table, tmp_path / "k" / "k_sweep.csv")
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["k"]) for row in rows] == list(range(2, 10))
    assert float(rows[3]["silhouette"]) == pytest.approx(five_blobs_table[3]["silhouette"])

"""`semclust cluster`: classic methods on a saved feature matrix, K chosen or given."""

import csv
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from semclust.cli import main


@pytest.fixture
def prediction_folder(tmp_path):
    """What `semclust predict` leaves: embeddings.npy aligned with predictions.csv."""
    features, targets = make_blobs(n_samples=120, centers=4, n_features=8, random_state=0)
    folder = tmp_path / "prediction"
    folder.mkdir()
    np.save(folder / "embeddings.npy", features.astype(np.float32))
    with open(folder / "predictions.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "cluster", "confidence"])
        writer.writerows([f"images/{i}.png", 0, 1.0] for i in range(len(features)))
    return folder, targets


def test_cluster_chooses_k_and_writes_assignments_per_image(prediction_folder, tmp_path, capsys):
    folder, targets = prediction_folder
    out = tmp_path / "clusters"
    arguments = ["cluster", str(folder / "embeddings.npy"), "--out", str(out)]
    assert main([*arguments, "--methods", "kmeans", "agglomerative", "--reductions", "none"]) == 0
    assert "K=4" in capsys.readouterr().out
    summary = json.loads((out / "comparison.json").read_text())
    assert {row["method"] for row in summary["rows"]} == {"kmeans", "agglomerative"}
    with open(out / "assignments.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [f"images/{i}.png" for i in range(len(targets))]
    clusters = np.array([int(row["cluster"]) for row in rows])
    # Four well-separated blobs: every blob is one cluster.
    assert all(len(set(clusters[targets == blob])) == 1 for blob in range(4))
    assert (out / "elbow.png").is_file() and (out / "k_sweep.csv").is_file()
    # A second run into the same folder must be asked for.
    assert main([*arguments, "-k", "4"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    # Nor into a folder of the user's own files, and named targets must exist.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "predictions.npy").write_bytes(b"mine")
    assert main(["cluster", str(folder / "embeddings.npy"), "--out", str(theirs), "-k", "4"]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert (theirs / "predictions.npy").read_bytes() == b"mine"
    missing = tmp_path / "nowhere.npy"
    assert main([*arguments, "-k", "4", "--overwrite", "--targets", str(missing)]) == 2
    assert f"targets file {missing} does not exist" in capsys.readouterr().err


def test_cluster_reads_a_run_directory_and_scores_with_its_labels(tmp_path):
    features, targets = make_blobs(n_samples=90, centers=3, n_features=6, random_state=1)
    (tmp_path / "run/mine").mkdir(parents=True)
    np.save(tmp_path / "run/mine/val_features.npy", features)
    np.save(tmp_path / "run/mine/val_targets.npy", targets)
    out = tmp_path / "out"
    code = main(
        ["cluster", str(tmp_path / "run"), "--out", str(out), "-k", "3"]
        + ["--methods", "kmeans", "--reductions", "none", "pca"]
    )
    assert code == 0
    best = json.loads((out / "comparison.json").read_text())["best"]
    assert best["acc"] == 1.0


def test_cluster_takes_methods_and_reductions_outside_the_defaults(prediction_folder, tmp_path):
    folder, targets = prediction_folder
    out = tmp_path / "graph"
    arguments = ["cluster", str(folder / "embeddings.npy"), "--out", str(out), "-k", "4"]
    methods = ["--methods", "spectral", "birch", "kmeans"]
    assert main([*arguments, *methods, "--reductions", "lle", "spectral_embedding"]) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert {row["reduction"] for row in rows} == {"lle", "spectral_embedding"}
    assert {row["method"] for row in rows} == {"spectral", "birch", "kmeans"}
    spectral = next(row for row in rows if row["method"] == "spectral")
    # auto: the neighbour count read off the graph's spectrum, shown with its eigengap
    assert "relative_eigengap=" in spectral["params"] and spectral["note"] is None
    embedded = next(row for row in rows if row["reduction"] == "spectral_embedding")
    assert embedded["reduction_params"] == "n_components=4"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-k", "many"], "-k must be a number or auto"),
        (["--methods", "kmeans", "optics"], "unknown methods ['optics']"),
        (["--reductions", "tsne"], "unknown reductions ['tsne']"),
    ],
)
def test_cluster_names_bad_arguments(prediction_folder, tmp_path, capsys, extra, message):
    folder, _ = prediction_folder
    arguments = ["cluster", str(folder / "embeddings.npy"), "--out", str(tmp_path / "o"), *extra]
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_cluster_names_a_missing_feature_file(tmp_path, capsys):
    assert main(["cluster", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.npy does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # numpy takes a file without its header for a pickle and suggests loading it unsafely.
        (b"not an array", "is not a .npy file (it lacks numpy's header)"),
        ("objects", "is not a readable .npy array: Array can't be memory-mapped"),
        ("cut short", "is not a readable .npy array"),
    ],
)
def test_cluster_names_a_feature_file_it_cannot_read(tmp_path, capsys, content, message):
    path = tmp_path / "features.npy"
    if content == "objects":
        np.save(path, np.array([{"a": 1}] * 3, dtype=object))
    elif content == "cut short":
        np.save(path, np.ones((40, 8), dtype=np.float32))
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    assert main(["cluster", str(path), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert f"{path} {message}" in error, error
    assert not (tmp_path / "o").exists()

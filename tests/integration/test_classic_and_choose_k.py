"""The classic stage (baselines on pixels, HOG or pretext features) and data.num_clusters=auto,
through semclust.pipeline.train."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from semclust.pipeline import train
from semclust.rundir import MissingArtifactError

# A quick comparison: two methods, two reductions.
SMALL_CLASSIC = [
    "classic.methods=[{name: kmeans},{name: agglomerative, linkage: ward}]",
    "classic.reductions=[{name: none},{name: pca, n_components: 8}]",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def _write_patterns(folder, per_pattern: int = 25) -> None:
    """Three unmistakable families of 16x16 images (stripes both ways, a checkerboard), noisy."""
    rng = np.random.default_rng(0)
    grid = np.indices((16, 16))
    patterns = {
        "horizontal": (grid[0] // 4) % 2,
        "vertical": (grid[1] // 4) % 2,
        "checker": (grid[0] // 4 + grid[1] // 4) % 2,
    }
    for name, pattern in patterns.items():
        (folder / name).mkdir(parents=True)
        for number in range(per_pattern):
            pixels = pattern * 200 + rng.integers(0, 40, (16, 16))
            Image.fromarray(pixels.astype(np.uint8), "L").save(folder / name / f"{number}.png")


FOLDER = [
    "data=folder",
    "data.channels=1",
    "data.image_size=16",
    "data.mean=[0.5]",
    "data.std=[0.5]",
    "data.augment.recipe=small_grayscale",
    "data.num_workers=0",
    # The tiny run's epochs, not the folder recipe's step counts.
    "data.schedule=null",
    "data.train_split=all",
    "data.val_split=all",
]


def test_auto_k_finds_the_three_families_on_pixels(tiny_config, tmp_path):
    folder = tmp_path / "patterns"
    _write_patterns(folder)
    summary = train(
        tiny_config(
            *FOLDER,
            f"data.path={folder}",
            "data.num_clusters=auto",
            "choose_k.k_max=8",
            "stages=[classic]",
            "classic.features=pixels",
            *SMALL_CLASSIC,
        )
    )
    run_dir = tmp_path / "run"
    choice = _manifest(run_dir)["num_clusters"]
    assert choice["value"] == 3
    assert choice["criterion"] == "communities" and "3 of the 3" in choice["reason"]
    assert "silhouette 3" in choice["reason"]  # the compared criteria are named too
    assert choice["swept"] == [2, 8]
    assert choice["criteria"]["gmm_bic"]["curve"]["x"] == list(range(2, 9))
    assert choice["criteria"]["communities"]["curve"]["y"] == [25.0, 25.0, 25.0]  # sizes
    assert choice["neighbors"].startswith("exact search")  # pixels were never mined
    for name in ("elbow", "silhouette", "criteria"):
        assert (run_dir / choice["files"][name]).read_bytes()[:8] == PNG_SIGNATURE
    with open(run_dir / choice["files"]["table"]) as file:
        assert [int(row["k"]) for row in csv.DictReader(file)] == list(range(2, 9))
    # The families are recovered, not just counted.
    assert summary["final_stage"] == "classic" and summary["acc"] == 1.0


def test_classic_stage_compares_methods_on_pretext_features(tiny_config, tmp_path, capsys):
    train(tiny_config("stages=[pretext,mine,classic]", *SMALL_CLASSIC))
    run_dir = tmp_path / "run"
    classic = _manifest(run_dir)["stages"]["classic"]
    assert classic["status"] == "completed"
    metrics = classic["metrics"]
    assert metrics["features"] == "pretext" and metrics["candidates"] == 4
    assert metrics["method"] in ("kmeans", "agglomerative")
    assert metrics["select_by"] == "mean_rank" and "mean rank" in metrics["reason"]
    with open(run_dir / "classic/comparison.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 4 and sum(row["selected"] == "True" for row in rows) == 1
    predictions = np.load(run_dir / "classic/predictions.npy")
    assert len(predictions) == len(np.load(run_dir / "mine/val_features.npy"))
    # The pick's scores are its row of the comparison; labels only score it.
    (picked,) = [row for row in rows if row["selected"] == "True"]
    assert metrics["method"] == picked["method"]
    assert metrics["acc"] == pytest.approx(float(picked["acc"]))
    assert "classic (label-free pick)" in capsys.readouterr().out


def test_classic_on_hog_needs_no_earlier_stage(tiny_config, tmp_path):
    summary = train(
        tiny_config(
            "stages=[classic]",
            "classic.features=hog",
            "classic.methods=[{name: kmeans}]",
            "classic.reductions=[{name: none}]",
        )
    )
    metrics = _manifest(tmp_path / "run")["stages"]["classic"]["metrics"]
    assert metrics["features"] == "hog" and metrics["feature_dim"] > 0
    assert 0.3 < summary["acc"] <= 1  # HOG k-means on digits is far above chance (0.1)


def test_classic_takes_spectral_birch_and_the_neighbour_embeddings(tiny_config, tmp_path):
    train(
        tiny_config(
            "stages=[classic]",
            "classic.features=hog",
            "classic.methods=[{name: spectral, n_neighbors: auto},{name: birch}]",
            "classic.reductions=[{name: lle},{name: spectral_embedding, n_components: auto}]",
        )
    )
    with open(tmp_path / "run/classic/comparison.csv") as file:
        rows = list(csv.DictReader(file))
    assert {(row["method"], row["reduction"]) for row in rows} == {
        (method, reduction)
        for method in ("spectral", "birch")
        for reduction in ("lle", "spectral_embedding")
    }
    assert all(row["note"] == "" and row["silhouette"] for row in rows)
    embedded = next(row for row in rows if row["reduction"] == "spectral_embedding")
    metrics = _manifest(tmp_path / "run")["stages"]["classic"]["metrics"]
    assert embedded["reduction_params"] == f"n_components={metrics['clusters_used']}"


def test_classic_pretext_features_need_the_mine_stage(tiny_config):
    with pytest.raises(MissingArtifactError, match="run that stage first"):
        train(tiny_config("stages=[classic]"))


def test_unknown_classic_features_are_named(tiny_config):
    with pytest.raises(ValueError, match="classic.features must be one of .*'sift'"):
        train(tiny_config("stages=[classic]", "classic.features=sift"))


def test_auto_k_is_chosen_after_pretext_and_used_by_later_stages(tiny_config, tmp_path):
    train(tiny_config("data.num_clusters=auto", "choose_k.k_max=6", "stages=[pretext,mine,scan]"))
    run_dir = tmp_path / "run"
    manifest = _manifest(run_dir)
    chosen = manifest["num_clusters"]["value"]
    assert 2 <= chosen <= 6
    assert manifest["stages"]["mine"]["metrics"]["num_clusters"]["value"] == chosen
    assert manifest["stages"]["scan"]["config"]["data"]["num_clusters"] == chosen
    assert json.loads((run_dir / "scan/model.json").read_text())["num_clusters"] == chosen
    # A later run of the tail reads the recorded choice.
    train(tiny_config("data.num_clusters=auto", "stages=[selflabel]", "selflabel.threshold=0.2"))
    selflabel = _manifest(run_dir)["stages"]["selflabel"]
    assert selflabel["config"]["data"]["num_clusters"] == chosen


def test_auto_k_without_a_choice_names_the_stage_to_run(tiny_config, tmp_path):
    with pytest.raises(MissingArtifactError, match="run the mine stage first"):
        train(tiny_config("data.num_clusters=auto", "stages=[scan]"))


@pytest.mark.parametrize("value", ["0", "1", "many", "true"])
def test_bad_num_clusters_is_named(tiny_config, value):
    with pytest.raises(ValueError, match="data.num_clusters must be 'auto' or an integer >= 2"):
        train(tiny_config(f"data.num_clusters={value}", "stages=[classic]"))

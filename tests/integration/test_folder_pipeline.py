"""A tiny pipeline on image folders: labelled with broken files, and flat (unlabeled)."""

import csv
import json
import warnings

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from sklearn.datasets import load_digits

from semclust.evaluation import evaluate
from semclust.pipeline import train

FOLDER_RUN = [
    "data=folder",
    "data.channels=1",
    "data.image_size=16",
    "data.mean=[0.3]",
    "data.std=[0.4]",
    "data.augment.recipe=small_grayscale",
    "data.num_workers=0",
    # The tiny run's epochs, not the folder recipe's step counts.
    "data.schedule=null",
    "data.train_split=all",
    "data.val_split=all",
]


def _write_digits(folder, per_class: int, classes=(0, 1, 2), nested: bool = True) -> None:
    digits = load_digits()
    for digit in classes:
        images = digits.images[digits.target == digit][:per_class]
        target_dir = folder / str(digit) if nested else folder
        target_dir.mkdir(parents=True, exist_ok=True)
        for number, image in enumerate(images):
            pixels = np.clip(image * 16, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(target_dir / f"{digit}_{number}.png")


def test_labelled_folder_with_broken_files(tiny_config, tmp_path):
    folder = tmp_path / "images"
    _write_digits(folder, per_class=30)
    (folder / "0" / "empty.png").write_bytes(b"")
    (folder / "1" / "not_an_image.jpg").write_text("hello")
    good = (folder / "2" / "2_0.png").read_bytes()
    (folder / "2" / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "README.md").write_text("not an image, ignored")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(
            tiny_config(
                *FOLDER_RUN,
                f"data.path={folder}",
                "data.num_clusters=3",
                "stages=[pretext,mine,scan]",
                # Two SCAN steps on 90 images often collapse to one cluster, which has no
                # silhouette; 24 steps kept two or three clusters for each of seeds 0-5.
                "scan.epochs=8",
                "scan.batch_size=32",
            )
        )

    run_dir = tmp_path / "run"
    with open(run_dir / "skipped_files_train.csv") as file:
        skipped = {row["path"].rsplit("/", 1)[-1] for row in csv.DictReader(file)}
    assert skipped == {"empty.png", "not_an_image.jpg", "truncated.png"}
    assert any("empty.png" in str(w.message) for w in caught)
    assert summary["stages"]["mine"]["train_images"] == 90
    assert "acc" in summary and "silhouette" in summary
    # The subfolders are the labels: k-means on the features finds the three digits (0.90
    # here; chance is 1/3), which scrambled labels could not give.
    assert summary["stages"]["kmeans"]["acc"] > 0.6
    # The input folder is exactly as it was.
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*")) == before


def test_flat_folder_is_unlabeled_and_reports_label_free_scores(
    tiny_config, compose_config, tmp_path, capsys
):
    folder = tmp_path / "flat"
    _write_digits(folder, per_class=20, nested=False)
    summary = train(
        tiny_config(
            *FOLDER_RUN, f"data.path={folder}", "data.num_clusters=3", "stages=[pretext,mine,scan]"
        )
    )
    assert "acc" not in summary and "acc" not in summary["stages"]["scan"]
    kmeans = summary["stages"]["kmeans"]
    assert -1.0 <= kmeans["silhouette"] <= 1.0
    assert kmeans["calinski_harabasz"] > 0.0 and kmeans["davies_bouldin"] >= 0.0
    # Two SCAN epochs on 60 images may leave one cluster, where the scores are undefined.
    scan = summary["stages"]["scan"]
    has_scores = scan["clusters_used"] >= 2
    for key in ("silhouette", "calinski_harabasz", "davies_bouldin"):
        assert (key in scan) == has_scores == (key in summary)
    assert "silhouette" in capsys.readouterr().out

    # evaluate.py on the run directory scores its SCAN model the same way, without labels.
    evaluated = evaluate(compose_config("evaluate", [f"ckpt={tmp_path / 'run'}"]))
    if has_scores:
        assert evaluated["silhouette"] == pytest.approx(scan["silhouette"])
    printed = capsys.readouterr().out
    assert ("silhouette" in printed) == has_scores
    assert ("no scores defined" in printed) != has_scores


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "does not exist"),
        ("empty", "no usable images"),
    ],
)
def test_unusable_folders_fail_at_once(tiny_config, tmp_path, setup, message):
    folder = tmp_path / "images"
    if setup == "empty":
        folder.mkdir()
        (folder / "broken.png").write_bytes(b"")
    with (
        warnings.catch_warnings(record=True) as caught,
        pytest.raises((FileNotFoundError, ValueError), match=message),
    ):
        warnings.simplefilter("always")
        train(tiny_config(*FOLDER_RUN, f"data.path={folder}", "data.num_clusters=3"))
    assert any("broken.png" in str(w.message) for w in caught) == (setup == "empty")


def test_channel_count_must_match_normalisation(tiny_config, tmp_path):
    folder = tmp_path / "images"
    _write_digits(folder, per_class=10)
    with pytest.raises(ValueError, match=r"data.mean has 3 values but data.channels=1"):
        train(
            tiny_config(
                *FOLDER_RUN, "data.mean=[0.5,0.5,0.5]", f"data.path={folder}", "data.num_clusters=3"
            )
        )


def test_a_folder_path_is_all_a_run_needs(compose_config, tmp_path):
    """data=folder and a path: recipe, schedule, K and SCAN's neighbours chosen and recorded."""
    folder = tmp_path / "images"
    _write_digits(folder, per_class=30)
    run_dir = tmp_path / "run"
    overrides = [
        "data=folder",
        f"data.path={folder}",
        # A test-sized schedule: the folder recipe turns steps into epochs.
        "data.schedule.pretext_steps=4",
        "data.schedule.scan_steps=4",
        "data.schedule.selflabel_steps=2",
        "backbone.width=8",
        "stages=[pretext,mine,scan]",
        "logger=none",
        "report=false",
        "trainer.enable_progress_bar=false",
        f"paths.run_dir={run_dir}",
    ]
    summary = train(compose_config("train", overrides), overrides)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    chosen = manifest["folder_recipe"]["chosen"]
    assert manifest["folder_recipe"]["survey"]["image_count"] == 90
    assert (chosen["data.channels"], chosen["data.image_size"]) == (1, 16)  # 8x8 grey digits
    assert (chosen["pretext.batch_size"], chosen["pretext.epochs"]) == (32, 2)  # 2 steps/epoch
    saved = OmegaConf.load(run_dir / "config.yaml")  # what evaluate.py and the report read
    assert (saved.data.channels, saved.data.augment.recipe) == (1, "small_grayscale")
    k = manifest["num_clusters"]["value"]
    scan_config = manifest["stages"]["scan"]["config"]
    assert scan_config["data"]["num_clusters"] == k and summary["final_stage"] == "scan"
    # SCAN's neighbours: a seventh of 90 / K images, at least 5, at most the 20 mined.
    assert scan_config["scan"]["num_neighbors"] == min(max(round(90 / k / 7), 5), 20)
    log = (run_dir / "train.log").read_text()
    assert "data=folder: 90 images, grayscale, median 8x8 px" in log
    # The same command again makes the same choices, so every stage is found finished.
    train(compose_config("train", overrides), overrides)
    again = json.loads((run_dir / "manifest.json").read_text())
    assert (
        again["stages"] == manifest["stages"]
        and again["folder_recipe"] == manifest["folder_recipe"]
    )
    # Another SCAN schedule retrains SCAN only: the steps are spent in each stage's epochs.
    longer = [o.replace("scan_steps=4", "scan_steps=8") for o in overrides]
    train(compose_config("train", longer), longer)
    third = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert third["pretext"] == manifest["stages"]["pretext"]
    assert third["mine"] == manifest["stages"]["mine"]
    assert third["scan"]["config"]["scan"]["epochs"] == 2 * scan_config["scan"]["epochs"]

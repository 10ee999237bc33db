"""The captions loader (data=captions): images listed with captions in a path,caption CSV."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semclust.data import build_dataset
from semclust.data.captions import CaptionsDataset
from semclust.data.folder import SkippedImagesWarning


def write_csv(path: Path, rows: list[tuple[str, str]], header=("path", "caption")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_image(path: Path, grey: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), grey, np.uint8)).save(path)
    return path


def test_pairs_come_in_the_csv_order_from_relative_and_absolute_paths(tmp_path: Path):
    write_image(tmp_path / "data/images/b.png", 50)
    write_image(tmp_path / "data/images/a.png", 150)
    elsewhere = write_image(tmp_path / "other/c.png", 250)
    rows = [("images/b.png", " CT, axial "), ("images/a.png", "X-ray"), (str(elsewhere), "MRI")]
    csv_path = write_csv(tmp_path / "data/pairs.csv", rows)
    dataset = CaptionsDataset(csv=str(csv_path))
    assert dataset.paths == [
        str(tmp_path / "data/images/b.png"),
        str(tmp_path / "data/images/a.png"),
        str(elsewhere),
    ]
    assert dataset.captions == ["CT, axial", "X-ray", "MRI"]
    assert dataset.targets is None and dataset.skipped == []
    assert np.asarray(dataset.load_image(1)).max() == 150
    assert dataset[2]["path"] == str(elsewhere) and dataset[2]["target"] == -1
    assert CaptionsDataset(csv=str(csv_path), channels=1).load_image(0).mode == "L"
    # image_root: where relative paths start instead of the CSV's folder.
    moved = write_csv(tmp_path / "pairs_elsewhere.csv", rows[:2])
    rooted = CaptionsDataset(csv=str(moved), image_root=str(tmp_path / "data"))
    assert rooted.paths == dataset.paths[:2]


def test_unusable_rows_are_skipped_and_named_in_one_warning(tmp_path: Path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = [
        ("a.png", ""),  # empty caption: skipped, the image's later row is kept
        ("a.png", "a chest X-ray"),
        ("a.png", "the same image again"),
        ("missing.png", "nothing on disk"),
        ("broken.png", "a broken file"),
        ("", "no path"),
        ("b.png", "a CT scan"),
    ]
    csv_path = write_csv(tmp_path / "pairs.csv", rows)
    with pytest.warns(SkippedImagesWarning) as caught:
        dataset = CaptionsDataset(csv=str(csv_path))
    assert len(caught) == 1
    assert dataset.captions == ["a chest X-ray", "a CT scan"]
    reasons = dataset.skipped
    assert reasons[:4] == [
        (str(tmp_path / "a.png"), "empty caption in pairs.csv line 2"),
        (str(tmp_path / "a.png"), "listed again in pairs.csv line 4; the first one kept"),
        (str(tmp_path / "missing.png"), "listed in pairs.csv line 5 but no such file"),
        (f"{csv_path}:7", "no path"),
    ]
    assert reasons[4][0] == str(tmp_path / "broken.png") and "not an image" in reasons[4][1]
    message = str(caught[0].message)
    for path, reason in reasons:
        assert f"{path}: {reason}" in message


def test_a_bad_csv_is_an_error_naming_it(tmp_path: Path):
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(FileNotFoundError, match=f"captions CSV {re.escape(str(missing))} does"):
        CaptionsDataset(csv=str(missing))
    wrong = write_csv(tmp_path / "wrong.csv", [("a.png", "x")], header=("file", "caption"))
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(wrong))} lacks the column\(s\) \['path'\]"
    ):
        CaptionsDataset(csv=str(wrong))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="lacks the column.*no header"):
        CaptionsDataset(csv=str(empty))
    nothing = write_csv(tmp_path / "nothing.csv", [("gone.png", "x")])
    with (
        pytest.warns(SkippedImagesWarning),
        pytest.raises(
            ValueError, match=f"no usable .image, caption. pairs in {re.escape(str(nothing))}"
        ),
    ):
        CaptionsDataset(csv=str(nothing))
    with pytest.raises(FileNotFoundError, match="data.image_root"):
        CaptionsDataset(csv=str(nothing), image_root=str(tmp_path / "no_folder"))


def test_config_builds_seeded_splits_of_the_rows(compose_config, tmp_path: Path):
    rows = [(write_image(tmp_path / f"{i}.png").name, f"image {i}") for i in range(10)]
    csv_path = write_csv(tmp_path / "pairs.csv", rows)
    cfg = compose_config("train", ["data=captions", f"data.csv={csv_path}"])
    everything = build_dataset(cfg.data, "train")
    assert len(everything) == 10 and everything.captions[3] == "image 3"
    cfg.data.train_split, cfg.data.val_split = "train", "test"
    train, test = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    assert (len(train), len(test)) == (8, 2)
    assert sorted(train.captions + test.captions) == sorted(everything.captions)
    for split in (train, test):  # each image keeps its own caption
        for path, caption in zip(split.paths, split.captions, strict=True):
            assert caption == f"image {Path(path).stem}"

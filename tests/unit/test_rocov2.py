"""The ROCOv2 loader on a tiny copy of its released layout: image folders plus caption CSVs."""

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semclust.data import build_dataset
from semclust.data.folder import SkippedImagesWarning
from semclust.data.rocov2 import ROCOv2Dataset

# Solid grey levels survive JPEG compression almost exactly, so pixels can be compared.
GREYS = {"000001": 40, "000002": 120, "000003": 200, "000004": 90}


def image_id(split: str, number: str) -> str:
    return f"ROCOv2_2023_{split}_{number}"


def write_captions(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["ID", "Caption"])
        writer.writerows(rows)


def write_split(root: Path, split: str, numbers: list[str], captioned: list[str]) -> None:
    """JPEGs for ``numbers`` and a CSV with captions for ``captioned`` (in that order)."""
    (root / split).mkdir(parents=True, exist_ok=True)
    for number in numbers:
        grey = np.full((20, 30, 3), GREYS[number], np.uint8)
        Image.fromarray(grey).save(root / split / f"{image_id(split, number)}.jpg", quality=95)
    rows = [(image_id(split, n), f'CT scan {n}, axial view; "contrast"') for n in captioned]
    write_captions(root / f"{split}_captions.csv", rows)


def build(root: Path, split: str = "train", **options) -> ROCOv2Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return ROCOv2Dataset(split, root=str(root), **options)


def test_images_come_with_their_captions(tmp_path: Path):
    # The CSV's order, not the file names', decides the index order.
    write_split(tmp_path, "train", ["000001", "000002", "000003"], ["000003", "000001", "000002"])
    dataset = build(tmp_path)
    expected = ["000003", "000001", "000002"]
    assert dataset.ids == [image_id("train", n) for n in expected]
    assert dataset.paths == [str(tmp_path / "train" / f"{i}.jpg") for i in dataset.ids]
    assert dataset.captions[0] == 'CT scan 000003, axial view; "contrast"'
    assert dataset.targets is None and dataset.class_names is None
    assert dataset.skipped == []
    for index, number in enumerate(expected):
        image = dataset.load_image(index)
        assert image.mode == "RGB" and image.size == (30, 20)
        assert np.abs(np.asarray(image, dtype=int) - GREYS[number]).max() <= 2
    sample = dataset[1]
    assert (sample["target"], sample["path"]) == (-1, dataset.paths[1])
    assert build(tmp_path, channels=1).load_image(0).mode == "L"


def test_missing_uncaptioned_and_broken_images_are_skipped(tmp_path: Path):
    write_split(tmp_path, "valid", ["000001", "000002", "000004"], ["000001", "000003", "000004"])
    broken = tmp_path / "valid" / f"{image_id('valid', '000004')}.jpg"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])

    with pytest.warns(SkippedImagesWarning) as caught:
        dataset = ROCOv2Dataset("valid", root=str(tmp_path))

    assert len(caught) == 1
    assert dataset.ids == [image_id("valid", "000001")]
    reasons = dict(dataset.skipped)
    folder = tmp_path / "valid"
    assert reasons[str(folder / image_id("valid", "000003"))] == (
        "listed in valid_captions.csv but no image file"
    )
    assert reasons[str(folder / f"{image_id('valid', '000002')}.jpg")] == (
        "no caption in valid_captions.csv"
    )
    assert "truncated" in reasons[str(broken)]
    assert len(reasons) == 3
    message = str(caught[0].message)
    assert message.startswith(f"skipped 3 unusable image file(s) in {tmp_path}:")
    for path, reason in dataset.skipped:
        assert f"{path}: {reason}" in message


def test_without_verification_broken_files_stay(tmp_path: Path):
    write_split(tmp_path, "test", ["000001", "000002"], ["000001", "000002"])
    (tmp_path / "test" / f"{image_id('test', '000002')}.jpg").write_bytes(b"")
    assert len(build(tmp_path, "test", verify=False)) == 2
    with pytest.warns(SkippedImagesWarning, match="empty file"):
        assert len(ROCOv2Dataset("test", root=str(tmp_path))) == 1


def test_duplicate_ids_are_reported(tmp_path: Path):
    write_split(tmp_path, "train", ["000001"], ["000001", "000001"])
    png = tmp_path / "train" / f"{image_id('train', '000001')}.png"
    Image.new("RGB", (4, 4)).save(png)
    with pytest.warns(SkippedImagesWarning) as caught:
        dataset = ROCOv2Dataset("train", root=str(tmp_path))
    assert dataset.paths == [str(tmp_path / "train" / f"{image_id('train', '000001')}.jpg")]
    reasons = [reason for _, reason in dataset.skipped]
    assert reasons == ["ID listed again; first kept", f"another file has the ID {png.stem}"]
    assert len(caught) == 1


def test_an_empty_caption_leaves_its_image_out(tmp_path: Path):
    write_split(tmp_path, "train", ["000001", "000002"], ["000001"])
    write_captions(
        tmp_path / "train_captions.csv",
        [(image_id("train", "000001"), "CT scan"), (image_id("train", "000002"), "  ")],
    )
    with pytest.warns(SkippedImagesWarning):
        dataset = ROCOv2Dataset("train", root=str(tmp_path))
    assert dataset.ids == [image_id("train", "000001")]
    assert dataset.skipped == [
        (
            str(tmp_path / "train" / f"{image_id('train', '000002')}.jpg"),
            "empty caption in train_captions.csv",
        )
    ]


def test_layout_errors_name_the_path(tmp_path: Path):
    with pytest.raises(
        FileNotFoundError, match=f"{re.escape(str(tmp_path / 'train'))} does not exist"
    ):
        ROCOv2Dataset("train", root=str(tmp_path))
    (tmp_path / "train").mkdir()
    csv_path = tmp_path / "train_captions.csv"
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(csv_path))} does not exist"):
        ROCOv2Dataset("train", root=str(tmp_path))
    csv_path.write_text("id;caption\nx;y\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(csv_path))} lacks the column"):
        ROCOv2Dataset("train", root=str(tmp_path))
    write_captions(csv_path, [("ROCOv2_2023_train_000009", "nothing on disk")])
    with (
        pytest.warns(SkippedImagesWarning),
        pytest.raises(
            ValueError,
            match=f"no usable ROCOv2 train images in {re.escape(str(tmp_path / 'train'))}",
        ),
    ):
        ROCOv2Dataset("train", root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown ROCOv2 split 'val'"):
        ROCOv2Dataset("val", root=str(tmp_path))


def test_config_builds_the_splits(compose_config, tmp_path: Path):
    root = tmp_path / "ROCOv2"
    write_split(root, "train", ["000001", "000002"], ["000001", "000002"])
    write_split(root, "valid", ["000003"], ["000003"])
    cfg = compose_config("train", ["data=rocov2", f"paths.data_dir={tmp_path}"])
    assert cfg.data.image_size == 224 and cfg.data.num_clusters == 10
    assert len(build_dataset(cfg.data, "train")) == 2
    assert build_dataset(cfg.data, "val").ids == [image_id("valid", "000003")]

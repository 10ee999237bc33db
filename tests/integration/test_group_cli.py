"""`semclust group` end to end: its outputs, unreadable files, the input left untouched."""

import csv
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from semclust.cli import main
from semclust.inference.export import save_export

BAD_FILES = {"truncated.jpg", "notes.png", "empty.jpg"}


def scene(seed: int, size: int = 96) -> Image.Image:
    """Rectangles and ellipses on a gradient (a different hash for every seed)."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3))
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(10):
        x, y = (int(v) for v in rng.integers(0, size - 12, 2))
        width, height = (int(v) for v in rng.integers(8, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.rectangle if rng.random() < 0.6 else draw.ellipse
        shape([x, y, x + width, y + height], fill=colour, outline=(0, 0, 0))
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def photos(tmp_path) -> Path:
    """Two pairs of copies (one exact, one edited, in another folder), three unrelated
    images, and three files that are no images: truncated, text, empty."""
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    scene(1).save(root / "a.png")
    (root / "trip" / "a_copy.png").write_bytes((root / "a.png").read_bytes())
    (root / "b.jpg").write_bytes(jpeg(scene(2)))
    brighter = ImageEnhance.Brightness(scene(2)).enhance(1.1).resize((80, 80))
    (root / "trip" / "b_edited.jpg").write_bytes(jpeg(brighter, 70))
    for seed, name in ((3, "c.png"), (4, "d.png"), (5, "trip/e.png")):
        scene(seed).save(root / name)
    whole = jpeg(scene(6))
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "notes.png").write_text("not an image\n")
    (root / "empty.jpg").write_bytes(b"")
    return root


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its SHA-256 and modification time."""
    return {
        str(path.relative_to(folder)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "groups.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["path", "group", "representative", "similarity"]
    return {Path(row["path"]).name: row for row in rows}


def test_group_writes_groups_folders_summary_and_page_and_leaves_the_input_alone(
    photos, tmp_path, capsys
):
    before = snapshot(photos)
    out = tmp_path / "out"
    assert main(["group", str(photos), "--out", str(out), "--quiet"]) == 0
    assert "2 groups" in capsys.readouterr().out
    assert snapshot(photos) == before  # not a byte, not a timestamp, no new file

    rows = read_rows(out)
    assert set(rows) == {"a.png", "a_copy.png", "b.jpg", "b_edited.jpg", "c.png", "d.png", "e.png"}
    assert rows["a.png"]["group"] == rows["a_copy.png"]["group"]
    assert rows["b.jpg"]["group"] == rows["b_edited.jpg"]["group"]
    assert {rows["a.png"]["group"], rows["b.jpg"]["group"]} == {"1", "2"}
    assert float(rows["a_copy.png"]["similarity"]) == 1.0
    assert 0.8 < float(rows["b_edited.jpg"]["similarity"]) <= 1.0
    for name in ("c.png", "d.png", "e.png"):
        assert rows[name]["group"] == "-1" and rows[name]["representative"].endswith(name)
    group_a = rows["a.png"]["group"]
    assert Path(rows["a_copy.png"]["representative"]).name in {"a.png", "a_copy.png"}

    # Group folders and outliers/ hold links to the inputs, nested names flattened.
    folder_a = out / "groups" / f"{int(group_a):04d}"
    assert sorted(p.name for p in folder_a.iterdir()) == ["a.png", "trip__a_copy.png"]
    assert (folder_a / "trip__a_copy.png").resolve() == (photos / "trip" / "a_copy.png").resolve()
    assert sorted(p.name for p in (out / "outliers").iterdir()) == ["c.png", "d.png", "trip__e.png"]
    assert all(p.is_symlink() for p in (out / "outliers").iterdir())

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_found"] == 10 and summary["images_grouped"] == 7
    assert summary["groups"] == 2 and summary["images_in_groups"] == 4
    assert summary["outliers"] == 3 and summary["threshold_source"] == "default"
    assert summary["skipped"] == 3
    assert {Path(item["path"]).name for item in summary["skipped_files"]} == BAD_FILES
    reasons = {Path(item["path"]).name: item["reason"] for item in summary["skipped_files"]}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.png"]
    with open(out / "skipped.csv", newline="") as file:
        assert {Path(row["path"]).name for row in csv.DictReader(file)} == BAD_FILES

    page = (out / "groups.html").read_text()
    assert page.index('id="group-1"') < page.index('id="group-2"') < page.index('id="outliers"')
    assert page.count("<figure>") == 7 and "data:image/png;base64," in page
    assert "truncated.jpg" in page and 'src="http' not in page


def test_copies_instead_of_links_and_auto_threshold_with_its_curve(photos, tmp_path):
    out = tmp_path / "out"
    argv = ["group", str(photos), "--out", str(out), "--method", "ssim"]
    assert main([*argv, "--link", "copy", "--threshold", "auto", "--quiet", "--no-report"]) == 0
    copied = out / "outliers" / "c.png"
    assert not copied.is_symlink() and copied.read_bytes() == (photos / "c.png").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    # 21 sampled pairs draw no curve to read a knee from (on them the flattest step lay
    # inside the unrelated pairs, at 0.095, and joined e.png to a.png): the default holds.
    assert summary["threshold_source"] == "auto (default)" and summary["threshold"] == 0.5
    assert "only 21 pairs, fewer than the 202" in summary["threshold_reason"]
    assert summary["threshold_curve"] == "threshold_curve.png"
    rows = read_rows(out)
    assert rows["a.png"]["group"] == rows["a_copy.png"]["group"] != "-1"
    assert rows["b.jpg"]["group"] == rows["b_edited.jpg"]["group"] != "-1"
    assert rows["c.png"]["group"] == rows["d.png"]["group"] == rows["e.png"]["group"] == "-1"
    with Image.open(out / "threshold_curve.png") as curve:
        assert curve.format == "PNG" and curve.width > 300
    assert not (out / "groups.html").exists()


def test_an_output_inside_the_input_or_full_of_other_results_is_refused(photos, tmp_path, capsys):
    assert main(["group", str(photos), "--out", str(photos / "out"), "--quiet"]) == 2
    assert "inside the input" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["group", str(photos), "--out", str(out), "--quiet"]) == 0
    (out / "mine.txt").write_text("keep me")
    assert main(["group", str(photos), "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["group", str(photos), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "keep me"
    assert sorted(os.listdir(out / "groups")) == ["0001", "0002"]


@pytest.mark.parametrize("method", ["orb", "template"])
def test_a_method_whose_module_is_missing_is_refused_before_any_output(
    photos, tmp_path, capsys, monkeypatch, method
):
    """ORB and template matching need opencv, which an install may lack (the GPU machine)."""
    monkeypatch.setitem(sys.modules, "cv2", None)  # importing it now fails
    out = tmp_path / "out"
    assert main(["group", str(photos), "--out", str(out), "--method", method, "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"error: method {method} needs opencv-python-headless, which cannot be imported" in error
    assert "Traceback" not in error and not out.exists()


def test_a_folder_with_no_readable_image_is_an_error_not_a_crash(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.png").write_text("text")
    assert main(["group", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "could be read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [("--batch-size=1", "batch_size must be at least 2, got 1"), ("--neighbors=0", "at least 1")],
)
def test_too_small_sizes_say_the_least_they_take(photos, tmp_path, capsys, option, message):
    assert main(["group", str(photos), "--out", str(tmp_path / "out"), option, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_the_cnn_method_takes_the_backbone_of_an_exported_semclust_model(
    photos, tmp_path, tiny_model
):
    model = save_export(*tiny_model(), tmp_path / "model.safetensors")
    out = tmp_path / "out"
    argv = ["group", str(photos), "--out", str(out), "--method", "cnn", "--quiet"]
    assert main([*argv, "--cnn-model", str(model), "--threshold", "0.9999", "--no-report"]) == 0
    rows = read_rows(out)
    assert rows["a.png"]["group"] == rows["a_copy.png"]["group"] != "-1"
    assert rows["c.png"]["group"] != rows["a.png"]["group"]
    assert json.loads((out / "summary.json").read_text())["method"] == "cnn"

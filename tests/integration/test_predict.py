"""`semclust predict` / `neighbors` / `export` on folders of generated images."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

from semclust.cli import main
from semclust.evaluation import evaluate
from semclust.inference.checkpoint import load_clustering_checkpoint
from semclust.inference.export import load_export, save_export
from semclust.inference.predict import predict_folder, resolve_device
from semclust.inference.retrieval import nearest_images
from semclust.pipeline import train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_file(tiny_model, tmp_path) -> Path:
    return save_export(*tiny_model(), tmp_path / "model.safetensors", ["a/b", "dogs", "c"])


def gray_image(seed: int, size: int = 20) -> Image.Image:
    """Smooth random blobs: pixel noise would look alike to a network that pools it away."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (3, 3), dtype=np.uint8), "L")
    return coarse.resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Nested folders of small grayscale images, two with the same name, one broken file."""
    root = tmp_path / "images"
    for index in range(14):
        folder = root / ("left" if index % 2 else "right") / ("deep" if index > 10 else "")
        folder.mkdir(parents=True, exist_ok=True)
        gray_image(index).save(folder / f"img{index:02d}.png")
    gray_image(99).save(root / "left" / "same.png")
    gray_image(98).save(root / "right" / "same.png")
    (root / "right" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "right" / "empty.jpg").write_bytes(b"")
    (root / "right" / "gone.png").symlink_to(root / "deleted.png")  # a dangling link
    (root / "notes.txt").write_text("ignored: no image extension")
    return root


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and modification time of every file, to prove inputs are untouched."""
    return {
        str(path): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_predict_writes_aligned_outputs_and_never_touches_inputs(
    model_file, image_folder, tmp_path
):
    before = snapshot(image_folder)
    # A threshold that splits the images: the median confidence of a first pass.
    predict_folder(model_file, image_folder, tmp_path / "first", link="none", report=False)
    threshold = float(np.median(np.load(tmp_path / "first/probabilities.npy").max(axis=1)))
    out = tmp_path / "out"
    summary = predict_folder(
        model_file, image_folder, out, batch_size=4, threshold=threshold, report=False
    )
    assert snapshot(image_folder) == before

    rows = read_rows(out / "predictions.csv")
    errors = read_rows(out / "errors.csv")
    embeddings = np.load(out / "embeddings.npy")
    probabilities = np.load(out / "probabilities.npy")
    assert summary["images_found"] == 19 and summary["images_used"] == 16 == len(rows)
    reasons = {Path(e["path"]).name: e["reason"] for e in errors}
    assert sorted(reasons) == ["broken.png", "empty.jpg", "gone.png"]
    assert reasons["gone.png"].startswith("cannot read file: No such file")
    assert reasons["broken.png"].startswith("not an image")
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert embeddings.shape == (16, 32) and probabilities.shape == (16, 3)
    assert list(rows[0])[:5] == ["path", "cluster", "cluster_name", "confidence", "p_0"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)

    exported = load_export(model_file)
    for row, embedding, probability in zip(rows, embeddings, probabilities, strict=True):
        image = exported.preprocess()(Image.open(row["path"]).convert("L"))[None]
        with torch.no_grad():
            features = exported.model.backbone(image)[0].numpy()
        np.testing.assert_allclose(embedding, features, atol=1e-4)
        assert int(row["cluster"]) == probability.argmax()
        assert float(row["confidence"]) == pytest.approx(probability.max(), abs=1e-5)
        assert row["cluster_name"] == ["a/b", "dogs", "c"][int(row["cluster"])]

    # Confident images link from their cluster's folder, the rest from low_confidence/.
    links = sorted((out / "clusters").rglob("*.png")) + sorted((out / "low_confidence").glob("*"))
    assert len(links) == 16 and all(link.is_symlink() for link in links)
    assert {link.resolve() for link in links} == {Path(r["path"]).resolve() for r in rows}
    low = [r for r in rows if float(r["confidence"]) < threshold]
    assert 0 < len(low) < 16 and summary["low_confidence"] == len(low)
    assert len(list((out / "low_confidence").iterdir())) == len(low)
    assert (out / "clusters" / "000_a_b").is_dir()  # names made safe for a folder
    assert sum(summary["cluster_sizes"]) == 16
    assert json.loads((out / "summary.json").read_text())["images_used"] == 16


def test_batch_size_does_not_change_the_result(model_file, image_folder, tmp_path):
    for batch_size in (1, 256):
        predict_folder(
            model_file,
            image_folder,
            tmp_path / f"out{batch_size}",
            batch_size=batch_size,
            link="none",
            report=False,
            progress=False,
        )
    small, large = (np.load(tmp_path / f"out{b}/embeddings.npy") for b in (1, 256))
    np.testing.assert_allclose(small, large, atol=1e-5)
    assert not (tmp_path / "out1" / "clusters").exists()


def test_copy_mode_copies_and_overwrite_replaces_only_predict_outputs(
    model_file, image_folder, tmp_path
):
    out = tmp_path / "out"
    predict_folder(model_file, image_folder, out, link="copy", threshold=0.0, report=False)
    copies = [p for p in (out / "clusters").rglob("*") if p.is_file()]
    assert len(copies) == 16 and not any(p.is_symlink() for p in copies)
    names = {p.name for p in copies}
    assert {"left__same.png", "right__same.png"} <= names  # flattened, no collision

    (out / "mine.txt").write_text("the user's own file")
    with pytest.raises(FileExistsError, match="--overwrite"):
        predict_folder(model_file, image_folder, out, report=False)
    predict_folder(model_file, image_folder, out, threshold=1.0, overwrite=True, report=False)
    assert (out / "mine.txt").read_text() == "the user's own file"
    assert not any(p.is_file() for p in (out / "clusters").rglob("*"))
    assert len(list((out / "low_confidence").iterdir())) == 16


def test_bad_inputs_fail_at_once_with_a_clear_message(model_file, image_folder, tmp_path):
    with pytest.raises(ValueError, match="inside the input folder"):
        predict_folder(model_file, image_folder, image_folder / "out", report=False)
    with pytest.raises(ValueError, match="inside the input folder"):
        predict_folder(model_file, image_folder, image_folder, report=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        predict_folder(model_file, tmp_path / "missing", tmp_path / "o1", report=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        predict_folder(model_file, tmp_path / "empty", tmp_path / "o2", report=False)
    with pytest.raises(ValueError, match="is a file"):
        predict_folder(model_file, model_file, tmp_path / "o3", report=False)
    with pytest.raises(ValueError, match="threshold"):
        predict_folder(model_file, image_folder, tmp_path / "o4", threshold=2, report=False)
    not_a_model = tmp_path / "fake.safetensors"
    not_a_model.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="fake.safetensors"):
        predict_folder(not_a_model, image_folder, tmp_path / "o5", report=False)


def test_all_files_unreadable_is_an_error(model_file, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 1 image files"):
        predict_folder(model_file, folder, tmp_path / "out", report=False)
    assert read_rows(tmp_path / "out" / "errors.csv")[0]["path"].endswith("a.png")


def test_unreadable_file_is_listed_and_the_run_goes_on(
    model_file, image_folder, tmp_path, unreadable
):
    unreadable(image_folder / "left" / "img01.png")
    summary = predict_folder(model_file, image_folder, tmp_path / "out", report=False)
    reasons = {Path(e["path"]).name: e["reason"] for e in read_rows(tmp_path / "out/errors.csv")}
    assert reasons["img01.png"] == "permission denied" and summary["images_used"] == 15


def test_grayscale_model_refuses_colour_images_unless_asked(model_file, tmp_path):
    folder = tmp_path / "colour"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{index}.jpg")
    with pytest.raises(ValueError, match="grayscale.*convert-channels"):
        predict_folder(model_file, folder, tmp_path / "out", report=False)
    summary = predict_folder(
        model_file, folder, tmp_path / "out2", report=False, convert_channels=True
    )
    assert summary["images_used"] == 3


def test_neighbors_finds_the_duplicate_of_the_query_first(model_file, image_folder, tmp_path):
    query = tmp_path / "query.png"
    query.write_bytes((image_folder / "left" / "img05.png").read_bytes())
    exported = load_export(model_file)
    found = nearest_images(exported, image_folder, query, k=3, progress=False)
    assert len(found) == 3
    assert found[0][0].endswith("left/img05.png") and found[0][1] == pytest.approx(1, abs=1e-5)
    assert found[0][1] >= found[1][1] >= found[2][1]

    # A query inside the folder is not its own neighbour.
    inside = nearest_images(exported, image_folder, image_folder / "left/img05.png", k=20)
    assert len(inside) == 15 and all(not p.endswith("left/img05.png") for p, _ in inside)

    # Reusing an earlier prediction's embeddings gives the same answer.
    predict_folder(model_file, image_folder, tmp_path / "out", link="none", report=False)
    reused = nearest_images(exported, image_folder, query, k=3, embeddings_from=tmp_path / "out")
    assert [p for p, _ in reused] == [p for p, _ in found]


def test_cli_predict_and_neighbors(tiny_model, tmp_path, image_folder, capsys):
    model_file = save_export(*tiny_model(), tmp_path / "model.safetensors")
    code = main(
        ["predict", str(model_file), str(image_folder), "--out", str(tmp_path / "out"), "--quiet"]
        + ["--no-report", "--link", "none"]
    )
    assert code == 0
    assert "16 of 19 images clustered" in capsys.readouterr().out
    code = main(
        ["neighbors", str(model_file), str(image_folder), str(image_folder / "left/same.png")]
        + ["-k", "2", "--quiet"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0] == "rank\tsimilarity\tpath" and len(lines) == 3
    rows = [line.split("\t") for line in lines[1:]]
    assert [rank for rank, _, _ in rows] == ["1", "2"]
    assert float(rows[0][1]) >= float(rows[1][1])  # most similar first
    assert all(not path.endswith("left/same.png") for _, _, path in rows)  # not the query

    code = main(["predict", str(model_file), str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_is_declared_and_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["semclust"] == "semclust.cli:main"
    script = Path(sys.executable).parent / "semclust"
    if not script.exists():
        pytest.skip(f"package not installed into {script.parent} (pip install -e .)")
    shown = subprocess.run([script, "predict", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--threshold" in shown.stdout


def test_a_trained_run_exports_and_predicts_like_its_checkpoint(
    tiny_config, compose_config, image_folder, tmp_path, capsys
):
    train(tiny_config("stages=[pretext,mine,scan]", "report=true"))
    run = tmp_path / "run"
    # The run's own report: its images, with labels, so scores and a confusion table.
    page = (run / "report.html").read_text()
    assert '<section id="labels">' in page and page.count('class="cluster') == 10
    assert page.count("data:image/png;base64,") > 20  # prototypes, heatmaps, map
    (tmp_path / "names.txt").write_text("\n".join(f"digit {i}" for i in range(10)))
    model_file = tmp_path / "digits.safetensors"
    assert main(["export", str(run), str(model_file), "--names", str(tmp_path / "names.txt")]) == 0
    assert "exported 10 clusters" in capsys.readouterr().out
    # A single output file never replaces a run's own files, nor another file unasked.
    manifest = (run / "manifest.json").read_bytes()
    weights = (run / "scan/model.safetensors").read_bytes()
    for command, message in [
        (["export", str(run), str(run / "manifest.json")], "lies inside"),
        (["export", str(run), str(run / "scan/model.safetensors")], "lies inside"),
        (["report", str(run), "--out", str(run / "manifest.json"), "--overwrite"], "lies inside"),
        (["export", str(run), str(model_file)], f"{model_file} exists; pass --overwrite"),
        (["report", str(run), "--out", str(model_file)], "exists; pass --overwrite"),
        (["export", str(run), str(tmp_path)], "is a folder"),
    ]:
        assert main(command) == 2, command
        assert message in capsys.readouterr().err, command
    assert (run / "manifest.json").read_bytes() == manifest
    assert (run / "scan/model.safetensors").read_bytes() == weights
    assert not list(tmp_path.glob("*.tmp"))

    exported = load_export(model_file)
    checkpoint_model, _ = load_clustering_checkpoint(run / "scan/checkpoints/best.ckpt")
    images = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(exported.model(images), checkpoint_model.eval()(images), atol=1e-5)
    assert exported.cluster_names[3] == "digit 3"

    # A prediction's report: no labels, so label-free scores; names from the export.
    predict_folder(model_file, image_folder, tmp_path / "with_report", link="none")
    page = (tmp_path / "with_report/report.html").read_text()
    assert '<section id="labels">' not in page and "Label-free scores" in page
    assert "digit " in page
    assert "Unreadable files (3)" in page

    # evaluate.py's predict mode gives what `semclust predict` gives, from the .ckpt too.
    predict_folder(model_file, image_folder, tmp_path / "cli", link="none", report=False)
    cfg = compose_config(
        "evaluate",
        [
            f"ckpt={run / 'scan/checkpoints/best.ckpt'}",
            f"predict.input_dir={image_folder}",
            f"predict.out={tmp_path / 'hydra'}",
            "predict.link=none",
            "predict.report=false",
        ],
    )
    summary = evaluate(cfg)
    assert summary["images_used"] == 16
    np.testing.assert_allclose(
        np.load(tmp_path / "hydra/probabilities.npy"),
        np.load(tmp_path / "cli/probabilities.npy"),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("bogus", "unknown device 'bogus'; give auto, cpu, cuda or cuda:N"),
        ("mps", "device 'mps' is not supported"),
        ("cuda:99", "device 'cuda:99' asked for, but this machine has"),
    ],
)
def test_a_device_this_machine_lacks_is_named(device, message):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=message):
        resolve_device(device)

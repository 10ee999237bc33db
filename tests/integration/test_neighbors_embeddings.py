"""`semclust neighbors --embeddings`: reused predict outputs must come from the folder searched,
its current files and the same model, or be refused; never an answer from another folder."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semclust.cli import main
from semclust.inference import retrieval
from semclust.inference.export import load_export, save_export
from semclust.inference.predict import embed_paths, predict_folder
from semclust.inference.retrieval import nearest_images


def blob(seed: int) -> Image.Image:
    """Smooth random grayscale blobs (pixel noise would look alike to a pooling network)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (3, 3), dtype=np.uint8), "L")
    return coarse.resize((20, 20), Image.Resampling.BICUBIC)


def image_folder(root: Path, first_seed: int) -> Path:
    """Six images with the same names in every folder made here, but different pixels."""
    for index in range(6):
        folder = root / ("sub" if index % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        blob(first_seed + index).save(folder / f"img{index}.png")
    return root


@pytest.fixture
def model_file(tiny_model, tmp_path) -> Path:
    return save_export(*tiny_model(), tmp_path / "model.safetensors")


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    return image_folder(tmp_path / "A", 0), image_folder(tmp_path / "B", 100)


def neighbors(model: Path, folder: Path | str, query: Path, *extra: str) -> list[str]:
    return ["neighbors", str(model), str(folder), str(query), "-k", "3", "--quiet", *extra]


def test_embeddings_of_another_folder_are_refused_naming_both(
    model_file, folders, tmp_path, capsys
):
    a, b = folders
    out_a = tmp_path / "predict_a"
    predict_folder(model_file, a, out_a, link="none", report=False, progress=False)
    query = b / "img0.png"

    code = main(neighbors(model_file, b, query, "--embeddings", str(out_a)))
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    error = captured.err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("semclust neighbors: error:")
    assert str(a) in error and str(b) in error and "Traceback" not in captured.err

    with pytest.raises(ValueError, match="made from the folder"):
        nearest_images(load_export(model_file), b, query, embeddings_from=out_a, progress=False)
    # An identical copy is another folder too: its files may change independently.
    copy = shutil.copytree(a, tmp_path / "copy_of_A")
    with pytest.raises(ValueError, match="copy_of_A"):
        nearest_images(load_export(model_file), copy, query, embeddings_from=out_a, progress=False)


def test_embeddings_of_the_same_folder_answer_like_embedding_it_again(
    model_file, folders, tmp_path, capsys, monkeypatch
):
    a, _ = folders
    out_a = tmp_path / "predict_a"
    predict_folder(model_file, a, out_a, link="none", report=False, progress=False)
    query = a / "sub" / "img3.png"
    embedded = []  # how many images each answer embeds

    def counting_embed_paths(exported, paths, *args, **kwargs):
        embedded[-1] += len(paths)
        return embed_paths(exported, paths, *args, **kwargs)

    monkeypatch.setattr(retrieval, "embed_paths", counting_embed_paths)
    embedded.append(0)
    assert main(neighbors(model_file, a, query)) == 0
    fresh = capsys.readouterr().out
    embedded.append(0)
    assert main(neighbors(model_file, a, query, "--embeddings", str(out_a))) == 0
    assert capsys.readouterr().out == fresh and len(fresh.splitlines()) == 4
    # Six images and the query, against the query and a spot check of three stored rows.
    assert embedded == [7, 4]

    # The same folder spelled another way (relative, from another working directory).
    monkeypatch.chdir(a / "sub")
    assert main(neighbors(model_file, "../../A", query, "--embeddings", str(out_a))) == 0
    relative = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:2] for line in relative] == [
        line.split("\t")[:2] for line in fresh.splitlines()
    ]
    assert all(line.split("\t")[2].startswith("../../A/") for line in relative[1:])


def test_predict_given_a_relative_folder_is_matched_by_its_files(
    model_file, folders, tmp_path, monkeypatch
):
    a, b = folders
    out_a = tmp_path / "predict_a"
    with monkeypatch.context() as inside:
        inside.chdir(tmp_path)
        predict_folder(model_file, "A", out_a, link="none", report=False, progress=False)
    exported = load_export(model_file)
    query = a / "img0.png"
    expected = nearest_images(exported, a, query, k=3, progress=False)
    assert nearest_images(exported, a, query, k=3, embeddings_from=out_a) == expected
    # From here "A" names no folder, so only the files and the model can tell: B's differ.
    with pytest.raises(ValueError, match="not made by this model from these images"):
        nearest_images(exported, b, query, embeddings_from=out_a, progress=False)


def test_files_added_or_removed_since_predict_are_refused(model_file, folders, tmp_path):
    a, _ = folders
    out_a = tmp_path / "predict_a"
    predict_folder(model_file, a, out_a, link="none", report=False, progress=False)
    exported = load_export(model_file)
    query = a / "img0.png"

    blob(50).save(a / "sub" / "new.png")
    with pytest.raises(ValueError, match=r"1 image file.*not in.*sub/new\.png"):
        nearest_images(exported, a, query, embeddings_from=out_a, progress=False)
    (a / "sub" / "new.png").unlink()
    (a / "img2.png").unlink()
    with pytest.raises(ValueError, match=r"1 image.*no longer.*img2\.png"):
        nearest_images(exported, a, query, embeddings_from=out_a, progress=False)


def test_embeddings_of_another_model_are_refused(tiny_model, model_file, folders, tmp_path):
    a, _ = folders
    other, spec = tiny_model()
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn_like(parameter))
    other_file = save_export(other, spec, tmp_path / "other.safetensors")
    out_a = tmp_path / "predict_a"
    predict_folder(other_file, a, out_a, link="none", report=False, progress=False)
    with pytest.raises(ValueError, match="not made by this model"):
        nearest_images(
            load_export(model_file), a, a / "img0.png", embeddings_from=out_a, progress=False
        )


def test_unfinished_predict_output_is_refused(model_file, folders, tmp_path):
    a, _ = folders
    out_a = tmp_path / "predict_a"
    predict_folder(model_file, a, out_a, link="none", report=False, progress=False)
    (out_a / "summary.json").unlink()
    with pytest.raises(ValueError, match="summary.json"):
        nearest_images(
            load_export(model_file), a, a / "img0.png", embeddings_from=out_a, progress=False
        )

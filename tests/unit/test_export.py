"""The exported model file: round trip, and refusal of foreign, tampered or mismatched files."""

import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from semclust.inference.export import (
    EXPORT_FORMAT,
    ModelFileError,
    load_any_model,
    load_export,
    load_trained_model,
    read_cluster_names,
    save_export,
)
from semclust.rundir import save_weights


@pytest.fixture
def exported(tiny_model, tmp_path):
    model, spec = tiny_model()
    spec = {**spec, "stage": "scan", "head_index": 1}
    return model, save_export(model, spec, tmp_path / "model.safetensors", ["a", "b", "c"])


def test_round_trip_gives_the_same_outputs_and_metadata(exported):
    model, path = exported
    loaded = load_export(path)
    images = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.model(images), model(images))
    assert loaded.num_clusters == 3 and loaded.channels == 1 and loaded.image_size == 16
    assert loaded.cluster_names == ["a", "b", "c"]
    assert loaded.spec["source"] == {"stage": "scan", "head_index": 1}
    assert not loaded.model.training
    tensor = loaded.preprocess()(Image.new("L", (40, 30), 128))
    assert tensor.shape == (1, 16, 16)
    assert torch.allclose(tensor, torch.full_like(tensor, (128 / 255 - 0.5) / 0.25), atol=1e-4)


def test_changed_weights_fail_the_checksum(exported):
    _, path = exported
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a byte inside the last tensor, header untouched
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_export(path)


@pytest.mark.parametrize("cut", [4, 40, -10])
def test_truncated_or_garbled_files_are_refused(exported, cut):
    _, path = exported
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else b"\x00" * 8 + data[8:cut])
    with pytest.raises(ModelFileError, match=str(path.name)):
        load_export(path)


def test_a_plain_safetensors_file_is_not_an_export(tiny_model, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(tiny_model()[0].state_dict(), str(path))
    with pytest.raises(ModelFileError, match="not a semclust export"):
        load_export(path)


def test_metadata_that_does_not_fit_the_weights_is_refused(tiny_model, tmp_path):
    path = save_export(*tiny_model(), tmp_path / "model.safetensors")
    # Rewrite the header to describe a wider network, keeping the (valid) checksum.
    with safe_open(str(path), framework="pt") as file:
        state = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
        header = json.loads(file.metadata()["semclust"])
    header["backbone"]["width"] = 16
    save_file(state, str(path), {"format": EXPORT_FORMAT, "semclust": json.dumps(header)})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_export(path)


def test_missing_file_and_bad_arguments(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_export(tmp_path / "nowhere.safetensors")
    with pytest.raises(ValueError, match="one head"):
        save_export(*tiny_model(num_heads=2), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="2 cluster names"):
        save_export(*tiny_model(), tmp_path / "m.safetensors", ["x", "y"])
    picture = tmp_path / "photo.png"  # an image given where the model goes
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ModelFileError, match=f"{picture} is not a semclust model: give"):
        load_any_model(picture)
    spec = tmp_path / "model.json"
    spec.write_bytes(b"\xff\xfe not text")
    with pytest.raises(ValueError, match=f"{spec} is not valid JSON"):
        load_any_model(spec)


def test_cluster_names_from_text_or_json(tmp_path):
    (tmp_path / "names.txt").write_text("cats\n\ndogs \nbirds\n")
    (tmp_path / "names.json").write_text('["cats", "dogs", 3]')
    assert read_cluster_names(tmp_path / "names.txt") == ["cats", "dogs", "birds"]
    assert read_cluster_names(tmp_path / "names.json") == ["cats", "dogs", "3"]
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON list"):
        read_cluster_names(tmp_path / "bad.json")


def test_a_stage_folder_whose_kept_head_was_not_the_first_loads(tiny_model, tmp_path):
    # SCAN keeps its best head (here SCAN's head 1) and saves that one head alone.
    model, spec = tiny_model(num_heads=2)
    model.cluster_heads.keep(1)
    stage_dir = tmp_path / "scan"
    stage_dir.mkdir()
    spec = {**spec, "num_heads": 1, "stage": "scan", "head_index": 1}
    save_weights(model, stage_dir / "model.safetensors", spec, stage_dir / "model.json")
    loaded, loaded_spec = load_trained_model(stage_dir)
    assert loaded_spec["head_index"] == 1 and len(loaded.cluster_heads.heads) == 1
    images = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(images), model(images))


def test_an_export_written_before_the_inference_package_still_loads_and_predicts_the_same():
    """tests/data/export_format1.safetensors was written by semclust.export.save_export as it
    was before the redesign (commit c58aa87), with the logits it gave then."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data"
    expected = json.loads((data / "export_format1_logits.json").read_text())
    loaded = load_export(data / "export_format1.safetensors")
    assert loaded.num_clusters == 3 and loaded.channels == 1 and loaded.image_size == 16
    assert loaded.cluster_names == ["zero", "one", "two"]
    assert loaded.spec["source"] == {"stage": "selflabel", "head_index": 0}
    torch.manual_seed(expected["images_seed"])
    images = torch.randn(*expected["shape"])
    with torch.no_grad():
        logits = loaded.model(images)[0]
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), rtol=1e-5, atol=1e-6)

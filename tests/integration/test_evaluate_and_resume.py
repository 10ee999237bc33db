"""evaluate.py's function on saved checkpoints, and resuming an interrupted stage."""

import json

import pytest
import torch
from safetensors.torch import load_file

from semclust.evaluation import evaluate
from semclust.pipeline import train
from semclust.rundir import RunDirectory


class NotAWeight:
    """A pickled object of this class would run code on load; weights_only must refuse it."""


@pytest.fixture
def scan_run(tiny_config, tmp_path):
    train(tiny_config("stages=[pretext,mine,scan]"))
    return tmp_path / "run"


def test_evaluate_reproduces_the_pipeline_scores(scan_run, compose_config, tmp_path):
    cfg = compose_config(
        "evaluate",
        [
            f"ckpt={scan_run / 'scan/checkpoints/best.ckpt'}",
            f"output_dir={tmp_path / 'evaluation'}",
            "trainer.enable_progress_bar=false",
        ],
    )
    summary = evaluate(cfg)

    written = json.loads((tmp_path / "evaluation/metrics.json").read_text())
    assert written == summary
    assert summary["stage"] == "scan" and summary["num_images"] == 360
    pipeline_scores = json.loads((scan_run / "metrics.json").read_text())["stages"]["scan"]
    for key in ("acc", "nmi", "ari"):
        assert summary[key] == pytest.approx(pipeline_scores[key])
    assert (tmp_path / "evaluation/confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_defaults_to_a_folder_beside_the_checkpoint(scan_run, compose_config):
    cfg = compose_config(
        "evaluate",
        [
            f"ckpt={scan_run / 'scan/checkpoints/last.ckpt'}",
            "split=train",
            "trainer.enable_progress_bar=false",
        ],
    )
    summary = evaluate(cfg)
    written = json.loads((scan_run / "scan/evaluation/metrics.json").read_text())
    assert written == summary
    assert (written["stage"], written["split"], written["num_images"]) == ("scan", "train", 360)


def test_evaluate_takes_a_run_or_stage_folder(scan_run, compose_config, tmp_path, capsys):
    for folder in (scan_run, scan_run / "scan"):
        cfg = compose_config(
            "evaluate",
            [f"ckpt={folder}", f"output_dir={tmp_path}", "trainer.enable_progress_bar=false"],
        )
        summary = evaluate(cfg)
        # The run's final clustering stage is SCAN, whose model is its best epoch.
        assert summary["ckpt"] == str(scan_run / "scan/checkpoints/best.ckpt")
        assert f"scan checkpoint on digits/val (360 images): ACC {summary['acc']:.4f}" in (
            capsys.readouterr().out
        )
    (tmp_path / "plain").mkdir()
    cfg = compose_config("evaluate", [f"ckpt={tmp_path / 'plain'}"])
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        evaluate(cfg)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"not a checkpoint", "cannot read checkpoint"),
        ({"state_dict": {}}, "not a semclust"),
        ({"payload": NotAWeight()}, "cannot read checkpoint"),
    ],
)
def test_evaluate_rejects_bad_checkpoints(compose_config, tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    cfg = compose_config("evaluate", [f"ckpt={path}", "data=digits"])
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        evaluate(cfg)


def _marked_checkpoint(path):
    """``path``'s checkpoint with every weight moved by 0.25, saved back: a stage that
    resumes from it ends with these weights; one that trains afresh would not."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in checkpoint["state_dict"].items():
        if value.is_floating_point():
            checkpoint["state_dict"][key] = value + 0.25
    torch.save(checkpoint, path)
    return checkpoint


def _pretend_interrupted(run_dir, stage):
    """The manifest of a process that died after ``stage``'s last checkpoint: "running"."""
    run = RunDirectory(run_dir)
    entry = run.read_manifest()["stages"][stage]
    run.record_stage(stage, "running", entry["config"], fingerprint=entry["fingerprint"])
    return run


@pytest.mark.parametrize("pretext", ["simclr", "autoencoder"])
def test_interrupted_stage_resumes_from_last_checkpoint(tiny_config, tmp_path, pretext):
    run_dir = tmp_path / "run"
    command = [f"pretext={pretext}", "stages=[pretext]", "pretext.epochs=1"]
    train(tiny_config(*command))
    saved = _marked_checkpoint(run_dir / "pretext/checkpoints/last.ckpt")
    (run_dir / "pretext/backbone.safetensors").unlink()
    run = _pretend_interrupted(run_dir, "pretext")

    train(tiny_config(*command))  # the same command: resumes a finished epoch, trains none

    backbone = load_file(str(run_dir / "pretext/backbone.safetensors"))
    for key, value in backbone.items():
        torch.testing.assert_close(value, saved["state_dict"][f"backbone.{key}"])
    assert run.stage_status("pretext") == "completed"


def test_interrupted_stage_with_other_inputs_starts_afresh(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config("stages=[pretext]", "pretext.epochs=1"))
    saved = torch.load(
        run_dir / "pretext/checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    _pretend_interrupted(run_dir, "pretext")
    train(tiny_config("stages=[pretext]", "pretext.epochs=1", "seed=7"))  # another seed
    backbone = load_file(str(run_dir / "pretext/backbone.safetensors"))
    assert any(
        not torch.equal(value, saved["state_dict"][f"backbone.{key}"])
        for key, value in backbone.items()
    )


def test_finished_stage_asked_for_again_starts_afresh(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config("stages=[pretext]", "pretext.epochs=1"))
    first = load_file(str(run_dir / "pretext/backbone.safetensors"))
    train(tiny_config("stages=[pretext]", "pretext.epochs=1", "seed=7"))
    second = load_file(str(run_dir / "pretext/backbone.safetensors"))
    assert any(not torch.equal(first[key], second[key]) for key in first)


def test_interrupted_scan_on_cached_features_resumes(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    frozen = ["scan.update_backbone=false", "scan.epochs=1"]
    train(tiny_config("stages=[pretext,mine,scan]", *frozen))
    _marked_checkpoint(run_dir / "scan/checkpoints/last.ckpt")
    # SCAN exports the heads of its lowest-loss epoch, which a resumed run keeps.
    saved = _marked_checkpoint(run_dir / "scan/checkpoints/best.ckpt")
    _pretend_interrupted(run_dir, "scan")

    train(tiny_config("stages=[scan]", *frozen))

    heads = load_file(str(run_dir / "scan/model.safetensors"))
    best = int(saved["semclust"]["best_head"])
    for name in ("weight", "bias"):
        torch.testing.assert_close(
            heads[f"cluster_heads.heads.0.{name}"],
            saved["state_dict"][f"model.cluster_heads.heads.{best}.{name}"],
        )

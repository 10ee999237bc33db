"""Tiny end-to-end runs through semclust.pipeline.train, the function train.py calls."""

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semclust.inference.run_report import write_run_report
from semclust.pipeline import train
from semclust.reporting.markup import esc
from semclust.rundir import MissingArtifactError
from semclust.stages import selflabel as selflabel_stage

STAGE_FILES = [
    "pretext/backbone.safetensors",
    "pretext/backbone.json",
    "pretext/checkpoints/last.ckpt",
    "mine/train_features.npy",
    "mine/train_neighbors.npy",
    "mine/val_neighbors.npy",
    "scan/model.safetensors",
    "scan/model.json",
    "scan/checkpoints/best.ckpt",
]


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_full_pipeline_writes_artifacts_manifest_and_metrics(tiny_config, tmp_path, capsys):
    # Every sample confident and neither result guard: the stage must run and be kept.
    cfg = tiny_config(
        "selflabel.threshold=0.0",
        "selflabel.min_clusters_kept_fraction=0",
        "selflabel.max_silhouette_drop=null",
    )
    summary = train(cfg)
    run_dir = tmp_path / "run"

    for name in STAGE_FILES + ["selflabel/model.safetensors", "metrics.json"]:
        assert (run_dir / name).is_file(), name
    manifest = _manifest(run_dir)
    assert {s: e["status"] for s, e in manifest["stages"].items()} == {
        "pretext": "completed",
        "mine": "completed",
        "scan": "completed",
        "selflabel": "completed",
    }
    assert manifest["stages"]["scan"]["config"]["scan"]["num_heads"] == 2
    assert manifest["stages"]["mine"]["outputs"]["train_neighbors"] == "mine/train_neighbors.npy"
    for entry in manifest["stages"].values():  # what each stage ran on
        assert entry["environment"]["versions"]["torch"] == torch.__version__.split("+")[0]
        assert entry["environment"]["torch_threads"] == torch.get_num_threads()

    neighbors = np.load(run_dir / "mine/train_neighbors.npy")
    assert neighbors.shape == (360, 5)
    assert not (neighbors == np.arange(360)[:, None]).any()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == summary
    assert metrics["final_stage"] == "selflabel"
    for key in ("acc", "nmi", "ari"):
        assert metrics[key] == metrics["stages"]["selflabel"][key]
        assert 0.0 <= metrics["stages"]["scan"][key] <= 1.0
    assert "acc" in metrics["stages"]["kmeans"]
    assert metrics["stages"]["scan"]["best_head"] in (0, 1)

    table = capsys.readouterr().out
    for row in ("k-means (pretext features)", "SCAN", "SCAN + self-labeling"):
        assert row in table


def test_views_made_in_loader_processes_train_the_same_model(tiny_config, tmp_path, caplog):
    # Every sample's views come from its own seed, so two loader processes (a thread each)
    # make the very views the training process makes: the same weights, bit for bit.
    stages = "stages=[pretext,mine,scan]"
    with caplog.at_level(logging.INFO, logger="semclust.stages.common"):
        train(tiny_config(stages, "data.batch_views_in=workers", "data.num_workers=2"))
    made = [r.getMessage() for r in caplog.records if "views made in batches" in r.getMessage()]
    assert [line.split(":")[0] for line in made] == ["pretext", "scan"], made
    assert all("in 2 loader processes" in line for line in made), made
    (tmp_path / "run").rename(tmp_path / "in_workers")
    train(tiny_config(stages, "data.batch_views_in=device"))
    for name in ("pretext/backbone.safetensors", "scan/model.safetensors"):
        ours, theirs = load_file(tmp_path / "in_workers" / name), load_file(tmp_path / "run" / name)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name
    # So the maker is no part of a stage's fingerprint: asking for the other trains nothing.
    finished = _manifest(tmp_path / "run")["stages"]
    train(tiny_config(stages, "data.batch_views_in=workers", "data.num_workers=2"))
    assert _manifest(tmp_path / "run")["stages"] == finished


def test_tail_rerun_reuses_saved_artifacts(tiny_config, tmp_path):
    train(tiny_config("stages=[pretext,mine]"))
    run_dir = tmp_path / "run"
    backbone_before = (run_dir / "pretext/backbone.safetensors").read_bytes()
    earlier = {stage: _manifest(run_dir)["stages"][stage] for stage in ("pretext", "mine")}

    summary = train(
        tiny_config(
            "stages=[scan,selflabel]",
            "selflabel.threshold=0.0",
            "selflabel.min_clusters_kept_fraction=0",
            "selflabel.max_silhouette_drop=null",
        )
    )

    assert (run_dir / "pretext/backbone.safetensors").read_bytes() == backbone_before
    stages = _manifest(run_dir)["stages"]
    assert {stage: stages[stage] for stage in ("pretext", "mine")} == earlier  # not run again
    # SCAN trained on those saved outputs: its inputs are the ones they were recorded as.
    assert stages["scan"]["fingerprint"]["upstream"] == {
        stage: earlier[stage]["outputs_digest"] for stage in ("pretext", "mine")
    }
    statuses = {s: e["status"] for s, e in stages.items()}
    assert statuses["scan"] == statuses["selflabel"] == "completed"
    assert summary["final_stage"] == "selflabel"


def test_missing_input_names_the_stage_to_run_first(tiny_config, tmp_path):
    with pytest.raises(MissingArtifactError, match=r"stage 'pretext' writes.*run that stage"):
        train(tiny_config("stages=[mine]"))
    assert _manifest(tmp_path / "run")["stages"]["mine"]["status"] == "failed"

    train(tiny_config("stages=[pretext,mine]"))
    (tmp_path / "run/mine/val_neighbors.npy").unlink()
    with pytest.raises(MissingArtifactError, match=r"val_neighbors.npy.*stage 'mine'"):
        train(tiny_config("stages=[scan]"))


def test_unknown_stage_is_rejected(tiny_config):
    with pytest.raises(ValueError, match="unknown stages"):
        train(tiny_config("stages=[pretext,clustering]"))


def test_selflabel_keeps_scan_result_when_too_few_are_confident(tiny_config, tmp_path, capsys):
    # Two epochs of SCAN on a tiny network never reach 0.999999 confidence.
    summary = train(
        tiny_config("selflabel.threshold=0.999999", "selflabel.min_confident_fraction=0.5")
    )
    entry = _manifest(tmp_path / "run")["stages"]["selflabel"]
    assert entry["status"] == "skipped"
    assert "SCAN result kept" in entry["note"]
    assert summary["final_stage"] == "scan"
    assert summary["acc"] == summary["stages"]["scan"]["acc"]
    assert not (tmp_path / "run/selflabel/model.safetensors").exists()
    # The reason reaches the user: metrics.json, the closing table and the report.
    assert summary["stages"]["selflabel"]["note"] == entry["note"]
    table = capsys.readouterr().out.splitlines()
    assert f"SCAN + self-labeling skipped: {entry['note']}" in table
    assert table.index(f"SCAN + self-labeling skipped: {entry['note']}") == len(table) - 2
    page = write_run_report(tmp_path / "run").read_text()
    assert f'<p class="note">Stage selflabel was skipped: {esc(entry["note"])}</p>' in page


def test_selflabel_keeps_scan_result_when_its_clusters_are_judged_worse(
    tiny_config, tmp_path, monkeypatch
):
    judged = {}

    def judged_worse(settings, scan_scores, scores):
        judged.update(settings=settings, scan=scan_scores, selflabel=scores)
        return "self-labeling judged worse"

    monkeypatch.setattr(selflabel_stage, "worse_than_scan", judged_worse)
    summary = train(tiny_config("selflabel.threshold=0.0"))
    entry = _manifest(tmp_path / "run")["stages"]["selflabel"]
    assert entry["status"] == "skipped"
    assert entry["note"] == "self-labeling judged worse; the SCAN result is kept."
    assert summary["final_stage"] == "scan"
    assert not (tmp_path / "run/selflabel/model.safetensors").exists()
    # What the check was given: the SCAN stage's recorded scores and the self-labeled ones.
    for key in ("clusters_used", "silhouette", "acc"):
        assert judged["scan"][key] == summary["stages"]["scan"][key]
    assert {"clusters_used", "silhouette", "acc"} <= set(judged["selflabel"])
    assert judged["settings"].max_silhouette_drop == 0.05


def test_frozen_backbone_trains_the_heads_only(tiny_config, tmp_path):
    train(tiny_config("stages=[pretext,mine,scan]", "scan.update_backbone=false"))
    run_dir = tmp_path / "run"
    pretext = load_file(str(run_dir / "pretext/backbone.safetensors"))
    scan = load_file(str(run_dir / "scan/model.safetensors"))
    for key, value in pretext.items():  # weights and batch-norm statistics alike
        torch.testing.assert_close(scan[f"backbone.{key}"], value)
    assert any(key.startswith("cluster_heads.") for key in scan)


def test_selflabel_with_ema_exports_the_averaged_weights(tiny_config, tmp_path):
    summary = train(
        tiny_config(
            "selflabel.threshold=0.0",
            "selflabel.ema_decay=0.5",
            "selflabel.min_clusters_kept_fraction=0",
            "selflabel.max_silhouette_drop=null",
        )
    )
    assert summary["final_stage"] == "selflabel"
    exported = load_file(str(tmp_path / "run/selflabel/model.safetensors"))
    checkpoint = torch.load(
        tmp_path / "run/selflabel/checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["semclust"]["ema"] is True
    state = checkpoint["state_dict"]
    for key, value in exported.items():
        torch.testing.assert_close(value, state[f"ema.module.{key}"])
    # The average lags the trained weights, so exporting those instead would fail above.
    assert any(
        not torch.equal(state[f"ema.module.{key}"], state[f"model.{key}"])
        for key, value in exported.items()
        if value.is_floating_point()
    )


def test_too_few_images_for_the_clusters_fails_before_training(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"holds 360 images, but 400 clusters .* at least 400"):
        train(tiny_config("data.num_clusters=400"))
    assert not (tmp_path / "run/pretext/checkpoints").exists()


def test_a_stage_continued_under_other_software_says_so(tiny_config, tmp_path, caplog):
    cfg = tiny_config("stages=[pretext]")
    train(cfg)
    manifest_path = tmp_path / "run" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["stages"]["pretext"]
    entry["status"] = "paused"  # as a stopped job leaves it
    entry["environment"]["versions"]["torch"] = "0.0.1"
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="semclust.pipeline"):
        train(cfg)
    warned = [r.getMessage() for r in caplog.records if "other software" in r.getMessage()]
    assert len(warned) == 1 and "torch 0.0.1 ->" in warned[0], warned
    recorded = json.loads(manifest_path.read_text())["stages"]["pretext"]["environment"]
    assert recorded["versions"]["torch"] == torch.__version__.split("+")[0]


def test_bf16_mixed_precision_runs_every_stage_with_float32_features(tiny_config, tmp_path):
    # trainer=gpu trains under bf16 autocast; Lightning autocasts on the CPU as well, so the
    # half-precision outputs of every stage are checked here before a GPU sees them.
    summary = train(
        tiny_config(
            "trainer.precision=bf16-mixed",
            "selflabel.threshold=0.0",
            "selflabel.min_clusters_kept_fraction=0",
            "selflabel.max_silhouette_drop=null",
        )
    )
    assert summary["final_stage"] == "selflabel"
    run_dir = tmp_path / "run"
    for split in ("train", "val"):
        features = np.load(run_dir / f"mine/{split}_features.npy")
        assert features.dtype == np.float32 and np.isfinite(features).all()
    stages = _manifest(run_dir)["stages"]
    assert stages["pretext"]["config"]["trainer"]["precision"] == "bf16-mixed"
    for stage in ("scan", "selflabel"):
        scores = stages[stage]["metrics"]
        assert all(np.isfinite(scores[key]) and scores[key] > 0 for key in ("acc", "nmi"))

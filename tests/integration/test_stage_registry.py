"""Stages are found by name in one registry: a new stage is one module plus its config."""

import json

import numpy as np
import pytest

from semclust.pipeline import train
from semclust.rundir import BACKBONE_WEIGHTS
from semclust.stages import registry
from semclust.stages.registry import Stage, StageResult, register, registered_stages


def test_todays_stages_run_in_order_with_the_seeds_they_always_had():
    stages = registered_stages()
    assert [stage.name for stage in stages] == ["pretext", "mine", "scan", "selflabel", "classic"]
    # seed + position in the old STAGES tuple: results of existing runs do not move.
    assert [stage.seed(7) for stage in stages] == [7, 8, 9, 10, 11]


def test_a_new_stage_seed_comes_from_its_name_alone():
    first = Stage("denoise", order=25, run=lambda cfg, run: ({}, {}))
    again = Stage("denoise", order=99, run=lambda cfg, run: ({}, {}))
    other = Stage("dedupe", order=25, run=lambda cfg, run: ({}, {}))
    assert first.seed(0) == again.seed(0) != other.seed(0)
    assert first.seed(3) - first.seed(0) == 3
    assert first.seed(0) not in range(0, 5)  # clear of the offsets of today's stages


def test_two_stages_of_one_name_are_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="two stages are named 'scan'"):
        register(Stage("scan", order=1, run=lambda cfg, run: ({}, {})))


def test_a_registered_stage_runs_from_its_config_group_and_joins_the_manifest(
    tiny_config, tmp_path, monkeypatch
):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    seen = {}

    def run_backbone_size(cfg, run) -> StageResult:
        seen["random"] = np.random.randint(1 << 30)
        path = run.require(BACKBONE_WEIGHTS, "backbone_size")
        out = run.stage_dir("backbone_size") / "size.json"
        out.write_text(json.dumps({"bytes": path.stat().st_size, "scale": cfg.backbone_size.scale}))
        return {"size": out}, {"backbone_kib": path.stat().st_size / 1024 * cfg.backbone_size.scale}

    register(Stage("backbone_size", order=15, run=run_backbone_size, needs_num_clusters=False))
    cfg = tiny_config("stages=[pretext,backbone_size]", "+backbone_size.scale=2")
    summary = train(cfg)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert list(manifest["stages"]) == ["pretext", "backbone_size"]
    entry = manifest["stages"]["backbone_size"]
    assert entry["status"] == "completed"
    assert entry["outputs"] == {"size": "backbone_size/size.json"}
    assert entry["config"]["backbone_size"] == {"scale": 2}
    weights = tmp_path / "run" / "pretext" / "backbone.safetensors"
    assert entry["metrics"]["backbone_kib"] == pytest.approx(weights.stat().st_size / 1024 * 2)
    assert summary["stages"]["backbone_size"]["status"] == "completed"
    # The new stage is seeded from its name, and pretext's seed (and result) did not move.
    np.random.seed(Stage("backbone_size", 15, run_backbone_size).seed(cfg.seed))
    assert seen["random"] == np.random.randint(1 << 30)

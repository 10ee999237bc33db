"""SimCLR's guard against its collapse at the start: the clipped gradient, the logged norm
that shows when the clip acts, and the warning when the projections have collapsed anyway
(docs/BENCHMARKS.md, "SimCLR's collapse at the start")."""

import json
import logging
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from semclust.models import build_backbone
from semclust.pipeline import train
from semclust.stages.pretext.simclr import SimCLRModule
from tests.conftest import TINY_RUN

DIGITS_TEST_IMAGES = 360


def _pretext_weights(compose_config, run_dir, *overrides: str) -> dict[str, torch.Tensor]:
    cfg = compose_config(
        "train",
        [
            *TINY_RUN,
            f"paths.run_dir={run_dir}",
            "stages=[pretext]",
            "pretext.epochs=1",
            "pretext.val_every_n_epochs=2",
            # Plain SGD at a constant lr: a step moves the weights by lr x the gradient.
            "pretext.optimizer.momentum=0",
            "pretext.optimizer.weight_decay=0",
            "pretext.scheduler=null",
            *overrides,
        ],
    )
    train(cfg)
    weights = load_file(run_dir / "pretext" / "backbone.safetensors")
    # Parameters only: BatchNorm's running statistics move without the gradient.
    return {k: v for k, v in weights.items() if "running_" not in k and "num_batches" not in k}


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum((a[k].double() - b[k].double()).square().sum().item() for k in a))


def test_the_clipped_gradient_bounds_every_step(compose_config, tmp_path):
    steps = DIGITS_TEST_IMAGES // 64  # TINY_RUN's batch, the last partial batch dropped
    start = _pretext_weights(compose_config, tmp_path / "start", "pretext.optimizer.lr=1e-12")
    clipped = _pretext_weights(
        compose_config,
        tmp_path / "clipped",
        "pretext.optimizer.lr=1.0",
        "pretext.gradient_clip_val=0.001",
    )
    unclipped = _pretext_weights(
        compose_config,
        tmp_path / "unclipped",
        "pretext.optimizer.lr=1.0",
        "pretext.gradient_clip_val=null",
    )
    # The same seed, so the same start: each of the steps moved all the weights (the
    # projection head's among them) by at most lr x 0.001.
    assert 0 < _distance(clipped, start) <= steps * 1.0 * 0.001 * (1 + 1e-4)
    assert _distance(unclipped, start) > 10 * steps * 0.001
    # The manifest keeps the last epoch's loss, the projections' mean cosine, and the
    # gradient's norm before clipping with how often the clip cut it (every step at 0.001).
    clipped_epoch = _last_epoch(tmp_path / "clipped")
    assert set(clipped_epoch) == {"ntxent_loss", "mean_cosine", "grad_norm", "clipped_fraction"}
    assert 0 < clipped_epoch["ntxent_loss"] < math.log(2 * 64 - 1) + 1
    assert 0 < clipped_epoch["mean_cosine"] <= 1
    assert clipped_epoch["grad_norm"] > 0.001
    assert clipped_epoch["clipped_fraction"] == 1.0
    # Unclipped, the norm is still logged; there is no clip to count.
    unclipped_epoch = _last_epoch(tmp_path / "unclipped")
    assert set(unclipped_epoch) == {"ntxent_loss", "mean_cosine", "grad_norm"}
    assert unclipped_epoch["grad_norm"] > 0.001


def test_the_logged_gradient_norm_is_the_unclipped_one(compose_config, tmp_path):
    # A clip far above the gradient: nothing cut, and the same norm as without a clip.
    _pretext_weights(compose_config, tmp_path / "loose", "pretext.gradient_clip_val=1e6")
    _pretext_weights(compose_config, tmp_path / "off", "pretext.gradient_clip_val=null")
    loose, off = _last_epoch(tmp_path / "loose"), _last_epoch(tmp_path / "off")
    assert loose["clipped_fraction"] == 0.0
    assert loose["grad_norm"] == pytest.approx(off["grad_norm"], rel=1e-4)


def _last_epoch(run_dir) -> dict[str, float]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return manifest["stages"]["pretext"]["metrics"]["last_epoch"]


def test_simclr_clips_by_default(compose_config):
    for experiment in ("digits", "cifar10", "stl10"):
        cfg = compose_config("train", [f"experiment={experiment}"])
        assert cfg.pretext.gradient_clip_val == 1.0


@pytest.mark.parametrize(("cosine", "warned"), [(0.9995, True), (0.4, False)])
def test_collapsed_projections_are_reported_at_the_end(caplog, cosine: float, warned: bool):
    module = SimCLRModule(
        build_backbone("small_cnn", in_channels=1, width=4, feature_dim=8),
        temperature=0.1,
        optimizer=torch.optim.SGD,
    )
    metrics = {"train/mean_cosine": torch.tensor(cosine)}
    module._trainer = SimpleNamespace(callback_metrics=metrics, is_global_zero=True)
    with caplog.at_level(logging.WARNING, logger="semclust"):
        module.on_train_end()
    assert ("projections collapsed (mean cosine 0.9995" in caplog.text) == warned

"""Tiny runs with the other ways to get features: an autoencoder, and frozen pretrained
networks (timm, open_clip) whose features are cached and whose heads train on the cache.

Pretrained networks are built with random weights here; the network is never touched.
"""

import json
import socket

import numpy as np
import pytest
import torch
from conftest import TINY_RUN
from safetensors.torch import load_file

from semclust.data import build_dataset, view_transforms
from semclust.inference.checkpoint import load_clustering_checkpoint
from semclust.inference.export import load_trained_model
from semclust.pipeline import train


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to reach the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def pretrained_config(compose_config, tmp_path):
    """The tiny run with a frozen pretrained network (random weights): no pretext training."""

    def _compose(*overrides: str):
        tiny = [entry for entry in TINY_RUN if not entry.startswith(("pretext.", "backbone."))]
        return compose_config(
            "train",
            [
                *tiny,
                f"paths.run_dir={tmp_path / 'run'}",
                "pretext=pretrained",
                "pretext.download_weights=false",
                *overrides,
            ],
        )

    return _compose


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.mark.parametrize("loss", ["mse", "perceptual"])
def test_autoencoder_pretext_feeds_mining_and_scan(tiny_config, tmp_path, no_network, loss):
    overrides = ["pretext=autoencoder", "pretext.epochs=2", "pretext.batch_size=64"]
    if loss == "perceptual":
        overrides += [
            "pretext.loss=perceptual",
            "pretext.perceptual.weights=null",
            "pretext.perceptual.layers=[features.3,features.8]",
        ]
    summary = train(tiny_config(*overrides, "stages=[pretext,mine,scan]"))
    run_dir = tmp_path / "run"
    stages = _manifest(run_dir)["stages"]
    assert stages["pretext"]["status"] == "completed"
    assert stages["pretext"]["config"]["pretext"]["loss"] == loss
    assert 0 < stages["pretext"]["metrics"]["kmeans_acc"] <= 1
    # The encoder is the configured backbone: SCAN starts from it and fine-tunes it.
    encoder = load_file(str(run_dir / "pretext/backbone.safetensors"))
    assert set(encoder) == {
        k[len("backbone.") :]
        for k in load_file(str(run_dir / "scan/model.safetensors"))
        if k.startswith("backbone.")
    }
    assert summary["final_stage"] == "scan" and 0 < summary["acc"] <= 1


def test_frozen_timm_network_runs_on_cached_features(pretrained_config, tmp_path, no_network):
    config = pretrained_config("backbone=timm", "backbone.model_name=resnet18")
    summary = train(config)
    run_dir = tmp_path / "run"
    stages = _manifest(run_dir)["stages"]
    assert stages["pretext"]["metrics"]["feature_dim"] == 512
    assert stages["scan"]["metrics"]["cached_features"] is True
    assert stages["scan"]["config"]["scan"]["update_backbone"] is False
    assert summary["final_stage"] in ("scan", "selflabel")
    # The exported model is the frozen backbone plus the heads learnt on its cached output.
    backbone = load_file(str(run_dir / "pretext/backbone.safetensors"))
    final = load_file(str(run_dir / summary["final_stage"] / "model.safetensors"))
    for key, value in backbone.items():
        torch.testing.assert_close(final[f"backbone.{key}"], value)
    spec = json.loads((run_dir / "pretext/backbone.json").read_text())
    assert spec["pretrained"] is None  # rebuilding the saved backbone never downloads
    # The heads score the cached features exactly as the rebuilt model scores the images.
    model, _ = load_trained_model(run_dir / "scan")
    data_cfg = stages["scan"]["config"]["data"]
    dataset, view = build_dataset(data_cfg, "val"), view_transforms(data_cfg).eval
    images = torch.stack([view(dataset.load_image(index)) for index in range(16)])
    cached = torch.from_numpy(np.load(run_dir / "mine/val_features.npy")[:16])
    with torch.inference_mode():
        torch.testing.assert_close(
            model(images)[0], model.cluster_heads(cached)[0], atol=1e-4, rtol=1e-4
        )
    checkpoint_model, metadata = load_clustering_checkpoint(run_dir / "scan/checkpoints/best.ckpt")
    assert metadata["cached_features"] is True
    for key, value in backbone.items():
        torch.testing.assert_close(checkpoint_model.backbone.state_dict()[key], value)


def test_run_report_reads_the_cached_features(pretrained_config, tmp_path, monkeypatch):
    from semclust.inference import run_report

    train(
        pretrained_config(
            "backbone=timm", "backbone.model_name=resnet10t", "stages=[pretext,mine,scan]"
        )
    )

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the report embedded the images again")

    monkeypatch.setattr(run_report, "_embed_and_classify", no_second_pass)
    report = run_report.write_run_report(tmp_path / "run")
    page = report.read_text()
    assert page.count('id="cluster-') == 10  # a section per cluster of the digits' K
    assert '<section id="labels">' in page  # scored against the digits' labels


def test_cached_features_are_reused_when_mining_again(pretrained_config, tmp_path, no_network):
    base = ["backbone=timm", "backbone.model_name=resnet18"]
    train(pretrained_config(*base, "stages=[pretext,mine]"))
    run_dir = tmp_path / "run"
    first = np.load(run_dir / "mine/train_features.npy")
    written = (run_dir / "mine/train_features.npy").stat().st_mtime_ns
    train(pretrained_config(*base, "stages=[mine]", "mine.num_neighbors=3"))
    mine = _manifest(run_dir)["stages"]["mine"]
    assert mine["metrics"]["reused_cached_features"] == ["train"]
    np.testing.assert_array_equal(np.load(run_dir / "mine/train_features.npy"), first)
    assert (run_dir / "mine/train_features.npy").stat().st_mtime_ns == written  # not rewritten
    assert np.load(run_dir / "mine/train_neighbors.npy").shape[1] == 3
    # Other images (another split) invalidate the cache.
    train(
        pretrained_config(*base, "stages=[mine]", "data.train_split=train", "data.val_split=train")
    )
    assert _manifest(run_dir)["stages"]["mine"]["metrics"]["reused_cached_features"] == []


def test_clip_image_encoder_on_grayscale_images(pretrained_config, tmp_path, no_network):
    summary = train(
        pretrained_config(
            "backbone=clip",
            "backbone.model_name=ViT-S-32",
            "backbone.pretrained=null",
            "backbone.image_size=32",
            "stages=[pretext,mine,scan]",
        )
    )
    run_dir = tmp_path / "run"
    data = _manifest(run_dir)["stages"]["scan"]["config"]["data"]
    # The network's own preprocessing replaced the data config's (one channel: averaged).
    assert data["image_size"] == 32
    assert data["mean"] == [pytest.approx(0.4492, abs=1e-4)]
    assert summary["final_stage"] == "scan"
    model, spec = load_trained_model(run_dir / "scan")
    assert spec["preprocessing"]["image_size"] == 32
    assert model(torch.randn(2, 1, 32, 32)).shape == (1, 2, 10)


def test_pretrained_pretext_refuses_backbones_without_weights(pretrained_config):
    with pytest.raises(ValueError, match="needs a backbone with pretrained weights"):
        train(pretrained_config())
    with pytest.raises(ValueError, match="backbone.pretrained must name the open_clip weights"):
        train(
            pretrained_config(
                "backbone=clip", "backbone.pretrained=null", "pretext.download_weights=true"
            )
        )


@pytest.mark.parametrize("cached", [True, False])
def test_frozen_backbone_heads_with_and_without_the_cache(tiny_config, tmp_path, cached):
    train(
        tiny_config(
            "stages=[pretext,mine,scan,selflabel]",
            "scan.update_backbone=false",
            f"scan.cached_features={str(cached).lower()}",
            # Just above chance (0.1 for 10 clusters): two SCAN epochs of heads on frozen
            # features leave them unsure, and self-labeling must still run.
            "selflabel.threshold=0.12",
            "selflabel.min_clusters_kept_fraction=0",
            "selflabel.max_silhouette_drop=null",
        )
    )
    run_dir = tmp_path / "run"
    stages = _manifest(run_dir)["stages"]
    assert stages["scan"]["metrics"]["cached_features"] is cached
    pretext = load_file(str(run_dir / "pretext/backbone.safetensors"))
    for stage in ("scan", "selflabel"):
        assert stages[stage]["status"] == "completed"
        exported = load_file(str(run_dir / stage / "model.safetensors"))
        for key, value in pretext.items():
            torch.testing.assert_close(exported[f"backbone.{key}"], value)
    scan = load_file(str(run_dir / "scan/model.safetensors"))
    selflabel = load_file(str(run_dir / "selflabel/model.safetensors"))
    assert not torch.equal(
        scan["cluster_heads.heads.0.weight"], selflabel["cluster_heads.heads.0.weight"]
    )

"""A tiny run with rotation_invariance on: the option reaches the views, the saved model and
what inference loads from the run."""

import json

import torch

from semclust.inference.export import load_any_model
from semclust.pipeline import train


def test_a_rotation_invariant_run_keeps_its_pooling_in_the_saved_model(tiny_config, tmp_path):
    cfg = tiny_config(
        "rotation_invariance.enabled=true",
        "rotation_invariance.angles=4",
        "stages=[pretext,mine,scan]",
    )
    train(cfg)
    run_dir = tmp_path / "run"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    fill = [-m / s for m, s in zip(cfg.data.mean, cfg.data.std, strict=True)]
    assert manifest["rotation_invariance"]["rotation_pooling"] == {"angles": 4, "fill": fill}
    assert manifest["stages"]["scan"]["config"]["data"]["augment"]["rotation_invariant"] is True
    backbone_spec = json.loads((run_dir / "pretext/backbone.json").read_text())
    assert "rotation_pooling" in json.dumps(backbone_spec)

    # What predict and export load: quarter turns of an image get the same cluster scores.
    exported = load_any_model(run_dir)
    torch.manual_seed(0)
    images = torch.randn(6, 1, 16, 16)
    with torch.inference_mode():
        upright = torch.softmax(exported.model(images)[0], dim=1)
        turned = torch.softmax(exported.model(torch.rot90(images, 1, dims=(2, 3)))[0], dim=1)
        bare = exported.model.cluster_heads(exported.model.backbone.unpooled(images))[0]
        bare_turned = exported.model.cluster_heads(
            exported.model.backbone.unpooled(torch.rot90(images, 1, dims=(2, 3)))
        )[0]
    torch.testing.assert_close(upright, turned, atol=1e-5, rtol=1e-4)
    assert (bare - bare_turned).abs().max() > 1e-4  # without the pooling it would differ

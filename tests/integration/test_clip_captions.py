"""pretext=clip_captions on a tiny random-weight open_clip model and 40 generated (image,
caption) pairs: red squares and blue circles. Fine-tuning must teach the towers which caption
goes with which image, and the later stages must cluster the fine-tuned image embeddings."""

import copy
import csv
import json
import math

import numpy as np
import open_clip
import open_clip.factory
import pytest
import torch
from conftest import TINY_RUN
from open_clip.loss import ClipLoss
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from semclust.budget import OutOfTime
from semclust.data import build_dataset, view_transforms
from semclust.inference.spec import backbone_from_spec
from semclust.models.backbones import create_open_clip
from semclust.models.rotation import RotationPooledBackbone
from semclust.pipeline import train
from semclust.rundir import load_weights
from semclust.stages.pretext import clip_captions

TINY_CLIP = "semclust-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
KINDS = ("red square", "blue circle")
WORDS = ("a", "a photo of a", "a small", "a large", "one", "a picture of a", "the", "a bright")


@pytest.fixture
def tiny_clip(monkeypatch):
    """A tiny CLIP architecture registered with open_clip for this test (random weights)."""
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_CLIP, TINY_CLIP_CONFIG)


@pytest.fixture
def one_thread():
    """Torch on one thread: the tiny model's matrices are too small to share between cores,
    and on a busy machine two threads wait for each other (a step took 20 times longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def captions_csv(tmp_path):
    """20 red squares and 20 blue circles at random places and sizes, with captions; plus a
    row whose image is missing and one with an empty caption."""
    folder = tmp_path / "pairs"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(40):
        kind = KINDS[index % 2]
        image = Image.new("RGB", (40, 40), (235, 235, 235))
        size = int(rng.integers(12, 26))
        x, y = (int(v) for v in rng.integers(0, 40 - size, 2))
        draw = ImageDraw.Draw(image)
        if kind == "red square":
            draw.rectangle([x, y, x + size, y + size], fill=(210, 30, 30))
        else:
            draw.ellipse([x, y, x + size, y + size], fill=(30, 40, 210))
        image.save(folder / "images" / f"{index:02d}.png")
        rows.append((f"images/{index:02d}.png", f"{WORDS[index // 2 % len(WORDS)]} {kind}"))
    # An empty caption first (skipped; the image's captioned row is kept), a missing image.
    rows = [("images/00.png", ""), *rows, ("images/missing.png", "a red square")]
    with open(folder / "captions.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "caption"])
        writer.writerows(rows)
    return folder / "captions.csv"


def _config(compose_config, tmp_path, data, *overrides, backbone=None):
    """The tiny run on ``data`` (a captions CSV, or other ``data=`` overrides) with the tiny
    CLIP (or ``backbone`` overrides) fine-tuned on captions."""
    tiny = [entry for entry in TINY_RUN if not entry.startswith(("pretext.", "backbone.", "data."))]
    if not isinstance(data, list):
        data = ["data=captions", f"data.csv={data}", "data.num_clusters=2"]
    return compose_config(
        "train",
        [
            *tiny,
            f"paths.run_dir={tmp_path / 'run'}",
            *data,
            "data.num_workers=0",
            *(backbone or ["backbone=clip", f"backbone.model_name={TINY_CLIP}"]),
            "++backbone.pretrained=null",
            "pretext=clip_captions",
            *overrides,
        ],
    )


def _kind_retrieval(clip, images, captions):
    """Share of images whose most similar caption names their own kind; and the CLIP loss
    of the pairs."""
    tokens = open_clip.get_tokenizer(TINY_CLIP)(captions)
    with torch.inference_mode():
        image_features = clip.encode_image(images, normalize=True)
        text_features = clip.encode_text(tokens, normalize=True)
        loss = ClipLoss()(image_features, text_features, clip.logit_scale.exp())
    kinds = torch.tensor([int("circle" in caption) for caption in captions])
    best = (image_features @ text_features.T).argmax(dim=1)
    return float((kinds[best] == kinds).float().mean()), float(loss)


@pytest.mark.filterwarnings("ignore::semclust.data.folder.SkippedImagesWarning")
def test_fine_tuned_clip_matches_captions_and_feeds_clustering(
    compose_config, tmp_path, captions_csv, tiny_clip, one_thread, monkeypatch
):
    initial = {}

    def recording(*args, **kwargs):
        model = create_open_clip(*args, **kwargs)
        initial.update(copy.deepcopy(model.state_dict()))
        return model

    monkeypatch.setattr(clip_captions, "create_open_clip", recording)
    overrides = [
        "pretext.epochs=25",
        "pretext.batch_size=20",
        "pretext.val_every_n_epochs=25",
        "pretext.optimizer.lr=0.002",
        "pretext.optimizer.weight_decay=0.0",
        "stages=[pretext,mine,scan]",
    ]
    summary = train(_config(compose_config, tmp_path, captions_csv, *overrides))
    run_dir = tmp_path / "run"
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    pretext = stages["pretext"]
    assert summary["final_stage"] == "scan"
    metrics = pretext["metrics"]
    assert metrics["caption_pairs"] == 40
    # Batches of 20 pairs: unrelated towers score about ln 20 = 3.0 or worse; telling the
    # two kinds apart (10 captions of each, worded at random) reaches ln 10 = 2.3.
    assert metrics["clip_loss_first_epoch"] > 3.0 > 2.5 > metrics["clip_loss_last_epoch"]
    # The missing image and the empty caption are listed as skipped, not trained on.
    with open(run_dir / "skipped_files_train.csv") as file:
        skipped = {row["path"]: row["reason"] for row in csv.DictReader(file)}
    images_dir = captions_csv.parent / "images"
    assert "no such file" in skipped[str(images_dir / "missing.png")]
    assert "empty caption" in skipped[str(images_dir / "00.png")]

    # The saved backbone is the plain open_clip image tower: rebuilt from its spec (no
    # training code, no download) it holds the fine-tuned weights.
    spec = json.loads((run_dir / "pretext/backbone.json").read_text())
    assert spec["name"] == "open_clip" and spec["pretrained"] is None
    backbone = load_weights(backbone_from_spec(spec), run_dir / "pretext/backbone.safetensors")
    data_cfg = pretext["config"]["data"]
    assert data_cfg["image_size"] == 32  # the network's own input size
    dataset, view = build_dataset(data_cfg, "val"), view_transforms(data_cfg).eval
    images = torch.stack([view(dataset.load_image(index)) for index in range(len(dataset))])
    checkpoint = torch.load(run_dir / "pretext/checkpoints/last.ckpt", weights_only=True)
    trained = create_open_clip(TINY_CLIP).eval()
    trained.load_state_dict(
        {k[len("clip.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("clip.")}
    )
    untrained = create_open_clip(TINY_CLIP).eval()
    untrained.load_state_dict(initial)
    with torch.inference_mode():
        features = backbone.eval()(images)
        torch.testing.assert_close(features, trained.encode_image(images))
        assert (features - untrained.encode_image(images)).abs().max() > 0.1
    # Mining clustered these features.
    mined = np.load(run_dir / "mine/val_features.npy")
    np.testing.assert_allclose(mined, features.numpy(), atol=1e-4, rtol=1e-4)

    # Training taught it which caption goes with which image.
    before, loss_before = _kind_retrieval(untrained, images, dataset.captions)
    after, loss_after = _kind_retrieval(trained, images, dataset.captions)
    assert after >= 0.95 and before <= 0.75
    # Over all 40 pairs telling the kinds apart reaches ln 20 = 3.0 (20 captions of each).
    assert loss_after < math.log(20) + 0.1 < loss_before


@pytest.mark.filterwarnings("ignore::semclust.data.folder.SkippedImagesWarning")
def test_stopped_fine_tuning_resumes_to_the_same_weights(
    compose_config, tmp_path, captions_csv, tiny_clip, one_thread
):
    settings = ["pretext.epochs=3", "pretext.batch_size=10", "pretext.optimizer.lr=0.002"]
    settings += ["pretext.val_every_n_epochs=3", "stages=[pretext]"]
    train(_config(compose_config, tmp_path / "whole", captions_csv, *settings))
    stops = ["++stop_after_minutes=0.002", "++checkpoint_every_minutes=0"]
    stopped = 0
    for _ in range(30):  # each invocation stops after a few batches, checkpointed
        try:
            train(_config(compose_config, tmp_path / "stopped", captions_csv, *settings, *stops))
            break
        except OutOfTime:
            stopped += 1
    else:
        pytest.fail("30 invocations did not finish the fine-tuning")
    assert stopped >= 2  # really stopped and resumed, more than once
    runs = {name: tmp_path / name / "run" for name in ("whole", "stopped")}
    weights = {
        name: load_file(str(run / "pretext/backbone.safetensors")) for name, run in runs.items()
    }
    for key, value in weights["whole"].items():
        assert torch.equal(value, weights["stopped"][key]), key
    metrics = {
        name: json.loads((run / "manifest.json").read_text())["stages"]["pretext"]["metrics"]
        for name, run in runs.items()
    }
    for key in ("clip_loss_first_epoch", "clip_loss_last_epoch", "logit_scale"):
        assert metrics["whole"][key] == metrics["stopped"][key]
    assert "training_speed" in metrics["stopped"]


def test_data_without_captions_is_refused(compose_config, tmp_path, tiny_clip):
    cfg = _config(compose_config, tmp_path, ["data=digits", "data.train_split=test"])
    with pytest.raises(ValueError, match=r"data\.kind=digits has no captions.*data=captions"):
        train(cfg)


def test_a_backbone_other_than_open_clip_is_refused(compose_config, tmp_path, captions_csv):
    cfg = _config(compose_config, tmp_path, captions_csv, backbone=["backbone=small_cnn"])
    with pytest.raises(ValueError, match="fine-tunes the image and text towers of an open_clip"):
        train(cfg)


def test_a_bad_captions_csv_is_named(compose_config, tmp_path, tiny_clip):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,caption\nimages/00.png,a red square\n")
    with pytest.raises(ValueError, match=rf"{bad}.*lacks the column\(s\) \['path'\]"):
        train(_config(compose_config, tmp_path, bad))
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(FileNotFoundError, match=rf"captions CSV {missing} does not exist"):
        train(_config(compose_config, tmp_path, missing))


@pytest.mark.filterwarnings("ignore::semclust.data.folder.SkippedImagesWarning")
def test_a_rotation_invariant_fine_tuning_saves_the_pooled_tower(
    compose_config, tmp_path, captions_csv, tiny_clip, one_thread
):
    # The saved spec names the pooling, so the saved weights must be the pooled tower's.
    settings = ["pretext.epochs=1", "pretext.batch_size=20", "stages=[pretext,mine]"]
    settings += ["rotation_invariance.enabled=true", "rotation_invariance.angles=4"]
    train(_config(compose_config, tmp_path, captions_csv, *settings))
    run = tmp_path / "run"
    backbone = backbone_from_spec(json.loads((run / "pretext/backbone.json").read_text()))
    assert isinstance(backbone, RotationPooledBackbone)
    backbone.load_state_dict(load_file(str(run / "pretext/backbone.safetensors")))
    torch.manual_seed(0)
    images = torch.randn(3, 3, 32, 32)  # the tiny CLIP's input size
    with torch.inference_mode():
        torch.testing.assert_close(
            backbone.eval()(images),
            backbone(torch.rot90(images, 1, dims=(2, 3))),
            atol=1e-4,
            rtol=1e-3,
        )

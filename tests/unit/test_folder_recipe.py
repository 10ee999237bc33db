"""data=folder with only a path: the survey of the images and the settings chosen from it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semclust.config_checks import check_config
from semclust.data.folder_survey import pixel_statistics, sample_paths, survey_folder
from semclust.folder_recipe import (
    as_trained,
    command_line_keys,
    complete_folder_recipe,
    settle_scan_neighbors,
)


def _grey_folder(root: Path, count: int, side: int = 28, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
        image = Image.fromarray(pixels, "L")
        folder = root / str(i % 2)
        folder.mkdir(parents=True, exist_ok=True)
        image.convert(mode).save(folder / f"{i}.{'png' if mode == 'L' else 'jpg'}")
    return root


def _colour_folder(root: Path, count: int, size=(40, 30)) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(root / f"{i}.png")
    return root


def _folder_config(compose_config, folder: Path, *extra: str):
    overrides = ["data=folder", f"data.path={folder}", *extra]
    return compose_config("train", overrides), overrides


def test_survey_tells_grey_from_colour_and_counts(tmp_path):
    grey = survey_folder(_grey_folder(tmp_path / "grey", 12))
    assert (grey.image_count, grey.sampled, grey.grayscale) == (12, 12, True)
    assert (grey.median_width, grey.median_height, grey.typical_side) == (28, 28, 28)
    # Grey pictures saved as RGB JPEGs are still grey (JPEG leaves channels a level apart).
    assert survey_folder(_grey_folder(tmp_path / "grey_jpeg", 6, side=40, mode="RGB")).grayscale
    colour = survey_folder(_colour_folder(tmp_path / "colour", 5))
    assert not colour.grayscale
    assert (colour.median_width, colour.median_height, colour.typical_side) == (40, 30, 30)


def test_survey_counts_broken_files_and_names_bad_paths(tmp_path):
    folder = _grey_folder(tmp_path / "images", 4)
    (folder / "0" / "broken.png").write_bytes(b"not a png")
    survey = survey_folder(folder)
    assert (survey.image_count, survey.sampled, survey.unreadable) == (5, 4, 1)
    assert survey.describe().endswith("(from 4 sampled, 1 unreadable)")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        survey_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable images in .*empty"):
        survey_folder(tmp_path / "empty")


def test_sample_is_evenly_spaced_and_repeatable():
    paths = [Path(f"{i:04d}.png") for i in range(1000)]
    sample = sample_paths(paths, 5)
    assert [p.name for p in sample] == ["0000.png", "0250.png", "0500.png", "0749.png", "0999.png"]
    assert sample_paths(paths[:3], 5) == paths[:3]


def test_pixel_statistics_are_those_of_the_resized_images(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("L", (8, 8), 51).save(root / "a.png")  # 0.2
    Image.new("L", (8, 8), 153).save(root / "b.png")  # 0.6
    mean, std = pixel_statistics(root, channels=1, image_size=4)
    assert mean == pytest.approx([0.4], abs=1e-4)
    assert std == pytest.approx([0.2], abs=1e-4)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "c.png")
    mean, std = pixel_statistics(root, channels=3, image_size=4)
    assert mean == pytest.approx([(0.2 + 0.6 + 1) / 3, 0.8 / 3, 0.8 / 3], abs=1e-3)


def test_small_grey_images_get_the_mnist_recipe_and_a_step_schedule(compose_config, tmp_path):
    folder = _grey_folder(tmp_path / "my.scans+2024", 400)
    cfg, overrides = _folder_config(compose_config, folder)
    entry = complete_folder_recipe(cfg, overrides)
    assert cfg.name == "my_scans_2024" and cfg.paths.run_dir.endswith("my_scans_2024/seed0")
    data = cfg.data
    assert (data.channels, data.image_size, data.augment.recipe) == (1, 16, "small_grayscale")
    assert (data.augment.rotation, data.augment.crop_scale_min) == (15, 0.5)
    assert data.mean[0] == pytest.approx(127.5 / 255, abs=0.02) and len(data.std) == 1
    # 400 images: the largest batch that still gives 10 steps an epoch, epochs for the steps.
    assert (cfg.pretext.batch_size, cfg.pretext.epochs) == (32, 100)  # 12 steps x 100 >= 1200
    assert (cfg.scan.batch_size, cfg.scan.epochs) == (32, 92)  # 12 x 92 >= 1100
    assert cfg.scan.num_neighbors == "auto"  # K is not known yet
    assert entry["survey"]["image_count"] == 400 and entry["chosen"]["data.image_size"] == 16
    check_config(cfg)


def test_larger_grey_and_colour_images(compose_config, tmp_path):
    cfg, overrides = _folder_config(
        compose_config, _grey_folder(tmp_path / "objects", 20, side=32), "data.num_clusters=2"
    )
    complete_folder_recipe(cfg, overrides)
    assert (cfg.data.image_size, cfg.data.augment.rotation) == (32, 20)
    assert cfg.scan.num_neighbors == 5  # 10 images per cluster: the fewest neighbours
    cfg, overrides = _folder_config(compose_config, _colour_folder(tmp_path / "photos", 6))
    complete_folder_recipe(cfg, overrides)
    data = cfg.data
    assert (data.channels, data.image_size, data.augment.recipe) == (3, 32, "natural")
    assert dict(data.augment) == {"recipe": "natural", "crop_scale_min": 0.2}
    assert len(data.mean) == len(data.std) == 3


def test_what_is_given_wins(compose_config, tmp_path):
    folder = _grey_folder(tmp_path / "digits", 40)
    given = ["data.channels=3", "data.image_size=24", "pretext.epochs=3", "scan.batch_size=16"]
    cfg, overrides = _folder_config(compose_config, folder, *given, "mine.num_neighbors=7")
    entry = complete_folder_recipe(cfg, overrides)
    assert (cfg.data.channels, cfg.data.image_size, cfg.data.augment.recipe) == (3, 24, "natural")
    assert (cfg.pretext.epochs, cfg.scan.batch_size) == (3, 16)
    assert cfg.scan.epochs > 30 and cfg.scan.num_neighbors == 7  # sized / the mined ones
    assert "pretext.epochs" not in entry["chosen"] and "scan.epochs" in entry["chosen"]
    # An experiment keeps its own schedule; data.schedule=null keeps the stage configs'.
    cfg, overrides = _folder_config(compose_config, folder, "experiment=cifar10")
    complete_folder_recipe(cfg, overrides)
    assert (cfg.pretext.epochs, cfg.scan.epochs, cfg.pretext.batch_size) == (500, 50, 512)
    cfg, overrides = _folder_config(compose_config, folder, "data.schedule=null")
    complete_folder_recipe(cfg, overrides)
    assert cfg.pretext.epochs == 100 and cfg.data.image_size == 16
    cfg, overrides = _folder_config(compose_config, folder, "name=mine")
    complete_folder_recipe(cfg, overrides)
    assert cfg.name == "mine"


def test_rotation_invariance_trains_longer_unless_the_steps_are_given(compose_config, tmp_path):
    folder = _grey_folder(tmp_path / "turned", 400)
    cfg, overrides = _folder_config(compose_config, folder, "rotation_invariance.enabled=true")
    entry = complete_folder_recipe(cfg, overrides)
    # 12 steps an epoch (batch 32): 6 x 1200 pretext, 8 x 1100 SCAN, 4 x 400 self-labeling.
    assert (cfg.pretext.epochs, cfg.scan.epochs, cfg.selflabel.epochs) == (600, 734, 134)
    assert entry["chosen"]["data.schedule.pretext_steps"] == "1200 x 6"
    assert entry["chosen"]["data.schedule.selflabel_steps"] == "400 x 4"
    given = [*overrides, "data.schedule.pretext_steps=600"]
    cfg, _ = _folder_config(compose_config, folder, *given[2:])
    complete_folder_recipe(cfg, given)
    assert (cfg.pretext.epochs, cfg.scan.epochs) == (50, 734)  # the given steps as they are
    cfg, overrides = _folder_config(compose_config, folder)
    complete_folder_recipe(cfg, overrides)
    assert (cfg.pretext.epochs, cfg.scan.epochs) == (100, 92)  # without the option


def test_colour_images_train_resnet_on_a_gpu(compose_config, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    folder = _colour_folder(tmp_path / "photos", 4)
    cfg, overrides = _folder_config(compose_config, folder)
    complete_folder_recipe(cfg, overrides)
    assert cfg.backbone.name == "resnet18_cifar" and cfg.backbone.in_channels == 3
    cfg, overrides = _folder_config(compose_config, folder, "backbone.width=8")
    complete_folder_recipe(cfg, overrides)
    assert cfg.backbone.name == "small_cnn"


@pytest.mark.parametrize(
    ("images", "clusters", "mined", "expected"),
    [(1440, 20, 20, 10), (10_000, 10, 20, 20), (200, 10, 20, 5), (10_000, 10, 12, 12)],
)
def test_scan_neighbours_are_a_seventh_of_a_cluster(
    compose_config, images, clusters, mined, expected
):
    cfg = compose_config("train", [f"data.num_clusters={clusters}", f"mine.num_neighbors={mined}"])
    cfg.scan.num_neighbors = "auto"
    settle_scan_neighbors(cfg, images)
    assert cfg.scan.num_neighbors == expected


def test_auto_elsewhere_is_refused_and_evaluation_takes_the_trained_settings(compose_config):
    cfg = compose_config("train", ["data.channels=auto"])
    with pytest.raises(ValueError, match="data.channels=auto needs data=folder.*'digits'"):
        complete_folder_recipe(cfg, [])
    trained = {
        "channels": 1,
        "image_size": 16,
        "mean": [0.1],
        "std": [0.3],
        "augment": {"recipe": "small_grayscale"},
    }
    data = {
        "kind": "folder",
        "channels": "auto",
        "image_size": "auto",
        "mean": "auto",
        "std": "auto",
        "augment": {"recipe": "auto"},
        "num_workers": "auto",
        "options": {"channels": "auto"},
    }
    settled = as_trained(data, trained)
    assert {k: settled[k] for k in trained} == trained
    assert settled["options"]["channels"] == 1 and isinstance(settled["num_workers"], int)


def test_command_line_keys():
    assert command_line_keys(["+a.b=1", "~c", "backbone=timm", "data@x=y"]) == {
        "a.b",
        "c",
        "backbone",
        "data",
    }

"""Every experiment and data config composes, with the values the experiments promise."""

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml"))
FOLDER_EXPERIMENTS = {"mnist", "coil20"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(compose_config, experiment):
    overrides = [f"experiment={experiment}"]
    if experiment in FOLDER_EXPERIMENTS:
        overrides.append("data.path=/some/folder")
    cfg = compose_config("train", overrides)
    assert cfg.name == experiment
    assert len(cfg.data.mean) == len(cfg.data.std) == cfg.data.channels
    assert cfg.scan.num_neighbors <= cfg.mine.num_neighbors


@pytest.mark.parametrize("experiment", ["cifar10", "cifar20", "stl10"])
def test_paper_experiments_carry_the_paper_settings(compose_config, experiment):
    cfg = compose_config("train", [f"experiment={experiment}"])
    assert cfg.pretext.temperature == 0.1 and cfg.pretext.batch_size == 512
    assert cfg.pretext.epochs == 500 and cfg.pretext.optimizer.lr == 0.4
    assert cfg.mine.num_neighbors == 20 and cfg.scan.entropy_weight == 5.0
    assert cfg.scan.optimizer.lr == 1e-4 and cfg.selflabel.threshold == 0.99
    assert cfg.data.num_clusters == {"cifar10": 10, "cifar20": 20, "stl10": 10}[experiment]


def test_stl10_pretrains_on_train_and_unlabeled(compose_config):
    cfg = compose_config("train", ["experiment=stl10"])
    assert cfg.data.pretext_split == "train+unlabeled" and cfg.data.train_split == "train"


@pytest.mark.parametrize("dataset", DATASETS)
def test_data_config_names_a_known_loader(compose_config, dataset):
    from semclust.data.datasets import _DATASETS

    overrides = [f"data={dataset}"]
    if dataset == "folder":
        overrides += ["data.path=/some/folder", "data.num_clusters=3"]
    cfg = compose_config("train", overrides)
    assert cfg.data.kind in _DATASETS


def test_backbone_shorthand_names_a_timm_model(compose_config):
    from semclust.shorthand import register_timm_backbone_shorthand

    assert register_timm_backbone_shorthand(["backbone=small_cnn"], CONFIGS) is None
    assert register_timm_backbone_shorthand(["backbone=no_such_net"], CONFIGS) is None
    assert register_timm_backbone_shorthand(["pretext=pretrained"], CONFIGS) is None
    arguments = ["pretext=pretrained", "backbone=resnet10t"]
    assert register_timm_backbone_shorthand(arguments, CONFIGS) == "resnet10t"
    cfg = compose_config("train", arguments)
    assert cfg.backbone.name == "timm" and cfg.backbone.model_name == "resnet10t"
    assert cfg.backbone.in_channels == 1  # digits are grayscale
    assert cfg.scan.update_backbone is False  # a pretrained network stays frozen


@pytest.mark.parametrize(
    ("pretext", "backbone", "fine_tune"),
    [
        ("simclr", "small_cnn", True),
        ("autoencoder", "small_cnn", True),
        ("pretrained", "clip", False),
    ],
)
def test_every_pretext_composes_and_sets_whether_scan_fine_tunes(
    compose_config, pretext, backbone, fine_tune
):
    from omegaconf import OmegaConf

    cfg = compose_config("train", [f"pretext={pretext}", f"backbone={backbone}"])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.pretext.name == pretext
    assert cfg.scan.update_backbone is fine_tune
    assert cfg.selflabel.update_backbone is fine_tune

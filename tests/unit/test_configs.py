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
        ("clip_captions", "clip", False),
    ],
)
def test_every_pretext_composes_and_sets_whether_scan_fine_tunes(
    compose_config, pretext, backbone, fine_tune
):
    from omegaconf import OmegaConf

    cfg = compose_config("train", [f"pretext={pretext}", f"backbone={backbone}"])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    # pretext._target_ names the Pretext class in semclust/stages/pretext/<pretext>.py
    assert cfg.pretext._target_.split(".")[-2] == pretext
    assert cfg.scan.update_backbone is fine_tune
    assert cfg.selflabel.update_backbone is fine_tune


@pytest.mark.parametrize("experiment", ["cifar10", "cifar20", "stl10"])
def test_paper_experiments_keep_a_pretrained_backbone_frozen_on_cached_features(
    compose_config, experiment
):
    frozen = compose_config("train", [f"experiment={experiment}", "pretext=pretrained"])
    assert frozen.scan.update_backbone is False and frozen.scan.cached_features is True
    assert frozen.selflabel.update_backbone is False and frozen.selflabel.cached_features is True
    from semclust.stages.cluster_heads import uses_cached_features

    assert uses_cached_features(frozen.scan) and uses_cached_features(frozen.selflabel)
    # ... while the paper's own SimCLR backbone is fine-tuned by SCAN, as the SCAN code does.
    simclr = compose_config("train", [f"experiment={experiment}"])
    assert simclr.scan.update_backbone is True and not uses_cached_features(simclr.scan)


def test_every_pretext_target_is_a_pretext_class(compose_config):
    import hydra

    from semclust.stages.pretext.base import Pretext

    for path in sorted((CONFIGS / "pretext").glob("*.yaml")):
        cfg = compose_config("train", [f"pretext={path.stem}"])
        assert issubclass(hydra.utils.get_class(cfg.pretext._target_), Pretext), path.name


def test_code_defaults_are_the_config_groups_defaults(compose_config):
    """classic, choose_k and predict defaults are written once, in the library."""
    from semclust.clustering.settings import ChooseKSettings, ClassicSettings
    from semclust.inference.predict import PredictOptions
    from semclust.inference.spec import to_plain

    cfg = compose_config("train")
    assert to_plain(cfg.classic) == to_plain(vars(ClassicSettings()))
    assert to_plain(cfg.choose_k) == vars(ChooseKSettings())
    evaluate = compose_config("evaluate", ["ckpt=x"])
    options = {key: evaluate.predict[key] for key in vars(PredictOptions())}
    assert options == vars(PredictOptions())

"""check_config: every shipped experiment passes; a bad option stops the run with one line
that names it."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from semclust.config_checks import ConfigError, check_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
FOLDER_EXPERIMENTS = {"mnist", "coil20"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_passes(compose_config, experiment):
    overrides = [f"experiment={experiment}"]
    if experiment in FOLDER_EXPERIMENTS:
        overrides.append("data.path=/some/folder")
    check_config(compose_config("train", overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["pretext=autoencoder"],
        ["pretext=pretrained", "backbone=clip"],
        ["pretext=clip_captions", "backbone=clip", "pretext.lock_text=true"],
        ["pretext=clip_captions", "pretext.lock_image=true", "pretext.unlocked_image_groups=2"],
        ["data=folder", "data.path=/x", "data.num_clusters=auto"],
        [
            "++overwrite=true",
            "resume=false",
            "++checkpoint_every_minutes=0.5",
            "selflabel.ema_decay=0.999",
            "seed=7",
        ],
        ["stages=[classic]", "classic.features=hog", "choose_k.criterion=elbow"],
        [
            "classic.methods=[{name:spectral,n_neighbors:auto},{name:birch,threshold:auto}]",
            "classic.reductions=[{name:lle,n_neighbors:5},{name:spectral_embedding,"
            "n_components:auto}]",
        ],
        ["trainer=gpu", "logger=none", "mine.use_gpu=true", "scan.augmentation=weak"],
        ["pretext.gradient_clip_val=null"],
    ],
)
def test_valid_variants_pass(compose_config, overrides):
    check_config(compose_config("train", overrides))


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ("pretext.epochs=-1", "pretext.epochs"),
        ("pretext.epochs=0", "pretext.epochs"),
        ("pretext.epochs=2.5", "pretext.epochs"),
        ("seed=abc", "seed"),
        ("seed=1.5", "seed"),
        ("seed=true", "seed"),
        ("seed=-3", "seed"),
        ("scan.epochs=0", "scan.epochs"),
        (
            "rotation_invariance.schedule_factors.pretext=0",
            "rotation_invariance.schedule_factors.pretext",
        ),
        (
            "rotation_invariance.schedule_factors.scan=-2",
            "rotation_invariance.schedule_factors.scan",
        ),
        ("selflabel.epochs=0", "selflabel.epochs"),
        ("pretext.batch_size=0", "pretext.batch_size"),
        ("pretext.gradient_clip_val=0", "pretext.gradient_clip_val"),
        ("pretext.gradient_clip_val=off", "pretext.gradient_clip_val"),
        ("data.eval_batch_size=0", "data.eval_batch_size"),
        ("selflabel.threshold=1.5", "selflabel.threshold"),
        ("selflabel.threshold=1.0", "selflabel.threshold"),
        ("selflabel.min_confident_fraction=-0.1", "selflabel.min_confident_fraction"),
        ("selflabel.min_clusters_kept_fraction=2", "selflabel.min_clusters_kept_fraction"),
        ("selflabel.max_silhouette_drop=-0.1", "selflabel.max_silhouette_drop"),
        ("selflabel.max_silhouette_drop=off", "selflabel.max_silhouette_drop"),
        ("selflabel.ema_decay=1.0", "selflabel.ema_decay"),
        ("mine.num_neighbors=0", "mine.num_neighbors"),
        ("data.num_workers=-1", "data.num_workers"),
        ("data.num_clusters=1", "data.num_clusters"),
        ("data.num_clusters=some", "data.num_clusters"),
        ("data.image_size=0", "data.image_size"),
        ("data.channels=0", "data.channels"),
        ("scan.num_heads=0", "scan.num_heads"),
        ("scan.entropy_weight=-1", "scan.entropy_weight"),
        ("scan.augmentation=heavy", "scan.augmentation"),
        ("pretext.val_every_n_epochs=0", "pretext.val_every_n_epochs"),
        ("pretext.temperature=0", "pretext.temperature"),
        ("pretext.optimizer.lr=0", "pretext.optimizer.lr"),
        ("scan.optimizer.weight_decay=-0.1", "scan.optimizer.weight_decay"),
        ("resume=maybe", "resume"),
        ("++overwrite=1", "overwrite"),
        ("++checkpoint_every_minutes=-1", "checkpoint_every_minutes"),
        ("stages=scan", "stages"),
        ("choose_k.k_min=1", "choose_k.k_min"),
        ("choose_k.k_max=1", "choose_k.k_max"),
        ("choose_k.criterion=gap", "choose_k.criterion"),
        ("choose_k.communities_equal_share=1.5", "choose_k.communities_equal_share"),
        ("classic.select_by=accuracy", "classic.select_by"),
        ("classic.features=labels", "classic.features"),
        ("classic.methods=[{name:kmeans,n_init:0}]", "classic.methods[0].n_init"),
        ("classic.methods=[{name:optics}]", "classic.methods[0].name"),
        ("classic.methods=[{name:spectral,n_neighbors:1}]", "classic.methods[0].n_neighbors"),
        ("classic.methods=[{name:birch,threshold:0}]", "classic.methods[0].threshold"),
        ("classic.reductions=[{name:lle,n_neighbors:auto}]", "classic.reductions[0].n_neighbors"),
        ("classic.methods=[{name:dbscan,eps:-1}]", "classic.methods[0].eps"),
        ("classic.methods=[{name:kmeans,linkage:ward}]", "classic.methods[0]"),
        ("classic.reductions=[{name:pca,n_components:0}]", "classic.reductions[0].n_components"),
    ],
)
def test_bad_option_is_named_in_one_line(compose_config, override, option):
    cfg = compose_config("train", [override])
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert message.startswith(option) and "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_message_names_the_range_and_the_value(compose_config):
    with pytest.raises(ConfigError, match=r"^pretext\.epochs must be an integer >= 1, got -1$"):
        check_config(compose_config("train", ["pretext.epochs=-1"]))
    with pytest.raises(ConfigError, match=r"^seed must be an integer in \[0, \d+\], got 'abc'$"):
        check_config(compose_config("train", ["seed=abc"]))
    with pytest.raises(ConfigError, match=r"selflabel\.threshold must be a number in \[0, 1\)"):
        check_config(compose_config("train", ["selflabel.threshold=1.5"]))


def test_k_max_below_k_min(compose_config):
    cfg = compose_config("train", ["choose_k.k_min=5", "choose_k.k_max=3"])
    with pytest.raises(ConfigError, match=r"^choose_k\.k_max must be >= choose_k\.k_min=5, got 3$"):
        check_config(cfg)


@pytest.mark.parametrize(
    ("override", "option"),
    [
        ("pretext.lock_text=yes", "pretext.lock_text"),
        ("pretext.unlocked_text_layers=-1", "pretext.unlocked_text_layers"),
        ("pretext.scheduler.warmup_fraction=1.0", "pretext.scheduler.warmup_fraction"),
        ("pretext.augmentation=heavy", "pretext.augmentation"),
        ("pretext.lock_image=true", "pretext.lock_image"),
    ],
)
def test_clip_captions_options_are_checked(compose_config, override, option):
    cfg = compose_config("train", ["pretext=clip_captions", "backbone=clip", override])
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert message.startswith(option) and "\n" not in message
    if option == "pretext.lock_image":  # all of the tower the pretext saves would be frozen
        assert "pretext.unlocked_image_groups" in message


def test_pretrained_pretext_has_no_epochs_to_check(compose_config):
    cfg = compose_config("train", ["pretext=pretrained", "backbone=clip"])
    assert "epochs" not in cfg.pretext
    check_config(cfg)


def test_unset_mandatory_value_is_named(compose_config):
    cfg = compose_config("train", ["data=folder"])
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "data.path" in message and "???" in message
    assert "\n" not in message


def test_a_failing_interpolation_is_left_to_its_reader(compose_config):
    cfg = compose_config("train")
    OmegaConf.update(cfg, "pretext.epochs", "${no_such_key}")
    check_config(cfg)  # nothing resolved beyond what the rules read; no error from here


def test_the_tiny_test_run_passes(tiny_config):
    check_config(tiny_config())

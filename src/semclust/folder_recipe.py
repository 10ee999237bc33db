"""``data=folder`` with nothing but a path: the images decide the recipe and the schedule.

The folder config leaves ``auto`` where the images should decide; :func:`complete_folder_recipe`
surveys the folder (:mod:`semclust.data.folder_survey`) and fills in:

- channels, augmentation recipe and image size: grey images take the small-grayscale recipe
  (16 px for images up to 28 px, as for MNIST; 32 px above, as for COIL-20), colour images
  the SCAN paper's natural-image recipe at 32 px;
- mean and standard deviation, measured on a sample at that size and channel count;
- the backbone: the small CNN, or ResNet-18 (CIFAR stem) for colour images when a GPU trains;
- with ``data.schedule`` set, every stage's batch size and epochs from the image count so that
  each runs about the same number of optimiser steps, and SCAN's neighbours from the images
  per cluster once K is known.

Whatever was set explicitly wins: a value other than ``auto`` in the config, any key given
on the command line (``pretext.epochs=50``, ``backbone=timm``), and an experiment's backbone
and schedule (``experiment=cifar10 data=folder`` keeps the paper's epochs). Every choice is logged
in one line (the returned ``line``, which the pipeline logs) and recorded in the manifest under
``folder_recipe``. Unless a name or run directory is given, the run is named after the folder.
"""

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from semclust.clustering.graph_communities import neighbors_per_cluster
from semclust.data.folder_survey import FolderSurvey, pixel_statistics, survey_folder

AUTO = "auto"

#: Images at most this many pixels on their shorter side are digit-sized: they go to 16 px.
SMALL_SIDE = 28

#: The small-grayscale recipe's settings measured on MNIST (28 px) and COIL-20 (32 px):
#: docs/BENCHMARKS.md. Objects turning on a turntable took more rotation and less zoom.
_GREY_AUGMENT = {
    "small": {"rotation": 15, "crop_scale_min": 0.5},
    "large": {"rotation": 20, "crop_scale_min": 0.6},
}
_NATURAL_AUGMENT = {"crop_scale_min": 0.2}

#: Batch sizes tried largest first: the largest that still gives an epoch this many steps.
_BATCH_SIZES = {
    "pretext": (256, 128, 64, 32),
    "scan": (128, 64, 32),
    "selflabel": (256, 128, 64, 32),
}
_MIN_STEPS_PER_EPOCH = 10


def command_line_keys(overrides: Sequence[str]) -> set[str]:
    """The config keys a list of Hydra overrides sets (``+a.b=1`` -> ``a.b``)."""
    keys = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        keys.add(key.split("@", 1)[0])
    return keys


def complete_folder_recipe(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any] | None:
    """Fill in the ``auto`` settings of a ``data=folder`` config in place; return what was
    chosen and why (for the manifest), or None when the data is not a folder of images."""
    if cfg.data.get("kind") != "folder":
        _refuse_auto_elsewhere(cfg)
        return None
    given = command_line_keys(overrides)
    survey = survey_folder(cfg.data.path)
    chosen: dict[str, Any] = {}
    with open_dict(cfg):
        if not given & {"name", "experiment", "paths.run_dir"}:
            # checkpoints/<folder>/seed0 rather than the default name, digits.
            cfg.name = _run_name(survey.path)
            chosen["name"] = cfg.name
        _choose_images(cfg, survey, chosen)
        if "experiment" not in given:  # an experiment's backbone and schedule are its own
            _choose_backbone(cfg, given, chosen)
            _choose_schedule(cfg, survey, given, chosen)
        settle_scan_neighbors(cfg, training_images(cfg, survey))
    line = f"data=folder: {survey.describe()} -> {describe_choices(chosen)}"
    return {"survey": survey.__dict__, "chosen": chosen, "line": line}


def _run_name(folder: str) -> str:
    """A run name from a folder's name: letters, digits, ``-`` and ``_`` only."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(folder).name).strip("_")
    return name or "folder"


def _set_auto(node: DictConfig, key: str, value: Any, chosen: dict[str, Any], name: str) -> None:
    if node.get(key) == AUTO:
        node[key] = value
        chosen[name] = value


def _choose_images(cfg: DictConfig, survey: FolderSurvey, chosen: dict[str, Any]) -> None:
    data = cfg.data
    _set_auto(data, "channels", 1 if survey.grayscale else 3, chosen, "data.channels")
    grey = data.channels == 1
    _set_auto(
        data.augment,
        "recipe",
        "small_grayscale" if grey else "natural",
        chosen,
        "data.augment.recipe",
    )
    small = survey.typical_side <= SMALL_SIDE
    size = 16 if grey and small else 32
    _set_auto(data, "image_size", size, chosen, "data.image_size")
    if data.augment.recipe == "small_grayscale":
        augment = _GREY_AUGMENT["small" if data.image_size <= 16 else "large"]
    else:
        augment = _NATURAL_AUGMENT
        if data.augment.get("rotation") == AUTO:
            del data.augment["rotation"]  # the natural recipe has no rotation setting
    for key, value in augment.items():
        _set_auto(data.augment, key, value, chosen, f"data.augment.{key}")
    if AUTO in (data.get("mean"), data.get("std")):
        mean, std = pixel_statistics(data.path, data.channels, data.image_size)
        _set_auto(data, "mean", mean, chosen, "data.mean")
        _set_auto(data, "std", std, chosen, "data.std")
    _set_auto(data, "num_workers", loader_workers(), chosen, "data.num_workers")


def loader_workers() -> int:
    """Loader processes for a folder: one per core but one (the trainer's), at most 4."""
    return min(4, max((os.cpu_count() or 1) - 1, 0))


def as_trained(data_cfg: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """A data config to score a model on: its ``auto`` image settings as the model was
    trained (channels, size, normalisation, recipe), so the input matches the model."""
    data_cfg = dict(data_cfg)
    for key in ("channels", "image_size", "mean", "std"):
        if data_cfg.get(key) == AUTO:
            data_cfg[key] = trained[key]
    if AUTO in dict(data_cfg.get("augment") or {}).values():
        data_cfg["augment"] = trained["augment"]
    if data_cfg.get("num_workers") == AUTO:
        data_cfg["num_workers"] = loader_workers()
    options = dict(data_cfg.get("options") or {})
    if options.get("channels") == AUTO:  # an interpolation resolved before the choice
        data_cfg["options"] = {**options, "channels": data_cfg["channels"]}
    return data_cfg


def _choose_backbone(cfg: DictConfig, given: set[str], chosen: dict[str, Any]) -> None:
    """ResNet-18 for colour images on a GPU; the small CNN (the default) otherwise."""
    if "backbone" in given or cfg.data.channels == 1 or not torch.cuda.is_available():
        return
    if cfg.backbone.get("name") != "small_cnn" or any(k.startswith("backbone.") for k in given):
        return
    cfg.backbone = OmegaConf.create(
        {
            "_target_": "semclust.models.build_backbone",
            "name": "resnet18_cifar",
            "in_channels": "${data.channels}",
        }
    )
    chosen["backbone"] = "resnet18_cifar"


def training_images(cfg: DictConfig, survey: FolderSurvey) -> int:
    """About how many images the training split holds (the few files a dataset may skip as
    unusable are not worth decoding every file for)."""
    share = {"train": 0.8, "test": 0.2}.get(cfg.data.get("train_split"), 1.0)
    return max(int(share * survey.image_count), 1)


def _choose_schedule(
    cfg: DictConfig, survey: FolderSurvey, given: set[str], chosen: dict[str, Any]
) -> None:
    """Batch sizes and epochs from the image count, for ``data.schedule``'s step counts."""
    schedule = cfg.data.get("schedule")
    if not schedule:
        return
    images = training_images(cfg, survey)
    chosen["training_images"] = images
    for stage in ("pretext", "scan", "selflabel"):
        steps = schedule.get(f"{stage}_steps")
        if steps is None or stage not in cfg or "epochs" not in cfg[stage]:
            continue  # e.g. a pretrained network: no pretext epochs to size
        factor = _rotation_step_factor(cfg, stage, given)
        if factor != 1:
            chosen[f"data.schedule.{stage}_steps"] = f"{steps} x {factor:g}"
            steps = steps * factor
        node = cfg[stage]
        if f"{stage}.batch_size" not in given:
            fitting = [b for b in _BATCH_SIZES[stage] if images >= _MIN_STEPS_PER_EPOCH * b]
            node.batch_size = min(fitting[0] if fitting else _BATCH_SIZES[stage][-1], images)
            chosen[f"{stage}.batch_size"] = int(node.batch_size)
        if f"{stage}.epochs" not in given:
            steps_per_epoch = max(images // node.batch_size, 1)
            node.epochs = max(math.ceil(steps / steps_per_epoch), 1)
            chosen[f"{stage}.epochs"] = int(node.epochs)
    if "scan.num_neighbors" not in given and "mine.num_neighbors" not in given:
        cfg.scan.num_neighbors = AUTO
        chosen["scan.num_neighbors"] = AUTO


def _rotation_step_factor(cfg: DictConfig, stage: str, given: set[str]) -> float:
    """How many times its scheduled steps a stage trains for with ``rotation_invariance``
    (``rotation_invariance.schedule_factors``): 1 without it, or when the steps are given."""
    settings = cfg.get("rotation_invariance")
    if not settings or not settings.get("enabled") or f"data.schedule.{stage}_steps" in given:
        return 1
    return (settings.get("schedule_factors") or {}).get(stage, 1)


def settle_scan_neighbors(cfg: DictConfig, training_images: int) -> None:
    """``scan.num_neighbors=auto``: about a seventh of a cluster's images, once K is known
    (never more than were mined). Left ``auto`` while K is."""
    if cfg.scan.get("num_neighbors") != AUTO or cfg.data.num_clusters == AUTO:
        return
    with open_dict(cfg):
        cfg.scan.num_neighbors = neighbors_per_cluster(
            training_images, cfg.data.num_clusters, cfg.mine.num_neighbors
        )


def describe_choices(chosen: dict[str, Any]) -> str:
    """One line: ``data.channels=1, data.image_size=16, ...``."""
    return (
        ", ".join(f"{key}={_short(value)}" for key, value in chosen.items())
        or "nothing left to choose"
    )


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return str(value)


def _refuse_auto_elsewhere(cfg: DictConfig) -> None:
    """``auto`` image settings only make sense where there is a folder to look at."""
    keys = ("channels", "image_size", "mean", "std", "num_workers")
    left = [f"data.{key}" for key in keys if cfg.data.get(key) == AUTO]
    if cfg.data.get("augment") and cfg.data.augment.get("recipe") == AUTO:
        left.append("data.augment.recipe")
    if left:
        raise ValueError(
            f"{', '.join(left)}=auto needs data=folder (the images are looked at to choose); "
            f"data.kind is {cfg.data.get('kind')!r}: give a value"
        )

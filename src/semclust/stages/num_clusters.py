"""``data.num_clusters=auto``: K chosen once on features, then given to the later stages."""

import logging
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from semclust.clustering.choose_k import GRAPH_CRITERIA, estimate_k, write_k_choice
from semclust.clustering.settings import ChooseKSettings
from semclust.rundir import (
    K_CHOICE,
    MissingArtifactError,
    RunDirectory,
    mined,
    read_json,
    write_json,
)

log = logging.getLogger(__name__)


def choose_num_clusters(
    cfg: DictConfig, run: RunDirectory, features: np.ndarray, described: str
) -> dict[str, Any]:
    """Estimate K by ``choose_k.criterion`` (and the criteria of ``choose_k.compare``), save
    their curves under ``<run>/choose_k/`` and record the choice, every criterion's K and
    curve, and why, in the manifest; returns the choice (K is its ``value``)."""
    settings = ChooseKSettings(**OmegaConf.to_container(cfg.choose_k, resolve=True))
    k_max = min(settings.k_max, len(features) - 1)
    if k_max < settings.k_min:
        raise ValueError(
            f"choose_k.k_min={settings.k_min} but {len(features)} images allow at most "
            f"K={len(features) - 1}"
        )
    started = time.perf_counter()
    wants_graph = any(c in GRAPH_CRITERIA for c in [settings.criterion, *settings.compare])
    neighbors, graph = _mined_neighbors(run, features) if wants_graph else (None, None)
    if wants_graph and neighbors is None:
        graph = f"exact search, {min(settings.num_neighbors, len(features) - 1)} neighbours"
    choice = estimate_k(features, range(settings.k_min, k_max + 1), cfg.seed, settings, neighbors)
    out_dir = run.stage_dir(K_CHOICE[0])
    # Every process picks the same K from the same gathered features; one writes.
    files = write_k_choice(choice, out_dir) if run.is_writer() else {}
    entry = {
        "value": int(choice.k),
        "criterion": choice.criterion,
        "reason": choice.reason,
        "swept": [settings.k_min, k_max],
        "features": described,
        "neighbors": graph,
        "criteria": choice.criteria(),
        "files": {name: str(path.relative_to(run.root)) for name, path in files.items()},
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    write_json(run.path(K_CHOICE), entry)
    run.record("num_clusters", entry)
    log.info("data.num_clusters=auto: K=%d (%s)", choice.k, choice.reason)
    return entry


def _mined_neighbors(run: RunDirectory, features: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The mine stage's neighbours of exactly these features (train or val split), if saved."""
    for split in ("train", "val"):
        neighbors_path = run.path(mined(split, "neighbors"))
        features_path = run.path(mined(split, "features"))
        if not (neighbors_path.is_file() and features_path.is_file()):
            continue
        neighbors = np.load(neighbors_path, mmap_mode="r")
        saved = np.load(features_path, mmap_mode="r")
        same = len(neighbors) == len(features) and saved.shape == features.shape
        if same and np.array_equal(saved, features):
            return np.asarray(neighbors), f"mined {split} neighbours ({neighbors.shape[1]})"
    return None, ""


def chosen_num_clusters(run: RunDirectory, stage: str) -> int:
    """The K an earlier stage chose for ``data.num_clusters=auto``."""
    choice_path = run.path(K_CHOICE)
    if not choice_path.is_file():
        raise MissingArtifactError(
            f"stage {stage!r} runs with data.num_clusters=auto, but no K was chosen yet "
            f"({choice_path} is missing); run the mine stage first, or give "
            "data.num_clusters a number"
        )
    return int(read_json(choice_path)["value"])

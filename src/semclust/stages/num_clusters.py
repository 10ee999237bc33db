"""``data.num_clusters=auto``: K chosen once on features, then given to the later stages."""

import logging
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from semclust.clustering.choose_k import choose_k
from semclust.rundir import K_CHOICE, MissingArtifactError, RunDirectory, read_json, write_json

log = logging.getLogger(__name__)


def choose_num_clusters(
    cfg: DictConfig, run: RunDirectory, features: np.ndarray, described: str
) -> dict[str, Any]:
    """Sweep K with k-means, save the table and the elbow and silhouette plots under
    ``<run>/choose_k/``, pick K and record why in the manifest; returns the choice (K is
    its ``value``)."""
    settings = cfg.choose_k
    k_max = min(settings.k_max, len(features) - 1)
    if k_max < settings.k_min:
        raise ValueError(
            f"choose_k.k_min={settings.k_min} but {len(features)} images allow at most "
            f"K={len(features) - 1}"
        )
    started = time.perf_counter()
    choice_path = run.path(K_CHOICE)
    out_dir = run.stage_dir(K_CHOICE[0])
    chosen, reason, files = choose_k(
        features,
        list(range(settings.k_min, k_max + 1)),
        cfg.seed,
        out_dir,
        settings.criterion,
        settings.sample_size,
        # Every process picks the same K from the same gathered features; one writes.
        write=run.is_writer(),
    )
    choice = {
        "value": int(chosen),
        "criterion": settings.criterion,
        "reason": reason,
        "swept": [settings.k_min, k_max],
        "features": described,
        "files": {name: str(path.relative_to(run.root)) for name, path in files.items()},
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    write_json(choice_path, choice)
    run.record("num_clusters", choice)
    log.info("data.num_clusters=auto: K=%d (%s)", chosen, reason)
    return choice


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

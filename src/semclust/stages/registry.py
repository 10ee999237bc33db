"""The stages, found by name: each stage module registers one :class:`Stage`.

Every module of the ``semclust.stages`` package is imported once to find them, so a new stage
is one new file (plus its config group); see CONTRIBUTING.md.
"""

import importlib
import pkgutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from semclust.rundir import RunDirectory

#: What a stage returns: the files it wrote (name -> path) and its metrics.
StageResult = tuple[dict[str, Path], dict[str, Any]]


class StageSkipped(Exception):
    """A stage decided not to change the result; the message says why."""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``run(cfg, run_dir)`` does the work; ``order`` places it among the others; ``prepare(cfg)``,
    if given, adjusts the composed config before any stage runs (every invocation, whichever
    stages it asks for). ``needs_num_clusters``: the stage wants ``data.num_clusters`` as a
    number, so with ``auto`` the pipeline gives it the K an earlier stage chose.
    ``table_rows`` names the rows the stage adds to the closing table: its own name for its
    metrics, or the key of a nested metrics dict (mine's ``kmeans``). ``partitions``: its
    metrics score a partition of the images, so it can be a run's final result.
    ``consumes`` names the earlier stages whose outputs it reads (``None``: every earlier
    one; a callable gets the config); their outputs' digests are part of its fingerprint, so
    it runs again when they change. ``fingerprint_ignores`` lists config keys its result
    does not depend on (``data.num_clusters`` for the pretext). ``reads_images``: whether
    its result depends on the run's images (not so for a pretrained backbone), so that its
    outputs may serve a run on other images.
    """

    name: str
    order: int
    run: Callable[[DictConfig, RunDirectory], StageResult]
    needs_num_clusters: bool = True
    partitions: bool = False
    table_rows: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[DictConfig], None] | None = None
    #: Added to the run's seed. None derives it from the name alone, so adding a stage moves
    #: no other stage's seed; the first stages keep the offsets they always had.
    seed_offset: int | None = None
    consumes: tuple[str, ...] | Callable[[DictConfig], tuple[str, ...]] | None = None
    fingerprint_ignores: tuple[str, ...] = ()
    reads_images: bool | Callable[[DictConfig], bool] = True

    def seed(self, seed: int) -> int:
        if self.seed_offset is not None:
            return seed + self.seed_offset
        return seed + 1000 + zlib.crc32(self.name.encode()) % 1_000_000

    def upstream(self, cfg: DictConfig, stages: list["Stage"]) -> tuple[str, ...]:
        """The earlier stages whose outputs this one reads under ``cfg``."""
        if self.consumes is None:
            return tuple(stage.name for stage in stages if stage.order < self.order)
        return self.consumes(cfg) if callable(self.consumes) else self.consumes

    def depends_on_images(self, cfg: DictConfig) -> bool:
        return self.reads_images(cfg) if callable(self.reads_images) else self.reads_images


_REGISTRY: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add ``stage`` to the registry (called by each stage module at import)."""
    known = _REGISTRY.get(stage.name)
    if known is not None and known.run.__module__ != stage.run.__module__:
        raise ValueError(f"two stages are named {stage.name!r}")
    _REGISTRY[stage.name] = stage
    return stage


def stage_seed(name: str, seed: int) -> int:
    """The seed stage ``name`` runs under when the run's seed is ``seed``."""
    return _REGISTRY[name].seed(seed)


def registered_stages() -> list[Stage]:
    """Every stage of ``semclust.stages``, in running order."""
    package = importlib.import_module("semclust.stages")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return sorted(_REGISTRY.values(), key=lambda stage: stage.order)

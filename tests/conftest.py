"""Shared fixtures: composing the project's Hydra configs the way train.py does."""

import functools
import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from semclust.config_store import register_configs
from semclust.models import ClusteringModel, build_backbone

register_configs()  # the config groups whose defaults live in code, as train.py does

# cuDNN convolves in TF32 by default on a GPU (rounding near 1e-3); tests that compare features
# made there (mining, predict) with a CPU recompute at 1e-4 need float32 arithmetic on both.
torch.backends.cudnn.allow_tf32 = False

#: Most test workers (pytest-xdist's ``-n auto``): each holds torch, Lightning and a training
#: run (up to ~2 GB of memory).
MAX_WORKERS = 8


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return min(usable_cores(), MAX_WORKERS)


def share_the_cores_between_workers() -> None:
    """Under pytest-xdist, give each worker its share of the cores: torch threads beyond it
    would wait on each other while another worker holds a core. ``train.py`` processes that
    tests start inherit the share through OMP_NUM_THREADS."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, usable_cores() // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


share_the_cores_between_workers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: a worker that started the default digits run (minutes) near the
    end would leave the others idle while it finishes. The rest keep their order."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@functools.cache
def import_error(module: str) -> str | None:
    """Why ``module`` cannot be imported here, or None when it can."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        return str(error)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked ``needs(module)`` where that module cannot be imported, saying why
    (the GPU machine lacks opencv and numba, ../shared/GPU.md). On CI, which installs every
    declared dependency, the test runs and a missing module fails it."""
    if os.environ.get("CI", "").lower() in ("", "0", "false"):
        for marker in item.iter_markers("needs"):
            for module in marker.args:
                error = import_error(module)
                if error is not None:
                    pytest.skip(f"needs {module}, which cannot be imported here: {error}")


CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")

# A run small enough for a test: few epochs, a narrow network, the 360-image digits split.
TINY_RUN = [
    "pretext.epochs=2",
    "pretext.batch_size=64",
    "pretext.val_every_n_epochs=1",
    "scan.epochs=2",
    "scan.batch_size=64",
    "scan.num_heads=2",
    "selflabel.epochs=1",
    "selflabel.batch_size=64",
    "mine.num_neighbors=5",
    "backbone.width=8",
    "data.train_split=test",
    "data.val_split=test",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "report=false",
]


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """Compose ``configs/<name>.yaml`` with overrides, as ``@hydra.main`` would."""

    def _compose(name: str = "train", overrides: list[str] | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=name, overrides=overrides or [])

    return _compose


@pytest.fixture
def tiny_config(compose_config: Callable[..., DictConfig], tmp_path: Path) -> Callable:
    """The tiny run's config, writing into a temporary run directory."""

    def _tiny(*overrides: str) -> DictConfig:
        return compose_config("train", [*TINY_RUN, f"paths.run_dir={tmp_path / 'run'}", *overrides])

    return _tiny


@pytest.fixture
def tiny_model() -> Callable[..., tuple[ClusteringModel, dict]]:
    """A seeded, untrained 3-cluster model for 16x16 grayscale images, and the spec that
    ``semclust.inference.export.save_export`` needs for it."""

    def _make(num_heads: int = 1) -> tuple[ClusteringModel, dict]:
        backbone = {"name": "small_cnn", "in_channels": 1, "width": 8, "feature_dim": 32}
        torch.manual_seed(0)
        model = ClusteringModel(build_backbone(**backbone), 3, num_heads).eval()
        preprocessing = {
            "recipe": "small_grayscale",
            "image_size": 16,
            "channels": 1,
            "mean": [0.5],
            "std": [0.25],
        }
        return model, {"backbone": backbone, "num_clusters": 3, "preprocessing": preprocessing}

    return _make


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Make an image file unreadable: ``chmod 000``, and where this user reads it anyway
    (root), PIL's open of that file raises the PermissionError the OS would have."""
    import PIL.Image

    locked: list[Path] = []
    original_open = PIL.Image.open

    def refusing_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).resolve() in locked:
            raise PermissionError(13, "Permission denied", str(file))
        return original_open(file, *args, **kwargs)

    def _lock(path: Path) -> None:
        path.chmod(0)
        try:
            path.read_bytes()
        except PermissionError:
            return
        locked.append(path.resolve())
        monkeypatch.setattr(PIL.Image, "open", refusing_open)

    yield _lock
    for path in locked:
        path.chmod(0o644)

"""The run directory: known file names per stage, the manifest, and model files.

Every stage reads and writes fixed paths under ``run_dir/<stage>/``, so a later stage (or a
rerun of the tail of the pipeline) finds its inputs without anyone copying paths around.
"""

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.rank_zero import rank_zero_only
from safetensors.torch import load_file, save_file

# In running order. classic (baselines on any features) comes last so the seeds of the
# other stages (seed + position) stay what they were before it existed.
STAGES = ("pretext", "mine", "scan", "selflabel", "classic")

# What each stage needs from an earlier one: (stage, file name).
BACKBONE_WEIGHTS = ("pretext", "backbone.safetensors")
BACKBONE_SPEC = ("pretext", "backbone.json")
TRAIN_FEATURES = ("mine", "train_features.npy")
VAL_FEATURES = ("mine", "val_features.npy")
TRAIN_TARGETS = ("mine", "train_targets.npy")
VAL_TARGETS = ("mine", "val_targets.npy")
TRAIN_NEIGHBORS = ("mine", "train_neighbors.npy")
VAL_NEIGHBORS = ("mine", "val_neighbors.npy")
SCAN_WEIGHTS = ("scan", "model.safetensors")
SCAN_SPEC = ("scan", "model.json")


class MissingArtifactError(FileNotFoundError):
    """A stage's input is missing: the message names the stage that produces it."""


class RunDirectory:
    """One run's folder: ``<stage>/`` subfolders, ``manifest.json`` and ``metrics.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"
        self.metrics_path = self.root / "metrics.json"

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, artifact: tuple[str, str]) -> Path:
        stage, name = artifact
        return self.stage_dir(stage) / name

    def require(self, artifact: tuple[str, str], needed_by: str) -> Path:
        """Path of an earlier stage's output, or an error that says which stage to run."""
        stage, name = artifact
        path = self.root / stage / name
        if not path.is_file():
            raise MissingArtifactError(
                f"stage {needed_by!r} needs {path}, which stage {stage!r} writes; run that "
                f"stage first, e.g. stages=[{stage},{needed_by}] paths.run_dir={self.root}"
            )
        return path

    # manifest ---------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text())

    def record_stage(
        self,
        stage: str,
        status: str,
        config: Mapping[str, Any],
        outputs: Mapping[str, str | Path] | None = None,
        metrics: Mapping[str, Any] | None = None,
        note: str | None = None,
        wall_time_s: float | None = None,
    ) -> None:
        """Record a stage's status, outputs (relative to the run), config and metrics."""
        manifest = self.read_manifest()
        entry: dict[str, Any] = {
            "status": status,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": {key: _relative(value, self.root) for key, value in (outputs or {}).items()},
            "config": dict(config),
            "metrics": dict(metrics or {}),
        }
        if note:
            entry["note"] = note
        if wall_time_s is not None:
            entry["wall_time_s"] = round(wall_time_s, 2)
        manifest.setdefault("stages", {})[stage] = entry
        write_json(self.manifest_path, manifest)

    def record(self, key: str, value: Any) -> None:
        """Set a top-level manifest entry (e.g. how the number of clusters was chosen)."""
        manifest = self.read_manifest()
        manifest[key] = value
        write_json(self.manifest_path, manifest)

    @staticmethod
    def is_writer() -> bool:
        """Under DDP every process runs the pipeline; only global rank zero writes files."""
        return rank_zero_only.rank == 0

    def stage_status(self, stage: str) -> str | None:
        return self.read_manifest()["stages"].get(stage, {}).get("status")


def _relative(path: str | Path, root: Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (rank zero only), so a crash never leaves half a file behind."""
    if not RunDirectory.is_writer():
        return
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    temporary.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def save_weights(
    module: torch.nn.Module, weights_path: Path, spec: Mapping[str, Any], spec_path: Path
) -> None:
    """Weights as safetensors plus a JSON spec to rebuild the module; nothing is pickled."""
    if not RunDirectory.is_writer():
        return
    state = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    save_file(state, str(weights_path))
    write_json(spec_path, dict(spec))


def load_weights(module: torch.nn.Module, weights_path: Path) -> torch.nn.Module:
    """Load safetensors weights, with a clear error when they do not fit the module."""
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ValueError(f"cannot read weights from {weights_path}: {error}") from error
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"weights in {weights_path} do not fit the model: {error}") from error
    return module

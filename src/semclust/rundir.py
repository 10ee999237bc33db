"""The run directory: every artifact's path, the manifest, and model files.

Every stage reads and writes fixed paths under ``run_dir/<stage>/``, so a later stage (or a
rerun of the tail of the pipeline) finds its inputs without anyone copying paths around.
Nothing here imports Lightning or Hydra: inference reads runs through this module too.
"""

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from semclust.fingerprints import name_in_run

#: What a stage needs from an earlier one: (stage folder, file name).
Artifact = tuple[str, str]

BACKBONE_WEIGHTS: Artifact = ("pretext", "backbone.safetensors")
BACKBONE_SPEC: Artifact = ("pretext", "backbone.json")
FEATURES_KEY: Artifact = ("mine", "features_key.json")
K_CHOICE: Artifact = ("choose_k", "choice.json")
MODEL_WEIGHTS_NAME = "model.safetensors"
MODEL_SPEC_NAME = "model.json"

#: Marks a manifest.json as semclust's, so a run directory is recognised as one of ours.
RUN_FORMAT = "semclust-run/1"

#: Stages that leave a clustering model (model.safetensors + model.json), in running order;
#: a run's final model is that of the last one completed.
MODEL_STAGES = ("scan", "selflabel")


def mined(split: str, kind: str) -> Artifact:
    """The mine stage's ``{split}_{kind}.npy``: split train or val; kind features, targets
    or neighbors."""
    if split not in ("train", "val") or kind not in ("features", "targets", "neighbors"):
        raise ValueError(f"no mined artifact {split}_{kind}")
    return ("mine", f"{split}_{kind}.npy")


def model_weights(stage: str) -> Artifact:
    return (stage, MODEL_WEIGHTS_NAME)


def model_spec(stage: str) -> Artifact:
    return (stage, MODEL_SPEC_NAME)


class MissingArtifactError(FileNotFoundError):
    """A stage's input is missing: the message names the stage that produces it."""


class RunDirectoryError(ValueError):
    """``paths.run_dir`` cannot be used: someone else's folder, or not writable."""


class RunDirectory:
    """One run's folder: ``<stage>/`` subfolders, ``manifest.json`` and ``metrics.json``."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"
        self.metrics_path = self.root / "metrics.json"
        self.report_path = self.root / "report.html"

    def claim(self, overwrite: bool = False) -> None:
        """Make sure the folder is new, empty or a semclust run before anything is written.

        Anything else (someone's own files, another program's ``manifest.json``) is refused
        untouched unless ``overwrite``; a folder that cannot be written is refused too.
        """
        if not is_writer():
            return  # rank zero checks and creates; the others follow it
        if self.root.exists() and not self.root.is_dir():
            raise RunDirectoryError(f"paths.run_dir={self.root} is a file, not a folder")
        foreign = self._foreign_entries()
        if foreign and not overwrite:
            shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
            raise RunDirectoryError(
                f"paths.run_dir={self.root} is not empty and is not a semclust run "
                f"({len(foreign)} entries: {shown}); choose a new folder, or pass "
                "overwrite=true to write the run into it anyway"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            manifest = {"stages": {}} if foreign else self.read_manifest()
            write_json(self.manifest_path, {"format": RUN_FORMAT, **manifest})
        except PermissionError as error:
            raise RunDirectoryError(
                f"cannot write to paths.run_dir={self.root} ({error.strerror}); choose a "
                "folder you can write to"
            ) from error

    def _foreign_entries(self) -> list[str]:
        """What in the folder is not of a semclust run (nothing if it is one, or empty)."""
        if not self.root.is_dir():
            return []
        entries = [entry.name for entry in self.root.iterdir()]
        if not self.manifest_path.is_file():
            return entries
        try:
            manifest = read_json(self.manifest_path)
        except ValueError:
            return entries
        ours = isinstance(manifest, dict) and (
            manifest.get("format") == RUN_FORMAT or isinstance(manifest.get("stages"), dict)
        )
        return [] if ours else entries

    def stage_dir(self, stage: str) -> Path:
        """``<run>/<stage>``, created if needed."""
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, artifact: Artifact) -> Path:
        stage, name = artifact
        return self.root / stage / name

    def require(self, artifact: Artifact, needed_by: str) -> Path:
        """Path of an earlier stage's output, or an error that says which stage to run."""
        path = self.path(artifact)
        if not path.is_file():
            stage = artifact[0]
            raise MissingArtifactError(
                f"stage {needed_by!r} needs {path}, which stage {stage!r} writes; run that "
                f"stage first, e.g. stages=[{stage},{needed_by}] paths.run_dir={self.root}"
            )
        return path

    # checkpoints of a trained stage --------------------------------------------------------

    def checkpoint_dir(self, stage: str) -> Path:
        return self.root / stage / "checkpoints"

    def last_checkpoint(self, stage: str) -> Path:
        return self.checkpoint_dir(stage) / "last.ckpt"

    def model_checkpoint(self, stage: str) -> Path:
        """The checkpoint a stage's model comes from: ``best.ckpt`` where the stage keeps its
        best epoch (SCAN), else ``last.ckpt``."""
        best = self.checkpoint_dir(stage) / "best.ckpt"
        return best if best.is_file() else self.last_checkpoint(stage)

    def skipped_files(self, split_key: str) -> Path:
        """Where the images a dataset split skipped are listed."""
        return self.root / f"skipped_files_{split_key}.csv"

    @staticmethod
    def evaluation_dir(checkpoint: str | Path) -> Path:
        """Where evaluate.py scores ``<run>/<stage>/checkpoints/<name>.ckpt``:
        ``<run>/<stage>/evaluation``."""
        return Path(checkpoint).resolve().parents[1] / "evaluation"

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> "RunDirectory":
        """The run a ``<run>/<stage>/checkpoints/<name>.ckpt`` belongs to (not created)."""
        return cls(Path(checkpoint).resolve().parents[2], create=False)

    # manifest ---------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"stages": {}}
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
            raise RunDirectoryError(
                f"{self.manifest_path} is not a semclust run manifest (no 'stages' table)"
            )
        return manifest

    def record_stage(
        self,
        stage: str,
        status: str,
        config: Mapping[str, Any],
        outputs: Mapping[str, str | Path] | None = None,
        metrics: Mapping[str, Any] | None = None,
        note: str | None = None,
        wall_time_s: float | None = None,
        **extra: Any,
    ) -> None:
        """Record a stage's status, outputs (relative to the run), config and metrics, plus
        ``extra`` entries (its fingerprint, its outputs' digest)."""
        manifest = self.read_manifest()
        entry: dict[str, Any] = {
            "status": status,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": {
                key: name_in_run(value, self.root) for key, value in (outputs or {}).items()
            },
            "config": dict(config),
            "metrics": dict(metrics or {}),
            **extra,
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

    def stage_status(self, stage: str) -> str | None:
        return self.read_manifest()["stages"].get(stage, {}).get("status")

    def final_model_stage(self) -> str | None:
        """The last completed stage of :data:`MODEL_STAGES`, whose model is the run's result."""
        stages = self.read_manifest().get("stages", {})
        completed = [s for s in MODEL_STAGES if stages.get(s, {}).get("status") == "completed"]
        return completed[-1] if completed else None

    @staticmethod
    def is_writer() -> bool:
        return is_writer()


def is_writer() -> bool:
    """Under DDP every process runs the pipeline; only global rank zero writes files.

    Only Lightning starts several processes, so without it loaded this is the only one, and
    inference never has to import it to know that.
    """
    rank_zero = sys.modules.get("lightning_fabric.utilities.rank_zero")
    return rank_zero is None or rank_zero.rank_zero_only.rank == 0


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (rank zero only), so a crash never leaves half a file behind."""
    if not is_writer():
        return
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    temporary.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def save_weights(
    module: torch.nn.Module, weights_path: Path, spec: Mapping[str, Any], spec_path: Path
) -> None:
    """Weights as safetensors plus a JSON spec to rebuild the module; nothing is pickled."""
    if not is_writer():
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

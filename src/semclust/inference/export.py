"""The exported model: one safetensors file that carries everything inference needs.

Weights are safetensors; the backbone spec, chosen head, preprocessing, cluster count and
optional cluster names travel as JSON in the file's own metadata header, with a SHA-256 of
the weights so a tampered file is refused. Loading never unpickles anything, and needs
neither the training config nor the run directory.
"""

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from semclust.data import build_transforms
from semclust.inference.checkpoint import load_clustering_checkpoint
from semclust.inference.spec import (
    PREPROCESSING_KEYS,
    clustering_model_from_spec,
    preprocessing_spec,
)
from semclust.models import ClusteringModel
from semclust.rundir import (
    MODEL_SPEC_NAME,
    RunDirectory,
    load_weights,
    model_spec,
    read_json,
)

#: Value of the ``format`` metadata key; bumped when the layout changes.
EXPORT_FORMAT = "semclust.model/1"

_REQUIRED = ("backbone", "num_clusters", "preprocessing")


class ModelFileError(ValueError):
    """A model file that cannot be used: unreadable, not an export, tampered or inconsistent."""


@dataclass
class ExportedModel:
    """A loaded export: the model (eval mode, one head) and what it needs to see images."""

    model: ClusteringModel
    spec: dict[str, Any]
    cluster_names: list[str] = field(default_factory=list)

    @property
    def num_clusters(self) -> int:
        return int(self.spec["num_clusters"])

    @property
    def channels(self) -> int:
        return int(self.spec["preprocessing"]["channels"])

    @property
    def image_size(self) -> int:
        return int(self.spec["preprocessing"]["image_size"])

    @property
    def feature_dim(self) -> int:
        return int(self.model.backbone.feature_dim)

    def preprocess(self) -> Callable:
        """The evaluation transform it was trained with: PIL image -> normalised tensor."""
        pre = self.spec["preprocessing"]
        return build_transforms(pre["recipe"], pre["image_size"], pre["mean"], pre["std"]).eval

    def to(self, device: torch.device | str) -> "ExportedModel":
        self.model.to(device)
        return self


# writing --------------------------------------------------------------------------------


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_export(
    model: ClusteringModel,
    spec: Mapping[str, Any],
    path: str | Path,
    cluster_names: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` (reduced to one head first) and its spec as one safetensors file."""
    if len(model.cluster_heads.heads) != 1:
        raise ValueError("export one head: call model.cluster_heads.keep(head_index) first")
    num_clusters = int(spec["num_clusters"])
    names = [str(name) for name in cluster_names] if cluster_names else []
    if names and len(names) != num_clusters:
        raise ValueError(f"got {len(names)} cluster names for a model with {num_clusters} clusters")
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    header = {
        "backbone": dict(spec["backbone"]),
        "num_clusters": num_clusters,
        "preprocessing": {key: spec["preprocessing"][key] for key in PREPROCESSING_KEYS},
        "cluster_names": names,
        "source": {key: spec[key] for key in ("stage", "head_index") if key in spec},
        "weights_sha256": weights_digest(state),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(
        state, str(temporary), metadata={"format": EXPORT_FORMAT, "semclust": json.dumps(header)}
    )
    temporary.replace(path)
    return path


def export_model(
    source: str | Path, path: str | Path, cluster_names: Sequence[str] | None = None
) -> Path:
    """Export the final model of a run directory, a stage's ``model.json`` or a ``.ckpt``."""
    model, spec = load_trained_model(source)
    return save_export(model, spec, path, cluster_names)


def load_trained_model(source: str | Path) -> tuple[ClusteringModel, dict[str, Any]]:
    """The one-head model and spec of a run directory (its last clustering stage), of a
    stage folder or its ``model.json``, or of a SCAN / self-label ``.ckpt``."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if source.suffix == ".ckpt":
        model, metadata = load_clustering_checkpoint(source)
        spec = {
            "backbone": metadata["backbone"],
            "num_clusters": metadata["num_clusters"],
            "preprocessing": preprocessing_spec(metadata["data"]),
            "stage": metadata["stage"],
            "head_index": 0,
        }
        return model, spec
    spec_path = _model_json(source)
    spec = read_json(spec_path)
    missing = [key for key in (*_REQUIRED, "num_heads") if key not in spec]
    if missing:
        raise ModelFileError(f"{spec_path} lacks {missing}; is it a semclust model.json?")
    model = clustering_model_from_spec(spec, spec["num_heads"])
    load_weights(model, spec_path.with_suffix(".safetensors"))
    if spec["num_heads"] > 1:
        model.cluster_heads.keep(int(spec.get("head_index", 0)))
    # With one head saved, head_index only records which of SCAN's heads it was.
    return model.eval(), spec


def _model_json(source: Path) -> Path:
    """``model.json`` of a stage folder, or of the last completed clustering stage of a run."""
    if source.is_file():
        if source.suffix != ".json":
            raise ModelFileError(
                f"{source} is not a semclust model: give an exported .safetensors, a run "
                "directory, a stage folder, its model.json or a .ckpt"
            )
        return source
    if (source / MODEL_SPEC_NAME).is_file():  # a stage folder
        return source / MODEL_SPEC_NAME
    run = RunDirectory(source, create=False)
    if not run.manifest_path.is_file():
        raise FileNotFoundError(
            f"{source} is neither a run directory (no manifest.json) nor a stage folder "
            "(no model.json)"
        )
    stage = run.final_model_stage()
    if stage is None:
        raise FileNotFoundError(
            f"run {source} has no completed scan or selflabel stage to export "
            f"(expected {run.path(model_spec('scan'))})"
        )
    return run.path(model_spec(stage))


# reading --------------------------------------------------------------------------------


def load_export(path: str | Path, device: torch.device | str = "cpu") -> ExportedModel:
    """Load an exported model; a missing, foreign, tampered or inconsistent file is refused
    with a :class:`ModelFileError` (or FileNotFoundError) that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            state = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path} is not a readable safetensors file: {error}") from error
    if metadata.get("format") != EXPORT_FORMAT:
        raise ModelFileError(
            f"{path} is not a semclust export (format {metadata.get('format')!r}, "
            f"expected {EXPORT_FORMAT!r}); create one with `semclust export RUN_DIR OUT`"
        )
    try:
        spec = json.loads(metadata["semclust"])
    except (KeyError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: its semclust metadata is missing or not JSON") from error
    missing = [key for key in (*_REQUIRED, "weights_sha256") if key not in spec]
    missing += [key for key in PREPROCESSING_KEYS if key not in spec.get("preprocessing", {})]
    if missing:
        raise ModelFileError(f"{path}: its metadata lacks {missing}")
    if weights_digest(state) != spec["weights_sha256"]:
        raise ModelFileError(
            f"{path}: the weights do not match the checksum in its metadata; the file was "
            "modified or damaged after export"
        )
    try:
        model = clustering_model_from_spec(spec)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(
            f"{path}: the weights do not fit the model its metadata describes: {error}"
        ) from error
    names = list(spec.get("cluster_names") or [])
    if names and len(names) != spec["num_clusters"]:
        raise ModelFileError(
            f"{path}: {len(names)} cluster names for {spec['num_clusters']} clusters"
        )
    return ExportedModel(model.eval().to(device), spec, names)


def load_any_model(source: str | Path, device: torch.device | str = "cpu") -> ExportedModel:
    """An export, or a run directory / stage folder / ``.ckpt`` turned into one in memory."""
    source = Path(source)
    if source.is_file() and source.suffix == ".safetensors":
        return load_export(source, device)
    model, spec = load_trained_model(source)
    spec = {**spec, "preprocessing": {k: spec["preprocessing"][k] for k in PREPROCESSING_KEYS}}
    return ExportedModel(model.eval().to(device), spec, [])


def read_cluster_names(path: str | Path) -> list[str]:
    """Cluster names from a text file (one per line) or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cluster names file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        names = json.loads(text)
        if not isinstance(names, list):
            raise ValueError(f"{path} must hold a JSON list of names")
        return [str(name) for name in names]
    return [line.strip() for line in text.splitlines() if line.strip()]

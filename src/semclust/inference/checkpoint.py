"""Rebuild the model of a SCAN or self-label Lightning checkpoint without Lightning.

The file is read with ``torch.load(..., weights_only=True)``: nothing in it is executed.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from semclust.inference.spec import clustering_model_from_spec
from semclust.models import ClusteringModel
from semclust.rundir import BACKBONE_WEIGHTS, RunDirectory, load_weights

_REQUIRED_METADATA = ("stage", "backbone", "num_clusters", "num_heads", "data")


def load_clustering_checkpoint(path: str | Path) -> tuple[ClusteringModel, dict[str, Any]]:
    """The model of a SCAN or self-label ``.ckpt``, reduced to the head it chose, and the
    checkpoint's ``semclust`` metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    metadata = checkpoint.get("semclust") if isinstance(checkpoint, Mapping) else None
    if not metadata or any(key not in metadata for key in _REQUIRED_METADATA):
        raise ValueError(
            f"{path} is not a semclust SCAN or self-label checkpoint "
            f"(it lacks the 'semclust' metadata {list(_REQUIRED_METADATA)})"
        )
    model = clustering_model_from_spec(metadata, metadata["num_heads"])
    # A self-label checkpoint with EMA evaluates the averaged weights, as the pipeline does.
    prefix = "ema.module." if metadata.get("ema") else "model."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    loaded: torch.nn.Module = model
    if metadata.get("cached_features"):
        # Heads trained on cached features: the frozen backbone is the run's pretext one.
        backbone_path = RunDirectory.of_checkpoint(path).path(BACKBONE_WEIGHTS)
        if not backbone_path.is_file():
            raise ValueError(
                f"{path} holds cluster heads trained on cached features, but their frozen "
                f"backbone {backbone_path} is missing; use the stage's model.safetensors"
            )
        load_weights(model.backbone, backbone_path)
        loaded = model.cluster_heads  # the checkpoint's state covers the heads only
        state = {key: value for key, value in state.items() if key.startswith("cluster_heads.")}
        state = {key[len("cluster_heads.") :]: value for key, value in state.items()}
    try:
        loaded.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"weights in {path} do not fit the model its metadata describes: {error}"
        ) from error
    model.cluster_heads.keep(int(metadata.get("best_head", 0)))
    return model, metadata

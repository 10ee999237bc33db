"""Applying trained models: the exported model file, prediction on folders, retrieval.

Nothing here imports Lightning, Hydra or the training stages, so inference needs only the
model file (``semclust export``) and the inference dependencies.
"""

from semclust.inference.export import (
    ExportedModel,
    ModelFileError,
    export_model,
    load_any_model,
    load_export,
    load_trained_model,
    read_cluster_names,
    save_export,
)
from semclust.inference.predict import PredictOptions, predict_folder, resolve_device
from semclust.inference.retrieval import nearest_images

__all__ = [
    "ExportedModel",
    "ModelFileError",
    "PredictOptions",
    "export_model",
    "load_any_model",
    "load_export",
    "load_trained_model",
    "nearest_images",
    "predict_folder",
    "read_cluster_names",
    "resolve_device",
    "save_export",
]

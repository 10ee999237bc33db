"""Applying trained models: the exported model file, prediction on folders, retrieval.

Nothing here imports Lightning, Hydra or the training stages, so inference needs only the
model file (``semclust export``) and the inference dependencies. The names below load their
module on first use: importing a light submodule (``semclust.inference.options``, ``spec``)
does not load torch.
"""

from semclust.lazy_exports import lazy_exports

#: Public name -> the submodule that defines it.
_SOURCES = {
    "ExportedModel": "export",
    "ModelFileError": "export",
    "export_model": "export",
    "load_any_model": "export",
    "load_export": "export",
    "load_trained_model": "export",
    "read_cluster_names": "export",
    "save_export": "export",
    "PredictOptions": "options",
    "predict_folder": "predict",
    "resolve_device": "predict",
    "nearest_images": "retrieval",
}

__all__ = sorted(_SOURCES)

__getattr__ = lazy_exports(__name__, _SOURCES)

"""Model specs <-> models: the plain-JSON description saved with every backbone and model.

A spec names the backbone (the keyword arguments of :func:`build_backbone`), the number of
clusters and heads, and how images are preprocessed; from it and the safetensors weights a
model is rebuilt without the training config.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from semclust.models import ClusteringModel, build_backbone
from semclust.models.backbones import DOWNLOAD_ARGUMENTS

#: What inference needs to see images as training did.
PREPROCESSING_KEYS = ("recipe", "image_size", "channels", "mean", "std")


def to_plain(value: Any) -> Any:
    """A (resolved) config as plain dicts and lists, safe to store in JSON and checkpoints.

    Works on OmegaConf containers (which are mappings and sequences) without importing it.
    """
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [to_plain(item) for item in value]
    return value


def backbone_spec(backbone_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`build_backbone`, without Hydra's ``_target_``.

    Arguments that download pretrained weights are switched off: the spec travels with
    the trained weights, so rebuilding it must not fetch (or need) anything.
    """
    spec = {k: v for k, v in to_plain(backbone_cfg).items() if not k.startswith("_")}
    return {k: DOWNLOAD_ARGUMENTS.get(k, v) for k, v in spec.items()}


def backbone_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    return build_backbone(**spec)


def preprocessing_spec(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessing part of a model spec, from a data config."""
    data = to_plain(data_cfg)
    return {
        "recipe": data["augment"]["recipe"],
        **{key: data[key] for key in PREPROCESSING_KEYS if key != "recipe"},
    }


def clustering_model_from_spec(spec: Mapping[str, Any], num_heads: int = 1) -> ClusteringModel:
    """An untrained :class:`ClusteringModel` of the spec's backbone and cluster count."""
    return ClusteringModel(backbone_from_spec(spec["backbone"]), spec["num_clusters"], num_heads)

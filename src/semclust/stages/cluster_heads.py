"""What SCAN and self-labeling share: heads trained on cached features, the saved model and
the metadata every checkpoint carries.

Cluster heads on a frozen backbone can learn from the mine stage's cached features directly:
the backbone's outputs would be the same every epoch.
"""

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from semclust.data import FeatureDataset, MultiViewDataset
from semclust.inference.spec import preprocessing_spec, to_plain
from semclust.models import ClusteringModel
from semclust.rundir import RunDirectory, mined, model_spec, model_weights, save_weights
from semclust.stages.common import loader


class CachedFeatures(torch.nn.Module):
    """Stands in for a frozen backbone whose outputs were cached: passes features through."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def uses_cached_features(stage_cfg: DictConfig) -> bool:
    return not stage_cfg.update_backbone and stage_cfg.cached_features


def cached_split(run: RunDirectory, split_key: str, needed_by: str) -> FeatureDataset:
    """The mine stage's features and targets of a split, as a dataset."""
    features = np.load(run.require(mined(split_key, "features"), needed_by))
    return FeatureDataset(features, np.load(run.require(mined(split_key, "targets"), needed_by)))


def feature_loader(cfg: DictConfig, dataset: FeatureDataset) -> Any:
    """Every cached feature vector once, in order, as an evaluation batch's ``image``."""
    views = MultiViewDataset(dataset, {"image": torch.nn.Identity()})
    return loader(cfg, views, shuffle=False, batch_size=cfg.data.eval_batch_size)


def load_neighbors(
    run: RunDirectory, split_key: str, needed_by: str, dataset_size: int, num_neighbors: int
) -> np.ndarray:
    """The first ``num_neighbors`` mined neighbours of every image of a split."""
    path = run.require(mined(split_key, "neighbors"), needed_by)
    neighbors = np.load(path)
    if len(neighbors) != dataset_size:
        raise ValueError(
            f"{path} holds neighbours of {len(neighbors)} images but the dataset "
            f"now has {dataset_size}; rerun the mine stage"
        )
    if num_neighbors > neighbors.shape[1]:
        raise ValueError(
            f"{needed_by}.num_neighbors={num_neighbors} but only "
            f"{neighbors.shape[1]} were mined; raise mine.num_neighbors and rerun "
            "the mine stage"
        )
    return neighbors[:, :num_neighbors]


def save_clustering_model(
    model: ClusteringModel,
    run: RunDirectory,
    stage: str,
    backbone: dict,
    cfg: DictConfig,
    **extra: Any,
) -> dict[str, Any]:
    """Weights (safetensors) and the JSON that rebuilds and preprocesses for them."""
    spec = {
        "backbone": backbone,
        "num_clusters": cfg.data.num_clusters,
        "num_heads": len(model.cluster_heads.heads),
        "preprocessing": preprocessing_spec(cfg.data),
        "stage": stage,
        **extra,
    }
    weights, spec_path = run.path(model_weights(stage)), run.path(model_spec(stage))
    save_weights(model, weights, spec, spec_path)
    return {"weights": weights, "spec": spec_path}


def checkpoint_metadata(
    cfg: DictConfig, stage: str, backbone: dict, num_heads: int, cached_features: bool
) -> dict:
    """Plain values saved in every checkpoint so evaluate.py can rebuild the model."""
    return {
        "stage": stage,
        "cached_features": cached_features,
        "backbone": backbone,
        "num_clusters": cfg.data.num_clusters,
        "num_heads": num_heads,
        "data": to_plain(cfg.data),
    }

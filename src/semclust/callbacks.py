"""The evaluation callback: clustering metrics after every validation epoch, logged."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from sklearn.cluster import KMeans

from semclust.metrics import cluster_cohesion, clustering_scores, label_free_scores


@dataclass
class ValidationResult:
    """What a stage's module exposes after a validation epoch, one row per val sample."""

    features: torch.Tensor
    targets: torch.Tensor
    #: Cluster assignments; ``None`` for the pretext stage, where k-means makes them.
    predictions: torch.Tensor | None = None


def kmeans_predictions(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """k-means (k-means++ initialisation) on L2-normalised features."""
    normalized = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return KMeans(num_clusters, n_init=10, random_state=seed).fit_predict(normalized)


def evaluate_clusters(
    features: np.ndarray, predictions: np.ndarray, targets: np.ndarray | None
) -> dict[str, Any]:
    """ACC/NMI/ARI where labels exist; always the label-free scores and, per cluster, its
    size and cohesion (plus the mean cohesion)."""
    labeled = targets is not None and (targets >= 0).all()
    scores: dict[str, Any] = clustering_scores(predictions, targets if labeled else None)
    scores.update(label_free_scores(features, predictions))
    cohesion = cluster_cohesion(features, predictions)
    scores["mean_cohesion"] = float(np.mean([c["cohesion"] for c in cohesion.values()]))
    scores["cohesion"] = {str(k): v for k, v in cohesion.items()}
    return scores


class ClusterEvaluation(Callback):
    """Scores the module's :class:`ValidationResult` and logs the scalars to the logger.

    The module must offer ``validation_result() -> ValidationResult | None``. The latest
    scores stay on ``self.latest`` for the stage to put in the manifest. Feature-only
    results are clustered by k-means into ``num_clusters``; with ``None`` (K not chosen yet)
    they are not scored.
    """

    def __init__(self, num_clusters: int | None, seed: int = 0) -> None:
        self.num_clusters = num_clusters
        self.seed = seed
        self.latest: dict[str, Any] = {}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        result = pl_module.validation_result()
        if result is None:
            return
        features = result.features.float().numpy()
        if result.predictions is None:
            if self.num_clusters is None:
                return  # data.num_clusters=auto: K is chosen after the pretext stage
            predictions = kmeans_predictions(features, self.num_clusters, self.seed)
        else:
            predictions = result.predictions.numpy()
        self.latest = evaluate_clusters(features, predictions, result.targets.numpy())
        scalars = {
            f"val/{key}": float(value)
            for key, value in self.latest.items()
            if isinstance(value, int | float)
        }
        # Every process holds the same gathered result, so no further reduction is needed.
        pl_module.log_dict(scalars, sync_dist=False, rank_zero_only=True)

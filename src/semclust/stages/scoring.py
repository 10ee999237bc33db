"""Clustering metrics of a stage's module after every validation epoch, logged."""

import json
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from semclust.clustering.scores import evaluate_clusters, kmeans_predictions


class ClusterEvaluation(Callback):
    """Scores the module's :class:`~semclust.stages.base.ValidationResult` and logs the
    scalars to the logger.

    The module must offer ``validation_result() -> ValidationResult | None``. The latest
    scores stay on ``self.latest`` for the stage to put in the manifest. Feature-only
    results are clustered by k-means into ``num_clusters``; with ``None`` (K not chosen yet)
    they are not scored.
    """

    def __init__(self, num_clusters: int | None, seed: int = 0) -> None:
        self.num_clusters = num_clusters
        self.seed = seed
        self.latest: dict[str, Any] = {}

    # Kept in checkpoints: a stage resumed after its last validation still reports it.
    def state_dict(self) -> dict[str, Any]:
        return {"latest": json.dumps(self.latest, default=_plain)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.latest = json.loads(state_dict.get("latest", "{}"))

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


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def final_scores(cfg: DictConfig, module: pl.LightningModule, val_loader: Any) -> dict:
    """Score ``module`` once more on the validation set through the evaluation callback."""
    evaluation = ClusterEvaluation(cfg.data.num_clusters, cfg.seed)
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[evaluation]
    )
    trainer.validate(module, val_loader, verbose=False)
    return evaluation.latest

"""Stage 4, self-labeling: fine-tune on the model's own confident predictions."""

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from semclust.callbacks import ValidationResult
from semclust.losses import confidence_cross_entropy
from semclust.models import ClusteringModel
from semclust.stages.validation import CollectsValidation


class SelfLabelModule(CollectsValidation):
    """Cross-entropy on strong views against confident pseudo-labels of weak views.

    ``model`` must have a single head (SCAN's chosen one). With ``ema_decay`` an exponential
    moving average of the weights is kept, validated and exported instead of the raw weights.
    With ``update_backbone=False`` only the head learns; the backbone stays in eval mode.
    """

    def __init__(
        self,
        model: ClusteringModel,
        threshold: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        class_balancing: bool = True,
        ema_decay: float | None = None,
        metadata: dict[str, Any] | None = None,
        update_backbone: bool = True,
    ) -> None:
        super().__init__()
        # Plain values saved in every checkpoint so evaluate.py can rebuild the model.
        self.metadata = dict(metadata or {})
        if len(model.cluster_heads.heads) != 1:
            raise ValueError("self-labeling refines one head; keep SCAN's best head first")
        self.model = model
        self.threshold = threshold
        self.class_balancing = class_balancing
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.update_backbone = update_backbone
        if not update_backbone:
            self.model.backbone.requires_grad_(False)
        self.ema = None
        if ema_decay:
            self.ema = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )

    @property
    def final_model(self) -> ClusteringModel:
        """The weights to evaluate and export: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            weak_logits = self.model(batch["weak"])[0]
        strong_logits = self.model(batch["strong"])[0]
        loss, confident = confidence_cross_entropy(
            weak_logits, strong_logits, self.threshold, self.class_balancing
        )
        self.log_dict(
            {"train/selflabel_loss": loss, "train/confident_fraction": confident.float().mean()},
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["weak"].shape[0],
        )
        return loss

    def on_train_epoch_start(self) -> None:
        if not self.update_backbone:
            self.model.backbone.eval()  # keep the frozen batch-norm statistics

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        model = self.final_model
        features = model.backbone(batch["image"])
        logits = model.cluster_heads(features)[0]
        self.collect(batch["index"], features=features, logits=logits, targets=batch["target"])

    def on_validation_epoch_end(self) -> None:
        gathered = self.gathered()
        if gathered is None or self.trainer.sanity_checking:
            return
        max_prob = F.softmax(gathered["logits"].float(), dim=1).max(dim=1).values
        self.log(
            "val/confident_fraction", (max_prob > self.threshold).float().mean(), sync_dist=False
        )

    def validation_result(self) -> ValidationResult | None:
        gathered = self.gathered()
        if gathered is None:
            return None
        return ValidationResult(
            features=gathered["features"],
            targets=gathered["targets"],
            predictions=gathered["logits"].argmax(dim=1),
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["semclust"] = {**self.metadata, "best_head": 0, "ema": self.ema is not None}

    def configure_optimizers(self) -> Any:
        model = self.model if self.update_backbone else self.model.cluster_heads
        return self.optimizers_for(model.parameters())

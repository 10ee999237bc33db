"""Lightning's ``sync_batchnorm`` for CPU processes too (``trainer.sync_batchnorm``).

torch's SyncBatchNorm stays on GPUs (fused kernels); CPU processes get
:class:`~semclust.models.sync_batchnorm.CpuSyncBatchNorm`, which DDP accepts on CPU modules.
"""

import logging

import torch
from pytorch_lightning.plugins import TorchSyncBatchNorm
from torch import nn

from semclust.losses.distributed import process_count
from semclust.models.sync_batchnorm import convert_batchnorm, revert_batchnorm

log = logging.getLogger(__name__)


class SyncBatchNormPlugin(TorchSyncBatchNorm):
    """Lightning's ``sync_batchnorm`` for CPU processes too: ``Trainer(plugins=[...])``.

    Lightning applies it when fitting under DDP and reverts it afterwards, so the layers
    saved and used after training are the model's own.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        if _trains_on(model) == "cpu":
            log.info("batch-norm statistics over all %d processes (CPU)", process_count())
            return convert_batchnorm(model)
        return super().apply(model)  # torch's fused kernels

    def revert(self, model: nn.Module) -> nn.Module:
        return revert_batchnorm(super().revert(model))


def _trains_on(model: nn.Module) -> str:
    """The device type the strategy will put ``model`` on (it is moved after the plugin)."""
    trainer = getattr(model, "_trainer", None)
    if trainer is not None:
        return trainer.strategy.root_device.type
    return next(model.parameters(), torch.empty(0)).device.type

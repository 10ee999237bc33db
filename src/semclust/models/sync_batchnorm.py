"""Batch-norm statistics over every DDP process, on GPUs and on CPU processes alike.

``torch.nn.SyncBatchNorm`` only runs on accelerators (DDP refuses it on CPU modules), so
Lightning's ``sync_batchnorm=True`` fails on CPU processes (gloo). Without it each process
normalises its share of the batch with its own statistics, and two processes no longer
train like one. :class:`CpuSyncBatchNorm` computes the same global statistics with two
differentiable all-reduces; :mod:`semclust.stages.sync_batchnorm` puts it in place.
"""

from typing import Any

import torch
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm

from semclust.losses.distributed import process_count


class CpuSyncBatchNorm(_BatchNorm):
    """Batch norm of any dimension whose training statistics span every process."""

    def __init__(self, *args: Any, process_group: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = process_group
        #: The layer class it replaced, restored by :func:`revert_batchnorm`.
        self.replaced: type[_BatchNorm] = nn.BatchNorm2d

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and process_count() > 1):
            return super().forward(input)  # evaluation and single processes: plain batch norm
        self._check_input_dim(input)
        mean, var, count = self._global_moments(input)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        shape = (1, -1) + (1,) * (input.dim() - 2)
        output = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output

    def _global_moments(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Mean and biased variance per channel over all processes' samples (two passes:
        E[x²] - E[x]² loses the variance to rounding when the mean is large)."""
        dims = [0, *range(2, input.dim())]
        channels = input.shape[1]
        local_count = input.new_tensor([input.numel() // channels])
        totals = all_reduce(torch.cat([input.sum(dims), local_count]), group=self._group())
        count = totals[-1]
        mean = totals[:-1] / count
        shape = (1, -1) + (1,) * (input.dim() - 2)
        squares = ((input - mean.view(shape)) ** 2).sum(dims)
        var = all_reduce(squares, group=self._group()) / count
        return mean, var, int(count.item())

    def _group(self) -> Any:
        return self.process_group or torch.distributed.group.WORLD

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        # momentum None: a cumulative moving average, as nn.BatchNorm does.
        cumulative = 1.0 / float(self.num_batches_tracked)
        factor = cumulative if self.momentum is None else self.momentum
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased, factor)


def convert_batchnorm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """``module`` with every batch-norm layer replaced by :class:`CpuSyncBatchNorm`.

    The parameters and running statistics are the same tensors, not copies.
    """
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        converted = CpuSyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            process_group=process_group,
        )
        converted.replaced = type(module)
        _take_state(converted, module)
    for name, child in module.named_children():
        converted.add_module(name, convert_batchnorm(child, process_group))
    return converted


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_batchnorm`: every layer back to the class it replaced."""
    converted = module
    if isinstance(module, CpuSyncBatchNorm):
        if module.replaced is nn.SyncBatchNorm:
            converted = nn.SyncBatchNorm(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                module.process_group,
            )
        else:
            converted = module.replaced(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
        _take_state(converted, module)
    for name, child in module.named_children():
        converted.add_module(name, revert_batchnorm(child))
    return converted


def _take_state(target: _BatchNorm, source: _BatchNorm) -> None:
    if source.affine:
        target.weight, target.bias = source.weight, source.bias
    target.running_mean = source.running_mean
    target.running_var = source.running_var
    target.num_batches_tracked = source.num_batches_tracked
    target.training = source.training

"""Sums over every DDP process, so a loss over the global batch is the one-process loss.

Terms that are not means over samples (SCAN's entropy of the batch's mean prediction, the
class weights of self-labeling) change with the batch they see: computed on each process's
share they would differ from one process's run with the same global batch. Summing their
ingredients over processes, with gradients flowing back to every process's own samples,
keeps DDP's averaged gradient equal to that of the whole batch.
"""

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_reduce


def process_count() -> int:
    """The number of DDP processes; 1 outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over every process, differentiable; ``tensor`` itself alone.

    The backward pass sums the gradients of all processes too, so each process's part gets
    the gradient of every process's loss with respect to it.
    """
    if process_count() == 1:
        return tensor
    return all_reduce(tensor)

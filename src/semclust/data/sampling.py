"""Training order and augmentation randomness that a resumed run can reproduce exactly.

A training loader draws its order from ``(seed, epoch)`` alone and hands every sample a
seed of its own, ``(seed, epoch, index)``, under which its views are drawn. So the images of
batch ``b`` of epoch ``e`` and their augmentations are the same whether the run went through
without a stop, was resumed from a checkpoint in the middle of the epoch, or used another
number of loader workers: no random state lives in worker processes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch.utils.data import DistributedSampler

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A well-spread 63-bit seed from several integers (SplitMix64 steps)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = ((state ^ (value & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK64
        state ^= state >> 31
    return state >> 1


class SampleKey(NamedTuple):
    """What a training sampler yields: the sample's index and the seed of its views."""

    index: int
    seed: int


@contextmanager
def seeded_views(seed: int | None) -> Iterator[None]:
    """Draw the torch CPU random numbers inside from ``seed``; the caller's state is kept."""
    if seed is None:
        yield
        return
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


def split_key(key: int | SampleKey) -> tuple[int, int | None]:
    """``(index, view seed)`` of a sampler's key; plain indices (evaluation) have no seed."""
    if isinstance(key, SampleKey):
        return key.index, key.seed
    return int(key), None


class SeededShuffleSampler(DistributedSampler):
    """A new random order every epoch, from ``(seed, epoch)`` alone, resumable mid-epoch.

    ``set_epoch`` picks the epoch (Lightning calls it); ``resume_at(epoch, position)`` makes
    the next iteration start at ``position`` of that epoch's order, as if the samples before
    it had just been drawn. Under DDP each of the W processes takes every W-th sample of the
    one order (the last ``len % W`` left out, like ``drop_last``), so the processes together
    see what one process would; a ``DistributedSampler`` so that Lightning keeps it as is.
    """

    def __init__(self, size: int, seed: int) -> None:
        # No super().__init__: it needs the process group, which starts later, at fit.
        self.size, self.seed = size, seed
        self.epoch, self._start = 0, 0

    @staticmethod
    def _replicas() -> tuple[int, int]:
        """(this process's rank, the number of processes)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._start = epoch, 0

    def resume_at(self, epoch: int, position: int) -> None:
        """Start the next iteration at ``position`` samples into ``epoch`` (all processes)."""
        self.epoch, self._start = epoch, position

    def __len__(self) -> int:
        return self.size // self._replicas()[1]

    def __iter__(self) -> Iterator[SampleKey]:
        # Built at once (not lazily), so the epoch and start in force at iter() time count.
        rank, replicas = self._replicas()
        usable = self.size // replicas * replicas
        order = torch.randperm(
            self.size, generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        )[self._start + rank : usable : replicas].tolist()
        epoch, self._start = self.epoch, 0
        return iter([SampleKey(index, mix_seed(self.seed, epoch, index)) for index in order])


def training_sampler(loader: Any) -> SeededShuffleSampler | None:
    """The :class:`SeededShuffleSampler` a loader draws from, if any."""
    sampler = getattr(loader, "sampler", None)
    return sampler if isinstance(sampler, SeededShuffleSampler) else None

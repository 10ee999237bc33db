"""Random numbers for a batch whose every row comes from its own sample's seed.

Views made a batch at a time draw their parameters as ``(B, ...)`` tensors. Drawn from one
generator seeded per batch, a sample's parameters would depend on which other samples share
its batch: under DDP each process holds a share of the global batch, so two processes would
augment every image differently from one process. :class:`SampleStreams` makes row ``i`` of
every draw a function of sample ``i``'s seed and of how many numbers that sample has drawn so
far (a counter-based generator, SplitMix64 of seed and counter), so each sample gets the
same views in any batch, on any number of processes.
"""

from collections.abc import Sequence

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch stores."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 patterns (torch's ``>>`` copies the sign bit)."""
    return (values >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(values: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 tensors (multiplication wraps modulo 2**64)."""
    z = values
    z = (z ^ _shift_right(z, 30)) * _signed(_MIX1)
    z = (z ^ _shift_right(z, 27)) * _signed(_MIX2)
    return z ^ _shift_right(z, 31)


class SampleStreams:
    """One random stream per sample; draws are ``(B, ...)`` with row ``i`` from stream ``i``.

    Every row advances by the same count per draw, so two batches that hold the same sample
    give it the same numbers as long as they make the same sequence of draws.
    """

    def __init__(self, seeds: Sequence[int] | torch.Tensor) -> None:
        if not isinstance(seeds, torch.Tensor):  # Python integers may use all 64 bits
            seeds = torch.tensor([_signed(int(seed)) for seed in seeds], dtype=torch.int64)
        # Spread the seeds once, so nearby seeds start far apart.
        self._keys = splitmix64(seeds + _signed(_GOLDEN))
        self._drawn = 0

    def __len__(self) -> int:
        return len(self._keys)

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform numbers in ``[0, 1)`` of ``shape`` (its first axis is the batch), on CPU.

        float64 draws carry 53 random bits, float32 ones 24, so every value is exact.
        """
        shape = tuple(shape)
        if not shape or shape[0] != len(self._keys):
            raise ValueError(
                f"draws for {len(self._keys)} samples must have shape (B, ...), got {shape}"
            )
        per_sample = 1
        for size in shape[1:]:
            per_sample *= size
        # SplitMix64 steps its state by the golden gamma before each output (never from 0).
        counters = torch.arange(self._drawn + 1, self._drawn + per_sample + 1, dtype=torch.int64)
        self._drawn += per_sample
        bits = splitmix64(self._keys[:, None] + counters[None, :] * _signed(_GOLDEN))
        if dtype == torch.float64:
            values = _shift_right(bits, 11).double() * 2.0**-53
        else:
            values = (_shift_right(bits, 40).double() * 2.0**-24).to(dtype)
        return values.reshape(shape)

    def randint(self, high: int, shape: Sequence[int]) -> torch.Tensor:
        """Integers uniform on ``0..high-1`` (int64), like ``torch.randint(high, shape)``."""
        return (self.rand(shape, torch.float64) * high).floor().long()


def draw_uniform(
    generator: torch.Generator | SampleStreams,
    shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``torch.rand(shape)`` from a torch generator, or per sample from streams."""
    if isinstance(generator, SampleStreams):
        return generator.rand(shape, dtype)
    return torch.rand(tuple(shape), generator=generator, dtype=dtype)


def draw_integers(
    generator: torch.Generator | SampleStreams, high: int, shape: Sequence[int]
) -> torch.Tensor:
    """``torch.randint(high, shape)`` from a torch generator, or per sample from streams."""
    if isinstance(generator, SampleStreams):
        return generator.randint(high, shape)
    return torch.randint(high, tuple(shape), generator=generator)


#: Where batched views draw their parameters from.
Draws = torch.Generator | SampleStreams

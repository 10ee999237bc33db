"""Host-to-device copies that never make the host wait for the device.

A plain ``tensor.to("cuda")`` (or ``torch.tensor(..., device="cuda")``) from ordinary CPU
memory copies and then synchronises the stream: the host stalls until the GPU has run all the
work queued before the copy. Views made on the GPU move a score of small drawn parameters per
batch, so each batch would drain the GPU's queue that often. Staged in pinned memory, the copy
is only queued, and PyTorch's caching host allocator keeps the pinned source until it has run.
"""

from collections.abc import Sequence

import torch


def on_device(
    values: torch.Tensor | Sequence[float], like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``values`` (drawn parameters, constants) on ``like``'s device, in ``dtype`` if given
    (converted where they are), a copy from the CPU queued rather than waited for."""
    values = torch.as_tensor(values, dtype=dtype)
    if values.device.type == "cpu" and like.device.type == "cuda":
        values = values.pin_memory()
    return values.to(like.device, non_blocking=True)

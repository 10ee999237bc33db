"""Host-to-device copies that never make the host wait for the device, and a way to check.

A plain ``tensor.to("cuda")`` (or ``torch.tensor(..., device="cuda")``) from ordinary CPU
memory copies and then synchronises the stream: the host stalls until the GPU has run all the
work queued before the copy. Views made on the GPU move a score of small drawn parameters per
batch, so each batch would drain the GPU's queue that often. Staged in pinned memory, the copy
is only queued, and PyTorch's caching host allocator keeps the pinned source until it has run.

:func:`recorded_device_work` counts, for code run on tensors of another device (``meta`` on a
machine without a GPU), the ops it runs there and the copies onto it that would wait.
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def on_device(
    values: torch.Tensor | Sequence[float], like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``values`` (drawn parameters, constants) on ``like``'s device, in ``dtype`` if given
    (converted where they are), a copy from the CPU queued rather than waited for."""
    values = torch.as_tensor(values, dtype=dtype)
    if values.device.type == "cpu" and like.device.type == "cuda":
        values = values.pin_memory()
    return values.to(like.device, non_blocking=True)


@dataclass
class DeviceWork:
    """Ops that ran on a device other than the CPU (each about one kernel launch on a GPU),
    and the host-to-device copies that would have waited for it, by op name."""

    ops: int = 0
    waits: list[str] = field(default_factory=list)


def _on(tensors, cpu: bool) -> bool:
    """Whether any tensor in ``tensors`` is on the CPU (``cpu``) or elsewhere (not ``cpu``)."""
    leaves = tree_leaves(tensors)
    return any(isinstance(t, torch.Tensor) and (t.device.type == "cpu") == cpu for t in leaves)


class _Ops(TorchDispatchMode):
    def __init__(self, work: DeviceWork) -> None:
        super().__init__()
        self.work = work

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _on(out, cpu=False):
            self.work.ops += 1
            if _on((args, kwargs), cpu=True) and not kwargs.get("non_blocking", False):
                self.work.waits.append(str(func))
        return out


class _Factories(TorchFunctionMode):
    """``torch.tensor(data, device=...)``: built on the host, copied over and waited for."""

    def __init__(self, work: DeviceWork) -> None:
        super().__init__()
        self.work = work

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device = kwargs.get("device")
        from_data = func in (torch.tensor, torch.as_tensor)
        if from_data and device is not None and torch.device(device).type != "cpu":
            self.work.waits.append(func.__name__)
        return func(*args, **kwargs)


@contextlib.contextmanager
def recorded_device_work() -> Iterator[DeviceWork]:
    """Record :class:`DeviceWork` while the block runs (slowly: every op passes through here)."""
    work = DeviceWork()
    with _Factories(work), _Ops(work):
        yield work

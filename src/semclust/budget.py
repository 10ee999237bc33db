"""A wall-clock budget for one invocation: stop cleanly before it runs out, resume later.

``stop_after_minutes=M`` lets a run fit a scheduler's short job: when the budget is spent, the
training stage in progress writes its ``last.ckpt`` at the current batch and the run ends
with :class:`OutOfTime`; the same command started again continues from there, exactly as
after a kill (``semclust.stages.checkpointing``).
"""

import time

#: Exit status of a run that stopped on its budget and wants to be started again
#: (EX_TEMPFAIL: "try again later").
EXIT_OUT_OF_TIME = 75

_deadline: float | None = None


class OutOfTime(Exception):
    """The invocation's time budget is spent; the run resumes when started again."""


def start(minutes: float | None) -> None:
    """Begin this invocation's budget (``None``: no limit)."""
    global _deadline
    _deadline = None if minutes is None else time.monotonic() + 60.0 * minutes


def spent() -> bool:
    """Whether the budget (if any) has run out."""
    return _deadline is not None and time.monotonic() >= _deadline


def limited() -> bool:
    return _deadline is not None


def spent_everywhere() -> bool:
    """:func:`spent` as rank zero sees it, on every process, so that all stop together."""
    if _deadline is None:
        return False
    import torch  # loaded by the training stage that asks; the budget itself needs none

    decision = [spent()]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(decision, src=0)
    return bool(decision[0])

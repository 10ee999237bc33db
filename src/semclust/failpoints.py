"""Named places where a test may kill the process or make it fail, to prove that runs resume
exactly and that a failing process stops the whole run.

``SEMCLUST_KILL_AT=<point>[#<n>][@<rank>]`` sends SIGKILL to this process the ``n``-th time
(default: first) it passes ``failpoint(<point>)``; ``SEMCLUST_RAISE_AT`` (same form) raises
``RuntimeError`` there instead. ``@<rank>`` limits it to one DDP process (its local rank).
Unset, a failpoint costs two dictionary lookups.

Points: ``<stage>.batch`` (after a training batch), ``<stage>.epoch`` (after an epoch's
checkpoint), ``checkpoint.write`` (a checkpoint written but not yet in place),
``mine.batch`` (some feature rows written to the temporary file), ``mine.embedded`` (a
split's features complete and in place, its cache key not yet written), ``stage.finished``
(a stage's outputs written, the manifest not yet updated).
"""

import os
import signal
from collections import Counter

KILL_VARIABLE = "SEMCLUST_KILL_AT"
RAISE_VARIABLE = "SEMCLUST_RAISE_AT"
_passes: Counter = Counter()


class InjectedFailure(RuntimeError):
    """The failure a test asked for with ``SEMCLUST_RAISE_AT``."""


def failpoint(point: str) -> None:
    for variable in (KILL_VARIABLE, RAISE_VARIABLE):
        target = os.environ.get(variable)
        if target and _fires(target, point, variable):
            if variable == KILL_VARIABLE:
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedFailure(f"failure injected at {point} ({variable}={target})")


def _fires(target: str, point: str, variable: str) -> bool:
    target, _, rank = target.partition("@")
    name, _, count = target.partition("#")
    if name != point or (rank and int(rank) != int(os.environ.get("LOCAL_RANK", 0))):
        return False
    _passes[variable, point] += 1
    return _passes[variable, point] == int(count or 1)

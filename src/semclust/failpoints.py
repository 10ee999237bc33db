"""Named places where a test may kill the process, to prove that runs resume exactly.

``SEMCLUST_KILL_AT=<point>[#<n>]`` sends SIGKILL to this process the ``n``-th time (default:
first) it passes ``failpoint(<point>)``. Unset, a failpoint costs one dictionary lookup.
Points: ``<stage>.batch`` (after a training batch), ``<stage>.epoch`` (after an epoch's
checkpoint), ``checkpoint.write`` (a checkpoint written but not yet in place),
``mine.embedded`` (features computed, nothing saved), ``stage.finished`` (a stage's outputs
written, the manifest not yet updated).
"""

import os
import signal
from collections import Counter

ENVIRONMENT_VARIABLE = "SEMCLUST_KILL_AT"
_passes: Counter = Counter()


def failpoint(point: str) -> None:
    target = os.environ.get(ENVIRONMENT_VARIABLE)
    if not target:
        return
    name, _, count = target.partition("#")
    if name != point:
        return
    _passes[point] += 1
    if _passes[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)

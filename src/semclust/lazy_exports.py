"""A package's public names, each loaded from its submodule on first use (PEP 562).

``semclust.inference`` and ``semclust.grouping`` name their functions at the top, but a
caller that wants only a light submodule (options, settings) should not pay for torch.
"""

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds ``name`` in ``package.<sources[name]>``."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sources[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__

"""What a stage ran on: library versions, thread count, CPU kernels and device, recorded in
the manifest.

The same command on the same machine gives bit-identical results, but other library releases
(a fresh ``pip install`` resolves the newest ones), another thread count or a CPU whose
kernels are wider (AVX-512 against AVX2) round differently, and in SCAN-style training a
rounding difference can grow into another K or another ACC.
Recording them with each stage makes such a difference something one can see.
"""

import platform
from importlib import metadata
from typing import Any

import torch

#: Distributions whose arithmetic reaches a stage's result.
_DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "pytorch-lightning",
    "numpy",
    "scipy",
    "scikit-learn",
    "faiss-cpu",
    "faiss-gpu",
    "networkx",
    "umap-learn",
    "timm",
)


def software_environment() -> dict[str, Any]:
    """Python, the installed versions of :data:`_DISTRIBUTIONS`, torch's CPU threads and CPU
    kernels (``AVX2``, ``AVX512``, ...) and the CUDA device (None without one)."""
    versions = {}
    for name in _DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def environment_changes(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs between two :func:`software_environment` records (``torch 2.13.0 ->
    2.14.1``, ``torch_threads 2 -> 1``); nothing for an older run that recorded none."""
    if not before:
        return []
    changes = []
    old_versions, new_versions = before.get("versions", {}), now.get("versions", {})
    for name in sorted(set(old_versions) | set(new_versions)):
        old, new = old_versions.get(name, "none"), new_versions.get(name, "none")
        if old != new:
            changes.append(f"{name} {old} -> {new}")
    for key in ("python", "machine", "torch_threads", "cpu_kernels", "cuda_device"):
        # A key missing from an older record (cpu_kernels, added later) is not a change.
        if key in before and before[key] != now.get(key):
            changes.append(f"{key} {before[key]} -> {now.get(key)}")
    return changes


def cpu_multiplies_bf16() -> bool | None:
    """Whether this CPU has AMX, which multiplies bf16 matrices in hardware (None: unknown).

    Without it torch's CPU bf16 convolutions are emulated: slower than float32, not faster.
    """
    try:  # torch's own CPU feature probe; private, so absent in some releases
        return bool(torch._C._cpu._get_cpu_capability()["amx_bf16"])
    except (AttributeError, KeyError, RuntimeError):
        return None

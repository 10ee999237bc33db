"""What a stage's result depends on, reduced to digests the manifest can compare.

A finished stage records the fingerprint of its inputs (its config, the data, the digests of
the upstream outputs it read) and a digest of its own outputs. Running the same command
again skips a stage whose fingerprint is unchanged and whose outputs are still as written.
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Data options that change neither which images a run sees nor how they look. ``schedule``
#: (data=folder's steps per stage) is spent on each stage's own epochs, which its own config
#: holds: a new SCAN schedule must not retrain the pretext.
_NOT_DATA = ("num_workers", "batch_views_in", "eval_batch_size", "num_clusters", "schedule")


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value, independent of key order."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def name_in_run(path: str | Path, root: Path) -> str:
    """``path`` relative to the run directory ``root`` where it lies below it (so a run moved
    or copied elsewhere keeps its names), else as it was given."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def outputs_digest(paths: Iterable[Path], root: Path) -> str:
    """One digest of several output files' contents (folders: every file below them), each
    named as :func:`name_in_run` names it, so a moved run directory still matches."""
    entries = []
    for path in sorted(Path(p) for p in paths):
        if path.is_dir():
            entries += [
                (name_in_run(file, root), file_digest(file))
                for file in sorted(path.rglob("*"))
                if file.is_file()
            ]
        else:
            entries.append(
                (name_in_run(path, root), file_digest(path) if path.is_file() else "missing")
            )
    return digest(entries)


def _file_listing(root: Path) -> list[tuple[str, int, int]]:
    """``(relative path, size, modification time)`` of every file under ``root``."""
    if root.is_file():
        stat = root.stat()
        return [(root.name, stat.st_size, stat.st_mtime_ns)]
    listing = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            stat = path.stat()
            listing.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return sorted(listing)


def data_fingerprint(data: Mapping[str, Any]) -> str:
    """The images a data config gives: its identity (kind, splits, options, views) plus a
    listing (names, sizes, times) of the files under every path among its options."""
    identity = {key: value for key, value in data.items() if key not in _NOT_DATA}
    paths = {}
    for key, value in sorted(dict(data.get("options") or {}).items()):
        if isinstance(value, str) and value and Path(value).exists():
            paths[key] = _file_listing(Path(value))
    return digest({"config": identity, "files": paths})


def describe_data(data: Mapping[str, Any]) -> str:
    """A short human description of where a data config's images come from."""
    options = dict(data.get("options") or {})
    where = options.get("path") or options.get("root") or options.get("csv")
    return f"data.kind={data.get('kind')}" + (f" at {where}" if where else "")

"""Unpacking image tarballs (such as the shared benchmark sets) into a scratch folder."""

import tarfile
from pathlib import Path


def extract_archive(tarball: str | Path, destination: str | Path) -> Path:
    """Extract ``tarball`` into ``destination`` and return the folder it created.

    Members that would land outside ``destination`` (absolute paths, ``..``, links leaving
    it) are refused by tarfile's ``data`` filter. Nothing is written next to the tarball.
    """
    tarball, destination = Path(tarball), Path(destination)
    if not tarball.is_file():
        raise FileNotFoundError(f"tarball {tarball} does not exist")
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        tops = {Path(name).parts[0] for name in archive.getnames() if name}
        archive.extractall(destination, filter="data")
    return destination / tops.pop() if len(tops) == 1 else destination

"""Unpack an image tarball (e.g. ../shared/data/mnist_test.tar.gz) into a scratch folder.

    python scripts/extract_dataset.py TARBALL DEST

Prints the folder to pass as `data.path`. Refuses members that would land outside DEST
(absolute paths, `..`, links), and never writes next to the tarball.
"""

import argparse
import sys
import tarfile
from pathlib import Path


def extract(tarball: Path, destination: Path) -> Path:
    """Extract ``tarball`` into ``destination``; return the folder it created."""
    if not tarball.is_file():
        raise FileNotFoundError(f"tarball {tarball} does not exist")
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
        tops = {Path(member.name).parts[0] for member in members if member.name}
        # The "data" filter rejects absolute paths, ".." and links that leave destination.
        archive.extractall(destination, filter="data")
    return destination / tops.pop() if len(tops) == 1 else destination


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path)
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    try:
        print(extract(args.tarball, args.destination))
    except (OSError, tarfile.TarError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()

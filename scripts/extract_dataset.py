"""Unpack an image tarball (e.g. ../shared/data/mnist_test.tar.gz) into a scratch folder.

    python scripts/extract_dataset.py TARBALL DEST

Prints the folder to pass as `data.path`.
"""

import argparse
import sys
import tarfile
from pathlib import Path

from semclust.data.archive import extract_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path)
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    try:
        print(extract_archive(args.tarball, args.destination))
    except (OSError, tarfile.TarError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()

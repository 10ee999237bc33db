"""Copy a labelled image folder with every image turned in-plane by a seeded random angle.

    python scripts/rotate_folder.py /tmp/data/mnist_test /tmp/data/mnist_test_rotated --seed 0

The angle of each image is drawn uniformly from [0, 360) degrees by a generator seeded with
``--seed`` over the sorted relative paths, so the same command gives the same folder. Images
keep their size; the corners turned in are black (MNIST's background). The subfolders (class
labels) are kept, and angles.csv in the destination lists each file's angle. The source is only
read.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from semclust.data.folder import IMAGE_EXTENSIONS


def rotate_folder(source: Path, destination: Path, seed: int) -> int:
    """Write the turned copies and angles.csv; the number of images written."""
    source, destination = source.resolve(), destination.resolve()
    if not source.is_dir():
        raise ValueError(f"{source} is not a folder")
    if destination == source or source in destination.parents:
        raise ValueError(f"{destination} lies inside the source folder {source}")
    if destination.exists() and any(destination.iterdir()):
        raise ValueError(f"{destination} is not empty")
    files = sorted(
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(f"no images in {source}")
    angles = np.random.default_rng(seed).uniform(0.0, 360.0, size=len(files))
    destination.mkdir(parents=True, exist_ok=True)
    with open(destination / "angles.csv", "w", newline="") as table:
        writer = csv.writer(table)
        writer.writerow(["path", "angle_degrees"])
        for relative, angle in zip(files, angles, strict=True):
            with Image.open(source / relative) as image:
                turned = image.rotate(float(angle), resample=Image.BILINEAR, fillcolor=0)
            target = destination / relative.with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            turned.save(target)
            writer.writerow([str(relative.with_suffix(".png")), f"{angle:.3f}"])
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        count = rotate_folder(args.source, args.destination, args.seed)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(f"{count} images turned into {args.destination}")


if __name__ == "__main__":
    main()

"""Turn the CIFAR-100 python archive into the 20-superclass image folders `data=folder` reads.

    python scripts/cifar100_to_folder.py cifar-100-python.tar.gz --out OUT [--split train test]

Takes the tarball or its extracted folder and only reads it. Writes lossless PNGs to
OUT/<split>/<superclass>/<file name>, first into OUT.partial (replaced by a rerun after an
interruption), renamed to OUT once complete. A non-empty OUT is refused unless --overwrite.
"""

import argparse
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from semclust.data.cifar100 import (
    IMAGES_PER_SUPERCLASS,
    CIFAR100FormatError,
    CIFAR100Split,
    read_meta,
    read_split,
)


def _check_name(name: str, what: str) -> str:
    """``name`` if it is usable as one visible file or folder name, else a ValueError."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError(f"the archive's {what} {name!r} cannot be used as a file name")
    return name


def _png_names(filenames: list[str]) -> list[str]:
    """Output names: the archive's (with .png), the index appended to names it repeats."""
    repeated = {name for name, times in Counter(filenames).items() if times > 1}
    names = []
    for index, name in enumerate(filenames):
        stem = name[:-4] if name.lower().endswith(".png") else name
        names.append(f"{stem}_{index:05d}.png" if name in repeated else f"{stem}.png")
    return [_check_name(name, "file name") for name in names]


def _write_split(data: CIFAR100Split, superclasses: list[str], folder: Path) -> np.ndarray:
    """Write one split's images as ``folder/<superclass>/<name>.png``; files per superclass."""
    for name in superclasses:
        (folder / name).mkdir(parents=True)
    for image, label, name in zip(
        data.images, data.coarse_labels, _png_names(data.filenames), strict=True
    ):
        Image.fromarray(image).save(folder / superclasses[label] / name)
    return np.array([sum(1 for _ in (folder / name).iterdir()) for name in superclasses])


def _report(split: str, written: np.ndarray, expected: np.ndarray, names: list[str]) -> None:
    """Check the files written per superclass against the labels; print them, per superclass
    where they differ from the official archive's."""
    if not np.array_equal(written, expected):
        raise RuntimeError(
            f"{split}: wrote {written.tolist()} files per superclass, not {expected.tolist()}"
        )
    official = IMAGES_PER_SUPERCLASS[split]
    if (written == official).all():
        print(
            f"{split}: {written.sum()} images, {official} in each of the {len(names)} superclasses"
        )
        return
    print(f"{split}: {written.sum()} images; the official archive has {official} per superclass:")
    for name, count in zip(names, written, strict=True):
        print(f"  {name}: {count}")


def _check_paths(source: Path, out: Path, partial: Path, overwrite: bool) -> None:
    """Refuse outputs that overlap the input, and a non-empty ``out`` without ``overwrite``."""
    for path in (out, partial):
        if path == source or source in path.parents or path in source.parents:
            raise ValueError(f"{path} overlaps the input {source}; choose an --out outside it")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; --out must be a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="cifar-100-python.tar.gz or its folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", nargs="+", choices=["train", "test"], default=["train", "test"])
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    args = parser.parse_args(argv)
    source, out = args.archive.resolve(), args.out.resolve()
    partial = out.with_name(out.name + ".partial")
    try:
        _check_paths(source, out, partial, args.overwrite)
        superclasses = [_check_name(n, "superclass") for n in read_meta(source).superclass_names]
        splits = {split: read_split(source, split) for split in dict.fromkeys(args.split)}
        shutil.rmtree(partial, ignore_errors=True)  # what an interrupted run left
        for split, data in splits.items():
            written = _write_split(data, superclasses, partial / split)
            _report(split, written, np.bincount(data.coarse_labels, minlength=20), superclasses)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except (CIFAR100FormatError, OSError, ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {out}; README, 'CIFAR-100-20 as an image folder', says how to train on it")


if __name__ == "__main__":
    main()

"""Real labelled image sets from the tarballs in $SEMCLUST_DATA_DIR (skipped without them).

CI points SEMCLUST_DATA_DIR at ../shared/data; elsewhere set it to a folder holding
mnist_test.tar.gz and coil20_32.tar.gz.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from semclust.data.archive import extract_archive
from semclust.data.folder import FolderDataset


def _tarball(name: str) -> Path:
    root = os.environ.get("SEMCLUST_DATA_DIR")
    if not root:
        pytest.skip("SEMCLUST_DATA_DIR is not set (folder with the benchmark tarballs)")
    path = Path(root) / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.mark.parametrize(
    "name, images, classes, size",
    [
        ("mnist_test.tar.gz", 10_000, 10, (28, 28)),
        ("coil20_32.tar.gz", 1_440, 20, (32, 32)),
    ],
)
def test_tarball_loads_as_a_labelled_folder(tmp_path, name, images, classes, size):
    folder = extract_archive(_tarball(name), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real set must load without skipping anything
        dataset = FolderDataset(path=str(folder), channels=1)
    assert len(dataset) == images and not dataset.skipped
    assert len(dataset.class_names) == classes
    counts = np.bincount(dataset.targets, minlength=classes)
    assert counts.sum() == images and (counts > 0).all()
    sample = dataset[0]
    assert sample["image"].mode == "L" and sample["image"].size == size

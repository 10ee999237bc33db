"""CIFAR-100 as its official python archive stores it, read without running pickled code.

``cifar-100-python.tar.gz`` holds three pickles in ``cifar-100-python/``: ``train`` and
``test`` (``data``: N x 3072 uint8, each row the 1024 red, then green, then blue values of a
32x32 image; ``fine_labels``; ``coarse_labels``; ``filenames``) and ``meta``
(``fine_label_names``, ``coarse_label_names``). They are read here from the tarball or from
the extracted folder, checked against that format and against :data:`FINE_TO_SUPERCLASS`,
for :class:`~semclust.data.torchvision_sets.CIFAR20Dataset` and
``scripts/cifar100_to_folder.py``. Nothing is written.
"""

import codecs
import pickle
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

#: The superclass of each of the 100 fine classes (indexed by the archive's alphabetical fine
#: label): CIFAR-100-20 as SCAN and most clustering code score it.
FINE_TO_SUPERCLASS = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip

#: Images per superclass in the official archive (500 per fine class, 100 in test).
IMAGES_PER_SUPERCLASS = {"train": 2500, "test": 500}

#: The folder the tarball unpacks to.
FOLDER = "cifar-100-python"

# Everything a CIFAR pickle may name: numpy's array reconstruction (under its numpy 1 and 2
# module names) and, in pickles Python 3 wrote with protocol 2, codecs.encode for bytes.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class CIFAR100FormatError(ValueError):
    """A file is missing from, or does not hold what, the CIFAR-100 python archive holds."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Loads plain data and numpy arrays; refuses any other class or function a pickle names."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a CIFAR pickle never does"
            )
        return _ALLOWED[(module, name)]


@dataclass(frozen=True)
class CIFAR100Split:
    """One split: ``images`` ``(N, 32, 32, 3)`` uint8, labels ``(N,)`` int64, file names."""

    images: np.ndarray
    fine_labels: np.ndarray
    coarse_labels: np.ndarray
    filenames: list[str]


@dataclass(frozen=True)
class CIFAR100Meta:
    """The 100 fine and 20 superclass names, in label order."""

    fine_names: list[str]
    superclass_names: list[str]


@contextmanager
def _open_member(location: Path, name: str) -> Iterator[tuple[IO[bytes], str]]:
    """The file ``name`` of the archive at ``location`` (tarball, or folder with or without
    ``cifar-100-python/``), and how to name it in messages."""
    if location.is_dir():
        for path in (location / name, location / FOLDER / name):
            if path.is_file():
                with open(path, "rb") as file:
                    yield file, str(path)
                return
        raise CIFAR100FormatError(
            f"{location} is not a CIFAR-100 python archive: it holds no {name} or {FOLDER}/{name}"
        )
    if not location.is_file():
        raise FileNotFoundError(f"{location} does not exist")
    try:
        with tarfile.open(location) as archive:
            for member_name in (f"{FOLDER}/{name}", name):
                try:
                    member = archive.getmember(member_name)
                except KeyError:
                    continue
                file = archive.extractfile(member) if member.isfile() else None
                if file is not None:
                    yield file, f"{location}:{member_name}"
                    return
    except tarfile.TarError as error:
        raise CIFAR100FormatError(f"{location} is not a readable tarball ({error})") from error
    raise CIFAR100FormatError(
        f"{location} is not the CIFAR-100 python archive: it holds no {FOLDER}/{name}"
    )


def _load(location: Path, name: str) -> tuple[dict[str, Any], str]:
    """The dict pickled in the archive's file ``name``, and that file's name for messages."""
    with _open_member(location, name) as (file, source):
        try:
            # latin1, as torchvision reads them: the CIFAR pickles were written by Python 2.
            content = _ArraysOnlyUnpickler(file, encoding="latin1").load()
        except Exception as error:  # damaged pickles raise many types; all mean the same
            raise CIFAR100FormatError(f"{source}: not a CIFAR pickle ({error})") from error
    if not isinstance(content, dict):
        raise CIFAR100FormatError(f"{source}: holds a {type(content).__name__}, not a dict")
    return content, source


def _field(content: dict[str, Any], key: str, source: str) -> Any:
    if key not in content:
        raise CIFAR100FormatError(
            f"{source}: no {key!r} key (found {sorted(content)}); not a CIFAR-100 pickle"
        )
    return content[key]


def _labels(content: dict[str, Any], key: str, count: int, classes: int, source: str) -> np.ndarray:
    labels = np.asarray(_field(content, key, source))
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise CIFAR100FormatError(
            f"{source}: {key!r} should be {count} integers, found shape {labels.shape} "
            f"of {labels.dtype}"
        )
    if count and (labels.min() < 0 or labels.max() >= classes):
        raise CIFAR100FormatError(f"{source}: {key!r} holds labels outside 0..{classes - 1}")
    return labels.astype(np.int64)


def read_meta(location: str | Path) -> CIFAR100Meta:
    """The class names stored in ``meta``: 100 fine and 20 superclass names."""
    content, source = _load(Path(location), "meta")
    names = {}
    for key, count in (("fine_label_names", 100), ("coarse_label_names", 20)):
        names[key] = list(_field(content, key, source))
        if len(names[key]) != count or len(set(names[key])) != count:
            raise CIFAR100FormatError(
                f"{source}: {key!r} should hold {count} distinct names, found "
                f"{len(set(names[key]))} distinct of {len(names[key])}; not CIFAR-100"
            )
    return CIFAR100Meta(names["fine_label_names"], names["coarse_label_names"])


def read_split(location: str | Path, split: str) -> CIFAR100Split:
    """The ``train`` or ``test`` pickle, checked against the CIFAR-100 format.

    Raises :class:`CIFAR100FormatError` naming the file when a key is missing, a shape is
    wrong, or a coarse label disagrees with :data:`FINE_TO_SUPERCLASS`.
    """
    if split not in IMAGES_PER_SUPERCLASS:
        raise ValueError(f"unknown CIFAR-100 split {split!r}; choose train or test")
    content, source = _load(Path(location), split)
    data = np.asarray(_field(content, "data", source))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise CIFAR100FormatError(
            f"{source}: 'data' should be N x 3072 uint8 (32x32 RGB rows), found shape "
            f"{data.shape} of {data.dtype}"
        )
    count = len(data)
    fine = _labels(content, "fine_labels", count, 100, source)
    coarse = _labels(content, "coarse_labels", count, 20, source)
    filenames = list(_field(content, "filenames", source))
    if len(filenames) != count or not all(isinstance(name, str) for name in filenames):
        raise CIFAR100FormatError(f"{source}: 'filenames' should be {count} strings")
    expected = np.take(FINE_TO_SUPERCLASS, fine)
    wrong = np.flatnonzero(coarse != expected)
    if len(wrong):
        first = wrong[0]
        raise CIFAR100FormatError(
            f"{source}: {len(wrong)} coarse label(s) disagree with the CIFAR-100-20 superclasses "
            f"semclust scores (SCAN's); e.g. image {first} (fine class {fine[first]}) has "
            f"superclass {coarse[first]}, expected {expected[first]}"
        )
    images = data.reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return CIFAR100Split(np.ascontiguousarray(images), fine, coarse, filenames)

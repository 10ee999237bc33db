"""Reading the images of a folder for grouping: decoded in worker threads, converted the way
every semclust loader converts them, described by a method chunk by chunk.

An unreadable file is reported with the folder loader's wording and skipped; it never
stops a run. Files are only ever opened for reading.
"""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from semclust.data.folder import image_problem, to_model_image
from semclust.grouping.methods import Method, Signatures

#: Images decoded and described per chunk: bounds the memory of prepared inputs (the cnn
#: method's are full network inputs).
CHUNK = 256


def decode(path: str | Path, size: int) -> Image.Image:
    """The image at ``path`` in RGB, upright (EXIF), transparency on white; JPEGs are
    decoded at a reduced scale that keeps at least ``size`` pixels a side (0: full)."""
    with Image.open(path) as image:
        if size:
            image.draft("RGB", (size, size))
        image.load()
        return to_model_image(image, 3)


@dataclass
class Described:
    """The signatures of the readable images of a list of paths."""

    #: Positions (in the list given) of the images described, row-aligned with signatures.
    rows: np.ndarray
    signatures: Signatures | None
    #: ``(path, reason)`` of each file that could not be read.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _prepare(method: Method, path: Path) -> tuple[object, str | None]:
    try:
        image = decode(path, method.decode_size)
    except Exception:  # decoders raise many types on damaged files
        # The folder loader's wording, so every semclust command explains a file alike.
        return None, image_problem(path) or "could not be decoded"
    return method.prepare(image), None


def describe_paths(
    method: Method,
    paths: Sequence[Path],
    workers: int = 2,
    progress: bool = True,
    description: str = "reading images",
) -> Described:
    """Decode and describe ``paths`` (in order) with ``workers`` threads."""
    rows: list[int] = []
    parts: list[Signatures] = []
    skipped: list[tuple[str, str]] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(paths), desc=description, unit="img", disable=not progress) as bar,
    ):
        for start in range(0, len(paths), CHUNK):
            chunk = list(paths[start : start + CHUNK])
            prepared = []
            for offset, (result, problem) in enumerate(
                pool.map(lambda path: _prepare(method, path), chunk)
            ):
                if problem is None:
                    rows.append(start + offset)
                    prepared.append(result)
                else:
                    skipped.append((str(chunk[offset]), problem))
            if prepared:
                parts.append(method.signatures(prepared))
            bar.update(len(chunk))
    signatures = Signatures.concat(parts) if parts else None
    return Described(np.array(rows, dtype=np.int64), signatures, skipped)

"""Similarity methods: what each keeps of an image, how it finds candidate pairs, and the
similarity of a pair, always in [0, 1] (1: identical).

A method turns decoded images into :class:`Signatures` (``prepare`` per image, in worker
threads; ``signatures`` per chunk, in the main thread), proposes candidate pairs from an
index over their ``keys`` and computes the exact similarity of those pairs only. The hash
methods live here; the others in ``pixel_methods``, ``feature_methods`` and ``cnn``, and
``registry`` builds any of them by name.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from semclust.grouping import candidates


@dataclass
class Signatures:
    """What a method keeps of each image, row-aligned with the images it was made from.

    ``keys`` is what candidate pairs are searched on (packed hash bits, or L2-normalised
    float vectors); ``details`` holds per-image data the exact similarity needs, if any.
    """

    keys: np.ndarray
    details: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, rows: Sequence[int] | np.ndarray) -> "Signatures":
        rows = np.asarray(rows, dtype=np.int64)
        details = [self.details[row] for row in rows] if self.details else []
        return Signatures(self.keys[rows], details)

    @classmethod
    def concat(cls, parts: Sequence["Signatures"]) -> "Signatures":
        """The rows of every part, in order (at least one part)."""
        details = [item for part in parts for item in part.details]
        return cls(np.concatenate([part.keys for part in parts]), details)


class Method:
    """Base of the similarity methods; subclasses set the class attributes and override
    :meth:`prepare` and :meth:`similarity` (and :meth:`candidates` for an exact index)."""

    name: ClassVar[str]
    #: The similarity linked by default: from the literature where there is a convention,
    #: otherwise from the benchmark in docs/BENCHMARKS.md (and said so where it is set).
    default_threshold: ClassVar[float]
    #: Images are decoded at no less than this many pixels a side where the format can
    #: decode smaller (JPEG draft mode); 0 for full size.
    decode_size: ClassVar[int] = 64
    #: The resolution of the similarity, for the ``auto`` threshold's curve.
    step: ClassVar[float] = 0.01
    #: What a pair's similarity measures, for the summary and the page.
    describes: ClassVar[str] = ""
    #: Compare pairs in several threads: the comparison releases the GIL (OpenCV,
    #: scikit-image filters) and is slow enough to be worth it.
    parallel_pairs: ClassVar[bool] = False

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Any]:
        """(key row, detail) of one decoded RGB image; called from worker threads."""
        raise NotImplementedError

    def signatures(self, prepared: list[tuple[np.ndarray, Any]]) -> Signatures:
        """The signatures of a chunk of prepared images, in order."""
        keys = np.stack([key for key, _ in prepared])
        details = [detail for _, detail in prepared]
        return Signatures(keys, details if any(d is not None for d in details) else [])

    def candidates(
        self, signatures: Signatures, threshold: float | None, neighbors: int
    ) -> np.ndarray:
        """Pairs ``(i, j)``, ``i < j``, worth comparing: by default each image's
        ``neighbors`` nearest by cosine of the keys, whatever the threshold."""
        return candidates.float_neighbor_pairs(signatures.keys, neighbors)

    def similarity(self, signatures: Signatures, pairs: np.ndarray) -> np.ndarray:
        """The exact similarity in [0, 1] of each pair of rows, as float64."""
        raise NotImplementedError


class HashMethod(Method):
    """A 64-bit perceptual hash from the ImageHash package; similarity 1 - Hamming / 64.

    The similarity is the Hamming distance itself, so a FAISS binary range search finds
    every linked pair exactly.
    """

    bits: ClassVar[int] = 64
    step = 1.0 / 64
    describes = "1 - Hamming distance / 64 of the 64-bit hashes"

    def hash_bits(self, image: Image.Image) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Any]:
        return np.packbits(self.hash_bits(image).ravel()), None

    def candidates(
        self, signatures: Signatures, threshold: float | None, neighbors: int
    ) -> np.ndarray:
        if threshold is None:
            return candidates.binary_neighbor_pairs(signatures.keys, neighbors)
        max_distance = int(np.floor((1.0 - threshold) * self.bits + 1e-9))
        return candidates.binary_range_pairs(signatures.keys, max_distance)

    def similarity(self, signatures: Signatures, pairs: np.ndarray) -> np.ndarray:
        keys = signatures.keys
        differing = np.unpackbits(keys[pairs[:, 0]] ^ keys[pairs[:, 1]], axis=1).sum(axis=1)
        return 1.0 - differing.astype(np.float64) / self.bits


class PHash(HashMethod):
    """Perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grayscale image."""

    name = "phash"
    # imagededup's default for 64-bit hashes: at most 10 differing bits.
    default_threshold = 1.0 - 10 / 64
    # Half the coefficients lie above their median, so every hash has 32 bits set and two
    # hashes always differ in an even number of bits.
    step = 2.0 / 64

    def hash_bits(self, image: Image.Image) -> np.ndarray:
        import imagehash

        return imagehash.phash(image, hash_size=8).hash


class DHash(HashMethod):
    """Difference hash: signs of horizontal gradients of a 9x8 grayscale image."""

    name = "dhash"
    default_threshold = 1.0 - 10 / 64  # as phash (imagededup's default)

    def hash_bits(self, image: Image.Image) -> np.ndarray:
        import imagehash

        return imagehash.dhash(image, hash_size=8).hash

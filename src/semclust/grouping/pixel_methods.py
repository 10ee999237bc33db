"""Pixel methods: SSIM (scikit-image) and template matching (OpenCV) on small grayscale
versions of the images, compared on candidate pairs from their 16x16 thumbnails.

Both squash every image to a square first, so resized copies line up whatever their
aspect ratio. 32x32 is the comparison size: on the benchmark of docs/BENCHMARKS.md, SSIM at
32x32 separates edited copies from other images better than at 64x64 (pairwise F1 0.97
against 0.87 at the best threshold of each), because the crops and small rotations of the
copies move fine detail more than coarse structure.
"""

from typing import Any

import numpy as np
from PIL import Image

from semclust.grouping.methods import Method, Signatures

#: Side of the grayscale images SSIM and template matching compare.
COMPARED_SIZE = 32
#: Side of the thumbnails whose cosine proposes the candidate pairs.
KEY_SIZE = 16


def gray_square(image: Image.Image, size: int) -> np.ndarray:
    """The image as a ``size`` x ``size`` uint8 grayscale array (area-averaged)."""
    return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX))


def thumbnail_key(gray: np.ndarray) -> np.ndarray:
    """A zero-mean, unit-length 16x16 thumbnail of a square grayscale array, so the inner
    product of two keys is the correlation of the thumbnails. A flat image gets the
    constant vector: flat images are each other's candidates, and nobody else's."""
    factor = gray.shape[0] // KEY_SIZE
    small = gray.astype(np.float32).reshape(KEY_SIZE, factor, KEY_SIZE, factor).mean(axis=(1, 3))
    small = small.ravel() - small.mean()
    norm = float(np.linalg.norm(small))
    if norm < 1e-3:
        return np.full(KEY_SIZE * KEY_SIZE, 1.0 / KEY_SIZE, np.float32)
    return (small / norm).astype(np.float32)


class PixelMethod(Method):
    """Keys: the thumbnails; details: the 32x32 grayscale arrays."""

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Any]:
        gray = gray_square(image, COMPARED_SIZE)
        return thumbnail_key(gray), gray

    def similarity(self, signatures: Signatures, pairs: np.ndarray) -> np.ndarray:
        details = signatures.details
        return np.array(
            [self.compare(details[i], details[j]) for i, j in pairs], dtype=np.float64
        ).reshape(len(pairs))

    def compare(self, first: np.ndarray, second: np.ndarray) -> float:
        raise NotImplementedError


class Ssim(PixelMethod):
    """Structural similarity (Wang et al. 2004: Gaussian window, sigma 1.5), clipped at 0."""

    name = "ssim"
    parallel_pairs = True  # 1.4x faster in 2 threads (measured on 4,000 benchmark pairs)
    # From the benchmark (docs/BENCHMARKS.md): edited copies mostly score above 0.5,
    # other images' nearest neighbours mostly below; SSIM has no conventional cut-off.
    default_threshold = 0.5
    describes = "structural similarity (SSIM) of the 32x32 grayscale images"

    def compare(self, first: np.ndarray, second: np.ndarray) -> float:
        from skimage.metrics import structural_similarity

        value = structural_similarity(
            first.astype(np.float64),
            second.astype(np.float64),
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        return float(min(max(value, 0.0), 1.0))


class Template(PixelMethod):
    """Template matching: the centre of one image (a tenth cut off each side) slid over the
    other with OpenCV's normalised correlation coefficient, best position, both ways."""

    name = "template"
    # From the benchmark (docs/BENCHMARKS.md); there is no conventional cut-off.
    default_threshold = 0.9
    describes = "best normalised correlation of one image's centre slid over the other"

    def compare(self, first: np.ndarray, second: np.ndarray) -> float:
        return max(_match(first, second), _match(second, first))


def _match(image: np.ndarray, other: np.ndarray) -> float:
    import cv2

    margin = max(1, image.shape[0] // 10)
    template = image[margin:-margin, margin:-margin].astype(np.float32)
    search = other.astype(np.float32)
    if template.std() < 1e-3 or search.std() < 1e-3:  # a flat image correlates with nothing
        flat_alike = template.std() < 1e-3 and search.std() < 1e-3
        return 1.0 if flat_alike and abs(template.mean() - search.mean()) < 2 else 0.0
    scores = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
    return float(np.clip(np.nan_to_num(scores.max()), 0.0, 1.0))

"""Local-feature methods: ORB matches (OpenCV) and MinHash of Harris-corner locations
(scikit-image corners, datasketch MinHash and LSH).

ORB comes from OpenCV rather than scikit-image: measured on 256x256 images here, OpenCV's
detector and descriptor take 3.7 ms an image against 105 ms for ``skimage.feature.ORB``, and
``cv2.estimateAffinePartial2D`` adds the geometric check (RANSAC) that makes the match
ratio reliable (pairwise F1 0.98 with it, 0.79 without, on the benchmark's candidates).
"""

import threading
from typing import Any

import numpy as np
from PIL import Image

from semclust.grouping.methods import Method, Signatures
from semclust.grouping.pixel_methods import gray_square, thumbnail_key

#: ORB looks at the images squashed to this side (small images are upscaled to it).
ORB_SIZE = 256
#: The match ratio's denominator is at least this, so that images with a handful of
#: keypoints cannot match at random.
_MIN_KEYPOINTS = 20
#: Lowe's ratio test: a match counts when clearly better than the second-best one.
_RATIO = 0.75

#: Harris corners are found on the images squashed to this side ...
CORNER_SIZE = 64
#: ... and their locations quantised to cells of this many pixels.
CORNER_CELL = 6
#: Images with corners in fewer cells match nothing: tiny sets coincide by chance (on the
#: benchmark's files, exact Jaccard over all pairs: best pairwise F1 0.30 without this
#: rule, 0.48 with it).
MIN_CELLS = 6
NUM_PERM = 128


class Orb(Method):
    """ORB keypoints; similarity: the share of keypoints whose matches pass the ratio test
    and agree on one similarity transform (rotation, scale, shift) found by RANSAC."""

    name = "orb"
    parallel_pairs = True  # 1.5x faster in 2 threads (measured on 4,000 benchmark pairs)
    # From the benchmark (docs/BENCHMARKS.md); there is no conventional cut-off.
    default_threshold = 0.3
    decode_size = ORB_SIZE
    describes = "share of ORB keypoints matched consistently (ratio test + RANSAC)"

    def __init__(self) -> None:
        self._local = threading.local()  # one detector per decoding thread

    def _detector(self) -> Any:
        import cv2

        if not hasattr(self._local, "orb"):
            # Low FAST threshold and border: small, soft images still yield hundreds of points.
            self._local.orb = cv2.ORB_create(nfeatures=500, fastThreshold=5, edgeThreshold=15)
        return self._local.orb

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Any]:
        gray = np.asarray(
            image.convert("L").resize((ORB_SIZE, ORB_SIZE), Image.Resampling.BILINEAR)
        )
        keypoints, descriptors = self._detector().detectAndCompute(gray, None)
        points = np.array([keypoint.pt for keypoint in keypoints], np.float32).reshape(-1, 2)
        key = thumbnail_key(gray_square(image, 32))
        return key, (points, descriptors)

    def similarity(self, signatures: Signatures, pairs: np.ndarray) -> np.ndarray:
        import cv2

        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        details = signatures.details
        return np.array(
            [_orb_match(matcher, details[i], details[j]) for i, j in pairs], dtype=np.float64
        ).reshape(len(pairs))


def _orb_match(matcher: Any, first: tuple, second: tuple) -> float:
    import cv2

    (points_a, descriptors_a), (points_b, descriptors_b) = first, second
    if descriptors_a is None or descriptors_b is None or min(len(points_a), len(points_b)) < 2:
        return 0.0
    good = [
        pair[0]
        for pair in matcher.knnMatch(descriptors_a, descriptors_b, k=2)
        if len(pair) == 2 and pair[0].distance < _RATIO * pair[1].distance
    ]
    if len(good) < 3:
        return 0.0
    source = points_a[[match.queryIdx for match in good]]
    target = points_b[[match.trainIdx for match in good]]
    cv2.setRNGSeed(0)  # RANSAC samples at random: the same pair, the same answer, any order
    transform, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=0.03 * ORB_SIZE
    )
    if transform is None:
        return 0.0
    denominator = max(min(len(points_a), len(points_b)), _MIN_KEYPOINTS)
    return float(min(1.0, int(inliers.sum()) / denominator))


class CornerMinHash(Method):
    """Jaccard similarity of the sets of cells holding a Harris corner, estimated by MinHash;
    candidates from MinHash LSH (threshold) or LSH Forest (nearest), both from datasketch."""

    name = "minhash"
    # From the benchmark (docs/BENCHMARKS.md); there is no conventional cut-off.
    default_threshold = 0.5
    step = 1.0 / NUM_PERM
    describes = "Jaccard similarity (MinHash) of the cells holding Harris corners"

    def __init__(self) -> None:
        from datasketch import MinHash

        template = MinHash(num_perm=NUM_PERM, seed=1)
        # Made once and shared: building the permutations is most of a MinHash's cost.
        self._permutations, self._scheme = template.permutations, template.scheme

    def prepare(self, image: Image.Image) -> tuple[np.ndarray, Any]:
        from datasketch import LeanMinHash, MinHash
        from skimage.feature import corner_harris, corner_peaks

        gray = gray_square(image, CORNER_SIZE).astype(np.float64) / 255.0
        corners = corner_peaks(corner_harris(gray), min_distance=2, threshold_rel=0.01)
        cells = {f"{y // CORNER_CELL},{x // CORNER_CELL}".encode() for y, x in corners}
        sketch = MinHash(
            num_perm=NUM_PERM, seed=1, permutations=self._permutations, scheme=self._scheme
        )
        sketch.update_batch(sorted(cells))
        return np.zeros(0, np.uint8), (LeanMinHash(sketch), len(cells))

    def candidates(
        self, signatures: Signatures, threshold: float | None, neighbors: int
    ) -> np.ndarray:
        from datasketch import MinHashLSH, MinHashLSHForest

        from semclust.grouping.candidates import unique_pairs

        sketches = [
            (row, sketch)
            for row, (sketch, cells) in enumerate(signatures.details)
            if cells >= MIN_CELLS
        ]
        first: list[int] = []
        second: list[int] = []
        if threshold is None:
            forest = MinHashLSHForest(num_perm=NUM_PERM)
            for row, sketch in sketches:
                forest.add(row, sketch)
            forest.index()
            for row, sketch in sketches:
                found = forest.query(sketch, neighbors + 1)
                first += [row] * len(found)
                second += found
        else:
            # LSH's bands are tuned for the threshold; it cannot be 0 or 1.
            lsh = MinHashLSH(threshold=min(max(threshold, 0.05), 0.95), num_perm=NUM_PERM)
            for row, sketch in sketches:
                lsh.insert(row, sketch, check_duplication=False)
            for row, sketch in sketches:
                found = lsh.query(sketch)
                first += [row] * len(found)
                second += found
        return unique_pairs(np.array(first, np.int64), np.array(second, np.int64))

    def similarity(self, signatures: Signatures, pairs: np.ndarray) -> np.ndarray:
        details = signatures.details
        return np.array(
            [_jaccard(details[i], details[j]) for i, j in pairs], dtype=np.float64
        ).reshape(len(pairs))


def _jaccard(first: tuple, second: tuple) -> float:
    (sketch_a, cells_a), (sketch_b, cells_b) = first, second
    if min(cells_a, cells_b) < MIN_CELLS:
        return 0.0
    return float(sketch_a.jaccard(sketch_b))

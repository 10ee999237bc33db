"""Feature matrices for classic clustering: checked, described (HOG) and reduced (PCA, UMAP).

scikit-image (for HOG) and umap-learn (for UMAP) are imported only when used.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

REDUCTIONS = ("none", "pca", "umap")
#: ``n_components`` of a reduction that names none.
DEFAULT_COMPONENTS = {"pca": 50, "umap": 10}


def check_choice(value: Any, choices: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``choices``, else a ValueError that lists them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_features(features: Any) -> np.ndarray:
    """``features`` as a finite float64 ``(N, D)`` array with N >= 2, or a ValueError."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, D) array, got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"features need at least 2 rows and 1 column, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(
            f"features hold NaN or infinite values in {bad_rows.size} rows "
            f"(first: {bad_rows[:5].tolist()})"
        )
    return array


def hog_features(images: np.ndarray, **hog_options: Any) -> np.ndarray:
    """Histogram-of-oriented-gradients descriptors, one row per image of ``(N, C, H, W)``.

    ``hog_options`` go to :func:`skimage.feature.hog` and override the defaults: 9
    orientations, 2x2-cell blocks, L2-Hys block normalisation and cells of
    ``min(8, min(H, W) // 4)`` pixels. Colour images use the strongest channel's gradient.
    """
    from skimage.feature import hog

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) array, got {images.shape}")
    _, channels, height, width = images.shape
    # Dalal and Triggs' 8x8-pixel cells suit images of 32 px and more. Smaller images (8-px
    # digits, 28-px MNIST) get cells a quarter of their side, so there are still 4x4 cells, i.e.
    # 3x3 overlapping blocks that say where edges are, not just which directions occur.
    cell = max(1, min(8, min(height, width) // 4))
    options: dict[str, Any] = {
        "orientations": 9,
        "pixels_per_cell": (cell, cell),
        "cells_per_block": (2, 2),
        "block_norm": "L2-Hys",
        **hog_options,
    }
    cells = (height // options["pixels_per_cell"][0], width // options["pixels_per_cell"][1])
    block = options["cells_per_block"]
    if cells[0] < block[0] or cells[1] < block[1]:
        raise ValueError(
            f"{height}x{width} images hold {cells[0]}x{cells[1]} cells of "
            f"{options['pixels_per_cell']} pixels, fewer than one {block} block; "
            "pass smaller pixels_per_cell or cells_per_block"
        )
    if channels == 1:
        pixels = images[:, 0]
    else:
        pixels = np.moveaxis(images, 1, -1)
        options["channel_axis"] = -1
    options["feature_vector"] = True
    return np.stack([hog(image, **options) for image in pixels]).astype(np.float64)


def reduce_features(
    features: Any, name: str, seed: int, n_components: int | None = None, **options: Any
) -> np.ndarray:
    """The features after reduction ``name``: ``none`` (as they are), ``pca`` or ``umap``.

    ``n_components`` defaults to 50 for PCA (capped at min(N, D)) and 10 for UMAP; other
    options go to :class:`sklearn.decomposition.PCA` or :class:`umap.UMAP` unchanged.
    """
    check_choice(name, REDUCTIONS, "reduction")
    features = check_features(features)
    if name == "none":
        if n_components is not None or options:
            given = {"n_components": n_components, **options} if n_components else options
            raise ValueError(f"reduction 'none' takes no options, got {given}")
        return features
    if n_components is None:
        n_components = DEFAULT_COMPONENTS[name]
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    if name == "pca":
        n_components = min(int(n_components), *features.shape)
        return PCA(n_components, random_state=seed, **options).fit_transform(features)
    import umap

    # A seed forces UMAP onto one job anyway; saying so avoids its warning.
    options.setdefault("n_jobs", 1)
    reducer = umap.UMAP(n_components=int(n_components), random_state=seed, **options)
    return np.asarray(reducer.fit_transform(features), dtype=np.float64)

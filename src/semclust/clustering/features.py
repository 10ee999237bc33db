"""Feature matrices for classic clustering: checked, described (HOG) and reduced (PCA, UMAP,
locally linear embedding, spectral embedding).

scikit-image (for HOG) and umap-learn (for UMAP) are imported only when used.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import LocallyLinearEmbedding, SpectralEmbedding

from semclust.clustering.neighbor_graph import connected_knn_graph, resolve_neighbors
from semclust.clustering.settings import REDUCTIONS

#: ``n_components`` of a reduction that names none. The spectral embedding's ``auto`` is the
#: number of clusters (10 where none is given), as in spectral clustering (Ng, Jordan and
#: Weiss): k-means on 10 components of COIL-20's 20 classes reached ACC 0.74, on 20 0.81, and
#: on 4 well separated blobs ARI 0.61 with 10 components, 1.0 with 4 (digits: 10 either way).
DEFAULT_COMPONENTS: dict[str, int | str] = {
    "pca": 50,
    "umap": 10,
    "lle": 10,
    "spectral_embedding": "auto",
}
#: ``n_neighbors`` of the neighbour-graph reductions that name none. Fewer neighbours kept
#: classes apart better: k-means on 10 LLE components of L2-normalised pixels (MNIST test: 128
#: principal components) reached ACC 0.895 / 0.750 / 0.811 (digits / COIL-20 / MNIST) with 5
#: neighbours, 0.801 / 0.677 / 0.663 with 10 and 0.70 / 0.64 / 0.49 with 15, which also took
#: 5x longer on MNIST; on 10 spectral-embedding components 8 neighbours had the best mean:
#: 0.877 / 0.74 / 0.659, against 0.881 / 0.69 / 0.667 with 5 and 0.81 / 0.72 / 0.654 with 15.
DEFAULT_NEIGHBORS = {"lle": 5, "spectral_embedding": 8}


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
    features: Any,
    name: str,
    seed: int,
    n_components: int | str | None = None,
    num_clusters: int | None = None,
    **options: Any,
) -> np.ndarray:
    """The features after reduction ``name``: ``none`` (as they are), ``pca``, ``umap``,
    ``lle`` or ``spectral_embedding``.

    ``n_components`` defaults to 50 for PCA (capped at min(N, D)), 10 for UMAP and LLE, and
    to ``num_clusters`` (``"auto"``; 10 when it is None) for the spectral embedding; other
    options go to :class:`sklearn.decomposition.PCA` or :class:`umap.UMAP` unchanged.

    - ``lle``: standard locally linear embedding (:class:`sklearn.manifold.
      LocallyLinearEmbedding`), ``n_neighbors`` (5), ``eigen_solver`` ("arpack", sparse: 10k
      rows of 128-D in 5 to 8 s), other options unchanged. Standard, not "modified": modified LLE's
      sparse solve fails on the digits ("Factor is exactly singular"), which leaves the dense
      solver, O(N³) time and N² memory (800 MB at 10k rows). ``n_components`` is capped at
      D and N - 2.
    - ``spectral_embedding``: the Laplacian eigenmap of the connected symmetric kNN graph
      (see :func:`~semclust.clustering.neighbor_graph.connected_knn_graph`), ``n_neighbors``
      (8), ``eigen_solver`` ("lobpcg": the same embedding as arpack's on the digits, COIL-20
      and MNIST, in 0.9 s instead of 4.3 s at 10k rows); other options go to
      :class:`sklearn.manifold.SpectralEmbedding`. ``n_components`` is capped at N - 2.

    ``num_clusters`` only sets the spectral embedding's ``n_components="auto"``.
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
    if n_components == "auto" and name == "spectral_embedding":
        n_components = 10 if num_clusters is None else num_clusters
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        allowed = "'auto' or an integer" if name == "spectral_embedding" else "an integer"
        raise ValueError(f"n_components of {name} must be {allowed}, got {n_components!r}")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    if name == "pca":
        n_components = min(int(n_components), *features.shape)
        return PCA(n_components, random_state=seed, **options).fit_transform(features)
    if name in DEFAULT_NEIGHBORS:
        return _neighbor_embedding(features, name, seed, int(n_components), options)
    import umap

    # A seed forces UMAP onto one job anyway; saying so avoids its warning.
    options.setdefault("n_jobs", 1)
    reducer = umap.UMAP(n_components=int(n_components), random_state=seed, **options)
    return np.asarray(reducer.fit_transform(features), dtype=np.float64)


def _neighbor_embedding(
    features: np.ndarray, name: str, seed: int, n_components: int, options: dict[str, Any]
) -> np.ndarray:
    """``lle`` or ``spectral_embedding`` (see :func:`reduce_features`)."""
    num_samples = len(features)
    if num_samples < 4:
        raise ValueError(f"{name} needs at least 4 rows, got {num_samples}")
    n_neighbors = resolve_neighbors(
        options.pop("n_neighbors", DEFAULT_NEIGHBORS[name]), num_samples, None
    )
    # The eigen solvers find at most N - 2 vectors next to the constant one they drop.
    n_components = min(n_components, num_samples - 2)
    if name == "lle":
        options.setdefault("eigen_solver", "arpack")
        reducer = LocallyLinearEmbedding(
            n_neighbors=n_neighbors,
            n_components=min(n_components, features.shape[1]),
            random_state=seed,
            **options,
        )
        return np.asarray(reducer.fit_transform(features), dtype=np.float64)
    if "affinity" in options:
        raise ValueError(
            "spectral_embedding builds its own kNN graph from n_neighbors; "
            f"it takes no affinity, got {options['affinity']!r}"
        )
    graph, _ = connected_knn_graph(features, n_neighbors)
    options.setdefault("eigen_solver", "lobpcg")
    reducer = SpectralEmbedding(n_components, affinity="precomputed", random_state=seed, **options)
    return np.asarray(reducer.fit_transform(graph), dtype=np.float64)

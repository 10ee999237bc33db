"""The report's 2-D map of the embeddings: UMAP (PCA for very few points), coloured by cluster.

UMAP is imported only when a map is drawn: it is slow to import and pulls in numba. Where it
cannot be imported (numba missing, or built for another numpy) the map is drawn with PCA and
its caption says why: a finished run's report is not worth losing over its map.
"""

import io
import logging
import warnings

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from semclust.metrics import l2_normalize

log = logging.getLogger(__name__)

_MAP_MAX_POINTS = 5_000  # UMAP of more points takes minutes and draws no clearer a map
_UMAP_MIN_POINTS = 10  # below this a neighbour graph says nothing: PCA instead


def embedding_map(
    embeddings: np.ndarray, predictions: np.ndarray, num_clusters: int, seed: int
) -> tuple[bytes, str]:
    """A scatter PNG of a 2-D UMAP (PCA for very few points), coloured by cluster, and its
    caption."""
    count = len(embeddings)
    rows = np.arange(count)
    if count > _MAP_MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(count, _MAP_MAX_POINTS, replace=False))
    # Euclidean distances of unit vectors order pairs as cosine similarity does.
    points = l2_normalize(embeddings[rows])
    shown = f"all {count:,}" if len(rows) == count else f"{len(rows):,} of {count:,} (seed {seed})"
    coordinates, why_not_umap = None, f"UMAP needs at least {_UMAP_MIN_POINTS} images"
    if len(rows) >= _UMAP_MIN_POINTS:
        try:
            coordinates = _umap(points, seed)
        except ImportError as error:
            why_not_umap = f"UMAP could not be imported: {error}"
            log.warning("report map drawn with PCA: %s", why_not_umap)
    if coordinates is not None:
        caption = f"UMAP of {shown} embeddings, coloured by cluster."
    else:
        coordinates = _pca(points)
        caption = f"PCA of {shown} embeddings, coloured by cluster ({why_not_umap})."
    clusters = predictions[rows]
    if num_clusters <= 20:
        palette = matplotlib.colormaps["tab10" if num_clusters <= 10 else "tab20"]
        colors = palette(clusters % palette.N)
    else:
        colors = matplotlib.colormaps["turbo"](clusters / (num_clusters - 1))
    # A bare Figure draws with Agg whatever backend pyplot would use, and is never kept.
    figure = Figure(figsize=(7.0, 6.0), dpi=100)
    axis = figure.subplots()
    size = float(np.clip(3000 / len(rows), 2, 30))
    axis.scatter(coordinates[:, 0], coordinates[:, 1], c=colors, s=size, linewidths=0)
    if num_clusters <= 20:
        for cluster in np.unique(clusters):
            axis.scatter([], [], color=colors[clusters == cluster][0], label=str(cluster))
        axis.legend(title="cluster", loc="best", fontsize=8, markerscale=1.5)
    axis.set_xticks([])
    axis.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue(), caption


def _umap(points: np.ndarray, seed: int) -> np.ndarray:
    # UMAP warns about its own internals (tensorflow missing, disconnected neighbour graphs,
    # spectral initialisation falling back to random, numba and scikit-learn deprecations);
    # none of it is actionable by someone reading the report, and the map is drawn anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(15, len(points) - 1),
            random_state=seed,
            n_jobs=1,  # a seed forces one job anyway; saying so avoids its warning
        )
        return np.asarray(reducer.fit_transform(points), dtype=np.float64)


def _pca(points: np.ndarray) -> np.ndarray:
    centered = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    coordinates = centered @ components[:2].T
    # One image or one-dimensional embeddings give a single component; the scatter needs two.
    return np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))

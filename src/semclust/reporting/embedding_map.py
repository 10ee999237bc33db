"""The report's 2-D map of the embeddings: t-SNE (PCA for very few points), coloured by cluster.

scikit-learn's Barnes-Hut t-SNE rather than UMAP: UMAP compiles its numba kernels in every
new process, 15 to 26 s on a 2-core CPU before the first point (docs/BENCHMARKS.md, "The
report's map"), which was most of `semclust predict` on a small folder; t-SNE needs nothing
compiled and maps 3,000 points in about 11 s there.
"""

import io

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from semclust.metrics import l2_normalize

_MAP_MAX_POINTS = 3_000  # t-SNE's time grows with the points; more draw no clearer a map
_TSNE_MIN_POINTS = 10  # below this neighbourhoods say nothing: PCA instead
_PERPLEXITY = 30.0  # scikit-learn's default; fewer points get (n - 1) / 3


def embedding_map(
    embeddings: np.ndarray, predictions: np.ndarray, num_clusters: int, seed: int
) -> tuple[bytes, str]:
    """A scatter PNG of a 2-D t-SNE (PCA for very few points), coloured by cluster, and its
    caption."""
    count = len(embeddings)
    rows = np.arange(count)
    if count > _MAP_MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(count, _MAP_MAX_POINTS, replace=False))
    # Euclidean distances of unit vectors order pairs as cosine similarity does.
    points = l2_normalize(embeddings[rows])
    shown = f"all {count:,}" if len(rows) == count else f"{len(rows):,} of {count:,} (seed {seed})"
    why_not_tsne = None
    if len(rows) < _TSNE_MIN_POINTS:
        why_not_tsne = f"t-SNE needs at least {_TSNE_MIN_POINTS} images"
    elif not np.ptp(points, axis=0).any():
        # t-SNE's PCA start divides by its spread: scikit-learn then crashes the process.
        why_not_tsne = "every embedding is the same point"
    if why_not_tsne is None:
        coordinates = _tsne(points, seed)
        caption = f"t-SNE of {shown} embeddings, coloured by cluster."
    else:
        coordinates = _pca(points)
        caption = f"PCA of {shown} embeddings, coloured by cluster ({why_not_tsne})."
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


def _tsne(points: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE  # only when a map is drawn: about 1.5 s to import

    tsne = TSNE(
        n_components=2,
        perplexity=min(_PERPLEXITY, (len(points) - 1) / 3),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return np.asarray(tsne.fit_transform(points), dtype=np.float64)


def _pca(points: np.ndarray) -> np.ndarray:
    centered = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    coordinates = centered @ components[:2].T
    # One image or one-dimensional embeddings give a single component; the scatter needs two.
    return np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))

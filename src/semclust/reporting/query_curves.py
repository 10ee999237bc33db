"""The report's "Scores against the number of query images" section (SCAN-XAI's view).

For query sets of growing size drawn at random from the labelled images it shows ACC
(Hungarian), NMI and ARI of the cluster assignments, and the top-5 neighbour accuracy of the
embeddings: as in SCAN's neighbour mining, the share of each image's 5 nearest neighbours
(cosine similarity) that carry its label. The neighbours are searched within the query set,
which is what makes that score change with the number of query images.
"""

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from semclust.clustering.neighbors import exact_neighbors
from semclust.metrics import clustering_scores
from semclust.reporting.images import png_uri
from semclust.reporting.markup import esc

#: The smallest query set; the sizes go 50, 100, 200, 500, 1000, ... and end at N.
SMALLEST_QUERY_SET = 50
#: Random query sets drawn per size (one at N, where every draw is the whole set).
SUBSETS_PER_SIZE = 5
NUM_NEIGHBORS = 5
#: At most this many images of a query set are scored by their neighbours (searched among
#: the whole set): it bounds the search at 500·n·D per set, so 50k images take seconds.
NEIGHBOR_QUERIES = 500
#: The scores, as the table and the plot name them.
METRICS = {
    "acc": "ACC (Hungarian)",
    "nmi": "NMI",
    "ari": "ARI",
    "neighbor_acc": f"top-{NUM_NEIGHBORS} neighbour accuracy",
}


@dataclass
class QueryCurves:
    """Scores of random query sets per size: ``scores[metric][i]`` holds one value per set
    of ``sizes[i]`` images (``SUBSETS_PER_SIZE`` of them, one at the last size, N)."""

    sizes: list[int]
    scores: dict[str, list[list[float]]]
    seed: int
    num_neighbors: int = NUM_NEIGHBORS
    neighbor_queries: int = NEIGHBOR_QUERIES

    def mean(self, metric: str) -> np.ndarray:
        """The mean over the query sets of each size."""
        return np.array([np.mean(values) for values in self.scores[metric]])

    def low(self, metric: str) -> np.ndarray:
        """The lowest score among the query sets of each size."""
        return np.array([np.min(values) for values in self.scores[metric]])

    def high(self, metric: str) -> np.ndarray:
        """The highest score among the query sets of each size."""
        return np.array([np.max(values) for values in self.scores[metric]])


def query_set_sizes(count: int, smallest: int = SMALLEST_QUERY_SET) -> list[int]:
    """The 1-2-5 series from ``smallest`` (50, 100, 200, 500, ...) below ``count``, then
    ``count``."""
    if count < 1:
        raise ValueError(f"need at least one image, got {count}")
    sizes, scale = [], 1
    while True:
        for step in (1, 2, 5):
            size = step * scale
            if size >= count:
                return [*sizes, count]
            if size >= smallest:
                sizes.append(size)
        scale *= 10


def scores_by_query_count(
    predictions: np.ndarray,
    targets: np.ndarray | None,
    embeddings: np.ndarray,
    seed: int = 0,
    subsets: int = SUBSETS_PER_SIZE,
    neighbor_queries: int = NEIGHBOR_QUERIES,
) -> QueryCurves | None:
    """ACC, NMI, ARI and top-5 neighbour accuracy of ``subsets`` random query sets of each
    size in :func:`query_set_sizes`, drawn (seeded) from the images with a known label
    (``targets >= 0``); None when no image has one.

    The neighbours are searched exactly among the query set's L2-normalised embeddings;
    in a set larger than ``neighbor_queries`` only that many of its images (at random) are
    scored by their neighbours.
    """
    if targets is None:
        return None
    targets = np.asarray(targets)
    known = targets >= 0
    if not known.any():
        return None
    predictions = np.asarray(predictions)[known]
    targets = targets[known]
    # float32 is what the search takes; converted once, not once per query set.
    embeddings = np.ascontiguousarray(np.asarray(embeddings)[known], dtype=np.float32)
    count = len(targets)
    sizes = query_set_sizes(count)
    rng = np.random.default_rng(seed)
    scores: dict[str, list[list[float]]] = {metric: [] for metric in METRICS}
    for size in sizes:
        per_set: dict[str, list[float]] = {metric: [] for metric in METRICS}
        for _ in range(1 if size == count else subsets):
            # A random order: its first rows are also a random sample for the neighbours.
            rows = rng.permutation(count)[:size]
            found = clustering_scores(predictions[rows], targets[rows])
            for metric in ("acc", "nmi", "ari"):
                per_set[metric].append(found[metric])
            per_set["neighbor_acc"].append(
                _neighbor_accuracy(embeddings[rows], targets[rows], neighbor_queries)
            )
        for metric, values in per_set.items():
            scores[metric].append(values)
    return QueryCurves(sizes, scores, seed, neighbor_queries=neighbor_queries)


def _neighbor_accuracy(embeddings: np.ndarray, targets: np.ndarray, queries: int) -> float:
    """Share of the top-5 neighbours (within these rows) of the first ``queries`` rows that
    carry their row's label; fewer neighbours where there are not six rows."""
    num_neighbors = min(NUM_NEIGHBORS, len(targets) - 1)
    if num_neighbors < 1:
        return float("nan")
    rows = np.arange(min(queries, len(targets)))
    neighbors = exact_neighbors(embeddings, rows, num_neighbors)
    return float((targets[neighbors] == targets[rows, None]).mean())


def query_curves_png(curves: QueryCurves) -> bytes:
    """One line per score against the number of query images (log scale), the mean with
    its min-max band, as PNG bytes."""
    # A bare Figure draws with Agg whatever backend pyplot would use.
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axis = figure.add_subplot(1, 1, 1)
    sizes = np.asarray(curves.sizes, dtype=np.float64)
    lowest = 0.0
    for metric, name in METRICS.items():
        mean, low, high = curves.mean(metric), curves.low(metric), curves.high(metric)
        (line,) = axis.plot(sizes, mean, marker="o", markersize=3, label=name)
        axis.fill_between(sizes, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        lowest = min(lowest, float(np.nanmin(low)))
    axis.set_xscale("log")
    axis.set_ylim(lowest - 0.02, 1.02)
    axis.set_xlabel("number of query images")
    axis.set_ylabel("score")
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def query_curves_section(curves: QueryCurves | None) -> str:
    """The plot and the table of the scores per size; nothing without labels."""
    if curves is None:
        return ""
    count = curves.sizes[-1]
    head = '<section id="query-curves"><h2>Scores against the number of query images</h2>'
    if len(curves.sizes) < 2:
        return (
            f'{head}<p class="note">Only {count:,} images have a known label: too few for a '
            f"curve (the smallest query set is {SMALLEST_QUERY_SET}).</p></section>"
        )
    repeats = max(len(values) for values in curves.scores["acc"])
    sampled = (
        f" In sets of more than {curves.neighbor_queries:,} images it is averaged over "
        f"{curves.neighbor_queries:,} of them, drawn at random, their neighbours still searched "
        "among the whole set."
        if count > curves.neighbor_queries
        else ""
    )
    caption = (
        f"Mean over {repeats} random query sets per size (seed {curves.seed}; the last size is "
        f"all {count:,} labelled images, one set), band: lowest to highest. ACC, NMI and ARI "
        "score the cluster assignments of the set's images. The top-"
        f"{curves.num_neighbors} neighbour accuracy is the share of each image's "
        f"{curves.num_neighbors} nearest neighbours (cosine similarity of the embeddings) "
        "that carry its label, the neighbours searched within the same query set, so it "
        f"changes with the number of query images.{sampled}"
    )
    return (
        f"{head}<p>Random query sets of the {count:,} images with a known label, scored as "
        "SCAN-XAI does against their number.</p>"
        '<figure class="map query-curves">'
        f'<img src="{png_uri(query_curves_png(curves))}" alt="ACC, NMI, ARI and top-'
        f'{curves.num_neighbors} neighbour accuracy against the number of query images">'
        f"<figcaption>{esc(caption)}</figcaption></figure>{_table(curves)}</section>"
    )


def _table(curves: QueryCurves) -> str:
    """One row per size: the mean of each score (full precision in ``data-mean``) and its
    range."""
    header = "".join(f'<th scope="col">{esc(name)}</th>' for name in METRICS.values())
    rows = []
    for index, size in enumerate(curves.sizes):
        cells = []
        for metric in METRICS:
            values = curves.scores[metric][index]
            mean = float(np.mean(values))
            spread = f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else ""
            cells.append(f'<td data-metric="{metric}" data-mean="{mean!r}">{mean:.3f}{spread}</td>')
        rows.append(
            f'<tr data-queries="{size}"><th scope="row">{size:,}</th>'
            f"<td>{len(curves.scores['acc'][index])}</td>{''.join(cells)}</tr>"
        )
    return (
        '<div class="scroll"><table class="query-curves"><tr><th scope="col">query images</th>'
        f'<th scope="col">sets</th>{header}</tr>{"".join(rows)}</table></div>'
    )

"""The confusion matrix of a labelled evaluation as a PNG: classes against clusters."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from semclust.metrics import contingency_matrix, hungarian_match


def save_confusion_matrix(
    predictions: np.ndarray, targets: np.ndarray, path: Path, class_names: list[str] | None = None
) -> None:
    """Classes (rows) against clusters (columns), clusters ordered by their matched class."""
    counts = contingency_matrix(predictions, targets).T  # (classes, clusters)
    matched = hungarian_match(predictions, targets)
    # Matched clusters first, in class order, so a good clustering shows a diagonal.
    order = sorted(range(counts.shape[1]), key=lambda c: (matched.get(c, counts.shape[0]), c))
    counts = counts[:, order]
    size = max(4.0, 0.45 * max(counts.shape))
    # A bare Figure draws with Agg whatever backend pyplot would use, and pyplot keeps no
    # reference to it, so nothing needs closing.
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis)
    axis.set_xticks(range(len(order)), [str(c) for c in order])
    axis.set_yticks(range(counts.shape[0]), class_names or [str(c) for c in range(len(counts))])
    axis.set_xlabel("cluster")
    axis.set_ylabel("class")
    for (row, col), value in np.ndenumerate(counts):
        if value:
            color = "white" if value > counts.max() / 2 else "black"
            axis.text(col, row, str(value), ha="center", va="center", color=color, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)

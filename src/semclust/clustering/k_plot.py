"""One figure of every K criterion's curve, drawn from the plain dicts the manifest keeps
(:meth:`semclust.clustering.choose_k.KChoice.criteria`), so the run report can draw it
again from the manifest alone."""

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def k_criteria_figure(criteria: Mapping[str, Mapping[str, Any]], chosen_k: int) -> Figure:
    """One panel per criterion with a curve: the curve, its own K (dotted), the chosen K
    (dashed red) and the criterion's threshold and typical value where it has them."""
    drawn = {
        name: entry
        for name, entry in criteria.items()
        if entry.get("curve") and entry["curve"].get("x")
    }
    columns = min(3, max(1, len(drawn)))
    rows = max(1, -(-len(drawn) // columns))
    # A bare Figure draws with Agg whatever backend pyplot would use.
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), dpi=100)
    if not drawn:
        figure.text(0.5, 0.5, "no criterion curve to draw", ha="center")
        return figure
    for index, (name, entry) in enumerate(drawn.items(), start=1):
        curve = entry["curve"]
        axis = figure.add_subplot(rows, columns, index)
        x = np.asarray(curve["x"], dtype=np.float64)
        y = np.asarray(curve["y"], dtype=np.float64)
        axis.plot(x, y, marker="o", markersize=3)
        axis.axvline(entry["k"], color="tab:gray", linestyle=":", label=f"its K={entry['k']}")
        axis.axvline(chosen_k, color="tab:red", linestyle="--", label=f"chosen K={chosen_k}")
        if curve.get("threshold") is not None:
            axis.axhline(curve["threshold"], color="tab:green", label="threshold")
        if curve.get("typical") is not None:
            axis.axhline(curve["typical"], color="tab:purple", linestyle=":", label="median size")
        axis.legend(loc="best", fontsize=7)
        axis.set_title(f"{name}: K={entry['k']}", fontsize=9)
        axis.set_xlabel(curve.get("x_label", ""), fontsize=8)
        axis.set_ylabel(curve.get("y_label", ""), fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    return figure


def plot_k_criteria(criteria: Mapping[str, Mapping[str, Any]], chosen_k: int, path: Path) -> Path:
    """:func:`k_criteria_figure` saved as a PNG at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k_criteria_figure(criteria, chosen_k).savefig(path, format="png")
    return path


def k_criteria_png(criteria: Mapping[str, Mapping[str, Any]], chosen_k: int) -> bytes:
    """:func:`k_criteria_figure` as PNG bytes (for a report that inlines its images)."""
    buffer = io.BytesIO()
    k_criteria_figure(criteria, chosen_k).savefig(buffer, format="png")
    return buffer.getvalue()

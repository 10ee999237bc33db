"""The comparison of classic candidates on disk (CSV, JSON, the pick's labels) and on the
console (a table)."""

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semclust.clustering.selection import Comparison


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of every row, in first-seen order (rows differ: rank columns, label scores)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _json_safe(value: Any) -> Any:
    """``value`` with numpy scalars as Python ones and NaN/inf as None, which JSON can hold."""
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_comparison(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """``comparison.csv`` (every candidate, best first), ``comparison.json`` (select_by,
    reason, best and rows) and ``predictions.npy`` (the pick's int64 labels) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out_dir / "comparison.csv",
        "summary": out_dir / "comparison.json",
        "predictions": out_dir / "predictions.npy",
    }
    with paths["table"].open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=_columns(comparison.rows), restval="")
        writer.writeheader()
        for row in comparison.rows:
            writer.writerow({key: "" if item is None else item for key, item in row.items()})
    summary = {
        "select_by": comparison.select_by,
        "reason": comparison.reason,
        "best": comparison.best,
        "rows": comparison.rows,
    }
    paths["summary"].write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    np.save(paths["predictions"], np.asarray(comparison.predictions, dtype=np.int64))
    return paths


def format_comparison(comparison: Comparison) -> str:
    """A console table of the candidates, best first, the pick marked with ``*``."""
    with_acc = any(row.get("acc") is not None for row in comparison.rows)
    header = ["", "method", "reduction", "K found", "noise", "sil", "CH", "DB"]
    header += ["ACC"] if with_acc else []
    header += ["time s", "note"]

    def number(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    table = [header]
    for row in comparison.rows:
        reduction = row["reduction"]
        if row["reduction_params"]:
            reduction += f"({row['reduction_params']})"
        cells = [
            "*" if row["selected"] else "",
            row["method"],
            reduction,
            number(row["clusters_found"], "d"),
            number(row["noise_fraction"], ".1%"),
            number(row["silhouette"], ".3f"),
            number(row["calinski_harabasz"], ".1f"),
            number(row["davies_bouldin"], ".3f"),
        ]
        cells += [number(row.get("acc"), ".3f")] if with_acc else []
        cells += [number(row["wall_time_s"], ".2f"), row["note"] or ""]
        table.append(cells)
    widths = [max(len(cells[column]) for cells in table) for column in range(len(header))]
    left = {0, 1, 2, len(header) - 1}
    lines = [
        "  ".join(
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in table
    ]
    return "\n".join([*lines, f"Selected by {comparison.select_by}: {comparison.reason}"])

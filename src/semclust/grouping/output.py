"""What `semclust group` writes: groups.csv, skipped.csv, groups/<n>/ and outliers/ folders
of links or copies, and summary.json. The input folder is never written to."""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semclust.grouping.batches import Grouping
from semclust.output_folder import check_output_folder, place_file

#: Every file and folder `semclust group` writes; ``overwrite`` removes only these.
OUTPUTS = (
    "groups.csv",
    "skipped.csv",
    "summary.json",
    "groups.html",
    "threshold_curve.png",
    "groups",
    "outliers",
)
#: The group number of images that are like no other.
OUTLIER = -1


@dataclass
class Row:
    """One line of groups.csv."""

    path: Path
    group: int
    representative: Path
    similarity: float


def prepare_output(input_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder inside the input (or the input inside it); a non-empty output
    folder needs ``overwrite``, which removes only :data:`OUTPUTS`. Then create it."""
    check_output_folder(input_dir, out_dir, overwrite, OUTPUTS, "group")
    out_dir.resolve().mkdir(parents=True, exist_ok=True)


def numbered_rows(grouping: Grouping) -> list[Row]:
    """groups.csv's rows: groups numbered from 1, largest first (ties: representative's
    path), each led by its representative, members by similarity; then the outliers."""
    sizes = np.bincount(grouping.component) if len(grouping.component) else np.zeros(0, int)
    leaders = {}
    for row, component in enumerate(grouping.component):
        if sizes[component] > 1:
            leaders[int(component)] = int(grouping.representative[row])
    ranked = sorted(leaders, key=lambda c: (-sizes[c], str(grouping.paths[leaders[c]])))
    number = {component: index for index, component in enumerate(ranked, start=1)}
    rows = []
    for row, path in enumerate(grouping.paths):
        component = int(grouping.component[row])
        rows.append(
            Row(
                path,
                number.get(component, OUTLIER),
                grouping.paths[int(grouping.representative[row])],
                float(grouping.similarity[row]),
            )
        )

    def order(row: Row) -> tuple:
        is_leader = row.path == row.representative
        similarity = -row.similarity if np.isfinite(row.similarity) else 1.0
        group = row.group if row.group != OUTLIER else len(number) + 1
        return (group, not is_leader, similarity, str(row.path))

    return sorted(rows, key=order)


def write_tables(out_dir: Path, rows: list[Row], skipped: list[tuple[str, str]]) -> None:
    """groups.csv (path, group, representative, similarity) and skipped.csv (path, reason)."""
    with open(out_dir / "groups.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "group", "representative", "similarity"])
        for row in rows:
            similarity = f"{row.similarity:.6f}" if np.isfinite(row.similarity) else ""
            writer.writerow([str(row.path), row.group, str(row.representative), similarity])
    with open(out_dir / "skipped.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "reason"])
        writer.writerows(skipped)


def group_folder_name(group: int, groups: int) -> str:
    """``0007`` for group 7 (wider when there are more than 9,999 groups)."""
    return f"{group:0{max(4, len(str(groups)))}d}"


def place_files(out_dir: Path, input_dir: Path, rows: list[Row], link: str) -> None:
    """Link (or copy) each image into groups/<n>/ or outliers/, under its path relative to
    the input with folders joined by ``__``; the originals stay where they are."""
    if link == "none":
        return
    groups = max((row.group for row in rows), default=0)
    (out_dir / "outliers").mkdir(exist_ok=True)
    for index, row in enumerate(rows):
        if row.group == OUTLIER:
            folder = out_dir / "outliers"
        else:
            folder = out_dir / "groups" / group_folder_name(row.group, groups)
            folder.mkdir(parents=True, exist_ok=True)
        try:
            relative = row.path.relative_to(input_dir)
        except ValueError:  # a path given outside the folder
            relative = Path(row.path.name)
        place_file(row.path, folder, relative, index, link)


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    """summary.json in ``out_dir``."""
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path

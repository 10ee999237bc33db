"""`semclust group` on a folder: find the images, group them, write every output."""

import time
from pathlib import Path
from typing import Any

import numpy as np

from semclust.data.folder import find_image_files
from semclust.grouping.batches import Grouping, group_images
from semclust.grouping.methods import Method
from semclust.grouping.output import (
    OUTLIER,
    numbered_rows,
    place_files,
    prepare_output,
    write_summary,
    write_tables,
)
from semclust.grouping.registry import build_method, check_method_available
from semclust.grouping.settings import GroupOptions
from semclust.grouping.threshold import save_curve
from semclust.output_folder import LINK_MODES


def check_options(options: GroupOptions) -> None:
    """Refuse settings that cannot work, naming the value."""
    if options.link not in LINK_MODES:
        raise ValueError(f"link must be one of {LINK_MODES}, got {options.link!r}")
    threshold = options.threshold
    given = threshold is not None and threshold != "auto"
    if given and (isinstance(threshold, str) or not 0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"threshold must be a similarity in [0, 1] or auto, got {threshold!r}")
    # A batch is grouped within itself, so it needs two images to hold a pair.
    for name, least in (("batch_size", 2), ("neighbors", 1), ("sample_size", 1), ("workers", 1)):
        if getattr(options, name) < least:
            raise ValueError(f"{name} must be at least {least}, got {getattr(options, name)}")


def group_folder(
    input_dir: str | Path,
    out_dir: str | Path,
    options: GroupOptions | None = None,
    method: Method | None = None,
) -> dict[str, Any]:
    """Group every image under ``input_dir`` into ``out_dir`` and return the summary (also
    written as summary.json). ``method`` overrides the one ``options`` names (for a network
    built in code, say)."""
    started = time.perf_counter()
    options = options or GroupOptions()
    check_options(options)
    if method is None:
        check_method_available(options.method)
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.exists():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise ValueError(f"{input_dir} is a file; group needs a folder of images")
    prepare_output(input_dir, out_dir, options.overwrite)
    paths, unlistable = find_image_files(input_dir)
    if not paths:
        raise ValueError(f"no image files in {input_dir} (looked for common image extensions)")
    method = method or build_method(options)

    grouping = group_images(paths, method, options)
    skipped = list(unlistable) + grouping.skipped
    if not grouping.paths:
        raise ValueError(f"none of the {len(paths)} image files in {input_dir} could be read")
    rows = numbered_rows(grouping)
    write_tables(out_dir, rows, skipped)
    place_files(out_dir, input_dir, rows, options.link)
    curve = None
    if grouping.choice is not None:
        curve = save_curve(
            grouping.choice, out_dir / "threshold_curve.png", f"semclust group: {method.name}"
        )
    summary = _summary(input_dir, options, method, grouping, rows, skipped, len(paths))
    if options.report:
        from semclust.grouping.page import write_page

        summary["report"] = str(write_page(out_dir / "groups.html", rows, summary, skipped, curve))
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    write_summary(out_dir, summary)
    return summary


def _summary(
    input_dir: Path,
    options: GroupOptions,
    method: Method,
    grouping: Grouping,
    rows: list,
    skipped: list[tuple[str, str]],
    found: int,
) -> dict[str, Any]:
    sizes = np.bincount(np.array([row.group for row in rows if row.group != OUTLIER], np.int64))[1:]
    if options.threshold == "auto":
        source = "auto" if grouping.choice and grouping.choice.from_knee else "auto (default)"
    else:
        source = "default" if options.threshold is None else "given"
    summary = {
        "input_dir": str(input_dir),
        "method": method.name,
        "similarity": method.describes,
        "threshold": grouping.threshold,
        "threshold_source": source,
        "images_found": found,
        "images_grouped": len(rows),
        "groups": int(len(sizes)),
        "images_in_groups": int(sizes.sum()),
        "outliers": sum(row.group == OUTLIER for row in rows),
        "largest_groups": sorted(sizes.tolist(), reverse=True)[:10],
        "skipped": len(skipped),
        "skipped_files": [{"path": path, "reason": reason} for path, reason in skipped],
        "neighbors": options.neighbors,
        "batch_size": options.batch_size,
        **grouping.stats,
        "link": options.link,
    }
    if grouping.choice is not None:
        summary["threshold_reason"] = grouping.choice.reason
        summary["threshold_curve"] = "threshold_curve.png"
    return summary

"""groups.html: the groups, largest first, as thumbnails, in the style of the cluster report
(same markup helpers and stylesheet; one self-contained file, nothing fetched)."""

from collections.abc import Iterable
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from semclust.grouping.images import decode
from semclust.grouping.output import OUTLIER, Row

#: The page shows this many groups (the largest) and thumbnails per group; groups.csv and
#: the folders hold everything.
SHOWN_GROUPS = 200
SHOWN_PER_GROUP = 12
SHOWN_OUTLIERS = 24


def _figures(rows: Iterable[Row], representative: bool) -> str:
    from semclust.reporting.images import file_name
    from semclust.reporting.markup import esc, figure

    parts = []
    for row in rows:
        try:
            image = decode(row.path, 160)
        except Exception:  # changed or removed since it was read: show the name only
            parts.append(f'<p class="note">{esc(row.path)}: could not be read again</p>')
            continue
        lead = representative and row.path == row.representative
        score = (
            "representative"
            if lead
            else (f"{row.similarity:.3f}" if np.isfinite(row.similarity) else "n/a")
        )
        caption = f'{esc(score)}<br><span class="path">{esc(file_name(str(row.path)))}</span>'
        parts.append(figure(image, caption, str(row.path)))
    return f'<div class="grid">{"".join(parts)}</div>'


def write_page(
    path: Path,
    rows: list[Row],
    summary: dict[str, Any],
    skipped: list[tuple[str, str]],
    curve: Path | None,
) -> Path:
    """Write the page of ``rows`` (as ordered for groups.csv) to ``path``."""
    from semclust.reporting.images import png_uri
    from semclust.reporting.markup import esc, page, table

    grouped = [
        (group, list(members))
        for group, members in groupby(
            (row for row in rows if row.group != OUTLIER), key=lambda row: row.group
        )
    ]
    outliers = [row for row in rows if row.group == OUTLIER]
    title = f"semclust group: {summary['input_dir']}"
    facts = [
        ("input", summary["input_dir"]),
        ("method", f"{summary['method']}: {summary['similarity']}"),
        ("threshold", f"{summary['threshold']:.4f} ({summary['threshold_source']})"),
        ("images", f"{summary['images_grouped']:,} grouped of {summary['images_found']:,}"),
        ("groups", f"{summary['groups']:,} ({summary['images_in_groups']:,} images)"),
        ("outliers", f"{summary['outliers']:,}"),
        ("unreadable files", f"{len(skipped):,}"),
    ]
    body = [
        f"<h1>{esc(title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        table(facts),
    ]
    if summary.get("threshold_reason"):
        body.append(f"<p>{esc(summary['threshold_reason'])}.</p>")
    if curve is not None and curve.is_file():
        body.append(
            f'<figure class="map"><img src="{png_uri(curve.read_bytes())}" '
            'alt="pairs found against the threshold"><figcaption>Pairs found at or above each '
            "threshold, on the sample</figcaption></figure>"
        )
    body.append("</section>")
    body.append('<section id="groups"><h2>Groups, largest first</h2>')
    body.append(
        "<p>Each group is a chain of images linked at or above the threshold; the number "
        "under an image is its similarity to the group's representative.</p>"
    )
    for group, members in grouped[:SHOWN_GROUPS]:
        more = len(members) - SHOWN_PER_GROUP
        note = f" · {more:,} more in groups.csv" if more > 0 else ""
        body += [
            f'<section class="cluster" id="group-{group}" data-group="{group}">',
            f"<h3>Group {group}</h3>",
            f'<p class="facts">{len(members):,} images{note}</p>',
            _figures(members[:SHOWN_PER_GROUP], representative=True),
            "</section>",
        ]
    if len(grouped) > SHOWN_GROUPS:
        body.append(
            f'<p class="note">{len(grouped) - SHOWN_GROUPS:,} smaller groups are not shown; '
            "groups.csv lists every group.</p>"
        )
    body.append("</section>")
    body.append(f'<section id="outliers"><h2>Outliers ({len(outliers):,})</h2>')
    if outliers:
        body.append(
            f"<p>Images like no other at this threshold; the first {SHOWN_OUTLIERS} shown.</p>"
        )
        body.append(_figures(outliers[:SHOWN_OUTLIERS], representative=False))
    body.append("</section>")
    if skipped:
        cells = "".join(f"<tr><td>{esc(p)}</td><td>{esc(r)}</td></tr>" for p, r in skipped)
        body.append(
            f'<section id="errors"><h2>Unreadable files ({len(skipped):,})</h2>'
            "<p>These files could not be decoded and are in no group.</p>"
            f'<table class="errors"><tr><th>file</th><th>reason</th></tr>{cells}</table>'
            "</section>"
        )
    path.write_text(page(title, "\n".join(body)), encoding="utf-8")
    return path

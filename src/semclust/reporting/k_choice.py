"""The report's "How K was chosen" section, for runs with ``data.num_clusters=auto``.

It shows what the run saved when it chose K (``choose_k/choice.json``, written by the
``num_clusters`` stage helper): every criterion's curve in one plot, the K each criterion
picked, which one decided and why. Nothing is recomputed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from semclust.clustering.k_plot import k_criteria_png
from semclust.reporting.images import png_uri
from semclust.reporting.markup import esc, table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class KChoiceSummary:
    """How K was chosen, as the run saved it; ``criteria`` maps each criterion to its
    ``{"k", "reason", "curve"}`` (or ``{"error"}`` where it failed)."""

    value: int
    criterion: str
    reason: str
    criteria: dict[str, dict[str, Any]]
    swept: tuple[int, int] | None = None
    features: str | None = None
    neighbors: str | None = None
    wall_time_s: float | None = None
    plot_png: bytes | None = None  # the saved k_criteria.png; None: drawn from the curves

    @classmethod
    def from_saved(
        cls, entry: Mapping[str, Any], plot_png: bytes | None = None
    ) -> "KChoiceSummary":
        """From the saved choice (``choice.json`` or the manifest's ``num_clusters``)."""
        missing = [key for key in ("value", "criterion", "reason") if key not in entry]
        if missing:
            raise ValueError(f"the saved K choice lacks {', '.join(missing)}")
        swept = entry.get("swept")
        return cls(
            value=int(entry["value"]),
            criterion=str(entry["criterion"]),
            reason=str(entry["reason"]),
            criteria=dict(entry.get("criteria") or {}),
            swept=(int(swept[0]), int(swept[1])) if swept else None,
            features=entry.get("features"),
            neighbors=entry.get("neighbors"),
            wall_time_s=entry.get("wall_time_s"),
            plot_png=plot_png,
        )

    def plot(self) -> bytes | None:
        """The criteria plot as PNG bytes: the saved one, else drawn from the saved curves;
        None when there is neither."""
        if self.plot_png and self.plot_png.startswith(PNG_SIGNATURE):
            return self.plot_png
        if not any(entry.get("curve", {}).get("x") for entry in self.criteria.values()):
            return None
        return k_criteria_png(self.criteria, self.value)


def k_choice_section(choice: KChoiceSummary | None) -> str:
    """The plot, the criteria table and the reason; nothing when K was given as a number."""
    if choice is None:
        return ""
    facts = [("chosen K", str(choice.value)), ("decided by", choice.criterion)]
    if choice.swept:
        facts.append(("K swept", f"{choice.swept[0]} to {choice.swept[1]}"))
    if choice.features:
        facts.append(("features", choice.features))
    if choice.neighbors:
        facts.append(("neighbour graph", choice.neighbors))
    if choice.wall_time_s is not None:
        facts.append(("time", f"{choice.wall_time_s:.1f} s"))
    png = choice.plot()
    plot = (
        '<figure class="map k-criteria">'
        f'<img src="{png_uri(png)}" alt="every K criterion against K, the chosen K marked">'
        "<figcaption>Each criterion's curve; dotted: the K it picked, dashed red: the chosen "
        "K.</figcaption></figure>"
        if png
        else '<p class="note">No criterion curve was saved, so there is no plot.</p>'
    )
    return (
        '<section id="k-choice"><h2>How K was chosen</h2>'
        "<p>The number of clusters was chosen without labels (<code>data.num_clusters=auto"
        f"</code>): {esc(choice.reason)}</p>{table(facts)}"
        f"{_criteria_table(choice)}{plot}</section>"
    )


def _criteria_table(choice: KChoiceSummary) -> str:
    """One row per criterion: the K it picked (or its error), the deciding one marked."""
    if not choice.criteria:
        return ""
    rows = []
    for name, entry in choice.criteria.items():
        decided = name == choice.criterion
        if "error" in entry:
            k, note = "—", f"failed: {entry['error']}"
        else:
            k, note = entry.get("k", "?"), entry.get("reason", "")
        row_class = ' class="decided"' if decided else ""
        rows.append(
            f'<tr{row_class}><th scope="row">{esc(name)}</th><td>{esc(k)}</td>'
            f"<td>{'decided' if decided else ''}</td><td>{esc(note)}</td></tr>"
        )
    return (
        '<table class="k-criteria"><tr><th scope="col">criterion</th><th scope="col">K</th>'
        '<th scope="col"></th><th scope="col">why</th></tr>' + "".join(rows) + "</table>"
    )

"""``--threshold auto``: the curve of pairs found against the threshold, and its knee.

On a sample of images and their nearest candidates, the number of pairs at or above a
threshold grows in two rises as the threshold is lowered: first the near-duplicates, then
the bulk of unrelated neighbours. On a log scale the curve flattens between the two. The
knee chosen is where the log-scale curve is flattest above the bulk (the smallest share of
new pairs per step, the histogram smoothed over about 0.04), provided the curve is at least
twice as steep somewhere between there and the bulk; otherwise there is no knee (no
near-duplicates in the sample, say, or too few pairs to draw a curve: a folder of a few dozen
images) and the method's default is used.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Width, in similarity, of the window the histogram is smoothed over.
_SMOOTHING = 0.04
#: The fewest sampled pairs per histogram bin that a knee is read from.
_PAIRS_PER_BIN = 2


@dataclass
class ThresholdChoice:
    """The chosen threshold, why, and the curve it was read from."""

    threshold: float
    reason: str
    #: Thresholds of the curve (ascending) and the number of pairs at or above each.
    thresholds: np.ndarray
    pairs_found: np.ndarray
    #: False when the curve showed no knee and the fallback was used.
    from_knee: bool


def choose_threshold(
    similarities: np.ndarray, step: float, fallback: float, sampled: str
) -> ThresholdChoice:
    """The knee of the pairs-found curve of ``similarities`` (in [0, 1], resolution
    ``step``), or ``fallback`` when the curve has none; ``sampled`` says what the pairs are,
    for the reason."""
    similarities = np.clip(np.asarray(similarities, np.float64), 0.0, 1.0)
    bins = int(round(1.0 / step)) + 1  # the last bin holds similarity 1 exactly
    thresholds = np.arange(bins) * step
    counts = np.bincount(
        np.minimum((similarities / step + 1e-6).astype(np.int64), bins - 1), minlength=bins
    )
    pairs_found = np.cumsum(counts[::-1])[::-1]  # pairs at or above each threshold

    def fallen_back(why: str) -> ThresholdChoice:
        reason = f"no knee in the curve of {sampled}: {why}; used the method's default"
        return ThresholdChoice(fallback, reason, thresholds, pairs_found, False)

    # Two rises and a flat stretch between them need more than a pair or two per bin: on
    # fewer, the flattest step is as likely a gap inside the bulk of unrelated pairs.
    if len(similarities) < _PAIRS_PER_BIN * bins:
        return fallen_back(
            f"only {len(similarities)} pairs, fewer than the {_PAIRS_PER_BIN * bins} a curve "
            f"at steps of {step:g} needs"
        )
    width = max(3, int(round(_SMOOTHING / step)) | 1)
    kernel = np.bartlett(width + 2)[1:-1]
    smooth = np.convolve(counts, kernel / kernel.sum(), mode="same")
    bulk = int(np.argmax(smooth))
    # Candidate knees: above the bulk, with enough pairs above them to be a first rise.
    enough = max(3, int(0.002 * len(similarities)))
    above = np.array(
        [b for b in range(bulk + 1, bins - 1) if pairs_found[b + 1] >= enough], np.int64
    )
    if not len(above):
        return fallen_back(
            f"fewer than {enough} pairs lie above the bulk of pairs (similarity "
            f"{thresholds[bulk]:.3f})"
        )
    # The log-scale slope: the share of the pairs at or above a threshold that it adds.
    slope = smooth / np.maximum(pairs_found, 1)
    valley = int(above[np.argmin(slope[above])])  # the lowest among equals
    steepest = float(slope[bulk : valley + 1].max())
    if slope[valley] > 0.5 * steepest:
        return fallen_back(
            f"between the bulk of pairs (similarity {thresholds[bulk]:.3f}) and the top the "
            "log-scale curve never flattens to half its steepest slope"
        )
    threshold = round(float((valley + 0.5) * step), 4)
    linked = int(pairs_found[valley + 1])
    reason = (
        f"knee of the curve of {sampled}: on a log scale it is flattest at similarity "
        f"{thresholds[valley]:.3f} (adding {slope[valley]:.1%} of the pairs per step, against "
        f"up to {steepest:.1%} towards the bulk of unrelated neighbours at "
        f"{thresholds[bulk]:.3f}); the threshold {threshold:.4f} keeps the {linked:,} pairs "
        "above that flat step"
    )
    return ThresholdChoice(threshold, reason, thresholds, pairs_found, True)


def save_curve(choice: ThresholdChoice, path: Path, title: str) -> Path:
    """The pairs-found curve with the chosen threshold marked, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    shown = choice.pairs_found > 0
    axes.step(choice.thresholds[shown], choice.pairs_found[shown], where="post")
    axes.set_yscale("log")
    axes.axvline(choice.threshold, color="tab:red", linestyle="--")
    label = "knee" if choice.from_knee else "default (no knee)"
    axes.annotate(
        f"{label}: {choice.threshold:.3f}",
        (choice.threshold, 0.95),
        xycoords=("data", "axes fraction"),
        ha="right",
        va="top",
        color="tab:red",
    )
    axes.set_xlabel("threshold (similarity)")
    axes.set_ylabel("pairs found at or above it")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.savefig(path)
    return path

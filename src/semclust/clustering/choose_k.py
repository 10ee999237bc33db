"""Choosing the number of clusters without labels.

A k-means sweep over K, read by silhouette, the elbow of the inertia curve, Calinski-Harabasz
or Davies-Bouldin; the communities of SCAN's neighbour graph
(:mod:`semclust.clustering.graph_communities`, the default); and the criteria of
:mod:`semclust.clustering.k_criteria` (eigengap of the kNN graph, GMM BIC, over-cluster-and-
merge by neighbour agreement). :func:`estimate_k` runs
the chosen criterion and any others to compare, and explains the choice.

numpy, SciPy, scikit-learn, networkx and matplotlib only, so it runs on any (N, D) feature matrix.
"""

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.cluster import KMeans

from semclust.clustering.features import check_features
from semclust.clustering.graph_communities import communities_k
from semclust.clustering.k_criteria import KEstimate, eigengap_k, gmm_bic_k, knn_graph, merge_k
from semclust.clustering.k_plot import plot_k_criteria
from semclust.clustering.settings import (
    CRITERIA,
    GRAPH_CRITERIA,
    SWEEP_CRITERIA,
    ChooseKSettings,
)
from semclust.metrics import l2_normalize, label_free_scores

_HIGHER_IS_BETTER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}
_NAMES = {
    "silhouette": "silhouette",
    "calinski_harabasz": "Calinski-Harabasz",
    "davies_bouldin": "Davies-Bouldin",
}


def _check_k_values(k_values: Sequence[int], num_samples: int) -> list[int]:
    values = list(k_values)
    if not values:
        raise ValueError("k_values is empty; give at least one K in [2, N)")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise ValueError(f"each K must be an integer, got {k!r}")
        if not 2 <= k < num_samples:
            raise ValueError(f"K must be in [2, N) = [2, {num_samples}), got {k}")
    return sorted({int(k) for k in values})


def sweep_k(
    features: Any,
    k_values: Sequence[int],
    seed: int,
    sample_size: int = ChooseKSettings.sample_size,
) -> list[dict]:
    """One row per K (ascending): k-means (k-means++, 10 restarts) on the L2-normalised
    features and its ``inertia``, ``silhouette`` (cosine, on a seeded sample of
    ``sample_size`` points, the same sample for every K), ``calinski_harabasz`` and
    ``davies_bouldin``. A score is None where k-means found fewer than two clusters."""
    features = check_features(features)
    normalized = l2_normalize(features)
    table = []
    for k in _check_k_values(k_values, len(features)):
        model = KMeans(k, init="k-means++", n_init=10, random_state=seed).fit(normalized)
        scores = label_free_scores(
            normalized, model.labels_, silhouette_sample_size=sample_size, seed=seed
        )
        table.append(
            {
                "k": k,
                "inertia": float(model.inertia_),
                **{key: scores.get(key) for key in _NAMES},
            }
        )
    return table


def elbow_k(k_values: Sequence[int], inertias: Sequence[float]) -> int:
    """The elbow of the inertia curve by kneedle (Satopää et al., 2011).

    Both axes are scaled to [0, 1]; the elbow is the K whose point lies farthest below the
    chord from the first point to the last. A curve nowhere below its chord (straight or
    bending the wrong way) has no elbow, and the smallest K is returned.
    """
    k = np.asarray(k_values, dtype=np.float64)
    inertia = np.asarray(inertias, dtype=np.float64)
    if k.ndim != 1 or k.shape != inertia.shape or k.size < 2:
        raise ValueError(
            f"need as many inertias as K values, at least 2, got {k.shape} and {inertia.shape}"
        )
    if not np.isfinite(inertia).all():
        raise ValueError("inertias must be finite")
    order = np.argsort(k)
    k, inertia = k[order], inertia[order]
    if np.unique(k).size != k.size:
        raise ValueError(f"K values must be distinct, got {k.astype(int).tolist()}")
    x = (k - k[0]) / (k[-1] - k[0])
    span = inertia.max() - inertia.min()
    y = (inertia - inertia.min()) / span if span > 0 else np.zeros_like(inertia)
    below_chord = (y[0] + (y[-1] - y[0]) * x) - y
    best = int(np.argmax(below_chord))
    # A tolerance, so that rounding on a straight line does not make an elbow.
    return int(k[best]) if below_chord[best] > 1e-9 else int(k[0])


def _k_range(ks: Sequence[int]) -> str:
    if len(ks) > 2 and list(ks) == list(range(ks[0], ks[-1] + 1)):
        return f"K={ks[0]}..{ks[-1]}"
    return "K in {" + ", ".join(str(k) for k in ks) + "}"


def pick_k(table: Sequence[Mapping[str, Any]], criterion: str = "silhouette") -> tuple[int, str]:
    """The K that ``criterion`` prefers in a :func:`sweep_k` table, and a one-sentence reason
    with the numbers (which always says where the elbow is too)."""
    if criterion not in SWEEP_CRITERIA:
        raise ValueError(
            f"{criterion!r} is not read from the k-means sweep; choose one of "
            f"{', '.join(SWEEP_CRITERIA)}"
        )
    if not table:
        raise ValueError("the K table is empty")
    ks = [int(row["k"]) for row in table]
    elbow = elbow_k(ks, [row["inertia"] for row in table]) if len(table) >= 2 else ks[0]
    among = _k_range(sorted(ks))
    if criterion == "elbow":
        if len(table) < 3:
            raise ValueError(f"the elbow needs at least 3 values of K, got {sorted(ks)}")
        silhouettes = [row for row in table if row.get("silhouette") is not None]
        sentence = f"elbow of the k-means inertia (kneedle) at K={elbow} among {among}"
        if silhouettes:
            top = max(silhouettes, key=lambda row: row["silhouette"])
            at_elbow = next(row for row in table if row["k"] == elbow)["silhouette"]
            there = "n/a" if at_elbow is None else f"{at_elbow:.3f}"
            sentence += (
                f" (silhouette there {there}; highest silhouette "
                f"{top['silhouette']:.3f} at K={top['k']})"
            )
        return elbow, sentence + "."
    rows = [row for row in table if row.get(criterion) is not None]
    if not rows:
        raise ValueError(f"no K in {among} has a {_NAMES[criterion]} score")
    higher = _HIGHER_IS_BETTER[criterion]
    # Best first; among equal scores the smaller K, the simpler answer.
    ranked = sorted(rows, key=lambda row: (-row[criterion] if higher else row[criterion], row["k"]))
    best = ranked[0]
    adjective = "highest" if higher else "lowest"
    sentence = (
        f"{adjective} {_NAMES[criterion]} {best[criterion]:.3f} at K={best['k']} among {among}"
    )
    if len(ranked) > 1:
        runner_up = ranked[1]
        sentence += f" (runner-up {runner_up[criterion]:.3f} at K={runner_up['k']})"
    if len(table) >= 3:
        agrees = "agrees" if elbow == best["k"] else "says otherwise"
        sentence += f"; the elbow of the inertia curve is at K={elbow} ({agrees})"
    else:
        sentence += "; too few values of K for an elbow"
    return int(best["k"]), sentence + "."


def plot_k_sweep(
    table: Sequence[Mapping[str, Any]], chosen_k: int, out_dir: Path
) -> dict[str, Path]:
    """``elbow.png`` (inertia against K) and ``silhouette.png`` in ``out_dir``, the chosen K
    marked by a dashed vertical line."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ks = [int(row["k"]) for row in table]
    curves = {
        "elbow": ("inertia", "k-means inertia (sum of squared distances)"),
        "silhouette": ("silhouette", "silhouette (cosine, higher is better)"),
    }
    paths = {}
    for name, (key, ylabel) in curves.items():
        values = [np.nan if row.get(key) is None else row[key] for row in table]
        # A bare Figure draws with Agg whatever backend pyplot would use, and keeps no
        # global state between calls.
        figure = Figure(figsize=(5, 3.5), dpi=100)
        axis = figure.add_subplot()
        axis.plot(ks, values, marker="o")
        axis.axvline(chosen_k, color="tab:red", linestyle="--", label=f"chosen K={chosen_k}")
        axis.set_xlabel("number of clusters K")
        axis.set_ylabel(ylabel)
        axis.set_title(f"{'Elbow' if name == 'elbow' else 'Silhouette'}: {key} against K")
        axis.set_xticks(ks if len(ks) <= 20 else ks[:: -(-len(ks) // 20)])
        axis.legend(loc="best")
        figure.tight_layout()
        paths[name] = out_dir / f"{name}.png"
        figure.savefig(paths[name], format="png")
    return paths


def write_k_table(table: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """The :func:`sweep_k` table as CSV (empty cells where a score is missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in table for key in row))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, restval="")
        writer.writeheader()
        for row in table:
            writer.writerow({key: "" if item is None else item for key, item in row.items()})
    return path


@dataclass
class KChoice:
    """What :func:`estimate_k` found: the chosen ``k`` and why, every computed criterion's
    estimate (the chosen one first), and the k-means sweep table (empty when no sweep
    criterion ran). A compared criterion that failed has its error in ``failures``."""

    k: int
    criterion: str
    reason: str
    estimates: dict[str, KEstimate]
    table: list[dict]
    failures: dict[str, str] = field(default_factory=dict)

    def criteria(self) -> dict[str, dict]:
        """Every criterion's K, reason and curve (or error), for the manifest."""
        found: dict[str, dict] = {name: e.as_dict() for name, e in self.estimates.items()}
        found.update({name: {"error": error} for name, error in self.failures.items()})
        return found


def _sweep_estimate(table: Sequence[Mapping[str, Any]], criterion: str) -> KEstimate:
    k, reason = pick_k(table, criterion)
    key = "inertia" if criterion == "elbow" else criterion
    rows = [row for row in table if row.get(key) is not None]
    label = "k-means inertia" if criterion == "elbow" else _NAMES[criterion]
    better = {True: " (higher is better)", False: " (lower is better)"}
    return KEstimate(
        criterion,
        k,
        reason,
        [float(row["k"]) for row in rows],
        [float(row[key]) for row in rows],
        y_label=label + better.get(_HIGHER_IS_BETTER.get(criterion), ""),
    )


def _estimate(
    name: str,
    features: np.ndarray,
    ks: list[int],
    seed: int,
    settings: ChooseKSettings,
    table: list[dict],
    neighbors: np.ndarray | None,
) -> KEstimate:
    if name in SWEEP_CRITERIA:
        return _sweep_estimate(table, name)
    if name == "communities":
        return communities_k(
            neighbors,
            ks,
            seed,
            settings.communities_resolution,
            settings.communities_min_size,
            settings.communities_repeats,
            settings.communities_equal_share,
        )
    if name == "eigengap":
        return eigengap_k(neighbors, ks, seed)
    if name == "gmm_bic":
        return gmm_bic_k(features, ks, seed, settings.gmm_dimensions, settings.gmm_covariance_type)
    over = settings.merge_over_clusters or 3 * ks[-1]
    return merge_k(
        features,
        neighbors,
        ks,
        seed,
        over,
        settings.merge_threshold,
        settings.merge_min_size_fraction,
    )


def estimate_k(
    features: Any,
    k_values: Sequence[int],
    seed: int,
    settings: ChooseKSettings | None = None,
    neighbors: np.ndarray | None = None,
) -> KChoice:
    """K by ``settings.criterion``, with every criterion of ``settings.compare`` computed too.

    ``neighbors`` (``(N, k)`` row indices, e.g. the mine stage's) is the kNN graph of the
    eigengap and merge criteria; without it, an exact search of ``settings.num_neighbors``
    neighbours makes one. A compared criterion that fails is recorded, not raised; the
    chosen one raises."""
    settings = settings or ChooseKSettings()
    names = list(dict.fromkeys([settings.criterion, *settings.compare]))
    unknown = [name for name in names if name not in CRITERIA]
    if unknown:
        raise ValueError(f"unknown criteria {unknown}; choose from {', '.join(CRITERIA)}")
    features = check_features(features)
    ks = _check_k_values(k_values, len(features))
    if neighbors is None and any(name in GRAPH_CRITERIA for name in names):
        neighbors = knn_graph(features, min(settings.num_neighbors, len(features) - 1))
    if any(name in SWEEP_CRITERIA for name in names):
        table = sweep_k(features, ks, seed, settings.sample_size)
    else:
        table = []
    estimates, failures = {}, {}
    for name in names:
        try:
            estimates[name] = _estimate(name, features, ks, seed, settings, table, neighbors)
        except ValueError as error:
            if name == settings.criterion:
                raise
            failures[name] = str(error)
    chosen = estimates[settings.criterion]
    others = [f"{name} {e.k}" for name, e in estimates.items() if name != settings.criterion]
    reason = f"{settings.criterion}: {chosen.reason}"
    if others:
        agree = sum(e.k == chosen.k for e in estimates.values()) - 1
        reason += f" Others: {', '.join(others)} ({agree} of {len(others)} agree)."
    return KChoice(chosen.k, settings.criterion, reason, estimates, table, failures)


def write_k_choice(choice: KChoice, out_dir: Path) -> dict[str, Path]:
    """``k_criteria.png`` (every criterion's curve) and, where the sweep ran, ``k_sweep.csv``,
    ``elbow.png`` and ``silhouette.png`` in ``out_dir``; their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"criteria": plot_k_criteria(choice.criteria(), choice.k, out_dir / "k_criteria.png")}
    if choice.table:
        files["table"] = write_k_table(choice.table, out_dir / "k_sweep.csv")
        files.update(plot_k_sweep(choice.table, choice.k, out_dir))
    return files


def choose_k(
    features: Any,
    k_values: Sequence[int],
    seed: int,
    out_dir: Path,
    criterion: str = ChooseKSettings.criterion,
    sample_size: int = ChooseKSettings.sample_size,
    write: bool = True,
) -> tuple[int, str, dict[str, Path]]:
    """:func:`estimate_k` with the default settings but ``criterion`` and ``sample_size``,
    and (with ``write``) its files saved in ``out_dir`` (:func:`write_k_choice`): the chosen
    K, the reason, and the files' paths."""
    settings = ChooseKSettings(criterion=criterion, sample_size=sample_size)
    choice = estimate_k(features, k_values, seed, settings)
    out_dir = Path(out_dir)
    files = {"criteria": out_dir / "k_criteria.png"}
    if choice.table:
        files.update({name: out_dir / f"{name}.png" for name in ("elbow", "silhouette")})
        files["table"] = out_dir / "k_sweep.csv"
    if write:
        write_k_choice(choice, out_dir)
    return choice.k, choice.reason, files

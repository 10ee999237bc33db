"""The label-free choice among classic clustering candidates.

Each candidate is one reduction (none, PCA, UMAP, LLE or spectral embedding) followed by one
method (k-means, agglomerative, Gaussian mixture, DBSCAN, HDBSCAN, spectral clustering or
BIRCH); :func:`compare_methods` runs them all on the L2-normalised features and keeps the one
that the label-free scores prefer. Labels, where given, only add ACC/NMI/ARI to the table;
they never take part in the choice.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np
from scipy.stats import rankdata

from semclust.clustering.features import check_choice, check_features, reduce_features
from semclust.clustering.methods import assign_noise, check_num_clusters, fit_labels
from semclust.clustering.settings import (
    METHODS,
    REDUCTIONS,
    SCORE_SPACES,
    SELECTION_CRITERIA,
    ClassicSettings,
    check_method_params,
)
from semclust.metrics import clustering_scores, l2_normalize, label_free_scores

_SCORE_KEYS = ("silhouette", "calinski_harabasz", "davies_bouldin")
_HIGHER_IS_BETTER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}
#: Columns that follow the label-free scores in every row, in this order.
_LATE_COLUMNS = (
    *(f"rank_{key}" for key in _SCORE_KEYS),
    "mean_rank",
    "acc",
    "nmi",
    "ari",
    "wall_time_s",
    "note",
)
_SCORE_NAMES = {
    "silhouette": "silhouette",
    "calinski_harabasz": "Calinski-Harabasz",
    "davies_bouldin": "Davies-Bouldin",
}


@dataclass
class Comparison:
    """What :func:`compare_methods` found: every candidate and the one picked."""

    rows: list[dict]  # one per (reduction, method) candidate, best first
    best: dict  # the selected row
    predictions: np.ndarray  # (N,) labels of the selected candidate, 0..K'-1
    select_by: str
    reason: str  # one sentence: why ``best`` was picked, with its numbers


def _spec(spec: Any, choices: Sequence[str], what: str) -> tuple[str, dict[str, Any]]:
    """``{"name": ..., **options}`` (or just the name) as (name, options)."""
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in options:
        raise ValueError(f"each {what} needs a 'name' ({', '.join(choices)}), got {options}")
    name = check_choice(options.pop("name"), choices, what)
    return name, options


def _short(params: Mapping[str, Any]) -> str:
    """``key=value, ...`` for the table; None values are left out, floats get 4 digits."""

    def value(item: Any) -> str:
        return f"{item:.4g}" if isinstance(item, float) else str(item)

    return ", ".join(f"{key}={value(item)}" for key, item in params.items() if item is not None)


def _label(row: Mapping[str, Any]) -> str:
    """How the reason names a candidate: ``method on reduction(params)``."""
    reduction = row["reduction"]
    if row["reduction_params"]:
        reduction += f"({row['reduction_params']})"
    return f"{row['method']} on {reduction}"


def compare_methods(
    features: Any,
    num_clusters: int,
    methods: Sequence[Mapping[str, Any] | str],
    reductions: Sequence[Mapping[str, Any] | str],
    seed: int,
    targets: Any | None = None,
    select_by: str = ClassicSettings.select_by,
    score_sample_size: int = ClassicSettings.score_sample_size,
    score_space: str = ClassicSettings.score_space,
) -> Comparison:
    """Every (reduction, method) candidate on the L2-normalised features, scored and ranked.

    ``methods`` are like ``{"name": "dbscan", "eps": "auto"}`` and ``reductions`` like
    ``{"name": "pca", "n_components": 50}`` (see
    :func:`~semclust.clustering.methods.cluster_labels` and
    :func:`~semclust.clustering.features.reduce_features`). Density methods' noise points join
    the nearest centroid in the space they were clustered in, so each candidate is a full
    partition.

    ``score_space="reduced"`` scores each candidate in the space it clustered, which favours
    UMAP, whose embedding widens the gaps between manifolds (right when the classes are
    curved manifolds, as MNIST's are; see docs/BENCHMARKS.md); ``"input"`` scores all of them
    in one space, the L2-normalised input features, which favours methods that cut that space
    into convex pieces (k-means). The pick is the best by ``select_by``: silhouette (cosine,
    on a seeded sample of ``score_sample_size`` points), Calinski-Harabasz, Davies-Bouldin, or
    ``mean_rank``, the mean of the three ranks (ties to the higher silhouette). Candidates
    with fewer than two clusters, or that fail, get a ``note`` and no scores, and are never
    picked. ``targets`` (-1 = unknown) only add ACC/NMI/ARI on the labelled rows.
    """
    features = check_features(features)
    num_samples = len(features)
    num_clusters = check_num_clusters(num_clusters, num_samples)
    check_choice(select_by, SELECTION_CRITERIA, "select_by")
    check_choice(score_space, SCORE_SPACES, "score_space")
    method_specs = [_spec(method, METHODS, "clustering method") for method in methods]
    for name, params in method_specs:
        check_method_params(name, params)
    reduction_specs = [_spec(reduction, REDUCTIONS, "reduction") for reduction in reductions]
    for name, options in reduction_specs:
        if name == "none" and options:
            raise ValueError(f"reduction 'none' takes no options, got {options}")
    if not method_specs or not reduction_specs:
        raise ValueError("compare_methods needs at least one method and one reduction")
    labelled = None
    if targets is not None:
        targets = np.asarray(targets)
        if targets.shape != (num_samples,) or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(
                f"targets must be ({num_samples},) integers (-1 = unknown), "
                f"got {targets.dtype} of shape {targets.shape}"
            )
        labelled = targets >= 0

    normalized = l2_normalize(features)
    rows: list[dict[str, Any]] = []
    candidate_predictions: list[np.ndarray | None] = []
    for reduction, options in reduction_specs:
        start = perf_counter()
        try:
            space = reduce_features(
                normalized, reduction, seed, num_clusters=num_clusters, **options
            )
            reduction_error = None
        except Exception as error:  # reported on each of its candidates' rows
            space, reduction_error = None, f"{reduction} failed: {type(error).__name__}: {error}"
        reduction_time = perf_counter() - start
        if space is not None and reduction != "none":  # the component count actually used
            others = {key: item for key, item in options.items() if key != "n_components"}
            options = {"n_components": space.shape[1], **others}
        for method, params in method_specs:
            row: dict[str, Any] = {
                "selected": False,
                "reduction": reduction,
                "reduction_params": _short(options),
                "method": method,
                "params": _short(params),
                "clusters_found": None,
                "noise_fraction": None,
                **dict.fromkeys(_SCORE_KEYS),
                **dict.fromkeys(("acc", "nmi", "ari") if labelled is not None else ()),
                "wall_time_s": None,
                "note": reduction_error,
            }
            predictions = None
            if space is not None:
                start = perf_counter()
                try:
                    labels, used = fit_labels(method, space, num_clusters, seed, params)
                    row["params"] = _short(used)
                    row["clusters_found"] = int(np.unique(labels[labels >= 0]).size)
                    row["noise_fraction"] = float((labels < 0).mean())
                    if row["clusters_found"]:
                        predictions = assign_noise(space, labels)
                    else:
                        row["note"] = f"found no cluster: all {num_samples} points are noise"
                except Exception as error:  # one failing candidate must not end the comparison
                    row["note"] = f"{type(error).__name__}: {error}"
                row["wall_time_s"] = round(reduction_time + perf_counter() - start, 3)
            if predictions is not None:
                scores = label_free_scores(
                    normalized if score_space == "input" else space,
                    predictions,
                    silhouette_sample_size=score_sample_size,
                    seed=seed,
                )
                row.update({key: scores.get(key) for key in _SCORE_KEYS})
                if not scores:
                    found = row["clusters_found"]
                    row["note"] = (
                        f"found {found} cluster{'s' * (found != 1)}; "
                        f"the scores need 2 to N-1 = {num_samples - 1}"
                    )
                if labelled is not None and labelled.any():
                    truth = clustering_scores(predictions[labelled], targets[labelled])
                    row.update({key: truth[key] for key in ("acc", "nmi", "ari")})
            rows.append(row)
            candidate_predictions.append(predictions)

    order = _rank(rows, select_by)
    best_index = order[0]
    rows[best_index]["selected"] = True
    invalid = sorted(set(range(len(rows))) - set(order))
    reason = _reason(rows, order, select_by, len(invalid), score_space)
    rows = [_in_column_order(row) for row in rows]
    return Comparison(
        rows=[rows[index] for index in [*order, *invalid]],
        best=rows[best_index],
        predictions=candidate_predictions[best_index],
        select_by=select_by,
        reason=reason,
    )


def _in_column_order(row: dict[str, Any]) -> dict[str, Any]:
    """The row with the ranks and label scores next to the label-free scores, notes last."""
    first = [key for key in row if key not in _LATE_COLUMNS]
    return {key: row[key] for key in [*first, *_LATE_COLUMNS] if key in row}


def _rank(rows: list[dict[str, Any]], select_by: str) -> list[int]:
    """Indices of the valid rows, best first; adds the rank columns for ``mean_rank``."""
    valid = [index for index, row in enumerate(rows) if row["note"] is None]
    if not valid:
        notes = "; ".join(f"{_label(row)}: {row['note']}" for row in rows)
        raise ValueError(f"no candidate gave a usable partition of 2+ clusters: {notes}")

    def oriented(key: str) -> np.ndarray:
        # To 12 significant digits: the same partition, numbered differently, sums in another
        # order, and such rounding noise must tie rather than rank.
        values = np.array([float(f"{rows[index][key]:.12g}") for index in valid])
        return -values if _HIGHER_IS_BETTER[key] else values

    silhouette = oriented("silhouette")
    if select_by == "mean_rank":
        for row in rows:
            row.update({f"rank_{key}": None for key in _SCORE_KEYS} | {"mean_rank": None})
        ranks = np.stack([rankdata(oriented(key)) for key in _SCORE_KEYS])
        for column, index in enumerate(valid):
            for key, rank in zip(_SCORE_KEYS, ranks[:, column], strict=True):
                rows[index][f"rank_{key}"] = float(rank)
            rows[index]["mean_rank"] = float(ranks[:, column].mean())
        primary = ranks.mean(axis=0)
    else:
        primary = oriented(select_by)
    # Lower is better in both keys; lexsort's last key is the primary one, and it is stable,
    # so full ties keep the candidates' order.
    return [valid[position] for position in np.lexsort((silhouette, primary))]


def _reason(
    rows: list[dict[str, Any]], order: list[int], select_by: str, invalid: int, score_space: str
) -> str:
    """One sentence: why the first of ``order`` was picked, with its scores and the
    runner-up's."""
    best = rows[order[0]]
    scores = (
        f"silhouette {best['silhouette']:.3f}, Calinski-Harabasz "
        f"{best['calinski_harabasz']:.1f}, Davies-Bouldin {best['davies_bouldin']:.3f}"
    )
    if select_by == "mean_rank":
        claim = f"the best mean rank {best['mean_rank']:.2f} over the three label-free scores"
        key = "mean_rank"
    else:
        adjective = "highest" if _HIGHER_IS_BETTER[select_by] else "lowest"
        claim = f"the {adjective} {_SCORE_NAMES[select_by]}"
        key = select_by
    sentence = f"{_label(best)} has {claim} among {len(order)} valid candidates ({scores}, " + (
        "on the L2-normalised input features)"
        if score_space == "input"
        else "each in the space it clustered)"
    )
    if len(order) > 1:
        runner_up = rows[order[1]]
        value = format(
            runner_up[key], {"mean_rank": ".2f", "calinski_harabasz": ".1f"}.get(key, ".3f")
        )
        sentence += f"; runner-up {_label(runner_up)} with {key} {value}"
    if invalid:
        sentence += f"; {invalid} candidates gave no usable partition"
    return sentence + "."

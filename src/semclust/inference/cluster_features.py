"""``semclust cluster``: the classic comparison on a saved feature matrix.

The matrix is ``semclust predict``'s ``embeddings.npy`` (whose ``predictions.csv`` names the
image of each row) or a run directory's mined validation features. The defaults come from
:mod:`semclust.clustering.settings`, the same as the training pipeline's classic stage.
"""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semclust.clustering.choose_k import choose_k
from semclust.clustering.comparison_io import format_comparison, write_comparison
from semclust.clustering.features import check_features
from semclust.clustering.selection import Comparison, compare_methods
from semclust.clustering.settings import METHODS, REDUCTIONS, ChooseKSettings, ClassicSettings
from semclust.rundir import RunDirectory, mined


def cluster_feature_file(
    features_path: str | Path,
    out_dir: str | Path,
    num_clusters: int | str = "auto",
    methods: Sequence[str] | None = None,
    reductions: Sequence[str] | None = None,
    select_by: str = ClassicSettings.select_by,
    targets: str | Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
    score_space: str = ClassicSettings.score_space,
) -> tuple[Comparison, dict[str, Path]]:
    """The default comparison on a saved feature matrix, written to ``out_dir``.

    ``features_path`` is an ``(N, D)`` ``.npy`` file or a run directory (its mine stage's
    validation features and targets). ``methods`` and ``reductions`` pick by name (with the
    default settings; one outside the defaults, e.g. ``lle``, with its own).
    ``num_clusters="auto"`` sweeps K first (see :mod:`semclust.clustering.choose_k`). Next to
    ``embeddings.npy`` of ``semclust predict``, the pick's clusters are also written per image
    path (``assignments.csv``).
    """
    classic, sweep = ClassicSettings(), ChooseKSettings()
    source = Path(features_path)
    labels_path = Path(targets) if targets else None
    if source.is_dir():
        run = RunDirectory(source, create=False)
        source = run.path(mined("val", "features"))
        labels_path = labels_path or run.path(mined("val", "targets"))
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist (give an .npy file or a run directory)")
    features = check_features(_read_array(source, mmap_mode="r"))
    if targets and not labels_path.is_file():
        raise FileNotFoundError(f"targets file {labels_path} does not exist")
    labels = _read_array(labels_path) if labels_path and labels_path.is_file() else None
    if labels is not None and len(labels) != len(features):
        raise ValueError(f"{labels_path} holds {len(labels)} targets for {len(features)} rows")
    chosen = _candidates(methods, classic.methods, METHODS, "methods")
    spaces = _candidates(reductions, classic.reductions, REDUCTIONS, "reductions")
    if str(num_clusters) != "auto":
        try:
            num_clusters = int(num_clusters)
        except ValueError:
            raise ValueError(f"-k must be a number or auto, got {num_clusters!r}") from None
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output path {out_dir} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {out_dir} is not empty; pass --overwrite to replace the outputs "
            "of an earlier semclust cluster there"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, Path] = {}
    if str(num_clusters) == "auto":
        # K must stay below N, so small matrices sweep a shorter range.
        k_values = list(range(sweep.k_min, min(sweep.k_max, len(features) - 1) + 1))
        num_clusters, reason, files = choose_k(
            features, k_values, seed, out_dir, sweep.criterion, sweep.sample_size
        )
        outputs.update(k_sweep=files["table"], elbow=files["elbow"], silhouette=files["silhouette"])
        print(f"K={num_clusters}: {reason}")
    labeled = labels is not None and (labels >= 0).all()
    comparison = compare_methods(
        features,
        num_clusters,
        chosen,
        spaces,
        seed,
        labels if labeled else None,
        select_by,
        score_sample_size=classic.score_sample_size,
        score_space=score_space,
    )
    outputs.update(write_comparison(comparison, out_dir))
    outputs.update(_write_assignments(source, comparison, out_dir, len(features)))
    print(format_comparison(comparison))
    return comparison, outputs


def _read_array(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """A saved ``.npy`` array, or a ValueError naming the file (numpy's own does not)."""
    with open(path, "rb") as file:
        # numpy takes any other file for a pickle and suggests loading it unsafely.
        if file.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path} is not a .npy file (it lacks numpy's header)")
    try:
        return np.load(path, mmap_mode=mmap_mode)  # allow_pickle stays False: no code runs
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npy array: {error}") from None


def _candidates(
    names: Sequence[str] | None,
    defaults: Sequence[dict[str, Any]],
    known: Sequence[str],
    what: str,
) -> list[dict[str, Any]]:
    """The default entries (``None``: all of them), or those named, in the order given; a
    known name without a default entry (e.g. ``lle``) comes with its own defaults."""
    if names is None:
        return [dict(entry) for entry in defaults]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown}; choose from {', '.join(known)}")
    by_name = {entry["name"]: entry for entry in defaults}
    return [dict(by_name.get(name, {"name": name})) for name in dict.fromkeys(names)]


def _write_assignments(
    source: Path, comparison: Comparison, out_dir: Path, num_rows: int
) -> dict[str, Path]:
    """``assignments.csv`` (path, cluster) when ``source`` sits next to the
    ``predictions.csv`` of ``semclust predict`` with one image per feature row."""
    predictions_csv = source.parent / "predictions.csv"
    if not predictions_csv.is_file():
        return {}
    with predictions_csv.open(newline="") as file:
        paths = [row["path"] for row in csv.DictReader(file)]
    if len(paths) != num_rows:
        return {}
    assignments = out_dir / "assignments.csv"
    with assignments.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "cluster"])
        writer.writerows(zip(paths, comparison.predictions.tolist(), strict=True))
    return {"assignments": assignments}

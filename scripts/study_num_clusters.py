"""Which K criterion finds the true number of clusters: every criterion on real and synthetic
features (issue 15).

    python scripts/study_num_clusters.py --run digits/0=RUN_DIR [--run NAME/SEED=RUN_DIR ...]
        [--unequal 4 ...] [--blobs] [--k-max 30] [--set merge_threshold=0.1 ...]
        [--json OUT.json]

A ``--run`` is a run directory whose mine stage saved ``mine/train_features.npy``,
``train_neighbors.npy`` and ``train_targets.npy`` (``python train.py stages=[pretext,mine]``):
the features and the mined kNN graph that ``data.num_clusters=auto`` reads (made exactly with
``--neighbors`` neighbours where the run mined fewer); ``--unequal R`` adds each run's
images subsampled to classes of unequal size (the largest R times the smallest). ``--blobs``
adds scikit-learn's Gaussian blobs (several K, dimensions and spreads, clusters of equal and
of unequal sizes, seeds 0-2) with an exact kNN graph of 20 neighbours. The labels only give
the true K of the table; no criterion sees them.
Prints a Markdown table: one row per (data, seed), one column per criterion.
"""

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs

from semclust.clustering.choose_k import CRITERIA, estimate_k
from semclust.clustering.k_criteria import knn_graph
from semclust.clustering.settings import ChooseKSettings

#: (K, dimensions, cluster_std, largest / smallest cluster) of the synthetic sets; centres
#: uniform in [-10, 10]^D, cluster sizes falling geometrically from the largest.
BLOBS = (
    (5, 16, 3.0, 1),
    (10, 32, 4.0, 1),
    (10, 64, 6.0, 1),
    (20, 32, 4.0, 1),
    (30, 64, 5.0, 1),
    (5, 16, 3.0, 10),
    (10, 32, 4.0, 4),
    (10, 32, 4.0, 10),
    (20, 32, 4.0, 4),
    (20, 32, 4.0, 10),
)
BLOB_SAMPLES = 2000


def parse_setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    default = getattr(ChooseKSettings(), key)
    if value.lower() in ("none", "null"):
        return key, None
    return key, type(default)(value)


def blob_sizes(k: int, ratio: float) -> list[int]:
    """``k`` cluster sizes adding up to about BLOB_SAMPLES, the largest ``ratio`` times the
    smallest, falling geometrically."""
    weights = float(ratio) ** -np.linspace(0, 1, k)
    return [max(1, int(n)) for n in np.round(BLOB_SAMPLES * weights / weights.sum())]


def study_one(
    name: str,
    seed: int,
    features: np.ndarray,
    neighbors: np.ndarray,
    true_k: int,
    criteria: list[str],
    settings: dict,
) -> dict:
    """Every criterion's K on one feature matrix (``settings`` override the defaults)."""
    ks = list(range(settings.pop("k_min", 2), min(settings.pop("k_max"), len(features) - 1) + 1))
    options = ChooseKSettings(criterion=criteria[0], compare=criteria[1:], **settings)
    started = time.perf_counter()
    choice = estimate_k(features, ks, seed, options, neighbors)
    found = {criterion: choice.estimates[criterion].k for criterion in choice.estimates}
    return {
        "data": name,
        "seed": seed,
        "true_k": true_k,
        "n": len(features),
        "k": found,
        "failures": choice.failures,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="NAME/SEED=RUN_DIR")
    parser.add_argument("--blobs", action="store_true", help="add the synthetic blobs")
    parser.add_argument("--blob-seeds", default="0,1,2", help="seeds of the blobs")
    parser.add_argument("--k-max", type=int, default=30)
    parser.add_argument("--criteria", default="merge,silhouette,elbow,eigengap,gmm_bic")
    parser.add_argument("--set", action="append", default=[], help="a ChooseKSettings field")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--neighbors",
        type=int,
        default=20,
        help="a run that mined fewer neighbours gets an exact graph of this many (data=folder "
        "mines 20; experiment=coil20 only 10)",
    )
    parser.add_argument(
        "--unequal",
        type=float,
        action="append",
        default=[],
        help="also each run's images subsampled to class sizes falling geometrically, the "
        "largest this many times the smallest (repeatable)",
    )
    args = parser.parse_args()
    criteria = args.criteria.split(",")
    unknown = set(criteria) - set(CRITERIA)
    if unknown:
        parser.error(f"unknown criteria {sorted(unknown)}; choose from {', '.join(CRITERIA)}")
    overrides = dict(parse_setting(text) for text in args.set)
    jobs = []
    for spec in args.run:
        label, _, run_dir = spec.partition("=")
        name, _, seed_text = label.partition("/")
        seed = int(seed_text or 0)
        mine = Path(run_dir) / "mine"
        # Cached: the --unequal subsamples read the same run.
        load = functools.cache(functools.partial(_load_run, mine, args.neighbors))
        jobs.append((name, seed, load))
        for ratio in args.unequal:
            subsample = functools.partial(_unequal_from, load, ratio, seed)
            jobs.append((f"{name}, classes {ratio:g}x apart", seed, subsample))
    if args.blobs:
        for k, dims, spread, ratio in BLOBS:
            sizes = blob_sizes(k, ratio)
            shown = "" if ratio == 1 else f", sizes {min(sizes)}-{max(sizes)}"
            for seed in (int(text) for text in args.blob_seeds.split(",")):
                jobs.append(
                    (
                        f"blobs K={k} D={dims} σ={spread:g}{shown}",
                        seed,
                        lambda n=sizes, d=dims, s=spread, seed=seed: _blobs(n, d, s, seed),
                    )
                )
    print("| data | seed | true K | " + " | ".join(criteria) + " | time |")
    print("|---|---|---|" + "---|" * len(criteria) + "---|")
    rows = []
    for name, seed, load in jobs:
        features, neighbors, targets = load()
        true_k = len(np.unique(targets[targets >= 0]))
        row = study_one(
            name, seed, features, neighbors, true_k, criteria, {"k_max": args.k_max, **overrides}
        )
        rows.append(row)
        cells = [
            f"**{row['k'][c]}**"
            if abs(row["k"].get(c, -99) - true_k) <= 1
            else str(row["k"].get(c, "fail"))
            for c in criteria
        ]
        print(
            f"| {name} | {seed} | {true_k} | " + " | ".join(cells) + f" | {row['seconds']} s |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"settings": overrides, "rows": rows}, indent=1))
    for criterion in criteria:
        hits = sum(abs(row["k"].get(criterion, -99) - row["true_k"]) <= 1 for row in rows)
        print(f"{criterion}: within ±1 of the true K in {hits} of {len(rows)}")


def _load_run(mine: Path, at_least: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features, neighbors, targets = (
        np.load(mine / f"train_{kind}.npy") for kind in ("features", "neighbors", "targets")
    )
    if neighbors.shape[1] < at_least:
        neighbors = knn_graph(features, at_least)
    return features, neighbors, targets


def _unequal_from(load, ratio: float, seed: int) -> tuple[np.ndarray, ...]:
    return _unequal(load(), ratio, seed)


def _unequal(
    loaded: tuple[np.ndarray, np.ndarray, np.ndarray], ratio: float, seed: int
) -> tuple[np.ndarray, ...]:
    """A seeded subsample of a run's images whose classes (in a seeded order) keep sizes
    falling geometrically from the smallest class's size to ``ratio`` times less; an exact
    20-neighbour graph of the subsample."""
    features, _, targets = loaded
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(targets[targets >= 0]))
    start = min(int(np.sum(targets == c)) for c in classes)
    sizes = np.round(start * float(ratio) ** -np.linspace(0, 1, len(classes))).astype(int)
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(targets == c), max(int(n), 1), replace=False)
            for c, n in zip(classes, sizes, strict=True)
        ]
    )
    return features[rows], knn_graph(features[rows], 20), targets[rows]


def _blobs(sizes: list[int], dims: int, spread: float, seed: int) -> tuple[np.ndarray, ...]:
    features, targets = make_blobs(
        sizes, n_features=dims, cluster_std=spread, center_box=(-10, 10), random_state=seed
    )
    features = features.astype(np.float32)
    return features, knn_graph(features, 20), targets


if __name__ == "__main__":
    main()

"""Which label-free choice among the classic candidates lands closest to the best one?

    python scripts/benchmark_classic_selection.py --score-space reduced RUN_DIR_OR_CLASSIC_DIR ...

Each argument is a run directory whose classic stage finished (pretext features: its mine
stage's validation features; pixels: recomputed from the recorded data config). The comparison
is run again with the same methods, reductions and seed, scored in ``--score-space``, and
printed next to the recorded pick and the best candidate by ACC (labels, for reference only).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from semclust.clustering.selection import SCORE_SPACES, compare_methods
from semclust.clustering.settings import ClassicSettings


def features_of(run_dir: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    entry = manifest["stages"]["classic"]
    if entry["metrics"]["features"] == "pretext":
        mine = run_dir / "mine"
        return np.load(mine / "val_features.npy"), np.load(mine / "val_targets.npy")
    from semclust.rundir import RunDirectory
    from semclust.stages.classic import image_features

    cfg = OmegaConf.create({**entry["config"], "mine": {"num_neighbors": 1}})
    return image_features(cfg, RunDirectory(run_dir), entry["metrics"]["features"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--score-space", default=ClassicSettings.score_space, choices=SCORE_SPACES)
    args = parser.parse_args()
    print(f"| run | recorded pick (ACC) | pick scored {args.score_space} (ACC) | best by ACC |")
    print("|---|---|---|---|")
    for run_dir in args.run_dirs:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        recorded = json.loads((run_dir / "classic/comparison.json").read_text())
        classic = manifest["stages"]["classic"]["config"]["classic"]
        features, targets = features_of(run_dir, manifest)
        comparison = compare_methods(
            features,
            manifest["stages"]["classic"]["config"]["data"]["num_clusters"],
            classic["methods"],
            classic["reductions"],
            seed=manifest["stages"]["classic"]["config"]["seed"],
            targets=targets,
            select_by=classic["select_by"],
            score_sample_size=classic["score_sample_size"],
            score_space=args.score_space,
        )

        def label(row: dict) -> str:
            return f"{row['method']} / {row['reduction']} ({row['acc']:.4f})"

        oracle = max(comparison.rows, key=lambda row: row.get("acc") or 0)
        print(
            f"| {run_dir} | {label(recorded['best'])} | {label(comparison.best)} "
            f"| {label(oracle)} |"
        )


if __name__ == "__main__":
    main()

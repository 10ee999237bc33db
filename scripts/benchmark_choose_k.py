"""How well data.num_clusters=auto finds the true K on real features.

    python scripts/benchmark_choose_k.py RUN_DIR [RUN_DIR ...] [--k-max 20]

For each finished run (its mine stage's features of the training images, as the pipeline
uses them) sweeps K with k-means and prints the K every criterion picks, next to the number
of classes in the labels (which play no part in the choice).
"""

import argparse
import time
from pathlib import Path

import numpy as np

from semclust.clustering.choose_k import SWEEP_CRITERIA as CRITERIA
from semclust.clustering.choose_k import pick_k, sweep_k
from semclust.clustering.settings import ChooseKSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--k-min", type=int, default=ChooseKSettings.k_min)
    parser.add_argument("--k-max", type=int, default=ChooseKSettings.k_max)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| run | true K | " + " | ".join(CRITERIA) + " | sweep time |")
    print("|---|---|" + "---|" * len(CRITERIA) + "---|")
    for run_dir in args.run_dirs:
        features = np.load(run_dir / "mine" / "train_features.npy")
        targets = np.load(run_dir / "mine" / "train_targets.npy")
        started = time.perf_counter()
        table = sweep_k(features, list(range(args.k_min, args.k_max + 1)), args.seed)
        elapsed = time.perf_counter() - started
        picks = [str(pick_k(table, criterion)[0]) for criterion in CRITERIA]
        true_k = len(np.unique(targets[targets >= 0])) or "?"
        print(f"| {run_dir} | {true_k} | " + " | ".join(picks) + f" | {elapsed:.0f} s |")


if __name__ == "__main__":
    main()

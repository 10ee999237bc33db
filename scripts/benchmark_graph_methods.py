"""Spectral clustering, BIRCH and the LLE / spectral-embedding reductions beside SCAN.

    python scripts/benchmark_graph_methods.py --run coil20/0=RUN_DIR --run mnist/0=RUN_DIR ... \
        --out docs/benchmarks/graph_methods.json

Each RUN_DIR is a finished run (mine stage done; SCAN and self-labeling scores are read from
its metrics.json when it has them). On its mine stage's validation features, with the K the
run used (``--true-k``: the number of classes), the classic comparison runs once over every
default candidate plus the ``lle`` and ``spectral_embedding`` reductions, with the run's
seed; labels only score. Prints a Markdown
table: ACC of k-means, spectral and BIRCH on the features as they are, k-means on each
reduction, spectral on UMAP, the label-free pick, SCAN and the run's final ACC.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from semclust.clustering.selection import compare_methods
from semclust.clustering.settings import DEFAULT_METHODS, DEFAULT_REDUCTIONS
from semclust.environment import software_environment

#: Table columns: (header, method, reduction).
COLUMNS = (
    ("k-means", "kmeans", "none"),
    ("spectral", "spectral", "none"),
    ("BIRCH", "birch", "none"),
    ("k-means / LLE", "kmeans", "lle"),
    ("k-means / spectral emb.", "kmeans", "spectral_embedding"),
    ("k-means / UMAP", "kmeans", "umap"),
    ("spectral / UMAP", "spectral", "umap"),
)
EXTRA_REDUCTIONS = ({"name": "lle"}, {"name": "spectral_embedding"})


def run_k(manifest: dict) -> int:
    """The K the run's SCAN used: its choice when K was auto, else the configured one."""
    if "num_clusters" in manifest:
        return int(manifest["num_clusters"]["value"])
    return int(manifest["stages"]["mine"]["config"]["data"]["num_clusters"])


def measure(name: str, run_dir: Path, true_k: bool = False) -> dict:
    mine = run_dir / "mine"
    features, targets = np.load(mine / "val_features.npy"), np.load(mine / "val_targets.npy")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    seed = int(manifest["stages"]["mine"]["config"]["seed"])
    classes = int(len(np.unique(targets[targets >= 0])))
    k = classes if true_k else run_k(manifest)
    started = time.perf_counter()
    comparison = compare_methods(
        features,
        k,
        methods=[dict(method) for method in DEFAULT_METHODS],
        reductions=[*map(dict, DEFAULT_REDUCTIONS), *map(dict, EXTRA_REDUCTIONS)],
        seed=seed,
        targets=targets,
    )
    rows = {(row["method"], row["reduction"]): row for row in comparison.rows}
    stages = metrics.get("stages", {})
    return {
        "name": name,
        "run_dir": str(run_dir),
        "images": int(len(features)),
        "true_k": classes,
        "k": k,
        "acc": {
            header: rows[(method, reduction)].get("acc") for header, method, reduction in COLUMNS
        },
        "params": {
            header: rows[(method, reduction)].get("params") for header, method, reduction in COLUMNS
        },
        "pick": f"{comparison.best['method']} / {comparison.best['reduction']}",
        "pick_acc": comparison.best.get("acc"),
        "best_by_acc": max(comparison.rows, key=lambda row: row.get("acc") or 0)["acc"],
        "scan_acc": stages.get("scan", {}).get("acc"),
        "final_acc": metrics.get("acc"),
        "comparison_s": round(time.perf_counter() - started, 1),
    }


def table(results: list[dict]) -> str:
    def cell(value) -> str:
        return "" if value is None else f"{value:.4f}"

    headers = ["run", "K (true)", *[c[0] for c in COLUMNS], "label-free pick", "SCAN", "final"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for result in results:
        cells = [
            result["name"],
            f"{result['k']} ({result['true_k']})",
            *[cell(result["acc"][c[0]]) for c in COLUMNS],
            f"{result['pick']} {cell(result['pick_acc'])}",
            cell(result["scan_acc"]),
            cell(result["final_acc"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument(
        "--true-k", action="store_true", help="cluster into the true class count, not the run's K"
    )
    args = parser.parse_args()
    results = []
    for item in args.run:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"--run takes NAME=RUN_DIR, got {item!r}")
        results.append(measure(name, Path(path), args.true_k))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "date": time.strftime("%Y-%m-%d"),
            "environment": software_environment(),
            "results": results,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

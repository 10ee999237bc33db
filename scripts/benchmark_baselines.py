"""Benchmark feature learners and clustering methods on the same data and seeds.

    python scripts/benchmark_baselines.py --experiment digits --seeds 0 1 2
    python scripts/benchmark_baselines.py --experiment mnist --seeds 0 1 2 \
        --simclr-runs RUN0 RUN1 RUN2 -- data.path=/path/to/mnist_test

Per seed, each in its own run directory under --output-dir/<experiment>/:
  pixels/      the classic comparison on raw pixels (its k-means row is "k-means on pixels");
  autoencoder/ pretext=autoencoder, mine, and the classic comparison on its codes;
  simclr/      the default pipeline (SimCLR, mine, SCAN, self-labeling) and the classic
               comparison on its features. --simclr-runs reuses finished runs (same seeds).
Finished pixel and autoencoder runs are reused, so an interrupted benchmark can be rerun.
Rows: k-means on pixels, autoencoder + k-means, SimCLR + k-means, SCAN, SCAN + self-label,
and the classic pick (chosen label-free) on each kind of features. Labels only score.
Writes <output-dir>/<experiment>/baselines.json and prints a Markdown table.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from semclust.config_store import register_configs
from semclust.pipeline import train

register_configs()
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
QUIET = ["trainer.enable_progress_bar=false", "report=false"]


def run(overrides: list[str]) -> tuple[dict, float]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*QUIET, *overrides])
    started = time.perf_counter()
    summary = train(cfg)
    return summary, time.perf_counter() - started


def classic_rows(run_dir: Path, features: str) -> dict[str, dict]:
    """The plain k-means row and the label-free pick of a classic comparison."""
    comparison = json.loads((run_dir / "classic/comparison.json").read_text())
    kmeans = next(
        row
        for row in comparison["rows"]
        if row["method"] == "kmeans" and row["reduction"] == "none"
    )
    best = comparison["best"]
    return {
        f"k-means on {features}": kmeans,
        f"classic pick on {features}": {**best, "pick": f"{best['method']} / {best['reduction']}"},
    }


def completed(run_dir: Path, stage: str) -> bool:
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return False
    entry = json.loads(manifest.read_text())["stages"].get(stage, {})
    return entry.get("status") in ("completed", "skipped")


def benchmark_seed(args: argparse.Namespace, seed: int, simclr_dir: Path) -> dict:
    base = [f"experiment={args.experiment}", f"seed={seed}", *args.overrides]
    root = Path(args.output_dir) / args.experiment
    rows: dict[str, dict] = {}
    walls: dict[str, float] = {}

    pixels = root / "pixels" / f"seed{seed}"
    if not completed(pixels, "classic"):
        _, walls["pixels"] = run(
            [*base, f"paths.run_dir={pixels}", "stages=[classic]", "classic.features=pixels"]
        )
    rows.update(classic_rows(pixels, "pixels"))

    autoencoder = root / "autoencoder" / f"seed{seed}"
    if not completed(autoencoder, "classic"):
        _, walls["autoencoder"] = run(
            [
                *base,
                f"paths.run_dir={autoencoder}",
                "pretext=autoencoder",
                "stages=[pretext,mine,classic]",
            ]
        )
    mine = json.loads((autoencoder / "manifest.json").read_text())["stages"]["mine"]
    rows["autoencoder + k-means"] = mine["metrics"]["kmeans"]
    rows.update(
        {
            key.replace("pretext", "autoencoder codes"): value
            for key, value in classic_rows(autoencoder, "pretext").items()
            if key.startswith("classic")
        }
    )

    if not completed(simclr_dir, "selflabel"):
        _, walls["simclr_pipeline"] = run([*base, f"paths.run_dir={simclr_dir}"])
    summary, walls["simclr_classic"] = run(
        [*base, f"paths.run_dir={simclr_dir}", "stages=[classic]"]
    )
    rows["SimCLR + k-means"] = summary["stages"]["kmeans"]
    for stage, name in (("scan", "SCAN"), ("selflabel", "SCAN + self-label")):
        entry = summary["stages"].get(stage, {})
        rows[name] = entry if entry.get("status") == "completed" else summary["stages"]["scan"]
    rows.update(
        {
            key.replace("pretext", "SimCLR features"): value
            for key, value in classic_rows(simclr_dir, "pretext").items()
            if key.startswith("classic")
        }
    )
    return {"seed": seed, "rows": rows, "wall_time_s": walls}


ORDER = [
    "k-means on pixels",
    "classic pick on pixels",
    "autoencoder + k-means",
    "classic pick on autoencoder codes",
    "SimCLR + k-means",
    "classic pick on SimCLR features",
    "SCAN",
    "SCAN + self-label",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output-dir", default="checkpoints/baselines")
    parser.add_argument(
        "--simclr-runs", nargs="*", default=None, help="finished SimCLR runs, one per seed"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = parser.parse_args()
    root = Path(args.output_dir) / args.experiment
    simclr_dirs = (
        [Path(p) for p in args.simclr_runs]
        if args.simclr_runs
        else [root / "simclr" / f"seed{seed}" for seed in args.seeds]
    )
    if len(simclr_dirs) != len(args.seeds):
        parser.error("give one --simclr-runs directory per seed")

    results = [
        benchmark_seed(args, seed, run_dir)
        for seed, run_dir in zip(args.seeds, simclr_dirs, strict=True)
    ]
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; experiment "
        f"{args.experiment}; seeds {args.seeds}; overrides {args.overrides}"
    )
    print("| method | ACC | NMI | ARI | label-free pick (per seed) |")
    print("|---|---|---|---|---|")
    for name in ORDER:
        cells = []
        for metric in ("acc", "nmi", "ari"):
            values = [r["rows"][name][metric] for r in results]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
        picks = ", ".join(r["rows"][name].get("pick", "") for r in results).strip(", ")
        print(f"| {name} | {' | '.join(cells)} | {picks} |")
    for r in results:
        walls = ", ".join(f"{k} {v:.0f} s" for k, v in r["wall_time_s"].items())
        print(f"seed {r['seed']}: {walls}")
    out = root / "baselines.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

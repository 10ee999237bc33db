"""Benchmark the embedded default: `python scripts/benchmark_digits.py --seeds 0 1 2`.

Runs `train.py`'s pipeline once per seed (each in its own run directory), then prints the
mean and spread of ACC/NMI/ARI per method and the wall time per run. Extra arguments after
`--` are Hydra overrides, e.g. `-- pretext.epochs=30`.
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
METHODS = {
    "kmeans": "k-means (pretext features)",
    "scan": "SCAN",
    "selflabel": "SCAN + self-labeling",
    "final": "final stage",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output-dir", default="checkpoints/benchmarks")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after --)")
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        overrides = [
            f"seed={seed}",
            f"paths.output_dir={args.output_dir}",
            "stages=[pretext,mine,scan,selflabel]",
            "trainer.enable_progress_bar=false",
            *args.overrides,
        ]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        started = time.perf_counter()
        summary = train(cfg)
        wall = time.perf_counter() - started
        results.append({"seed": seed, "wall_time_s": wall, "summary": summary})

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"seeds {args.seeds}; overrides {args.overrides}"
    )
    print(f"{'method':<28}{'ACC':>16}{'NMI':>16}{'ARI':>16}")
    for key, name in METHODS.items():
        cells = []
        for metric in ("acc", "nmi", "ari"):
            values = [_value(r["summary"], key, metric) for r in results]
            values = [v for v in values if v is not None]
            if not values:
                cells.append(f"{'n/a':>16}")
                continue
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):>9.4f} ± {spread:.4f}")
        print(f"{name:<28}{''.join(cells)}")
    walls = [r["wall_time_s"] for r in results]
    print(f"wall time per run: mean {statistics.mean(walls):.1f} s, max {max(walls):.1f} s")
    for r in results:
        summary = r["summary"]
        print(
            f"seed {r['seed']}: final stage {summary['final_stage']}, "
            f"ACC {summary.get('acc', float('nan')):.4f}, {r['wall_time_s']:.1f} s"
        )
    out = Path(args.output_dir) / "benchmark_digits.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def _value(summary: dict, key: str, metric: str) -> float | None:
    if key == "final":
        return summary.get(metric)
    entry = summary["stages"].get(key, {})
    if entry.get("status", "completed") != "completed":
        return None
    return entry.get(metric)


if __name__ == "__main__":
    main()

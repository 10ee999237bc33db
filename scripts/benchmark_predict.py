"""Throughput and peak memory of `semclust predict` on generated folders of images.

For each (backbone, image size) case: write N and 10·N JPEG images, export a randomly
initialised model of that backbone (speed does not depend on the weights), and run
`semclust predict` on each folder in a fresh process, recording images per second and the
process's peak resident memory. Example (the numbers in docs/BENCHMARKS.md):

    python scripts/benchmark_predict.py --work /tmp/predict_bench --out predict_benchmark.json
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semclust.inference.export import save_export
from semclust.models import ClusteringModel, build_backbone

# (label, backbone spec, image size, channels, base image count)
CASES = [
    ("small_cnn 32x32 gray", {"name": "small_cnn", "in_channels": 1}, 32, 1, 2000),
    ("resnet18_cifar 32x32 RGB", {"name": "resnet18_cifar", "in_channels": 3}, 32, 3, 1000),
    (
        "resnet18 224x224 RGB",
        {"name": "torchvision", "model_name": "resnet18", "in_channels": 3},
        224,
        3,
        200,
    ),
]


def write_images(folder: Path, count: int, size: int, channels: int, seed: int) -> None:
    """Smooth random JPEGs (realistic file sizes, unlike pixel noise), in 100-image folders."""
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) == count:
        return
    rng = np.random.default_rng(seed)
    mode = "L" if channels == 1 else "RGB"
    shape = (8, 8) if channels == 1 else (8, 8, 3)
    for index in range(count):
        sub = folder / f"{index // 100:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
        coarse.resize((size, size), Image.Resampling.BICUBIC).save(sub / f"{index:06d}.jpg")


def export_model(spec: dict, size: int, channels: int, path: Path) -> Path:
    torch.manual_seed(0)
    backbone = build_backbone(**spec)
    model = ClusteringModel(backbone, 10, 1).eval()
    gray, rgb = ([0.5], [0.25]), ([0.5] * 3, [0.25] * 3)
    mean, std = gray if channels == 1 else rgb
    preprocessing = {
        "recipe": "small_grayscale" if channels == 1 else "natural",
        "image_size": size,
        "channels": channels,
        "mean": mean,
        "std": std,
    }
    return save_export(
        model, {"backbone": spec, "num_clusters": 10, "preprocessing": preprocessing}, path
    )


# Runs `semclust predict` and reports its own peak RSS and that of its DataLoader workers.
_MEASURED_PREDICT = (
    "import resource, sys\n"
    "from semclust.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
    " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run_predict(model: Path, folder: Path, out: Path, batch_size: int, workers: int) -> dict:
    """One `semclust predict` in a fresh process: throughput and peak resident memory."""
    arguments = ["predict", str(model), str(folder), "--out", str(out), "--overwrite"]
    arguments += ["--quiet", "--no-report", "--link", "none", "--device", "cpu"]
    arguments += ["--batch-size", str(batch_size), "--num-workers", str(workers)]
    finished = subprocess.run(
        [sys.executable, "-c", _MEASURED_PREDICT, *arguments],
        check=True,
        capture_output=True,
        text=True,
    )
    line = next(row for row in finished.stdout.splitlines() if row.startswith("PEAK_KIB"))
    main_kib, worker_kib = (int(value) for value in line.split()[1:])
    summary = json.loads((out / "summary.json").read_text())
    return {
        "images": summary["images_used"],
        "predict_wall_s": summary["wall_time_s"],
        "images_per_s": round(summary["images_used"] / summary["wall_time_s"], 1),
        "peak_rss_mib": round(main_kib / 1024, 1),
        "peak_worker_rss_mib": round(worker_kib / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/semclust_predict_bench"))
    parser.add_argument("--out", type=Path, default=Path("predict_benchmark.json"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--scale", type=int, default=10, help="the larger folder is N x scale")
    parser.add_argument("--cases", nargs="*", type=int, help="indices into CASES (default all)")
    args = parser.parse_args()

    results = []
    for case in args.cases if args.cases is not None else range(len(CASES)):
        label, spec, size, channels, base = CASES[case]
        model = export_model(spec, size, channels, args.work / f"case{case}.safetensors")
        for count in (base, base * args.scale):
            folder = args.work / f"case{case}_{count}"
            write_images(folder, count, size, channels, seed=count)
            measured = run_predict(
                model, folder, args.work / "out", args.batch_size, args.num_workers
            )
            results.append({"case": label, **measured})
            print(json.dumps(results[-1]), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}",
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

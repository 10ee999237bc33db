"""semclust against the 2020 SCAN code on the same GPU, in one run (issue 12).

Both sides read the same CIFAR-10 JPEG train folder (ImageFolder layout) at batch 512:

- semclust: ``python train.py experiment=cifar10 data=folder trainer=gpu`` for the stages
  pretext (``--epochs`` SimCLR epochs at a constant lr 0.4, as the reference harness), mine
  and SCAN (``--scan-epochs``). From the run's manifest: SimCLR images/s (median epoch after
  the first, training batches only), the mine stage's wall time on the 50,000 images
  (embedding and neighbour search), the median SCAN epoch, and kNN purity@20 after the
  pretext (the mine stage's neighbour accuracy on the train images: the share of each image's
  20 cosine neighbours that carry its label).
- the reference: ``bench_ref.py`` of ``../shared/anchors/scan_reference`` (copied to
  ``.device/scan_reference`` by ``../shared/device/prepare.sh``) with ``--workers`` loader
  processes, for as many steps as the same epochs, with ``--purity``.
- semclust again, shorter (3 SimCLR epochs, 2 SCAN epochs), with its batched views made by
  the other maker (``data.batch_views_in``: on the GPU if the first run's loader processes
  made them, else in the loader), for its SimCLR images/s and SCAN epoch beside the first's.

If the first semclust run fails after loader processes made its views (new on a GPU), it
runs again with the views on the device, so the call still measures something; the JSON
keeps the failure (``semclust.failed_first``) and the script exits non-zero.

Writes ``--out`` (docs/benchmarks/gpu.json) and prints the markdown table of
docs/BENCHMARKS.md. On the GPU machine (../shared/GPU.md):

    source .device/remote.sh && python3 scripts/benchmark_gpu.py \\
        --data /tmp/data/cifar10_jpg_train --reference .device/scan_reference --out $OUT/gpu.json

``--smoke`` runs semclust alone on a tiny folder on whatever device there is, for the tests.
"""

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH = 512


class RunFailed(RuntimeError):
    """A semclust run ended in an error; ``in_loader``: loader processes made its views."""

    def __init__(self, message: str, in_loader: bool) -> None:
        super().__init__(message)
        self.in_loader = in_loader


def _views_made_in_loader(log_lines: list[str]) -> bool:
    return any(
        "views made in batches in" in line and "loader process" in line for line in log_lines
    )


def semclust_run(
    args: argparse.Namespace,
    run_dir: Path,
    epochs: int,
    scan_epochs: int,
    more: tuple[str, ...] = (),
) -> dict:
    """Run the pipeline as a user would and read the figures from its manifest."""
    overrides = [
        "experiment=cifar10",
        "data=folder",
        f"data.path={args.data}",
        "data.num_clusters=10",
        # CIFAR-10's statistics, as experiment=cifar10 and the reference use.
        "data.mean=[0.4914,0.4822,0.4465]",
        "data.std=[0.2023,0.1994,0.2010]",
        f"data.num_workers={args.workers}",
        f"trainer={'cpu' if args.smoke else 'gpu'}",
        "stages=[pretext,mine,scan]",
        f"pretext.epochs={epochs}",
        f"pretext.batch_size={args.batch}",
        "pretext.scheduler=null",  # constant lr 0.4, as the reference harness
        f"pretext.val_every_n_epochs={epochs + 1}",  # no k-means on the way
        f"scan.epochs={scan_epochs}",
        f"scan.batch_size={min(128, args.batch)}",
        f"mine.num_neighbors={args.neighbors}",
        f"seed={args.seed}",
        "logger=none",
        "report=false",
        "trainer.enable_progress_bar=false",
        f"paths.run_dir={run_dir}",
        *args.override,
        *more,
    ]
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=REPO, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    (run_dir.parent / f"{run_dir.name}.log").write_text(process.stdout + process.stderr)
    log_lines = (process.stdout + process.stderr).splitlines()
    if process.returncode != 0:
        raise RunFailed(
            f"semclust run failed (exit {process.returncode}):\n{process.stderr[-3000:]}",
            _views_made_in_loader(log_lines),
        )
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    pretext, mine, scan = (stages[name]["metrics"] for name in ("pretext", "mine", "scan"))
    pretext_speed, scan_speed = pretext["training_speed"], scan["training_speed"]
    return {
        "simclr_images_per_s": pretext_speed.get("train_images_per_s"),
        "simclr_epoch_s": pretext_speed.get("train_epoch_s"),
        "mine_s": stages["mine"].get("wall_time_s"),
        "mine_images": mine.get("train_images"),
        "scan_epoch_s": scan_speed.get("train_epoch_s"),
        "purity": mine.get("train_neighbor_accuracy"),
        # The last epoch's NT-Xent, projections' mean cosine (near 1: collapsed), gradient norm
        # before clipping and share of steps clipped.
        "simclr_last_epoch": pretext.get("last_epoch", {}),
        "input_path": [line.split(": ", 1)[-1] for line in log_lines if "pretext: views" in line],
        "wall_s": round(wall, 1),
        "command": "python train.py " + " ".join(overrides),
    }


def reference_run(args: argparse.Namespace, images: int) -> dict:
    """The reference harness for the same epochs; its printed images/s and purity@20."""
    # Its loader drops the last partial batch, as semclust's does: 97 steps an epoch on the
    # 50,000 CIFAR-10 images at 512 (the 1,164 steps of its README's 12-epoch purity).
    steps = args.epochs * (images // args.batch)
    warmup = min(10, steps // 2)  # timed steps after the loader workers have started
    command = [
        sys.executable,
        str(Path(args.reference) / "bench_ref.py"),
        "--data",
        str(args.data),
        "--workers",
        str(args.workers),
        "--batch",
        str(args.batch),
        "--warmup",
        str(warmup),
        "--steps",
        str(steps - warmup),
        "--purity",
    ]
    process = subprocess.run(command, capture_output=True, text=True, cwd=args.reference)
    output = process.stdout + process.stderr
    if process.returncode != 0:
        sys.exit(f"reference failed (exit {process.returncode}):\n{output[-3000:]}")
    speed = re.search(r"= ([\d.]+) images/s", output)
    purity = re.search(r"knn purity@20 after \d+ steps: ([\d.]+)", output)
    loss = re.search(r"loss ([\d.]+)\)", output)
    return {
        "images_per_s": float(speed.group(1)) if speed else None,
        "purity": float(purity.group(1)) if purity else None,
        # Its NT-Xent on the first view's rows, of the last batch only.
        "last_batch_loss": float(loss.group(1)) if loss else None,
        "steps": steps,
        "command": " ".join(command),
    }


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 JPEG train folder")
    parser.add_argument("--reference", type=Path, help="the SCAN reference harness folder")
    parser.add_argument("--out", type=Path, default=REPO / "docs/benchmarks/gpu.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/semclust_gpu_benchmark"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--scan-epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--workers", type=int, default=15)
    parser.add_argument("--neighbors", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--override", nargs="*", default=[], help="more train.py overrides")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    try:
        ours = semclust_run(args, args.work / "run", args.epochs, args.scan_epochs)
    except RunFailed as failure:
        if not failure.in_loader:
            sys.exit(str(failure))
        # Views made by loader processes had not run on a GPU before this script's first
        # use there: rather than no figures, measure with the views on the device.
        print(f"{failure}\nagain with data.batch_views_in=device", file=sys.stderr)
        device_views = ("data.batch_views_in=device",)
        ours = semclust_run(
            args, args.work / "views_device", args.epochs, args.scan_epochs, device_views
        )
        ours["failed_first"] = str(failure)[-3000:]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Written after each run, so a device call that runs out of time keeps what it measured.
    theirs = {}
    result = write_result(args, ours, theirs)
    if args.reference:
        theirs = reference_run(args, ours["mine_images"])
        result = write_result(args, ours, theirs)
    print(table(result, args.epochs))
    if "failed_first" in ours:
        sys.exit("the run with views made in loader processes failed (semclust.failed_first)")
    maker = "device" if _views_made_in_loader(ours["input_path"]) else "workers"
    try:
        other = semclust_run(
            args, args.work / f"views_{maker}", 3, 2, (f"data.batch_views_in={maker}",)
        )
    except RunFailed as failure:
        write_result(args, ours, theirs, {"batch_views_in": maker, "failed": str(failure)})
        sys.exit(str(failure))
    result = write_result(args, ours, theirs, {"batch_views_in": maker, **other})
    print(table(result, args.epochs))


def write_result(
    args: argparse.Namespace, ours: dict, theirs: dict, other_views: dict | None = None
) -> dict:
    result = {
        "device": device_name(),
        "date": time.strftime("%Y-%m-%d"),
        "data": str(args.data),
        "batch": args.batch,
        "loader_workers": args.workers,
        "epochs": args.epochs,
        "seed": args.seed,
        "simclr_images_per_s": ours["simclr_images_per_s"],
        "reference_images_per_s": theirs.get("images_per_s"),
        "simclr_speedup": _ratio(ours["simclr_images_per_s"], theirs.get("images_per_s")),
        "mine_50k_s": ours["mine_s"],
        "mine_images": ours["mine_images"],
        "scan_epoch_s": ours["scan_epoch_s"],
        f"purity_after_{args.epochs}_epochs": ours["purity"],
        f"reference_purity_after_{args.epochs}_epochs": theirs.get("purity"),
        "semclust": ours,
        "reference": theirs,
        # The short run whose batched views the other maker made (data.batch_views_in).
        "semclust_other_views": other_views or {},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 2) if ours and theirs else None


def table(result: dict, epochs: int) -> str:
    """The markdown table of docs/BENCHMARKS.md."""
    rows = [
        (
            f"SimCLR images/s (batch {result['batch']})",
            "simclr_images_per_s",
            "reference_images_per_s",
        ),
        (
            f"kNN purity@20 after {epochs} epochs",
            f"purity_after_{epochs}_epochs",
            f"reference_purity_after_{epochs}_epochs",
        ),
        ("mine stage, s", "mine_50k_s", None),
        ("SCAN epoch, s", "scan_epoch_s", None),
    ]
    lines = [f"| {result['device']} | semclust | SCAN reference |", "|---|---|---|"]
    for label, ours, theirs in rows:
        lines.append(f"| {label} | {result[ours]} | {result[theirs] if theirs else '–'} |")
    lines.append(f"| SimCLR speed-up | {result['simclr_speedup']} | |")
    other = result["semclust_other_views"]
    if other:
        made_by = f"views by data.batch_views_in={other['batch_views_in']}"
        lines.append(f"| SimCLR images/s, {made_by} | {other['simclr_images_per_s']} | |")
        lines.append(f"| SCAN epoch, s, {made_by} | {other['scan_epoch_s']} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

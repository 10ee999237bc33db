"""Reproduce SCAN on CIFAR-10 or CIFAR-100-20 in short, resumable calls (issue 13).

Call it again and again with the same arguments until it prints the final table: each call
runs ``train.py`` (SimCLR, mining, SCAN, self-labeling, the public SCAN configs) for at most
``--budget-min`` minutes and stops cleanly (``stop_after_minutes``: a checkpoint at the
current batch); the next call goes on from there. Exit status 75 means "call me again", 0
"finished". Training reads the train folder; the trained model is scored on the test folder
(``data.val_path``), as the paper does. On one GPU (README, "Reproducing the paper"):

    until python scripts/reproduce.py cifar10 --train DATA/cifar10_jpg_train \\
        --test DATA/cifar10_jpg_test --budget-min 9; do [ $? -eq 75 ] || break; done

Each call's wall time goes into ``<run>/reproduce.json``; when the run is complete its scores
are merged into ``--results`` (docs/benchmarks/cifar.json) and a markdown row is printed.
Everything after ``--`` is passed to train.py as further overrides.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXIT_AGAIN = 75  # semclust.budget.EXIT_OUT_OF_TIME

#: The sets: the experiment config and what a folder of them needs on top of it.
SETS = {
    "cifar10": {
        "experiment": "cifar10",
        "num_clusters": 10,
        "mean": "[0.4914,0.4822,0.4465]",
        "std": "[0.2023,0.1994,0.2010]",
    },
    "cifar20": {
        "experiment": "cifar20",
        "num_clusters": 20,
        "mean": "[0.5071,0.4865,0.4409]",
        "std": "[0.2673,0.2564,0.2762]",
    },
}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--train", type=Path, required=True, help="train image folder")
    parser.add_argument("--test", type=Path, required=True, help="test image folder")
    parser.add_argument("--run-dir", type=Path, help="default: checkpoints/reproduce/<set>")
    parser.add_argument("--budget-min", type=float, default=9.0, help="wall minutes per call")
    parser.add_argument(
        "--margin-min",
        type=float,
        default=1.5,
        help="kept free of training at the end of a call: start-up, mining, saving",
    )
    parser.add_argument("--pretext-epochs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--cpu", action="store_true", help="trainer=cpu (tests)")
    parser.add_argument("--results", type=Path, default=REPO / "docs/benchmarks/cifar.json")
    args = parser.parse_args(argv)
    args.run_dir = args.run_dir or REPO / "checkpoints/reproduce" / args.set
    return args, extra


def train_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    chosen = SETS[args.set]
    training_minutes = max(0.0, args.budget_min - args.margin_min)
    return [
        sys.executable,
        "train.py",
        f"experiment={chosen['experiment']}",
        "data=folder",
        f"data.path={args.train.resolve()}",
        f"data.val_path={args.test.resolve()}",
        f"data.num_clusters={chosen['num_clusters']}",
        f"data.mean={chosen['mean']}",
        f"data.std={chosen['std']}",
        f"data.num_workers={args.workers}",
        f"name=reproduce_{args.set}",
        f"trainer={'cpu' if args.cpu else 'gpu'}",
        f"pretext.epochs={args.pretext_epochs}",
        f"seed={args.seed}",
        f"stop_after_minutes={training_minutes}",
        f"paths.run_dir={args.run_dir.resolve()}",
        "trainer.enable_progress_bar=false",
        "report=false",
        *extra,
    ]


def record_call(run_dir: Path, seconds: float, status: int) -> dict:
    """Append this call to ``<run>/reproduce.json``; the ledger."""
    path = run_dir / "reproduce.json"
    ledger = json.loads(path.read_text()) if path.is_file() else {"calls": []}
    ledger["calls"].append(
        {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(seconds, 1),
            "exit": status,
        }
    )
    path.write_text(json.dumps(ledger, indent=2) + "\n")
    return ledger


def progress(run_dir: Path) -> str:
    """Where the run stands, from its manifest: each stage's status (and why paused)."""
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return "nothing recorded yet"
    stages = json.loads(manifest.read_text())["stages"]
    return "; ".join(
        f"{name}: {entry['status']}" + (f" ({entry['note']})" if entry.get("note") else "")
        for name, entry in stages.items()
    )


def result_entry(args: argparse.Namespace, ledger: dict) -> dict:
    """The finished run's row of cifar.json."""
    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    mine = metrics["stages"].get("mine", {})
    return {
        "set": args.set,
        "images": "JPEG-recompressed folders" if args.set == "cifar10" else "PNG folders",
        "epochs_pretext": args.pretext_epochs,
        "final_stage": metrics["final_stage"],
        "acc": metrics.get("acc"),
        "nmi": metrics.get("nmi"),
        "ari": metrics.get("ari"),
        "scan_acc": metrics["stages"].get("scan", {}).get("acc"),
        "neighbor_accuracy": mine.get("train_neighbor_accuracy"),
        "wall_min": round(sum(call["seconds"] for call in ledger["calls"]) / 60, 1),
        "calls": len(ledger["calls"]),
        "device": device_name(args.cpu),
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d"),
    }


def device_name(cpu: bool) -> str:
    import torch

    return "CPU" if cpu or not torch.cuda.is_available() else torch.cuda.get_device_name()


def merge_result(path: Path, entry: dict) -> None:
    """Replace the row of the same set, schedule and seed, keep the others."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    key = ("set", "epochs_pretext", "seed")
    rows = [row for row in rows if tuple(row.get(k) for k in key) != tuple(entry[k] for k in key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*rows, entry], indent=2) + "\n")


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    status = subprocess.run(train_command(args, extra), cwd=REPO).returncode
    ledger = record_call(args.run_dir, time.perf_counter() - started, status)
    if status == EXIT_AGAIN:
        print(f"reproduce: not finished ({progress(args.run_dir)}); call again", flush=True)
        return EXIT_AGAIN
    if status != 0:
        print(f"reproduce: train.py failed (exit {status}); see {args.run_dir}/train.log")
        return status
    entry = result_entry(args, ledger)
    merge_result(args.results, entry)
    print(
        "| set | pretext epochs | ACC | NMI | ARI | neighbour acc. | wall min | calls |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {entry['set']} | {entry['epochs_pretext']} | {entry['acc']:.4f} | "
        f"{entry['nmi']:.4f} | {entry['ari']:.4f} | {entry['neighbor_accuracy']:.4f} | "
        f"{entry['wall_min']} | {entry['calls']} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The view benchmarks that scripts/gpu_check.sh runs on the GPU machine run here, and print
what BENCHMARKS.md quotes."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*arguments: str) -> str:
    process = subprocess.run(
        [sys.executable, *arguments], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def test_view_benchmark_counts_each_view_s_device_ops():
    out = _run("scripts/benchmark_views.py", "--batch", "8", "--size", "24", "--batched-only")
    assert "batch 8 of 24 px" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows.keys() == {"pretext", "weak", "strong", "eval"}
    for view, row in rows.items():
        batched_ms, device_ops, waits = float(row[2]), int(row[-2]), int(row[-1])
        assert batched_ms > 0 and device_ops > 0 and waits == 0, view


def test_loader_benchmark_times_views_made_in_loader_processes():
    for view in ("simclr", "scan"):
        out = _run(
            "scripts/benchmark_view_loader.py",
            "--workers=1",
            "--batch=32",
            "--batches=3",
            f"--view={view}",
        )
        found = re.search(
            rf"{view} views, batch 32, 1 loader processes: (\d+) pairs/s \(96 in", out
        )
        assert found and int(found.group(1)) > 0, out

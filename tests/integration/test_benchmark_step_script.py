"""scripts/benchmark_step.py runs here in both precisions and prints what BENCHMARKS.md quotes."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_step_benchmark_times_each_precision():
    process = subprocess.run(
        [
            sys.executable,
            "scripts/benchmark_step.py",
            "--batch=4",
            "--size=16",
            "--steps=2",
            "--warmup=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "batch 4 of 16 px on cpu" in process.stdout
    rows = re.findall(r"^(\S+) +([\d.]+) ms/step +(\d+) images/s$", process.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["32-true", "bf16-mixed"]
    for _, milliseconds, images_per_s in rows:
        # Both figures come from the same median step.
        assert abs(4 / (float(milliseconds) / 1000) - int(images_per_s)) <= 1

"""DDP through Lightning on CPU processes (gloo): the pipeline runs, and a failure stops it.

Two processes against one, on the digits test split with the tiny epochs. Batch-norm
statistics and the batch-level loss terms span both processes (tests/unit/
test_distributed_sums.py shows they equal one process's), but the runs still cannot be
bit-identical: sums reach the same gradients in another order, and views made in batches
draw from each process's share of the batch. So the check is: the same stages complete,
the same files are written once, and ACC stays within 0.15 of the one-process run (this
split's ACC moves by about that much between seeds after two epochs; the 0.03 target of
issue 14 is measured on all digits in BENCHMARKS.md).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN

REPO = Path(__file__).resolve().parents[2]
TWO_PROCESSES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def train(run_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "train.py", *TINY_RUN, f"paths.run_dir={run_dir}", *extra],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # a hung process group fails the test instead of stalling CI
    )


def written_files(run_dir: Path) -> set[str]:
    skip = {"train.log", "config.yaml"}
    return {
        str(path.relative_to(run_dir))
        for path in run_dir.rglob("*")
        if path.is_file() and path.name not in skip and "checkpoints" not in path.parts
    }


def test_two_cpu_processes_run_the_pipeline_like_one(tmp_path):
    one = train(tmp_path / "one")
    two = train(tmp_path / "two", *TWO_PROCESSES)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("final stage:") == 1  # the closing table, from rank zero only
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in two.stdout + two.stderr  # really two processes
    assert "batch-norm statistics over all 2 processes" in two.stdout + two.stderr
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    double = json.loads((tmp_path / "two" / "metrics.json").read_text())
    statuses = {name: entry.get("status") for name, entry in double["stages"].items()}
    assert statuses == {name: entry.get("status") for name, entry in single["stages"].items()}
    assert written_files(tmp_path / "two") == written_files(tmp_path / "one")
    assert not list((tmp_path / "two").rglob("*.tmp"))
    assert abs(double["acc"] - single["acc"]) <= 0.15
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["stages"]["scan"]["config"]["trainer"]["devices"] == 2


@pytest.mark.parametrize("failure", ["SEMCLUST_RAISE_AT", "SEMCLUST_KILL_AT"])
def test_a_failing_process_ends_the_whole_run(tmp_path, failure):
    """The second process fails inside the pretext; the first must not wait for it."""
    process = train(
        tmp_path / "run",
        *TWO_PROCESSES,
        "pretext.epochs=5",
        env={failure: "pretext.batch#2@1"},
    )
    assert process.returncode != 0
    if failure == "SEMCLUST_RAISE_AT":
        assert "failure injected at pretext.batch" in process.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["pretext"]["status"] != "completed"

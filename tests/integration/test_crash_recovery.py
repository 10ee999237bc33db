"""Kill a run anywhere, run the same command again: the result is bit-identical.

Each run is a real ``python train.py`` process on the digits test split, killed with SIGKILL
at a named failpoint (:mod:`semclust.failpoints`) and started again with the same command.
``checkpoint_every_minutes=0`` writes ``last.ckpt`` after every batch, so kills inside an
epoch resume inside it.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN

REPO = Path(__file__).resolve().parents[2]
RUN_COMMAND = [
    *TINY_RUN,
    # Two SCAN epochs leave no confident image: take every prediction, so self-labeling runs.
    "selflabel.threshold=0",
    "selflabel.min_clusters_kept_fraction=0",
    "selflabel.max_silhouette_drop=null",
    "checkpoint_every_minutes=0",
    # Bit-identity is a property of the resume logic; GPU kernels need not be deterministic.
    "trainer.accelerator=cpu",
]
#: What must come out the same, byte for byte.
RESULT_FILES = [
    "pretext/backbone.safetensors",
    "mine/train_features.npy",
    "mine/train_neighbors.npy",
    "scan/model.safetensors",
    "selflabel/model.safetensors",
]


def train(run_dir: Path, kill_at: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "SEMCLUST_KILL_AT"}
    if kill_at:
        environment["SEMCLUST_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "train.py", *RUN_COMMAND, f"paths.run_dir={run_dir}", *extra],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def killed(run_dir: Path, kill_at: str) -> str:
    """Run until the failpoint kills the process; its output."""
    process = train(run_dir, kill_at)
    assert process.returncode == -signal.SIGKILL, (
        f"{kill_at} never fired (exit {process.returncode}):\n{process.stderr[-2000:]}"
    )
    return process.stdout + process.stderr


def finished(run_dir: Path, *extra: str) -> str:
    process = train(run_dir, None, *extra)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout + process.stderr


def result(run_dir: Path) -> dict:
    """metrics.json (without the folder's own name) and the digests of the result files."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("run_dir")
    digests = {
        name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in RESULT_FILES
    }
    return {"metrics": metrics, "files": digests}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    console = finished(run_dir)
    # The console shows the run, not faiss probing for builds this CPU lacks at import
    # ("ModuleNotFoundError(... swigfaiss_avx512)" read as a failure).
    assert "run directory:" in console and "faiss" not in console.lower()
    assert json.loads((run_dir / "metrics.json").read_text())["final_stage"] == "selflabel"
    return run_dir, result(run_dir)


def test_killed_in_every_stage_and_during_a_checkpoint_write_gives_the_same_result(
    uninterrupted: tuple[Path, dict], tmp_path: Path
) -> None:
    """One run killed five times (each rerun is the same command) ends bit-identical."""
    run_dir = tmp_path / "run"
    killed(run_dir, "pretext.batch#7")  # mid-epoch of the pretext's second epoch
    log = killed(run_dir, "checkpoint.write#2")  # a new last.ckpt written, not yet renamed
    assert "pretext: resuming from" in log
    log = killed(run_dir, "mine.embedded")
    assert "pretext: resuming from" in log  # from the checkpoint before the torn write
    log = killed(run_dir, "scan.batch#3")
    assert "pretext: finished earlier from the same inputs; skipped" in log
    log = killed(run_dir, "selflabel.batch#2")
    assert "scan: resuming from" in log
    log = finished(run_dir)
    assert "selflabel: resuming from" in log
    assert result(run_dir) == uninterrupted[1]


# The kill points the test above does not reach: an epoch's end, the first checkpoint torn
# (no earlier one to fall back to) and a stage's outputs written but not yet recorded.
# Mid-batch kills in each stage and mine.embedded are the test above's; pretext.epoch#1 is
# test_a_killed_pretext_leaves_a_checkpoint_of_its_last_epoch's.
@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    [
        "checkpoint.write#1",
        "stage.finished#2",  # mine's outputs written, not recorded: its cache is reused
        "scan.epoch#1",
        "stage.finished#3",
    ],
)
def test_one_kill_then_the_same_command_gives_the_same_result(
    uninterrupted: tuple[Path, dict], tmp_path: Path, kill_at: str
) -> None:
    run_dir = tmp_path / "run"
    killed(run_dir, kill_at)
    finished(run_dir)
    assert result(run_dir) == uninterrupted[1]


def test_a_finished_run_run_again_retrains_nothing(uninterrupted: tuple[Path, dict]) -> None:
    run_dir, expected = uninterrupted
    manifest_before = json.loads((run_dir / "manifest.json").read_text())
    log = finished(run_dir)
    for stage in ("pretext", "mine", "scan", "selflabel"):
        assert f"{stage}: finished earlier from the same inputs; skipped" in log
    manifest_after = json.loads((run_dir / "manifest.json").read_text())
    assert manifest_after["stages"] == manifest_before["stages"]  # nothing re-recorded
    assert result(run_dir) == expected


def test_when_checkpoints_are_written_does_not_change_the_result(
    uninterrupted: tuple[Path, dict], tmp_path: Path
) -> None:
    """The runs above write last.ckpt after every batch. By default it is written inside an
    epoch once 10 minutes have passed, so when depends on the machine's speed and load: a run
    that writes it at epoch ends only must end bit-identical."""
    run_dir = tmp_path / "run"
    finished(run_dir, "checkpoint_every_minutes=null")
    assert result(run_dir) == uninterrupted[1]


def test_a_killed_pretext_leaves_a_checkpoint_of_its_last_epoch(
    uninterrupted: tuple[Path, dict], tmp_path: Path
) -> None:
    """Before, the pretext's last.ckpt appeared only when the stage ended. Killed at that
    epoch's end, the same command then ends bit-identical."""
    run_dir = tmp_path / "run"
    killed(run_dir, "pretext.epoch#1")
    import torch

    checkpoint = torch.load(
        run_dir / "pretext/checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["epoch"] == 0  # the first epoch, complete
    state = next(v for k, v in checkpoint["callbacks"].items() if "ResumableCheckpoint" in k)
    assert (state["epoch"], state["batches_done"]) == (1, 0)
    assert set(state["random_states"]) >= {"python", "numpy", "torch"}
    finished(run_dir)
    assert result(run_dir) == uninterrupted[1]


def test_a_time_budget_stops_cleanly_and_the_same_command_finishes_the_run(tmp_path: Path):
    """stop_after_minutes=0: each call trains one batch, checkpoints it and exits with 75."""
    pretext_only = ["stages=[pretext]"]
    reference = tmp_path / "reference"
    finished(reference, *pretext_only)

    run_dir = tmp_path / "run"
    stopped = train(run_dir, None, *pretext_only, "stop_after_minutes=0")
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    assert "time budget spent in epoch 0; run the same command again" in stopped.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["pretext"]["status"] == "paused"
    assert not (run_dir / "pretext/backbone.safetensors").exists()

    log = finished(run_dir, *pretext_only)  # no budget now: goes on from the batch it stopped at
    assert "pretext: resuming from" in log
    name = "pretext/backbone.safetensors"
    assert (run_dir / name).read_bytes() == (reference / name).read_bytes()

"""scripts/reproduce.py: short calls with a time budget, repeated until the run is complete."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "backbone=small_cnn",
    "backbone.width=8",
    "pretext.batch_size=32",
    "pretext.val_every_n_epochs=5",
    "scan.epochs=1",
    "scan.batch_size=32",
    "scan.num_heads=2",
    "selflabel.epochs=1",
    "selflabel.batch_size=32",
    "selflabel.threshold=0",
    "selflabel.min_clusters_kept_fraction=0",
    "selflabel.max_silhouette_drop=null",
    "mine.num_neighbors=5",
    "logger=none",
]


def _folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label, colour in enumerate([(220, 40, 40), (40, 200, 60), (50, 60, 220)]):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(128, 30, (32, 32, 3)), 0, 255)
            x, y = rng.integers(0, 16, 2)
            pixels[y : y + 16, x : x + 16] = colour
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def _call(tmp_path: Path, budget: str, train: Path, test: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "scripts/reproduce.py",
        "cifar10",
        f"--train={train}",
        f"--test={test}",
        f"--run-dir={tmp_path / 'run'}",
        f"--results={tmp_path / 'cifar.json'}",
        f"--budget-min={budget}",
        "--margin-min=0",
        "--pretext-epochs=2",
        "--workers=0",
        "--cpu",
        "--",
        *TINY,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_calls_stop_on_their_budget_and_the_last_one_scores_on_the_test_folder(tmp_path):
    train, test = _folder(tmp_path / "train", 40, 0), _folder(tmp_path / "test", 12, 1)
    inputs_before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.jpg"))

    first = _call(tmp_path, "0", train, test)  # no time at all: one batch, then stop
    assert first.returncode == 75, first.stderr[-2000:]
    assert "reproduce: not finished (pretext: paused" in first.stdout
    assert not (tmp_path / "cifar.json").exists()

    last = _call(tmp_path, "30", train, test)
    assert last.returncode == 0, last.stderr[-2000:]
    assert "| set | pretext epochs | ACC |" in last.stdout
    ledger = json.loads((tmp_path / "run/reproduce.json").read_text())
    assert [call["exit"] for call in ledger["calls"]] == [75, 0]
    [row] = json.loads((tmp_path / "cifar.json").read_text())
    assert row["set"] == "cifar10" and row["epochs_pretext"] == 2 and row["calls"] == 2
    assert row["final_stage"] == "selflabel" and 0 <= row["acc"] <= 1
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    mine = manifest["stages"]["mine"]["metrics"]
    assert (mine["train_images"], mine["val_images"]) == (120, 36)  # scored on the test folder
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.jpg")) == inputs_before

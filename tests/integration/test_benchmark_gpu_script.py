"""scripts/benchmark_gpu.py on a tiny folder and the CPU: the figures it reads exist, and
what the reference harness prints is read back (a stand-in harness: the real one needs CUDA)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

# Prints what ../shared/anchors/scan_reference/bench_ref.py prints (its two f-strings), and
# the arguments it was given.
STAND_IN_HARNESS = """
import argparse, json
ap = argparse.ArgumentParser()
for name in ("--data", "--steps", "--warmup", "--workers", "--batch"):
    ap.add_argument(name)
ap.add_argument("--purity", action="store_true")
a = ap.parse_args()
open("arguments.json", "w").write(json.dumps(vars(a)))
print("reference simclr: 96 images in 0.50 s = 192.0 images/s (batch 32, workers 0, loss 4.1)")
print(f"reference knn purity@20 after {int(a.warmup) + int(a.steps)} steps: 0.3821")
"""


def test_smoke_run_writes_every_figure_the_gpu_table_needs(tmp_path):
    rng = np.random.default_rng(0)
    for label in range(3):
        folder = tmp_path / "data" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(40):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            pixels[8:24, 8:24] = 80 * label
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    out = tmp_path / "gpu.json"
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "bench_ref.py").write_text(STAND_IN_HARNESS)
    command = [
        sys.executable,
        "scripts/benchmark_gpu.py",
        f"--data={tmp_path / 'data'}",
        f"--work={tmp_path / 'work'}",
        f"--out={out}",
        f"--reference={reference}",
        "--smoke",
        "--epochs=2",
        "--scan-epochs=2",
        "--batch=32",
        "--workers=0",
        "--neighbors=5",
        "--override",
        "backbone=small_cnn",
        "backbone.width=8",
    ]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("simclr_images_per_s", "mine_50k_s", "scan_epoch_s", "purity_after_2_epochs"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["mine_images"] == 120
    # Two epochs of 120 images at 32, the last partial batch dropped: 3 steps each, 6 in all.
    given = json.loads((reference / "arguments.json").read_text())
    assert (int(given["warmup"]), int(given["steps"])) == (3, 3)
    assert given["batch"] == "32" and given["workers"] == "0" and given["purity"] is True
    assert result["reference_images_per_s"] == 192.0
    assert result["reference_purity_after_2_epochs"] == 0.3821
    assert result["reference"]["last_batch_loss"] == 4.1
    # The default clip is on, so the share of clipped steps is there too.
    assert set(result["semclust"]["simclr_last_epoch"]) == {
        "ntxent_loss",
        "mean_cosine",
        "grad_norm",
        "clipped_fraction",
    }
    assert result["simclr_speedup"] == round(result["simclr_images_per_s"] / 192.0, 2)
    assert result["semclust"]["input_path"] == [
        # 120 images of 3x32x32
        "views made in batches on the training device (360 KiB decoded; training on cpu)"
    ]
    # The short second run: its views made by the other maker, here the loader's process.
    other = result["semclust_other_views"]
    assert other["batch_views_in"] == "workers"
    assert other["input_path"] == [
        "views made in batches in the loader's process "
        "(360 KiB decoded; data.batch_views_in=workers)"
    ]
    assert other["simclr_images_per_s"] > 0 and other["scan_epoch_s"] > 0
    assert "pretext.epochs=3" in other["command"] and "scan.epochs=2" in other["command"]
    assert (tmp_path / "work" / "views_workers" / "manifest.json").is_file()
    assert "| SimCLR images/s (batch 32) |" in process.stdout
    assert "| 0.3821 |" in process.stdout
    assert "| SCAN epoch, s, views by data.batch_views_in=workers |" in process.stdout


def _script():
    spec = importlib.util.spec_from_file_location(
        "benchmark_gpu", REPO / "scripts/benchmark_gpu.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIGURES = {
    "simclr_images_per_s": 900.0,
    "simclr_epoch_s": 1.0,
    "mine_s": 2.0,
    "mine_images": 120,
    "scan_epoch_s": 3.0,
    "purity": 0.5,
    "input_path": ["views made in batches on the training device (360 KiB decoded; ...)"],
    "wall_s": 9.0,
    "command": "python train.py ...",
}


@pytest.mark.parametrize("in_loader", [True, False])
def test_a_failed_run_is_measured_again_with_the_views_on_the_device_if_loaders_made_them(
    tmp_path, monkeypatch, in_loader
):
    script = _script()
    runs = []

    def run(args, run_dir, epochs, scan_epochs, more=()):
        runs.append((run_dir.name, more))
        if not more:
            raise script.RunFailed("semclust run failed (exit 1):\nboom", in_loader)
        return dict(FIGURES)

    monkeypatch.setattr(script, "semclust_run", run)
    out = tmp_path / "gpu.json"
    argv = ["benchmark_gpu.py", f"--data={tmp_path}", f"--work={tmp_path / 'w'}", f"--out={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        script.main()
    if not in_loader:  # nothing to fall back on: the failure itself is the message
        assert runs == [("run", ())] and "boom" in str(stopped.value) and not out.exists()
        return
    assert runs == [("run", ()), ("views_device", ("data.batch_views_in=device",))]
    assert "loader processes failed" in str(stopped.value)
    result = json.loads(out.read_text())
    assert result["simclr_images_per_s"] == 900.0 and result["scan_epoch_s"] == 3.0
    assert "boom" in result["semclust"]["failed_first"]
    assert result["semclust_other_views"] == {}  # no third run after a fallback

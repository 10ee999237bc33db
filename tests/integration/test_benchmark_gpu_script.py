"""scripts/benchmark_gpu.py on a tiny folder and the CPU: the figures it reads exist."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


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
    command = [
        sys.executable,
        "scripts/benchmark_gpu.py",
        f"--data={tmp_path / 'data'}",
        f"--work={tmp_path / 'work'}",
        f"--out={out}",
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
    assert result["mine_images"] == 120 and result["reference_images_per_s"] is None
    assert result["semclust"]["input_path"] == [
        "views made in batches on the training device (0 MiB decoded)"
    ]
    assert "| SimCLR images/s (batch 32) |" in process.stdout

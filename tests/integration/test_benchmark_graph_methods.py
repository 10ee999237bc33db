"""scripts/benchmark_graph_methods.py on a tiny finished run: every column is measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from semclust.pipeline import train

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.needs("umap")
def test_every_method_column_is_scored_beside_scan(tiny_config, tmp_path):
    train(tiny_config("stages=[pretext,mine,scan]"))
    out = tmp_path / "graph.json"
    command = [
        sys.executable,
        "scripts/benchmark_graph_methods.py",
        f"--run=tiny/0={tmp_path / 'run'}",
        f"--out={out}",
    ]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(out.read_text())["results"][0]
    assert result["k"] == result["true_k"] == 10  # the digits, as the tiny run clusters them
    for column, acc in result["acc"].items():
        assert 0.1 <= acc <= 1.0, (column, acc)
    assert "relative_eigengap=" in result["params"]["spectral"]
    assert result["scan_acc"] is not None and result["pick_acc"] is not None
    assert "| tiny/0 | 10 (10) |" in process.stdout

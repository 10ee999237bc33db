"""The mine stage's neighbour index choice and its recorded recall (issue 14)."""

import json

import numpy as np
import pytest

from semclust.pipeline import train


def _mine_metrics(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return manifest["stages"]["mine"]["metrics"]


def test_mine_stage_records_the_index_and_its_recall(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config("stages=[pretext,mine]", "mine.index=hnsw", "mine.num_neighbors=5"))
    metrics = _mine_metrics(run_dir)
    assert metrics["neighbor_index"] == "hnsw"
    approximate = {}
    for split in ("train", "val"):
        assert 0.9 <= metrics[f"{split}_recall_at_k"] <= 1.0
        assert metrics[f"{split}_neighbor_index_params"]["ef_search"] >= 16
        neighbors = np.load(run_dir / f"mine/{split}_neighbors.npy")
        assert neighbors.shape == (360, 5) and (neighbors >= 0).all() and (neighbors < 360).all()
        assert not (neighbors == np.arange(360)[:, None]).any()  # no image is its own neighbour
        approximate[split] = neighbors
    hnsw_recall = metrics["train_recall_at_k"]

    # Rerun with the default (auto): the cached features are reused, memory-mapped, and a
    # tiny set is searched exactly, with recall 1 by definition.
    train(tiny_config("stages=[mine]", "mine.num_neighbors=5"))
    metrics = _mine_metrics(run_dir)
    assert "train" in metrics["reused_cached_features"]
    assert metrics["neighbor_index"] == "exact"
    assert metrics["train_recall_at_k"] == metrics["val_recall_at_k"] == 1.0
    # The recorded HNSW recall is the share of the exact neighbours it found (all 360 rows
    # are within the recall sample).
    exact = np.load(run_dir / "mine/train_neighbors.npy")
    found = [len(set(a) & set(e)) / 5 for a, e in zip(approximate["train"], exact, strict=True)]
    assert hnsw_recall == pytest.approx(np.mean(found))

    # IVF-PQ on the same cached features: its re-ranked recall and parameters recorded.
    train(tiny_config("stages=[mine]", "mine.num_neighbors=5", "mine.index=ivfpq"))
    metrics = _mine_metrics(run_dir)
    assert metrics["neighbor_index"] == "ivfpq"
    assert metrics["train_recall_at_k"] >= 0.9
    params = metrics["train_neighbor_index_params"]
    assert params["shortlist"] == 5 * params["rerank_factor"] and params["m"] >= 1
    assert (np.load(run_dir / "mine/train_neighbors.npy") >= 0).all()

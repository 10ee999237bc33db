"""Real-data quality check: the embedded default, exactly as `python train.py` runs it."""

import pytest

from semclust.pipeline import train


@pytest.mark.slow
def test_digits_default_reaches_target_accuracy(compose_config, tmp_path):
    # Only the run directory and the console differ from the default experiment.
    cfg = compose_config(
        "train",
        [f"paths.run_dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false", "logger=none"],
    )
    summary = train(cfg)
    assert summary["final_stage"] in ("scan", "selflabel")
    assert summary["acc"] >= 0.85, summary
    assert summary["stages"]["scan"]["acc"] >= 0.85, summary

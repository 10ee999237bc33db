"""The mine stage writes its features to disk as they are computed (issue 14): the same bits
as the in-memory gather, never a half-written or stale file reused, and under two CPU
processes each writes its own rows of the same file."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

from semclust import failpoints
from semclust.pipeline import train
from semclust.rundir import FEATURES_KEY, RunDirectory
from semclust.stages.base import FeatureExtractor
from semclust.stages.common import dataset_split, eval_loader, load_backbone

PRETEXT_AND_MINE = ("stages=[pretext,mine]", "data.eval_batch_size=64")  # 6 batches of 360


def mine_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["stages"]["mine"]["metrics"]


def test_the_mined_features_are_those_of_the_in_memory_gather_bit_for_bit(tiny_config):
    cfg = tiny_config(*PRETEXT_AND_MINE)
    train(cfg)
    run = RunDirectory(cfg.paths.run_dir)
    backbone, _ = load_backbone(run, "test")
    gathered = FeatureExtractor(backbone)  # the extraction as it was before issue 14
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.validate(gathered, eval_loader(cfg, dataset_split(cfg, run, "train")), verbose=False)
    expected = gathered.validation_result().features.numpy().astype(np.float32)

    written = np.load(run.root / "mine/train_features.npy")
    assert written.shape == (360, expected.shape[1])
    np.testing.assert_array_equal(written.view(np.uint32), expected.view(np.uint32))
    # The same images as validation set: its file is a copy, byte for byte.
    train_bytes = (run.root / "mine/train_features.npy").read_bytes()
    assert (run.root / "mine/val_features.npy").read_bytes() == train_bytes
    assert not list(run.root.rglob("*.tmp"))


def test_a_crash_while_mining_never_leaves_features_for_the_cache_to_reuse(
    tiny_config, monkeypatch
):
    run_dir = Path(tiny_config().paths.run_dir)
    features_path = run_dir / "mine/train_features.npy"
    keys_path = run_dir / FEATURES_KEY[0] / FEATURES_KEY[1]
    train(tiny_config(*PRETEXT_AND_MINE))
    first = features_path.read_bytes()
    monkeypatch.setattr(failpoints, "_passes", failpoints.Counter())

    # Another backbone (one pretext epoch), killed after 3 of the 6 batches: the final name
    # still holds the last complete features, the new rows wait in the .tmp file.
    monkeypatch.setenv(failpoints.RAISE_VARIABLE, "mine.batch#3")
    with pytest.raises(failpoints.InjectedFailure):
        train(tiny_config(*PRETEXT_AND_MINE, "pretext.epochs=1"))
    assert features_path.read_bytes() == first
    partial = np.load(run_dir / "mine/train_features.npy.tmp")
    assert (partial[:192] != 0).any() and (partial[192:] == 0).all()
    assert "train" not in json.loads(keys_path.read_text())  # the old key is gone first

    # Again, now killed after the new features were renamed into place but before their key
    # was written: the old key must not vouch for them.
    monkeypatch.setenv(failpoints.RAISE_VARIABLE, "mine.embedded")
    with pytest.raises(failpoints.InjectedFailure):
        train(tiny_config(*PRETEXT_AND_MINE, "pretext.epochs=1"))
    assert features_path.read_bytes() != first
    assert not (run_dir / "mine/train_features.npy.tmp").exists()
    assert "train" not in json.loads(keys_path.read_text())

    # The first backbone again (retrained with the same seed): mined afresh, not reused.
    monkeypatch.delenv(failpoints.RAISE_VARIABLE)
    train(tiny_config(*PRETEXT_AND_MINE))
    assert "train" not in mine_metrics(run_dir)["reused_cached_features"]
    assert features_path.read_bytes() == first


TWO_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from semclust.models import build_backbone
    from semclust.stages.base import FeatureExtractor

    images = torch.randn(45, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    dataset = [{"image": image, "target": i % 3, "index": i} for i, image in enumerate(images)]
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_channels=1, width=4, feature_dim=24).eval()
    path = Path(sys.argv[1])
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    extractor = FeatureExtractor(backbone, path, num_rows=len(dataset))
    trainer.validate(extractor, DataLoader(dataset, batch_size=8), verbose=False)
    targets = extractor.validation_result().targets.numpy()
    np.save(path.with_name(f"targets_rank{trainer.global_rank}.npy"), targets)
    if trainer.is_global_zero:  # every image at once, in one process, without Lightning
        with torch.no_grad():
            np.save(path.with_name("reference.npy"), backbone(images).numpy())
    """
)


def test_two_cpu_processes_write_their_rows_of_one_file(tmp_path):
    script = tmp_path / "extract.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    path = tmp_path / "features.npy"
    process = subprocess.run(
        [sys.executable, str(script), str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,  # a hung process group fails the test instead of stalling CI
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in process.stdout + process.stderr
    written = np.load(path)
    # 45 rows over 2 processes: 23 each, one padded repeat written twice. Every row is
    # there and agrees with one process's to float32 rounding (other batch sizes).
    assert written.shape == (45, 24) and (np.abs(written).sum(axis=1) > 0).all()
    np.testing.assert_allclose(written, np.load(tmp_path / "reference.npy"), rtol=1e-5, atol=1e-6)
    for rank in (0, 1):  # the small targets are still gathered into every process
        targets = np.load(tmp_path / f"targets_rank{rank}.npy")
        np.testing.assert_array_equal(targets, np.arange(45) % 3)
    assert not (tmp_path / "features.npy.tmp").exists()

"""The mining extractor's features written to a memory-mapped .npy as they are computed
(issue 14): the same rows bit for bit as the in-memory gather, renamed into place only when
complete."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from semclust import failpoints
from semclust.models import build_backbone
from semclust.stages.base import FeatureExtractor


class Images(Dataset):
    """Random C×16×16 images with their index and a target, as the datasets give them."""

    def __init__(self, size: int = 45, channels: int = 1) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(size, channels, 16, 16, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "target": index % 3, "index": index}


def backbone(channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("small_cnn", in_channels=channels, width=4, feature_dim=24).eval()


def validate(extractor: FeatureExtractor, dataset: Dataset, precision: str = "32-true") -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(extractor, DataLoader(dataset, batch_size=8), verbose=False)


def test_written_features_are_the_gathered_ones_bit_for_bit(tmp_path):
    dataset = Images()
    net = backbone()
    in_memory = FeatureExtractor(net)
    validate(in_memory, dataset)
    expected = in_memory.validation_result()

    path = tmp_path / "mine" / "train_features.npy"
    on_disk = FeatureExtractor(net, path, num_rows=len(dataset))
    validate(on_disk, dataset)
    written = np.load(path, mmap_mode="r")
    assert written.dtype == np.float32 and written.shape == (45, 24)
    # The same bits, not just close values.
    np.testing.assert_array_equal(
        written.view(np.uint32), expected.features.numpy().astype(np.float32).view(np.uint32)
    )
    assert not on_disk.partial_path().exists()
    result = on_disk.validation_result()
    np.testing.assert_array_equal(result.targets.numpy(), np.arange(45) % 3)
    np.testing.assert_array_equal(result.features.numpy(), written)
    assert "features" not in on_disk.gathered()  # nothing but the targets held in memory


def test_a_failure_mid_extraction_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    path = tmp_path / "train_features.npy"
    np.save(path, np.full((45, 24), 7, dtype=np.float32))  # an earlier, complete result
    before = path.read_bytes()
    monkeypatch.setenv(failpoints.RAISE_VARIABLE, "mine.batch#3")
    monkeypatch.setattr(failpoints, "_passes", failpoints.Counter())
    extractor = FeatureExtractor(backbone(), path, num_rows=45)
    with pytest.raises(failpoints.InjectedFailure):
        validate(extractor, Images())
    assert path.read_bytes() == before  # the final name still holds the old, whole file
    partial = np.load(extractor.partial_path(), mmap_mode="r")
    assert (partial[:24] != 0).any() and (partial[24:] == 0).all()  # 3 batches of 8 written


def test_the_extractor_needs_both_a_path_and_a_row_count(tmp_path):
    with pytest.raises(ValueError, match="go together"):
        FeatureExtractor(backbone(), tmp_path / "f.npy")
    with pytest.raises(ValueError, match="writes none"):
        FeatureExtractor(backbone()).partial_path()


def test_a_backbone_whose_output_disagrees_with_its_feature_dim_is_refused(tmp_path):
    net = backbone()
    net.feature_dim = 30
    with pytest.raises(ValueError, match="feature_dim says 30"):
        validate(FeatureExtractor(net, tmp_path / "f.npy", num_rows=45), Images())


def _is_channels_last(tensor: torch.Tensor) -> bool:
    # With more than one channel a 4-D tensor cannot be contiguous in both orders.
    assert tensor.shape[1] > 1
    return tensor.is_contiguous(memory_format=torch.channels_last)


def test_bf16_on_the_cpu_runs_channels_last_and_float32_stays_nchw(tmp_path):
    # oneDNN's bf16 convolutions read NHWC (faster on AMX CPUs); float32 CPU ones NCHW.
    dataset = Images(channels=3)
    seen = {}

    class Recording(FeatureExtractor):
        def validation_step(self, batch, batch_idx):
            seen.setdefault(self.trainer.precision, batch["image"])
            super().validation_step(batch, batch_idx)

    results = {}
    for precision in ("32-true", "bf16-mixed"):
        extractor = Recording(backbone(channels=3))
        validate(extractor, dataset, precision)
        results[precision] = extractor.validation_result().features
        convolutions = [m.weight for m in extractor.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convolutions
        assert all(_is_channels_last(w) == (precision == "bf16-mixed") for w in convolutions)
    assert not _is_channels_last(seen["32-true"]) and _is_channels_last(seen["bf16-mixed"])
    bf16 = results["bf16-mixed"]
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, results["32-true"], rtol=0.05, atol=0.05)

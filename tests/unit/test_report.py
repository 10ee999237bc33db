"""The HTML cluster report: inlined PNGs, cohesion order, escaping, labels, lazy image loading
and Grad-CAM heatmaps that leave the model as they found it."""

import base64
import io
import re
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn
from torchvision.transforms.functional import to_tensor

from semclust.metrics import clustering_scores
from semclust.models import build_backbone
from semclust.reporting import GradCamExplainer, ReportData, grad_cam_for, write_report
from semclust.reporting import embedding_map as embedding_map_module
from semclust.reporting.embedding_map import embedding_map

NUM_CLUSTERS = 4  # cluster 3 stays empty
NOISE = {0: 0.3, 1: 0.8, 2: 0.05}  # cluster 2 is the tightest, cluster 1 the loosest
EVIL_PATH = '/data/<script>alert("x")</script> & co.png'
# Where opencv (for grad-cam) is missing, as on the GPU machine.
GRAD_CAM = pytest.mark.needs("pytorch_grad_cam")


def synthetic(count: int, seed: int = 0) -> tuple[ReportData, list[PIL.Image.Image]]:
    """``count`` 16x16 grayscale images in clusters 0-2 with separable embeddings."""
    rng = np.random.default_rng(seed)
    clusters = np.arange(count) % 3
    noise = np.array([NOISE[c] for c in clusters])[:, None]
    embeddings = np.eye(8)[clusters] + noise * rng.normal(size=(count, 8))
    logits = rng.normal(size=(count, NUM_CLUSTERS))
    logits[np.arange(count), clusters] += 4.0
    logits[0, 0] += 10.0  # row 0 is cluster 0's most confident member, shown with its path
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    images = [
        PIL.Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L")
        for _ in range(count)
    ]
    paths = [EVIL_PATH] + [f"/data/image_{row:03d}.png" for row in range(1, count)]
    data = ReportData(
        title="Tiny <run> & report",
        paths=paths,
        probabilities=probabilities,
        embeddings=embeddings,
    )
    return data, images


def labelled(data: ReportData) -> ReportData:
    targets = data.probabilities.argmax(axis=1).copy()
    targets[1::5] = -1
    targets[2] = (targets[2] + 1) % 3  # one mistake, so the scores are not all perfect
    data.targets = targets
    data.class_names = ["zero", "one", "<two>"]
    return data


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_channels=1, width=4, feature_dim=8)
    return nn.Sequential(backbone, nn.Linear(8, NUM_CLUSTERS))


def img_sources(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]*)"', page)


def decode_png(source: str) -> PIL.Image.Image:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix), source[:40]
    image = PIL.Image.open(io.BytesIO(base64.b64decode(source[len(prefix) :], validate=True)))
    assert image.format == "PNG"
    image.load()
    return image


def cluster_order(page: str) -> list[int]:
    return [
        int(c) for c in re.findall(r'<section class="cluster[^"]*"[^>]*data-cluster="(\d+)"', page)
    ]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ReportData, list[int]]:
    """One labelled report with Grad-CAM (40 images, so the map is a real t-SNE)."""
    data, images = synthetic(40)
    data = labelled(data)
    data.cluster_names = ["zeros", "ones", "twos & <threes>", "unused"]
    data.errors = [("/data/<broken>.png", "cannot identify image file")]
    loaded: list[int] = []

    def load_image(row: int) -> PIL.Image.Image:
        loaded.append(row)
        return images[row]

    out = tmp_path_factory.mktemp("report") / "nested" / "report.html"
    written = write_report(
        out, data, load_image, GradCamExplainer(tiny_model(), to_tensor), prototypes_per_cluster=5
    )
    assert written == out
    return out.read_text("utf-8"), data, loaded


@GRAD_CAM
def test_every_image_is_an_inlined_png(full_report):
    page, _, _ = full_report
    sources = img_sources(page)
    # 3 non-empty clusters x (5 prototypes + 5 heatmaps) + the embedding map
    assert len(sources) == 3 * 10 + 1 == page.count("<img ")
    sizes = {decode_png(source).size for source in sources}
    assert (96, 96) in sizes  # 16x16 images are upscaled to a visible size
    assert not re.search(r"(?:src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page


@GRAD_CAM
def test_clusters_ranked_by_cohesion_with_empty_last(full_report):
    page, _, _ = full_report
    assert cluster_order(page) == [2, 0, 1, 3]
    empty = re.search(r'<section class="cluster empty".*?</section>', page, re.S).group(0)
    assert 'data-cluster="3"' in empty and "unused" in empty and "Empty" in empty
    assert "<img" not in empty
    cohesions = [float(c) for c in re.findall(r"cohesion (\d\.\d+)", page)]
    assert cohesions == sorted(cohesions, reverse=True) and len(cohesions) == 3


@GRAD_CAM
def test_paths_and_names_are_escaped(full_report):
    page, _, _ = full_report
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co.png" in page
    assert "<run>" not in page and "Tiny &lt;run&gt; &amp; report" in page
    assert "twos &amp; &lt;threes&gt;" in page and "&lt;two&gt;" in page
    assert "/data/&lt;broken&gt;.png" in page


@GRAD_CAM
def test_labels_give_scores_and_confusion_matrix(full_report):
    page, data, _ = full_report
    assert '<section id="labels">' in page and '<section id="scores">' not in page
    known = data.targets >= 0
    scores = clustering_scores(data.probabilities.argmax(axis=1)[known], data.targets[known])
    assert scores["acc"] < 1.0
    for name in ("acc", "nmi", "ari"):
        assert f"{scores[name]:.4f}" in page
    assert f"{known.sum()} of 40 images" in page
    confusion = re.search(r'<table class="confusion">.*?</table>', page, re.S).group(0)
    assert confusion.count("<tr>") == 1 + 3  # header + one row per class
    assert confusion.count('<th scope="col">') == 1 + NUM_CLUSTERS


@GRAD_CAM
def test_summary_map_and_errors(full_report):
    page, data, _ = full_report
    mean_confidence = data.probabilities.max(axis=1).mean()
    assert f"{mean_confidence:.3f}" in page
    assert "4 (3 non-empty)" in page
    assert "t-SNE of all 40 embeddings" in page
    assert '<section id="errors">' in page and "cannot identify image file" in page


@GRAD_CAM
def test_load_image_called_only_for_prototypes(full_report):
    _, data, loaded = full_report
    predictions = data.probabilities.argmax(axis=1)
    confidences = data.probabilities.max(axis=1)
    expected = set()
    for cluster in range(3):
        members = np.flatnonzero(predictions == cluster)
        expected |= set(members[np.argsort(-confidences[members])][:5].tolist())
    assert sorted(loaded) == sorted(expected)  # each once, heatmaps reuse the loaded images
    assert 0 in loaded


def test_without_labels_label_free_scores_and_pca_for_few_images(tmp_path: Path):
    data, images = synthetic(8)
    page = write_report(
        tmp_path / "r.html", data, images.__getitem__, no_heatmaps_reason="the model has no Conv2d"
    ).read_text("utf-8")
    assert '<section id="labels">' not in page
    assert "silhouette" in page and "Davies-Bouldin" in page
    assert "PCA of all 8 embeddings" in page
    assert "Grad-CAM heatmaps are not shown: the model has no Conv2d" in page
    assert len(img_sources(page)) == 8 + 1  # no heatmaps, 8 prototypes and the map
    for source in img_sources(page):
        decode_png(source)


def test_unknown_targets_only_is_treated_as_unlabelled(tmp_path: Path):
    data, images = synthetic(8)
    data.targets = np.full(8, -1)
    page = write_report(tmp_path / "r.html", data, images.__getitem__).read_text("utf-8")
    assert '<section id="labels">' not in page
    assert "no image has a known label" in page
    assert "no Grad-CAM explainer was given" in page


def test_without_grad_cam_the_report_is_written_and_says_why(tmp_path: Path, monkeypatch, caplog):
    """grad-cam imports opencv, which an install may lack: no heatmaps then, never no report."""
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # importing it now fails
    explainer, reason = grad_cam_for(tiny_model(), to_tensor)
    assert explainer is None
    assert reason.startswith("the grad-cam package could not be imported (")
    assert "report without heatmaps" in caplog.text
    data, images = synthetic(8)
    page = write_report(
        tmp_path / "r.html", data, images.__getitem__, explainer, no_heatmaps_reason=reason
    ).read_text("utf-8")
    assert "Grad-CAM heatmaps are not shown: the grad-cam package could not be imported" in page
    assert len(img_sources(page)) == 8 + 1  # 8 prototypes and the map


def test_the_map_needs_neither_umap_nor_numba(monkeypatch):
    """They compile in every new process (most of a small `predict`), and the GPU machine
    lacks numba: the map is scikit-learn's t-SNE."""
    for module in ("umap", "numba", "pynndescent"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it now fails
    data, _ = synthetic(40)
    predictions = data.probabilities.argmax(axis=1)
    png, caption = embedding_map(data.embeddings, predictions, 4, 0)
    assert caption == "t-SNE of all 40 embeddings, coloured by cluster."
    image = PIL.Image.open(io.BytesIO(png))
    assert image.format == "PNG" and min(image.size) > 100
    assert embedding_map(data.embeddings, predictions, 4, 0)[0] == png  # the same map again


@pytest.mark.parametrize("value", [0.0, 0.25])
def test_embeddings_all_at_one_point_are_mapped_with_pca(value):
    """A collapsed model's embeddings: scikit-learn's t-SNE would kill the process."""
    png, caption = embedding_map(np.full((50, 8), value), np.zeros(50, dtype=int), 3, 0)
    assert caption == (
        "PCA of all 50 embeddings, coloured by cluster (every embedding is the same point)."
    )
    assert PIL.Image.open(io.BytesIO(png)).format == "PNG"


def test_a_large_set_is_mapped_through_a_seeded_sample(monkeypatch):
    mapped = []

    def fake_tsne(points, seed):  # the real one takes ~10 s on 3,000 points
        mapped.append(points)
        return np.zeros((len(points), 2))

    monkeypatch.setattr(embedding_map_module, "_tsne", fake_tsne)
    rng = np.random.default_rng(0)
    embeddings, predictions = rng.normal(size=(3_200, 8)), rng.integers(0, 3, 3_200)
    _, caption = embedding_map(embeddings, predictions, 3, 5)
    assert caption == "t-SNE of 3,000 of 3,200 (seed 5) embeddings, coloured by cluster."
    _, again = embedding_map(embeddings, predictions, 3, 5)
    assert len(mapped[0]) == 3_000 and np.array_equal(mapped[0], mapped[1])
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert any(np.allclose(mapped[0][0], row) for row in unit[:300])  # rows of the input


@GRAD_CAM
def test_heatmaps_have_visible_size_and_leave_the_model_unchanged():
    _, images = synthetic(6)
    model = tiny_model()
    model.train()
    model[0].features[0][0].weight.requires_grad_(False)  # a partly frozen backbone
    head_grad = torch.ones_like(model[1].weight)
    model[1].weight.grad = head_grad
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {name: m.training for name, m in model.named_modules()}

    explainer = GradCamExplainer(model, to_tensor)
    with torch.no_grad():  # as a predict loop would call it
        heatmaps = explainer.heatmaps(images, [0, 1, 2, 3, 0, 1])

    assert len(heatmaps) == 6
    for heatmap in heatmaps:
        assert heatmap.mode == "RGB" and heatmap.size == (96, 96)
        pixels = np.asarray(heatmap, dtype=np.int64)
        assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 50  # coloured, not gray
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert model[1].weight.grad is head_grad and model[1].bias.grad is None
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), name


@GRAD_CAM
def test_heatmap_follows_the_cluster_that_drove_it():
    """Channel 0 sees the bright left half and drives cluster 0; channel 1 the dark right
    half and cluster 1. Each heatmap must be hot where its cluster's evidence is."""

    class Halves(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)
            with torch.no_grad():
                self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
                self.conv.bias.copy_(torch.tensor([0.0, 1.0]))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.conv(images).mean(dim=(2, 3))

    pixels = np.zeros((16, 16), np.uint8)
    pixels[:, :8] = 255
    image = PIL.Image.fromarray(pixels, "L")
    left, right = (
        np.asarray(heatmap, dtype=np.int64)
        for heatmap in GradCamExplainer(Halves(), to_tensor).heatmaps([image] * 2, [0, 1])
    )
    # The jet colour map makes hot areas red and cold ones blue, whatever the image below.
    for heatmap, hot, cold in (
        (left, slice(0, 48), slice(48, 96)),
        (right, slice(48, 96), slice(0, 48)),
    ):
        warmth = heatmap[..., 0] - heatmap[..., 2]
        assert warmth[:, hot].mean() > 30 > -30 > warmth[:, cold].mean()


def test_model_without_conv2d_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, NUM_CLUSTERS))
    with pytest.raises(ValueError, match="Sequential has no nn.Conv2d"):
        GradCamExplainer(model, to_tensor)
    with pytest.raises(ValueError, match="not a submodule"):
        GradCamExplainer(tiny_model(), to_tensor, target_layer=nn.Conv2d(1, 1, 1))


@GRAD_CAM
def test_explainer_errors_name_the_bad_value():
    _, images = synthetic(2)
    explainer = GradCamExplainer(tiny_model(), to_tensor)
    with pytest.raises(ValueError, match="2 images but 1 clusters"):
        explainer.heatmaps(images, [0])
    with pytest.raises(ValueError, match="cluster 7 is out of range for a model with 4"):
        explainer.heatmaps(images, [0, 7])
    heads = nn.Sequential(tiny_model(), nn.Unflatten(1, (1, NUM_CLUSTERS)))
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 4\)"):
        GradCamExplainer(heads, to_tensor).heatmaps(images, [0, 1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"paths": ["a.png"] * 7}, "got 7 paths but 8 rows"),
        ({"embeddings": np.zeros((9, 8))}, r"N = 8 like probabilities, got \(9, 8\)"),
        ({"probabilities": np.zeros(8)}, r"\(N, K\) with K >= 1, got \(8,\)"),
        ({"targets": np.zeros(5, int)}, r"targets must have shape \(8,\), got \(5,\)"),
        ({"targets": np.zeros(8)}, "targets must be integers"),
        ({"cluster_names": ["a", "b"]}, "got 2 cluster_names for 4 clusters"),
        ({"targets": np.full(8, 5), "class_names": ["a"]}, "1 class_names but targets go up to 5"),
        ({"embeddings": np.full((8, 8), np.nan)}, "embeddings hold NaN"),
    ],
)
def test_inconsistent_data_is_refused(tmp_path: Path, change: dict, message: str):
    data, images = synthetic(8)
    for name, value in change.items():
        setattr(data, name, value)
    with pytest.raises(ValueError, match=message):
        write_report(tmp_path / "r.html", data, images.__getitem__)
    assert not (tmp_path / "r.html").exists()


def test_failing_loader_names_the_file(tmp_path: Path):
    data, _ = synthetic(8)

    def load_image(row: int) -> PIL.Image.Image:
        raise OSError("truncated file")

    with pytest.raises(
        RuntimeError,
        match=r"cannot load image \d+ \(/data/image_\d+\.png\) for the report: truncated file",
    ):
        write_report(tmp_path / "r.html", data, load_image, prototypes_per_cluster=8)

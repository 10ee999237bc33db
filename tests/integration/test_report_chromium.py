"""A generated report rendered by a real headless Chromium: every inlined image decodes, each
cluster shows its images, and the page is not blank."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn
from torchvision.transforms.functional import to_tensor

from semclust.models import build_backbone
from semclust.reporting import GradCamExplainer, ReportData, write_report

CHROMIUM = next(
    (
        found
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (found := shutil.which(name))
    ),
    None,
)
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium, chromium-browser or google-chrome on PATH (apt-get install chromium)",
    ),
    pytest.mark.needs("pytorch_grad_cam"),
]

# Runs before the page's Content-Security-Policy is parsed (that policy forbids scripts), so
# the report is checked exactly as written. After load it records, per cluster section and
# for the page, how many images decoded out of how many.
PROBE = """<script>
window.addEventListener("load", () => {
  const decoded = (images) => [...images].filter((i) => i.complete && i.naturalWidth > 0);
  const lines = [...document.querySelectorAll("section.cluster")].map((section) => {
    const images = section.querySelectorAll("img");
    return `cluster ${section.dataset.cluster}: ${decoded(images).length}/${images.length}`;
  });
  lines.push(`page: ${decoded(document.images).length}/${document.images.length}`);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = lines.join("\\n");
  document.body.appendChild(probe);
});
</script>"""


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # containers and CI often run as root, where the sandbox refuses
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three clusters of three 16x16 images plus an empty one, with Grad-CAM heatmaps."""
    rng = np.random.default_rng(0)
    clusters = np.arange(9) % 3
    logits = rng.normal(size=(9, 4))
    logits[np.arange(9), clusters] += 4.0
    data = ReportData(
        title="Render check <&>",
        paths=[f"/images/<{row}> & 'q'.png" for row in range(9)],
        probabilities=np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True),
        embeddings=np.eye(5)[clusters] + 0.1 * rng.normal(size=(9, 5)),
        targets=clusters,
        errors=[("/images/broken.png", "truncated")],
    )
    images = [
        PIL.Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L") for _ in range(9)
    ]
    torch.manual_seed(0)
    model = nn.Sequential(
        build_backbone("small_cnn", in_channels=1, width=4, feature_dim=8), nn.Linear(8, 4)
    )
    return write_report(
        tmp_path_factory.mktemp("report") / "report.html",
        data,
        images.__getitem__,
        GradCamExplainer(model, to_tensor),
    )


def test_every_image_renders_in_chromium(report: Path, tmp_path: Path):
    page = report.read_text("utf-8")
    assert page.count("<head>") == 1
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), "utf-8")

    dom = chromium("--dump-dom", probed.as_uri(), profile=tmp_path / "profile").stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, f"the probe did not run; DOM starts with {dom[:500]!r}"
    counts = dict(
        (line.split(": ")[0], tuple(map(int, line.split(": ")[1].split("/"))))
        for line in match.group(1).strip().splitlines()
    )
    # 3 clusters x (3 prototypes + 3 heatmaps), the empty cluster 3 shows none, and the map.
    assert counts == {
        "cluster 0": (6, 6),
        "cluster 1": (6, 6),
        "cluster 2": (6, 6),
        "cluster 3": (0, 0),
        "page": (19, 19),
    }
    assert "Empty: no image was assigned" in dom
    assert "<script" not in page  # the report itself needs and carries no script


def test_screenshot_is_not_blank(report: Path, tmp_path: Path):
    screenshot = tmp_path / "report.png"
    chromium(
        f"--screenshot={screenshot}",
        "--window-size=1000,1600",
        report.as_uri(),
        profile=tmp_path / "profile",
    )
    with PIL.Image.open(screenshot) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 100, "the screenshot is (nearly) blank"

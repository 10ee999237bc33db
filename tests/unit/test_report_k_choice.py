"""The report of a run with data.num_clusters=auto shows how K was chosen: the saved plot (or
one drawn from the saved curves), each criterion's K, the deciding one and why; a run given
K shows no such section."""

import base64
import io
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from omegaconf import OmegaConf
from sklearn.datasets import make_blobs

from semclust.clustering.settings import ChooseKSettings
from semclust.inference.run_report import load_k_choice, write_run_report
from semclust.reporting import KChoiceSummary, ReportData, write_report
from semclust.reporting.k_choice import PNG_SIGNATURE, k_choice_section
from semclust.reporting.markup import esc
from semclust.rundir import (
    K_CHOICE,
    RunDirectory,
    model_spec,
    model_weights,
    read_json,
    save_weights,
)
from semclust.stages.num_clusters import choose_num_clusters

SEED = 0


def k_section(page: str) -> str | None:
    """The "How K was chosen" section of a page, or None."""
    found = re.search(r'<section id="k-choice">.*?</section>', page, re.S)
    return found.group(0) if found else None


def inlined_pngs(html: str) -> list[bytes]:
    prefix = "data:image/png;base64,"
    sources = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert all(source.startswith(prefix) for source in sources), sources
    return [base64.b64decode(source[len(prefix) :], validate=True) for source in sources]


def assert_readable_png(data: bytes) -> None:
    image = PIL.Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    assert min(image.size) > 100


def choose_k_on_blobs(run: RunDirectory, true_k: int = 3) -> dict:
    """What the mine stage saves with data.num_clusters=auto, on features with ``true_k``
    blobs."""
    features, _ = make_blobs(60 * true_k, n_features=12, centers=true_k, random_state=SEED)
    settings = {**vars(ChooseKSettings()), "k_max": 6}
    cfg = OmegaConf.create({"seed": SEED, "choose_k": settings})
    return choose_num_clusters(cfg, run, features.astype(np.float32), "blob <features> & co")


@pytest.fixture
def trained_run(tmp_path, tiny_model, compose_config) -> RunDirectory:
    """A run directory whose scan stage left a 3-cluster model for the digits images."""
    run = RunDirectory(tmp_path / "run")
    run.claim()
    model, spec = tiny_model()
    spec = {**spec, "num_heads": 1, "stage": "scan"}
    run.stage_dir("scan")
    save_weights(model, run.path(model_weights("scan")), spec, run.path(model_spec("scan")))
    data_cfg = compose_config("train", ["data.val_split=test"]).data  # 360 images
    data = OmegaConf.to_container(data_cfg, resolve=True)
    run.record_stage("scan", "completed", {"data": data}, metrics={})
    return run


def test_a_run_that_chose_k_shows_the_plot_the_criteria_and_why(trained_run):
    choice = choose_k_on_blobs(trained_run)
    assert choice["value"] == 3  # the model's K, so the choice is this run's
    section = k_section(write_run_report(trained_run.root).read_text())
    assert section is not None, "the report has no 'How K was chosen' section"
    (plot,) = inlined_pngs(section)
    assert plot == (trained_run.root / choice["files"]["criteria"]).read_bytes()
    assert_readable_png(plot)
    decided = re.search(r'<tr class="decided"><th scope="row">(\w+)</th><td>(\d+)</td>', section)
    assert decided and decided.groups() == (choice["criterion"], "3")
    for name, entry in choice["criteria"].items():
        assert f'<th scope="row">{name}</th><td>{entry["k"]}</td>' in section
    assert "<th>chosen K</th><td>3</td>" in section
    assert f"<th>decided by</th><td>{choice['criterion']}</td>" in section
    assert "<th>K swept</th><td>2 to 6</td>" in section
    assert "blob &lt;features&gt; &amp; co" in section and "<features>" not in section
    assert esc(choice["reason"]) in section


def test_a_run_given_k_has_no_k_section(trained_run):
    assert load_k_choice(trained_run.root) is None
    page = write_run_report(trained_run.root).read_text()
    assert k_section(page) is None and "How K was chosen" not in page


def test_a_choice_left_by_an_earlier_run_with_another_k_is_not_shown(trained_run):
    choose_k_on_blobs(trained_run, true_k=5)  # not the model's 3 clusters
    assert load_k_choice(trained_run.root).value == 5
    assert k_section(write_run_report(trained_run.root).read_text()) is None


def test_the_plot_is_drawn_from_the_saved_curves_when_the_png_is_gone(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.claim()
    choice = choose_k_on_blobs(run)
    (run.root / choice["files"]["criteria"]).unlink()
    loaded = load_k_choice(run.root)
    assert loaded.plot_png is None
    (plot,) = inlined_pngs(k_choice_section(loaded))
    assert plot.startswith(PNG_SIGNATURE)
    assert_readable_png(plot)


def test_the_manifest_copy_is_read_when_choice_json_is_gone(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.claim()
    choice = choose_k_on_blobs(run)
    saved_plot = (run.root / choice["files"]["criteria"]).read_bytes()
    run.path(K_CHOICE).unlink()
    loaded = load_k_choice(run.root)
    assert (loaded.value, loaded.criterion) == (3, choice["criterion"])
    assert loaded.plot_png == saved_plot


def test_a_choice_without_files_or_curves_still_reads(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.claim()
    choose_k_on_blobs(run)
    entry = read_json(run.path(K_CHOICE))
    without_files = KChoiceSummary.from_saved({**entry, "files": {}})
    (plot,) = inlined_pngs(k_choice_section(without_files))
    assert_readable_png(plot)
    failed = {name: {"error": "too few images"} for name in entry["criteria"]}
    no_curves = KChoiceSummary.from_saved({**entry, "criteria": failed, "files": {}})
    section = k_choice_section(no_curves)
    assert "<img" not in section and "No criterion curve was saved" in section
    assert "failed: too few images" in section


def test_the_section_escapes_every_text():
    evil = '<script>alert("x")</script>'
    choice = KChoiceSummary(
        value=2,
        criterion=evil,
        reason=f"because {evil}",
        criteria={evil: {"k": 2, "reason": evil}, "merge": {"error": evil}},
        swept=(2, 4),
        features=evil,
        neighbors=evil,
    )
    section = k_choice_section(choice)
    assert "<script>" not in section
    assert section.count("&lt;script&gt;") == 7  # reason, facts x3, criterion name, 2 notes


def test_a_numeric_k_shows_nothing_and_a_mismatched_choice_is_refused(tmp_path: Path):
    assert k_choice_section(None) == ""
    rng = np.random.default_rng(SEED)
    data = ReportData(
        title="t",
        paths=["a.png", "b.png"],
        probabilities=np.full((2, 3), 1 / 3),
        embeddings=rng.normal(size=(2, 4)),
        k_choice=KChoiceSummary(value=5, criterion="silhouette", reason="r", criteria={}),
    )
    with pytest.raises(ValueError, match="K=5 but probabilities have 3 clusters"):
        write_report(tmp_path / "report.html", data, lambda row: PIL.Image.new("L", (8, 8)))

"""The report's "Scores against the number of query images": ACC/NMI/ARI and the top-5
neighbour accuracy of seeded random query sets of growing size, the neighbours searched
within each set; shown only when the data has labels."""

import base64
import io
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from omegaconf import OmegaConf
from sklearn.datasets import make_blobs

from semclust.inference.run_report import write_run_report
from semclust.reporting import QueryCurves, ReportData, scores_by_query_count, write_report
from semclust.reporting.query_curves import (
    METRICS,
    SUBSETS_PER_SIZE,
    query_curves_section,
    query_set_sizes,
)
from semclust.rundir import RunDirectory, model_spec, model_weights, save_weights

SEED = 0
CLASSES = 3


@pytest.fixture(autouse=True)
def no_embedding_map(monkeypatch):
    """The map is not what these tests look at, and t-SNE takes seconds on hundreds of points."""
    monkeypatch.setattr("semclust.reporting.report.map_section", lambda *args: "")


def separated_blobs(count: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 16-D embeddings in ``CLASSES`` far apart, tight blobs, and their labels."""
    embeddings, labels = make_blobs(
        count, n_features=16, centers=CLASSES, cluster_std=0.2, center_box=(-20, 20),
        random_state=seed,
    )  # fmt: skip
    return embeddings.astype(np.float32), labels.astype(np.int64)


def query_section(page: str) -> str | None:
    found = re.search(r'<section id="query-curves">.*?</section>', page, re.S)
    return found.group(0) if found else None


def inlined_pngs(html: str) -> list[PIL.Image.Image]:
    prefix = "data:image/png;base64,"
    images = []
    for source in re.findall(r'<img [^>]*src="([^"]*)"', html):
        assert source.startswith(prefix), source[:40]
        image = PIL.Image.open(io.BytesIO(base64.b64decode(source[len(prefix) :], validate=True)))
        assert image.format == "PNG"
        image.load()
        images.append(image)
    return images


def report_data(embeddings: np.ndarray, targets: np.ndarray | None, predictions: np.ndarray):
    count = len(embeddings)
    probabilities = np.full((count, CLASSES), 0.1)
    probabilities[np.arange(count), predictions] = 0.8
    return ReportData(
        title="query curves",
        paths=[f"/data/{row}.png" for row in range(count)],
        probabilities=probabilities,
        embeddings=embeddings,
        targets=targets,
    )


def blank(row: int) -> PIL.Image.Image:
    return PIL.Image.new("L", (16, 16))


@pytest.mark.parametrize("count", [1, 49, 50, 51, 999, 1000, 1001, 12_345])
def test_query_set_sizes_increase_and_end_at_n(count):
    sizes = query_set_sizes(count)
    assert sizes[-1] == count
    assert all(a < b for a, b in zip(sizes, sizes[1:], strict=False))
    assert sizes[0] == min(50, count)
    assert query_set_sizes(12_345) == [50, 100, 200, 500, 1000, 2000, 5000, 10_000, 12_345]


def test_perfect_predictions_score_one_at_every_size():
    embeddings, labels = separated_blobs(1200)
    renamed = (labels + 1) % CLASSES  # cluster ids need not be the class ids
    curves = scores_by_query_count(renamed, labels, embeddings)
    assert curves.sizes == [50, 100, 200, 500, 1000, 1200]
    for metric in ("acc", "nmi", "ari"):
        for values in curves.scores[metric]:
            assert values == pytest.approx([1.0] * len(values))
    assert [len(values) for values in curves.scores["acc"]] == [SUBSETS_PER_SIZE] * 5 + [1]


def test_random_predictions_score_near_chance():
    embeddings, labels = separated_blobs(3000)
    guesses = np.random.default_rng(1).integers(0, CLASSES, len(labels))
    curves = scores_by_query_count(guesses, labels, embeddings)
    # Hungarian matching flatters small sets a little; at 3000 images it is chance.
    assert curves.mean("acc")[-1] == pytest.approx(1 / CLASSES, abs=0.03)
    assert (curves.mean("acc") < 0.5).all()
    assert abs(curves.mean("ari")[-1]) < 0.01 and curves.mean("nmi")[-1] < 0.01
    assert (curves.mean("neighbor_acc") == 1.0).all()  # the embeddings are still good


def test_neighbour_accuracy_is_one_on_separated_blobs_and_chance_on_shuffled_labels():
    embeddings, labels = separated_blobs(2000)
    curves = scores_by_query_count(labels, labels, embeddings)
    assert all(values == [1.0] * len(values) for values in curves.scores["neighbor_acc"])
    shuffled = np.random.default_rng(2).permutation(labels)
    curves = scores_by_query_count(shuffled, shuffled, embeddings)
    assert curves.mean("neighbor_acc") == pytest.approx([1 / CLASSES] * 6, abs=0.08)
    assert curves.mean("neighbor_acc")[-1] == pytest.approx(1 / CLASSES, abs=0.03)


def test_neighbours_are_searched_within_each_query_set():
    """Groups of six nearly identical images, each group one class: all 5 neighbours share
    the label among all images, but a small query set rarely holds a group's other members."""
    rng = np.random.default_rng(SEED)
    groups = 200
    centers = rng.normal(size=(groups, 32))
    group = np.repeat(np.arange(groups), 6)
    embeddings = centers[group] + 1e-3 * rng.normal(size=(len(group), 32))
    labels = rng.integers(0, 2, groups)[group]
    curves = scores_by_query_count(labels, labels, embeddings)
    accuracy = curves.mean("neighbor_acc")
    assert accuracy[-1] == 1.0 and accuracy[0] < 0.65
    assert list(accuracy) == sorted(accuracy)


def test_large_sets_score_a_sample_of_queries_and_say_so():
    embeddings, labels = separated_blobs(600)
    curves = scores_by_query_count(labels, labels, embeddings, neighbor_queries=40)
    assert (curves.mean("neighbor_acc") == 1.0).all()
    assert "averaged over 40 of them" in query_curves_section(curves)
    every_query = scores_by_query_count(labels, labels, embeddings, neighbor_queries=600)
    assert "averaged over" not in query_curves_section(every_query)


def test_a_fixed_seed_gives_the_same_numbers():
    embeddings, labels = separated_blobs(700)
    noisy = np.where(np.random.default_rng(3).random(700) < 0.3, 0, labels)
    first = scores_by_query_count(noisy, labels, embeddings, seed=5)
    assert first == scores_by_query_count(noisy, labels, embeddings, seed=5)
    other = scores_by_query_count(noisy, labels, embeddings, seed=6)
    assert other.scores["acc"][:-1] != first.scores["acc"][:-1]
    assert other.scores["acc"][-1] == first.scores["acc"][-1]  # all images: no draw


def test_only_labelled_images_count_and_no_labels_give_no_curves():
    embeddings, labels = separated_blobs(300)
    targets = labels.copy()
    targets[::3] = -1
    curves = scores_by_query_count(labels, targets, embeddings)
    assert curves.sizes[-1] == 200
    assert scores_by_query_count(labels, None, embeddings) is None
    assert scores_by_query_count(labels, np.full(300, -1), embeddings) is None
    assert query_curves_section(None) == ""


def test_the_report_shows_the_plot_and_the_numbers(tmp_path: Path):
    embeddings, labels = separated_blobs(400)
    targets = labels.copy()
    targets[::4] = -1
    predictions = np.where(np.arange(400) % 7 == 0, (labels + 1) % CLASSES, labels)
    data = report_data(embeddings, targets, predictions)
    page = write_report(tmp_path / "report.html", data, blank).read_text("utf-8")
    section = query_section(page)
    assert section is not None
    assert "<h2>Scores against the number of query images</h2>" in section
    (plot,) = inlined_pngs(section)
    assert min(plot.size) > 300
    assert "seed 0" in section and "within the same query set" in section
    expected = scores_by_query_count(predictions, targets, embeddings, seed=0)
    shown = [int(size) for size in re.findall(r'<tr data-queries="(\d+)">', section)]
    assert shown == expected.sizes == [50, 100, 200, 300]
    for metric in METRICS:
        means = re.findall(rf'data-metric="{metric}" data-mean="([^"]+)"', section)
        assert [float(mean) for mean in means] == list(expected.mean(metric))
    assert expected.mean("acc")[-1] < 1.0  # the numbers are not trivially all 1


def test_the_report_without_labels_has_no_section(tmp_path: Path):
    embeddings, labels = separated_blobs(200)
    for targets in (None, np.full(200, -1)):
        data = report_data(embeddings, targets, labels)
        page = write_report(tmp_path / "report.html", data, blank).read_text("utf-8")
        assert query_section(page) is None and "query images" not in page


def test_few_labelled_images_give_a_note_and_no_plot(tmp_path: Path):
    embeddings, labels = separated_blobs(40)
    data = report_data(embeddings, labels, labels)
    section = query_section(write_report(tmp_path / "r.html", data, blank).read_text("utf-8"))
    assert "too few for a curve" in section and "<img" not in section


def test_given_curves_are_shown_and_must_match_the_labels(tmp_path: Path):
    embeddings, labels = separated_blobs(120)
    given = QueryCurves([50, 120], {m: [[0.5, 0.25], [0.125]] for m in METRICS}, seed=9)
    data = report_data(embeddings, labels, labels)
    data.query_curves = given
    section = query_section(write_report(tmp_path / "r.html", data, blank).read_text("utf-8"))
    assert "seed 9" in section and "0.375 (0.250–0.500)" in section
    data.query_curves = QueryCurves([50, 100], given.scores, seed=9)
    with pytest.raises(ValueError, match="end at 100 images but 120 have a label"):
        write_report(tmp_path / "r.html", data, blank)
    data.targets, data.query_curves = None, given
    with pytest.raises(ValueError, match="no targets"):
        write_report(tmp_path / "r.html", data, blank)


def test_the_run_report_has_the_section(tmp_path, tiny_model, compose_config):
    run = RunDirectory(tmp_path / "run")
    run.claim()
    model, spec = tiny_model()
    spec = {**spec, "num_heads": 1, "stage": "scan"}
    run.stage_dir("scan")
    save_weights(model, run.path(model_weights("scan")), spec, run.path(model_spec("scan")))
    data_cfg = compose_config("train", ["data.val_split=test"]).data  # 360 labelled digits
    data = OmegaConf.to_container(data_cfg, resolve=True)
    run.record_stage("scan", "completed", {"data": data}, metrics={})
    section = query_section(write_run_report(run.root).read_text("utf-8"))
    assert section is not None
    assert len(inlined_pngs(section)) == 1
    assert re.findall(r'<tr data-queries="(\d+)">', section) == ["50", "100", "200", "360"]

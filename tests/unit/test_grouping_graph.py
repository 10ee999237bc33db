"""The machinery under `semclust group`: candidate indexes against brute force, components
and representatives, the auto threshold's knee, the batch merge, and the import rules."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semclust.grouping import GroupOptions
from semclust.grouping.batches import group_images
from semclust.grouping.candidates import (
    binary_neighbor_pairs,
    binary_range_pairs,
    float_neighbor_pairs,
    float_range_pairs,
)
from semclust.grouping.components import component_labels, representatives
from semclust.grouping.methods import PHash
from semclust.grouping.threshold import choose_threshold

GROUPING = Path(__file__).resolve().parents[2] / "src" / "semclust" / "grouping"


def test_hamming_range_search_finds_exactly_the_pairs_brute_force_finds():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    codes[150:] = codes[:150] ^ (rng.random((150, 8)) < 0.05) * rng.integers(1, 256, (150, 8))
    bits = np.unpackbits(codes, axis=1).astype(int)
    distances = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    for radius in (0, 4, 12, 20):
        expected = {(i, j) for i, j in zip(*np.nonzero(distances <= radius), strict=True) if i < j}
        assert {tuple(p) for p in binary_range_pairs(codes, radius).tolist()} == expected


def test_cosine_range_search_finds_every_pair_above_the_threshold():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = vectors @ vectors.T
    found = {tuple(p) for p in float_range_pairs(vectors, 0.5).tolist()}
    expected = {(i, j) for i, j in zip(*np.nonzero(cosine >= 0.5), strict=True) if i < j}
    assert expected <= found
    assert all(cosine[i, j] >= 0.5 - 1e-3 for i, j in found)


def test_neighbour_pairs_hold_each_row_with_its_nearest_and_no_self_pairs():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = float_neighbor_pairs(vectors, 3)
    assert (pairs[:, 0] < pairs[:, 1]).all() and len(np.unique(pairs, axis=0)) == len(pairs)
    cosine = vectors @ vectors.T
    np.fill_diagonal(cosine, -2)
    found = {tuple(p) for p in pairs.tolist()}
    for row in range(50):
        nearest = int(np.argmax(cosine[row]))
        assert (min(row, nearest), max(row, nearest)) in found
    codes = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    pairs = binary_neighbor_pairs(codes, 2)
    assert 40 <= len(pairs) <= 80 and (pairs[:, 0] < pairs[:, 1]).all()
    hamming = np.unpackbits(codes[:, None] ^ codes[None], axis=2).sum(axis=2)
    np.fill_diagonal(hamming, 999)
    for row in range(40):  # linked to a nearest code (Hamming distances tie often)
        partners = pairs[pairs[:, 0] == row, 1].tolist() + pairs[pairs[:, 1] == row, 0].tolist()
        assert hamming[row, partners].min() == hamming[row].min(), row


def test_components_follow_chains_and_representatives_are_the_best_linked():
    # 0-1-2-3 is a chain (0 and 3 not linked), 4-5 a pair, 6 alone.
    edges = np.array([[0, 1], [1, 2], [2, 3], [4, 5]])
    similarities = np.array([0.9, 0.95, 0.8, 0.7])
    labels = component_labels(7, edges)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 2]
    chosen = representatives(labels, edges, similarities)
    assert chosen.tolist() == [1, 4, 6]  # 1 links with 0.9 + 0.95; 4 and 5 tie: the lower


def test_the_knee_lies_between_the_duplicates_and_the_bulk():
    rng = np.random.default_rng(3)
    unrelated = rng.normal(0.3, 0.08, 20_000)
    duplicates = rng.uniform(0.7, 1.0, 2_000)
    choice = choose_threshold(np.r_[unrelated, duplicates], 0.01, 0.95, "test pairs")
    assert choice.from_knee
    assert 0.55 <= choice.threshold <= 0.72
    assert "knee" in choice.reason and "test pairs" in choice.reason
    assert choice.pairs_found[0] == 22_000 and (np.diff(choice.pairs_found) <= 0).all()


def test_too_few_pairs_for_a_curve_keep_the_default():
    rng = np.random.default_rng(3)
    # The knee's shape, but 180 pairs over 101 steps of 0.01: fewer than two per step.
    few = np.r_[rng.normal(0.3, 0.08, 160), rng.uniform(0.7, 1.0, 20)]
    choice = choose_threshold(few, 0.01, 0.95, "test pairs")
    assert not choice.from_knee and choice.threshold == 0.95
    assert "only 180 pairs, fewer than the 202 a curve at steps of 0.01 needs" in choice.reason
    many = np.r_[rng.normal(0.3, 0.08, 1800), rng.uniform(0.7, 1.0, 200)]
    assert choose_threshold(many, 0.01, 0.95, "test pairs").from_knee  # ten times as many


def test_without_duplicates_the_default_threshold_is_used_and_said_so():
    unrelated = np.random.default_rng(4).normal(0.3, 0.08, 20_000)
    choice = choose_threshold(unrelated, 0.01, 0.95, "test pairs")
    assert not choice.from_knee
    assert choice.threshold == 0.95
    assert "default" in choice.reason


def test_batches_are_merged_through_their_representatives(tmp_path):
    """Copies split over batches end in one group, as in a single batch."""
    rng = np.random.default_rng(5)
    paths = []
    for index in range(6):
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((64, 64), Image.Resampling.BICUBIC)
        for copy in range(2):
            paths.append(tmp_path / f"{copy}_{index}.png")  # copies sort far apart
            image.save(paths[-1])
    paths.sort()
    whole = group_images(paths, PHash(), GroupOptions(progress=False))
    batched = group_images(paths, PHash(), GroupOptions(batch_size=4, progress=False))
    assert batched.stats["batches"] == 3 and batched.stats["groups_merged_across_batches"] == 6
    for grouping in (whole, batched):
        group = dict(zip([p.name for p in grouping.paths], grouping.component, strict=True))
        assert all(group[f"0_{i}.png"] == group[f"1_{i}.png"] for i in range(6))
        assert len(set(group.values())) == 6
        assert np.allclose(grouping.similarity, 1.0)  # every copy is exact
        assert all(grouping.paths[r].name.startswith("0_") for r in grouping.representative)


def test_grouping_imports_neither_the_training_stack_nor_the_stages():
    forbidden = ("pytorch_lightning", "lightning", "hydra", "omegaconf", "semclust.stages")
    forbidden += ("semclust.pipeline", "semclust.evaluation", "semclust.cli")
    for path in GROUPING.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [n for n in names if n.startswith(forbidden)], path.name
    code = (
        "import sys, semclust.grouping, semclust.grouping.page, semclust.grouping.registry\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pytorch_lightning', 'hydra'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "high"])
def test_thresholds_outside_zero_to_one_are_refused(threshold, tmp_path):
    from semclust.grouping import group_folder

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="threshold"):
        group_folder(tmp_path, tmp_path.parent / "out", GroupOptions(threshold=threshold))


def test_groups_are_numbered_largest_first_led_by_their_representative():
    from semclust.grouping.batches import Grouping
    from semclust.grouping.output import OUTLIER, numbered_rows

    paths = [Path(f"/in/{name}.png") for name in "abcdefg"]
    # a-b (representative b), c-d-e (representative e), f and g alone.
    grouping = Grouping(
        paths,
        component=np.array([0, 0, 1, 1, 1, 2, 3]),
        representative=np.array([1, 1, 4, 4, 4, 5, 6]),
        similarity=np.array([0.9, 1.0, 0.7, 0.8, 1.0, 1.0, 1.0]),
        skipped=[],
        threshold=0.5,
    )
    rows = [(row.path.stem, row.group, row.representative.stem) for row in numbered_rows(grouping)]
    assert rows == [
        ("e", 1, "e"),
        ("d", 1, "e"),
        ("c", 1, "e"),
        ("b", 2, "b"),
        ("a", 2, "b"),
        ("f", OUTLIER, "f"),
        ("g", OUTLIER, "g"),
    ]

"""Grouping a list of images batch by batch, and merging the batches.

Each batch is described and grouped on its own (its signatures are then dropped). The
batches are merged the way Clusterimg does it: the representatives of every group of every
batch (singletons included) are grouped once more with the same method and threshold, and
groups whose representatives link are merged. Within a batch the chain rule is exact;
across batches it goes through the representatives. Members that change representative in
the merge are decoded again to measure their similarity to the new one.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semclust.grouping.images import describe_paths
from semclust.grouping.linking import link, sample_threshold
from semclust.grouping.methods import Method, Signatures
from semclust.grouping.settings import GroupOptions
from semclust.grouping.threshold import ThresholdChoice


@dataclass
class Grouping:
    """Every readable image with its group, representative and similarity to it."""

    #: The readable images, in the order they were given.
    paths: list[Path]
    #: Component of each image (any numbering; singletons have their own).
    component: np.ndarray
    #: Row (in ``paths``) of each image's representative.
    representative: np.ndarray
    #: Similarity of each image to its representative (NaN if it could not be re-read).
    similarity: np.ndarray
    skipped: list[tuple[str, str]]
    threshold: float
    #: The ``auto`` choice, when the threshold was chosen from the curve.
    choice: ThresholdChoice | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def group_images(paths: Sequence[Path], method: Method, options: GroupOptions) -> Grouping:
    """Group ``paths`` with ``method`` as ``options`` say (threshold, batches, neighbours)."""
    if options.batch_size < 2:
        raise ValueError(f"batch size must be at least 2, got {options.batch_size}")
    threshold = method.default_threshold if options.threshold is None else options.threshold
    choice = None
    kept: list[Path] = []
    components, chosen, similarity, kept_signatures = [], [], [], []
    skipped: list[tuple[str, str]] = []
    stats = {"batches": 0, "candidate_pairs": 0, "linked_pairs": 0}
    total = -(-len(paths) // options.batch_size)
    for start in range(0, len(paths), options.batch_size):
        batch = list(paths[start : start + options.batch_size])
        stats["batches"] += 1
        label = f"batch {stats['batches']}/{total}: reading" if total > 1 else "reading images"
        described = describe_paths(method, batch, options.workers, options.progress, label)
        skipped += described.skipped
        signatures = described.signatures
        if signatures is None:
            continue
        if threshold == "auto":
            choice = sample_threshold(
                method,
                signatures,
                options.sample_size,
                options.neighbors,
                options.seed,
                options.workers,
            )
            threshold = choice.threshold
        linked = link(
            method,
            signatures,
            float(threshold),
            options.neighbors,
            options.progress,
            options.workers,
        )
        stats["candidate_pairs"] += linked.candidate_pairs
        stats["linked_pairs"] += linked.linked_pairs
        base, offset = len(kept), sum(len(part) for part in kept_signatures)
        kept += [batch[row] for row in described.rows]
        components.append(linked.labels + offset)
        chosen.append(linked.representatives[linked.labels] + base)
        similarity.append(linked.to_representative)
        kept_signatures.append(signatures.take(linked.representatives))
    if threshold == "auto":  # no readable image, so nothing to choose from
        threshold = method.default_threshold
    empty = [np.zeros(0, np.int64)]
    grouping = Grouping(
        kept,
        np.concatenate(components or empty),
        np.concatenate(chosen or empty),
        np.concatenate(similarity or [np.zeros(0)]),
        skipped,
        float(threshold),
        choice,
        stats,
    )
    if len(kept_signatures) > 1:
        _merge(grouping, method, Signatures.concat(kept_signatures), options)
    return grouping


def _merge(
    grouping: Grouping, method: Method, representatives: Signatures, options: GroupOptions
) -> None:
    """Merge the batches' groups whose representatives link (``representatives`` holds the
    signature of each component's representative, indexed by component)."""
    linked = link(
        method, representatives, grouping.threshold, options.neighbors, False, options.workers
    )
    grouping.stats["merge_candidate_pairs"] = linked.candidate_pairs
    grouping.stats["merge_linked_pairs"] = linked.linked_pairs
    sizes = np.bincount(grouping.component, minlength=len(representatives))
    # Representative of each component (indexed by component): the row it names.
    component_representative = np.zeros(len(representatives), np.int64)
    component_representative[grouping.component] = grouping.representative
    # Each merged group keeps the representative of its largest component.
    merged = linked.labels
    order = np.lexsort((np.arange(len(sizes)), -sizes, merged))
    first = np.r_[True, merged[order][1:] != merged[order][:-1]]
    leader = np.zeros(int(merged.max()) + 1, np.int64)
    leader[merged[order][first]] = order[first]  # merged group -> its leading component
    grouping.stats["groups_merged_across_batches"] = int((np.bincount(merged) > 1).sum())

    old_component = grouping.component
    new_leader = leader[merged[old_component]]
    moved = np.flatnonzero(new_leader != old_component)
    grouping.component = merged[old_component]
    grouping.representative = component_representative[new_leader]
    if not len(moved):
        return
    # Old representatives: both signatures are at hand.
    was_representative = component_representative[old_component[moved]] == moved
    direct = moved[was_representative]
    if len(direct):
        pairs = np.stack([old_component[direct], new_leader[direct]], axis=1)
        grouping.similarity[direct] = method.similarity(representatives, pairs)
    others = moved[~was_representative]
    if len(others):
        described = describe_paths(
            method, [grouping.paths[row] for row in others], options.workers, False
        )
        grouping.similarity[others] = np.nan
        if described.signatures is not None:
            rows = others[described.rows]
            both = Signatures.concat([described.signatures, representatives.take(new_leader[rows])])
            count = len(rows)
            pairs = np.stack([np.arange(count), np.arange(count) + count], axis=1)
            grouping.similarity[rows] = method.similarity(both, pairs)

"""What a report shows (:class:`ReportData`) and the checks that its parts agree."""

from dataclasses import dataclass, field

import numpy as np

from semclust.reporting.k_choice import KChoiceSummary
from semclust.reporting.query_curves import QueryCurves


@dataclass
class ReportData:
    """What a report shows; every per-image field has one row per image, in the same order."""

    title: str
    paths: list[str]
    probabilities: np.ndarray  # (N, K) softmax of the cluster head
    embeddings: np.ndarray  # (N, D) backbone features
    targets: np.ndarray | None = None  # (N,) ground truth, -1 = unknown; None = unlabeled
    class_names: list[str] | None = None
    cluster_names: list[str] | None = None  # optional human names of the K clusters
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) unread
    k_choice: KChoiceSummary | None = None  # how data.num_clusters=auto chose K; None: given
    # Scores against the number of query images; None: write_report computes them (labels)
    query_curves: QueryCurves | None = None
    notes: list[str] = field(default_factory=list)  # shown under the summary, e.g. a stage skipped


def validate(data: ReportData) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The probabilities, embeddings and targets as arrays, after checking they agree."""
    probabilities = np.asarray(data.probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 1:
        raise ValueError(f"probabilities must be (N, K) with K >= 1, got {probabilities.shape}")
    count, num_clusters = probabilities.shape
    embeddings = np.asarray(data.embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] != count:
        raise ValueError(
            f"embeddings must be (N, D) with N = {count} like probabilities, got {embeddings.shape}"
        )
    if len(data.paths) != count:
        raise ValueError(f"got {len(data.paths)} paths but {count} rows of probabilities")
    for name, array in (("probabilities", probabilities), ("embeddings", embeddings)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} hold NaN or infinite values")
    if data.cluster_names is not None and len(data.cluster_names) != num_clusters:
        raise ValueError(f"got {len(data.cluster_names)} cluster_names for {num_clusters} clusters")
    if data.k_choice is not None and data.k_choice.value != num_clusters:
        raise ValueError(
            f"the K choice says K={data.k_choice.value} but probabilities have {num_clusters} "
            "clusters"
        )
    if data.targets is None:
        if data.query_curves is not None:
            raise ValueError("query_curves are scores against labels, but there are no targets")
        return probabilities, embeddings, None
    targets = np.asarray(data.targets)
    if targets.shape != (count,):
        raise ValueError(f"targets must have shape ({count},), got {targets.shape}")
    # An empty array's dtype says nothing (np.array([]) is float), so only non-empty ones count.
    if count and not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integers (-1 = unknown), got dtype {targets.dtype}")
    targets = targets.astype(np.int64)
    if count and targets.min() < -1:
        raise ValueError(f"targets must be >= -1 (-1 = unknown), got {targets.min()}")
    if data.class_names is not None and targets.max(initial=-1) >= len(data.class_names):
        raise ValueError(
            f"got {len(data.class_names)} class_names but targets go up to {targets.max()}"
        )
    known = int((targets >= 0).sum())
    if data.query_curves is not None and data.query_curves.sizes[-1] != known:
        raise ValueError(
            f"query_curves end at {data.query_curves.sizes[-1]} images but {known} have a label"
        )
    return probabilities, embeddings, targets

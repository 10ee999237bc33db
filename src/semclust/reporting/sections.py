"""The report's sections: scores, embedding map, one per cluster, and unreadable files.

Each builder returns an HTML fragment; :func:`semclust.reporting.report.write_report` puts
them on one page.
"""

from collections.abc import Callable

import numpy as np
import PIL.Image

from semclust.metrics import clustering_scores, hungarian_match, label_free_scores
from semclust.reporting.embedding_map import embedding_map
from semclust.reporting.gradcam import GradCamExplainer
from semclust.reporting.images import file_name, png_uri
from semclust.reporting.markup import esc, figure, table
from semclust.reporting.report_data import ReportData


def cluster_label(cluster: int, cluster_names: list[str] | None) -> str:
    """``Cluster 3``, or ``Cluster 3 · name`` when the cluster has a (non-empty) name."""
    if cluster_names and cluster_names[cluster]:
        return f"Cluster {cluster} · {esc(cluster_names[cluster])}"
    return f"Cluster {cluster}"


def cluster_section(
    cluster: int,
    rank: int,
    data: ReportData,
    predictions: np.ndarray,
    confidences: np.ndarray,
    cohesion: float,
    targets: np.ndarray | None,
    load_image: Callable[[int], PIL.Image.Image],
    explainer: GradCamExplainer | None,
    prototypes_per_cluster: int,
) -> str:
    """A non-empty cluster: its facts, its most confident members and their heatmaps."""
    members = np.flatnonzero(predictions == cluster)
    prototypes = members[np.argsort(-confidences[members], kind="stable")][:prototypes_per_cluster]
    images = [_load(load_image, int(row), data.paths[row]) for row in prototypes]
    facts = [
        f"{len(members):,} images",
        f"cohesion {cohesion:.3f}",
        f"mean confidence {confidences[members].mean():.3f}",
        f"rank {rank}",
    ]
    if targets is not None:
        known = targets[members][targets[members] >= 0]
        if len(known):
            majority = int(np.bincount(known).argmax())
            name = data.class_names[majority] if data.class_names else str(majority)
            share = float((known == majority).mean())
            facts.append(f"majority class {esc(name)} ({share:.0%} of {len(known):,} labelled)")
    figures = [
        figure(
            image,
            f'{confidences[row]:.3f}<br><span class="path">{esc(file_name(data.paths[row]))}'
            "</span>",
            data.paths[row],
        )
        for row, image in zip(prototypes, images, strict=True)
    ]
    parts = [
        f'<section class="cluster" id="cluster-{cluster}" data-cluster="{cluster}">',
        f"<h3>{cluster_label(cluster, data.cluster_names)}</h3>",
        f'<p class="facts">{" · ".join(facts)}</p>',
        f'<div class="grid prototypes">{"".join(figures)}</div>',
    ]
    if explainer is not None:
        heatmaps = explainer.heatmaps(images, [cluster] * len(images))
        if len(heatmaps) != len(images):
            raise ValueError(f"the explainer gave {len(heatmaps)} heatmaps for {len(images)}")
        overlays = [
            figure(heatmap, "Grad-CAM", data.paths[row])
            for row, heatmap in zip(prototypes, heatmaps, strict=True)
        ]
        parts.append(f'<div class="grid heatmaps">{"".join(overlays)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _load(load_image: Callable[[int], PIL.Image.Image], row: int, path: str) -> PIL.Image.Image:
    try:
        image = load_image(row)
    except Exception as error:  # any decoder error; the message says which file
        raise RuntimeError(f"cannot load image {row} ({path}) for the report: {error}") from error
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"load_image({row}) returned {type(image).__name__}, not a PIL image")
    return image


def empty_section(cluster: int, cluster_names: list[str] | None) -> str:
    """A cluster no image was assigned to, listed so every cluster has a section."""
    return (
        f'<section class="cluster empty" id="cluster-{cluster}" data-cluster="{cluster}">'
        f"<h3>{cluster_label(cluster, cluster_names)}</h3>"
        '<p class="note">Empty: no image was assigned to this cluster.</p></section>'
    )


def scores_section(
    data: ReportData,
    predictions: np.ndarray,
    embeddings: np.ndarray,
    targets: np.ndarray | None,
    labelled: np.ndarray | None,
    num_clusters: int,
    seed: int,
) -> str:
    """Scores against the known labels with a confusion table, or label-free scores."""
    if labelled is None:
        scores = label_free_scores(embeddings, predictions, seed=seed)
        names = {
            "silhouette": "silhouette (cosine, higher is better)",
            "calinski_harabasz": "Calinski-Harabasz (higher is better)",
            "davies_bouldin": "Davies-Bouldin (lower is better)",
        }
        why = "" if targets is None else " (no image has a known label)"
        body = (
            table([(names[key], f"{value:.4f}") for key, value in scores.items()])
            if scores
            else '<p class="note">Label-free scores need at least two non-empty clusters '
            "and fewer clusters than images.</p>"
        )
        return (
            f'<section id="scores"><h2>Label-free scores</h2><p>No labels{why}: scores of '
            f"the L2-normalised embeddings.</p>{body}</section>"
        )
    assert targets is not None  # labelled is only set with targets
    known_predictions, known_targets = predictions[labelled], targets[labelled]
    scores = clustering_scores(known_predictions, known_targets)
    rows = [
        ("ACC (Hungarian)", f"{scores['acc']:.4f}"),
        ("NMI", f"{scores['nmi']:.4f}"),
        ("ARI", f"{scores['ari']:.4f}"),
        ("ACC (many-to-one)", f"{scores['acc_many_to_one']:.4f}"),
        ("scored on", f"{int(labelled.sum()):,} of {len(targets):,} images (known labels)"),
    ]
    return (
        '<section id="labels"><h2>Scores against labels</h2>'
        f"{table(rows)}<h3>Confusion matrix (classes × clusters)</h3>"
        f"{_confusion_table(known_predictions, known_targets, num_clusters, data)}</section>"
    )


def _confusion_table(
    predictions: np.ndarray, targets: np.ndarray, num_clusters: int, data: ReportData
) -> str:
    """Counts with cells shaded by their share of the class; clusters ordered by match."""
    num_classes = max(len(data.class_names or []), int(targets.max()) + 1)
    counts = np.zeros((num_classes, num_clusters), np.int64)
    np.add.at(counts, (targets, predictions), 1)
    matched = hungarian_match(predictions, targets)
    order = sorted(range(num_clusters), key=lambda c: (matched.get(c, num_classes), c))
    header = "".join(f'<th scope="col">{c}</th>' for c in order)
    rows = []
    for cls in range(num_classes):
        name = data.class_names[cls] if data.class_names else str(cls)
        total = max(int(counts[cls].sum()), 1)
        cells = []
        for cluster in order:
            value = int(counts[cls, cluster])
            share = value / total
            color = "#fff" if share > 0.55 else "#111"  # legible on the darker cells
            style = f"background:rgba(31,119,180,{share:.2f});color:{color}"
            cells.append(f'<td style="{style}">{value or ""}</td>')
        rows.append(f'<tr><th scope="row">{esc(name)}</th>{"".join(cells)}</tr>')
    return (
        '<div class="scroll"><table class="confusion">'
        f'<tr><th scope="col">class \\ cluster</th>{header}</tr>{"".join(rows)}'
        "</table></div>"
    )


def map_section(
    embeddings: np.ndarray, predictions: np.ndarray, num_clusters: int, seed: int
) -> str:
    """The 2-D embedding map as an inlined PNG, or a note when there are no images."""
    if len(embeddings) == 0:
        return '<section id="map"><h2>Embedding map</h2><p class="note">No images.</p></section>'
    png, caption = embedding_map(embeddings, predictions, num_clusters, seed)
    return (
        '<section id="map"><h2>Embedding map</h2><figure class="map">'
        f'<img src="{png_uri(png)}" alt="2-D map of the embeddings">'
        f"<figcaption>{esc(caption)}</figcaption></figure></section>"
    )


def errors_section(errors: list[tuple[str, str]]) -> str:
    """The files that could not be read and why; nothing when every file was read."""
    if not errors:
        return ""
    rows = "".join(
        f"<tr><td>{esc(path)}</td><td>{esc(reason)}</td></tr>" for path, reason in errors
    )
    return (
        f'<section id="errors"><h2>Unreadable files ({len(errors):,})</h2>'
        "<p>These files could not be decoded and are in no cluster.</p>"
        f'<table class="errors"><tr><th>file</th><th>reason</th></tr>{rows}</table></section>'
    )

"""A self-contained static HTML report of one clustering run or prediction.

Per cluster: its size, cohesion (clusters ranked most cohesive first), a grid of its most
confident members and, optionally, Grad-CAM heatmaps of what drove their assignment. Above
them: how K was chosen (when the run chose it), ACC/NMI/ARI and a confusion matrix when
labels exist (label-free scores otherwise), with labels those scores and the top-5 neighbour
accuracy against the number of query images, and a 2-D t-SNE map of the embeddings. Every
image is inlined as a base64 PNG data URI and a Content-Security-Policy forbids fetching
anything, so the one file opens offline and can be mailed or archived as it is.
"""

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import PIL.Image

from semclust.metrics import cluster_cohesion
from semclust.reporting.gradcam import GradCamExplainer
from semclust.reporting.k_choice import k_choice_section
from semclust.reporting.markup import esc, page, table
from semclust.reporting.query_curves import query_curves_section, scores_by_query_count
from semclust.reporting.report_data import ReportData, validate
from semclust.reporting.sections import (
    cluster_section,
    empty_section,
    errors_section,
    map_section,
    scores_section,
)


def write_report(
    out_path: Path,
    data: ReportData,
    load_image: Callable[[int], PIL.Image.Image],
    explainer: GradCamExplainer | None = None,
    prototypes_per_cluster: int = 8,
    seed: int = 0,
    *,
    no_heatmaps_reason: str | None = None,
) -> Path:
    """Write one HTML file with every image inlined (base64 PNG data URIs); returns out_path.

    ``load_image(row)`` gives the image of one row as decoded for the model; it is called
    only for the ``prototypes_per_cluster`` most confident members of each cluster, so a
    report of 100k images loads a few hundred. ``no_heatmaps_reason`` is shown when there
    is no ``explainer`` (for instance why one could not be built).
    """
    if prototypes_per_cluster < 1:
        raise ValueError(f"prototypes_per_cluster must be at least 1, got {prototypes_per_cluster}")
    probabilities, embeddings, targets = validate(data)
    num_clusters = probabilities.shape[1]
    predictions = probabilities.argmax(axis=1)
    confidences = probabilities.max(axis=1)
    cohesion = cluster_cohesion(embeddings, predictions)
    ranked = sorted(cohesion, key=lambda c: (-cohesion[c]["cohesion"], c))
    empty = [c for c in range(num_clusters) if c not in cohesion]
    # Scores and majority classes use the images with a known label, if there are any.
    labelled = None if targets is None or not (targets >= 0).any() else targets >= 0

    curves = data.query_curves
    if curves is None and labelled is not None:
        curves = scores_by_query_count(predictions, targets, embeddings, seed=seed)

    if explainer is None:
        reason = (no_heatmaps_reason or "no Grad-CAM explainer was given").rstrip(".")
        heatmap_note = f'<p class="note">Grad-CAM heatmaps are not shown: {esc(reason)}.</p>'
    else:
        heatmap_note = ""
    sections = [
        cluster_section(
            cluster,
            rank,
            data,
            predictions,
            confidences,
            cohesion[cluster]["cohesion"],
            targets if labelled is not None else None,
            load_image,
            explainer,
            prototypes_per_cluster,
        )
        for rank, cluster in enumerate(ranked, start=1)
    ]
    sections += [empty_section(cluster, data.cluster_names) for cluster in empty]

    mean_confidence = f"{confidences.mean():.3f}" if len(confidences) else "n/a"
    summary = [
        ("images", f"{len(predictions):,}"),
        ("clusters", f"{num_clusters} ({len(ranked)} non-empty)"),
        ("mean confidence", mean_confidence),
    ]
    if targets is not None:
        summary.append(("labelled images", f"{0 if labelled is None else int(labelled.sum()):,}"))
    if data.errors:
        summary.append(("unreadable files", f"{len(data.errors):,}"))
    summary.append(("generated", datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")))

    body = [
        f"<h1>{esc(data.title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        table(summary),
        *(f'<p class="note">{esc(note)}</p>' for note in data.notes),
        "</section>",
        k_choice_section(data.k_choice),
        scores_section(data, predictions, embeddings, targets, labelled, num_clusters, seed),
        query_curves_section(curves),
        map_section(embeddings, predictions, num_clusters, seed),
        '<section id="clusters"><h2>Clusters, most cohesive first</h2>',
        "<p>Cohesion is the mean cosine similarity of a cluster's embeddings to their "
        "centroid. Each cluster shows its most confident members; the number under an "
        "image is its cluster probability.</p>",
        heatmap_note,
        *sections,
        "</section>",
        errors_section(data.errors),
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page(data.title, "\n".join(part for part in body if part)), "utf-8")
    return out_path

"""A self-contained static HTML report of one clustering run or prediction.

Per cluster: its size, cohesion (clusters ranked most cohesive first), a grid of its most
confident members and, optionally, Grad-CAM heatmaps of what drove their assignment. Above
them: ACC/NMI/ARI and a confusion matrix when labels exist (label-free scores otherwise) and
a 2-D UMAP map of the embeddings. Every image is inlined as a base64 PNG data URI and a
Content-Security-Policy forbids fetching anything, so the one file opens offline and can be
mailed or archived as it is.
"""

import base64
import html
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PureWindowsPath

import matplotlib
import numpy as np
import PIL.Image
import torch
from matplotlib.figure import Figure
from torch import nn

from semclust.metrics import (
    cluster_cohesion,
    clustering_scores,
    hungarian_match,
    label_free_scores,
)

_MIN_DISPLAY = 96  # tiny images (16x16 digits) are upscaled to at least this many pixels
_MAX_DISPLAY = 160  # large images are shrunk to this, which keeps the file small
_MAP_MAX_POINTS = 5_000  # UMAP of more points takes minutes and draws no clearer a map
_UMAP_MIN_POINTS = 10  # below this a neighbour graph says nothing: PCA instead


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


class GradCamExplainer:
    """Grad-CAM heatmaps for cluster assignments, with the grad-cam package (pytorch_grad_cam).

    ``model`` maps ``(B, C, H, W)`` images to ``(B, K)`` logits of one cluster head;
    ``preprocess`` maps a PIL image to the model's normalised ``(C, H, W)`` input. The heatmap
    is taken at ``target_layer``, by default the model's last ``nn.Conv2d``.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[PIL.Image.Image], torch.Tensor],
        target_layer: nn.Module | None = None,
        batch_size: int = 32,
    ) -> None:
        if target_layer is None:
            convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
            if not convolutions:
                raise ValueError(
                    f"{type(model).__name__} has no nn.Conv2d layer to take Grad-CAM at; "
                    "pass target_layer explicitly"
                )
            target_layer = convolutions[-1]
        elif not any(module is target_layer for module in model.modules()):
            raise ValueError(f"target_layer {target_layer!r} is not a submodule of the model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.preprocess = preprocess
        self.target_layer = target_layer
        self.batch_size = batch_size

    def heatmaps(self, images: list[PIL.Image.Image], clusters: list[int]) -> list[PIL.Image.Image]:
        """Each image overlaid with the Grad-CAM of its cluster, as RGB at a visible size.

        The model's train/eval modes, ``requires_grad`` flags and ``.grad`` tensors are
        restored afterwards. The heatmap is stretched over the whole image, so with a cropping
        ``preprocess`` it is only approximately aligned.
        """
        if len(images) != len(clusters):
            raise ValueError(f"got {len(images)} images but {len(clusters)} clusters")
        if not images:
            return []
        if min(clusters) < 0:
            raise ValueError(f"clusters must be non-negative, got {min(clusters)}")
        tensors = []
        for image in images:
            tensor = self.preprocess(image)
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3:
                raise ValueError(
                    "preprocess must return a (C, H, W) tensor, got "
                    f"{getattr(tensor, 'shape', type(tensor).__name__)}"
                )
            tensors.append(tensor)
        cams = self._cams(tensors, [int(c) for c in clusters])
        return [_overlay(image, cam) for image, cam in zip(images, cams, strict=True)]

    def _cams(self, tensors: list[torch.Tensor], clusters: list[int]) -> list[np.ndarray]:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        modes = [(module, module.training) for module in self.model.modules()]
        parameters = [(p, p.requires_grad, p.grad) for p in self.model.parameters()]
        checked = _CheckedLogits(self.model, max(clusters) + 1)
        # Inputs of one shape are batched together; preprocessing need not give one size.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, tensor in enumerate(tensors):
            by_shape.setdefault(tuple(tensor.shape), []).append(index)
        cams: list[np.ndarray] = [np.empty(0)] * len(tensors)
        cam = None
        try:
            # Gradients flow from the input instead, so no parameter gradient is computed.
            for parameter, _, _ in parameters:
                parameter.requires_grad_(False)
            # Callers usually predict under no_grad or inference_mode; Grad-CAM needs autograd.
            with torch.inference_mode(False), torch.enable_grad():
                cam = GradCAM(model=checked, target_layers=[self.target_layer])
                cam.compute_input_gradient = True
                for indices in by_shape.values():
                    for start in range(0, len(indices), self.batch_size):
                        chunk = indices[start : start + self.batch_size]
                        batch = torch.stack([tensors[i] for i in chunk])
                        targets = [ClassifierOutputTarget(clusters[i]) for i in chunk]
                        for i, heatmap in zip(chunk, cam(batch, targets), strict=True):
                            cams[i] = heatmap
        finally:
            if cam is not None:
                cam.activations_and_grads.release()
            for module, training in modes:
                module.train(training)
            for parameter, requires_grad, grad in parameters:
                parameter.requires_grad_(requires_grad)
                parameter.grad = grad
        return cams


class _CheckedLogits(nn.Module):
    """The model, failing clearly unless it returns ``(B, K)`` logits with enough clusters."""

    def __init__(self, model: nn.Module, clusters_needed: int) -> None:
        super().__init__()
        self.model = model
        self.clusters_needed = clusters_needed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
            raise ValueError(
                f"the model must map {len(images)} images to ({len(images)}, K) logits "
                f"of one cluster head, got shape {tuple(logits.shape)}"
            )
        if logits.shape[1] < self.clusters_needed:
            raise ValueError(
                f"cluster {self.clusters_needed - 1} is out of range for a model with "
                f"{logits.shape[1]} clusters"
            )
        return logits


def _display_size(width: int, height: int) -> tuple[int, int]:
    longest = max(width, height)
    if longest < _MIN_DISPLAY:
        factor = math.ceil(_MIN_DISPLAY / longest)
        return width * factor, height * factor
    if longest > _MAX_DISPLAY:
        scale = _MAX_DISPLAY / longest
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def _for_display(image: PIL.Image.Image) -> PIL.Image.Image:
    """The image at a visible size; tiny ones upscaled with crisp pixels."""
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    size = _display_size(*image.size)
    if size == image.size:
        return image
    upscaling = size[0] > image.size[0]
    return image.resize(size, PIL.Image.NEAREST if upscaling else PIL.Image.LANCZOS)


def _overlay(image: PIL.Image.Image, cam: np.ndarray) -> PIL.Image.Image:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    display = _for_display(image).convert("RGB")
    mask = PIL.Image.fromarray(cam.astype(np.float32)).resize(display.size, PIL.Image.BILINEAR)
    rgb = np.asarray(display, dtype=np.float32) / 255.0
    overlay = show_cam_on_image(rgb, np.clip(np.asarray(mask), 0.0, 1.0), use_rgb=True)
    return PIL.Image.fromarray(overlay, "RGB")


def _png_uri(image: PIL.Image.Image | bytes) -> str:
    if isinstance(image, PIL.Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        image = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def _file_name(path: str) -> str:
    return PureWindowsPath(path).name if "\\" in path else Path(path).name or path


def _validate(data: ReportData) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
    if data.targets is None:
        return probabilities, embeddings, None
    targets = np.asarray(data.targets)
    if targets.shape != (count,):
        raise ValueError(f"targets must have shape ({count},), got {targets.shape}")
    if count and not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integers (-1 = unknown), got dtype {targets.dtype}")
    targets = targets.astype(np.int64)
    if count and targets.min() < -1:
        raise ValueError(f"targets must be >= -1 (-1 = unknown), got {targets.min()}")
    if data.class_names is not None and targets.max(initial=-1) >= len(data.class_names):
        raise ValueError(
            f"got {len(data.class_names)} class_names but targets go up to {targets.max()}"
        )
    return probabilities, embeddings, targets


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
    probabilities, embeddings, targets = _validate(data)
    num_clusters = probabilities.shape[1]
    predictions = probabilities.argmax(axis=1)
    confidences = probabilities.max(axis=1)
    cohesion = cluster_cohesion(embeddings, predictions)
    ranked = sorted(cohesion, key=lambda c: (-cohesion[c]["cohesion"], c))
    empty = [c for c in range(num_clusters) if c not in cohesion]
    labelled = None if targets is None or not (targets >= 0).any() else targets >= 0

    if explainer is None:
        reason = (no_heatmaps_reason or "no Grad-CAM explainer was given").rstrip(".")
        heatmap_note = f'<p class="note">Grad-CAM heatmaps are not shown: {_esc(reason)}.</p>'
    else:
        heatmap_note = ""
    sections = [
        _cluster_section(
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
    sections += [_empty_section(cluster, data.cluster_names) for cluster in empty]

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
        f"<h1>{_esc(data.title)}</h1>",
        '<section id="summary"><h2>Summary</h2>',
        _table(summary),
        "</section>",
        _scores_section(data, predictions, embeddings, targets, labelled, num_clusters, seed),
        _map_section(embeddings, predictions, num_clusters, seed),
        '<section id="clusters"><h2>Clusters, most cohesive first</h2>',
        "<p>Cohesion is the mean cosine similarity of a cluster's embeddings to their "
        "centroid. Each cluster shows its most confident members; the number under an "
        "image is its cluster probability.</p>",
        heatmap_note,
        *sections,
        "</section>",
        _errors_section(data.errors),
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(_page(data.title, "\n".join(part for part in body if part)), "utf-8")
    return out_path


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cluster_label(cluster: int, cluster_names: list[str] | None) -> str:
    if cluster_names and cluster_names[cluster]:
        return f"Cluster {cluster} · {_esc(cluster_names[cluster])}"
    return f"Cluster {cluster}"


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{_esc(key)}</th><td>{_esc(value)}</td></tr>" for key, value in rows)
    return f'<table class="facts">{cells}</table>'


def _figure(image: PIL.Image.Image, caption: str, path: str) -> str:
    shown = _for_display(image)
    return (
        f'<figure><img src="{_png_uri(shown)}" width="{shown.width}" height="{shown.height}" '
        f'alt="{_esc(_file_name(path))}" title="{_esc(path)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _cluster_section(
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
            facts.append(f"majority class {_esc(name)} ({share:.0%} of {len(known):,} labelled)")
    figures = [
        _figure(
            image,
            f'{confidences[row]:.3f}<br><span class="path">{_esc(_file_name(data.paths[row]))}'
            "</span>",
            data.paths[row],
        )
        for row, image in zip(prototypes, images, strict=True)
    ]
    parts = [
        f'<section class="cluster" id="cluster-{cluster}" data-cluster="{cluster}">',
        f"<h3>{_cluster_label(cluster, data.cluster_names)}</h3>",
        f'<p class="facts">{" · ".join(facts)}</p>',
        f'<div class="grid prototypes">{"".join(figures)}</div>',
    ]
    if explainer is not None:
        heatmaps = explainer.heatmaps(images, [cluster] * len(images))
        if len(heatmaps) != len(images):
            raise ValueError(f"the explainer gave {len(heatmaps)} heatmaps for {len(images)}")
        overlays = [
            _figure(heatmap, "Grad-CAM", data.paths[row])
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


def _empty_section(cluster: int, cluster_names: list[str] | None) -> str:
    return (
        f'<section class="cluster empty" id="cluster-{cluster}" data-cluster="{cluster}">'
        f"<h3>{_cluster_label(cluster, cluster_names)}</h3>"
        '<p class="note">Empty: no image was assigned to this cluster.</p></section>'
    )


def _scores_section(
    data: ReportData,
    predictions: np.ndarray,
    embeddings: np.ndarray,
    targets: np.ndarray | None,
    labelled: np.ndarray | None,
    num_clusters: int,
    seed: int,
) -> str:
    if labelled is None:
        scores = label_free_scores(embeddings, predictions, seed=seed)
        names = {
            "silhouette": "silhouette (cosine, higher is better)",
            "calinski_harabasz": "Calinski-Harabasz (higher is better)",
            "davies_bouldin": "Davies-Bouldin (lower is better)",
        }
        why = "" if targets is None else " (no image has a known label)"
        body = (
            _table([(names[key], f"{value:.4f}") for key, value in scores.items()])
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
        f"{_table(rows)}<h3>Confusion matrix (classes × clusters)</h3>"
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
            color = "#fff" if share > 0.55 else "#111"
            style = f"background:rgba(31,119,180,{share:.2f});color:{color}"
            cells.append(f'<td style="{style}">{value or ""}</td>')
        rows.append(f'<tr><th scope="row">{_esc(name)}</th>{"".join(cells)}</tr>')
    return (
        '<div class="scroll"><table class="confusion">'
        f'<tr><th scope="col">class \\ cluster</th>{header}</tr>{"".join(rows)}'
        "</table></div>"
    )


def _map_section(
    embeddings: np.ndarray, predictions: np.ndarray, num_clusters: int, seed: int
) -> str:
    if len(embeddings) == 0:
        return '<section id="map"><h2>Embedding map</h2><p class="note">No images.</p></section>'
    png, caption = _embedding_map(embeddings, predictions, num_clusters, seed)
    return (
        '<section id="map"><h2>Embedding map</h2><figure class="map">'
        f'<img src="{_png_uri(png)}" alt="2-D map of the embeddings">'
        f"<figcaption>{_esc(caption)}</figcaption></figure></section>"
    )


def _embedding_map(
    embeddings: np.ndarray, predictions: np.ndarray, num_clusters: int, seed: int
) -> tuple[bytes, str]:
    """A scatter PNG of a 2-D UMAP (PCA for very few points), coloured by cluster."""
    count = len(embeddings)
    rows = np.arange(count)
    if count > _MAP_MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(count, _MAP_MAX_POINTS, replace=False))
    points = embeddings[rows]
    # Euclidean distances of unit vectors order pairs as cosine similarity does.
    points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    shown = f"all {count:,}" if len(rows) == count else f"{len(rows):,} of {count:,} (seed {seed})"
    if len(rows) >= _UMAP_MIN_POINTS:
        coordinates = _umap(points, seed)
        caption = f"UMAP of {shown} embeddings, coloured by cluster."
    else:
        coordinates = _pca(points)
        caption = (
            f"PCA of {shown} embeddings, coloured by cluster "
            f"(UMAP needs at least {_UMAP_MIN_POINTS} images)."
        )
    clusters = predictions[rows]
    if num_clusters <= 20:
        palette = matplotlib.colormaps["tab10" if num_clusters <= 10 else "tab20"]
        colors = palette(clusters % palette.N)
    else:
        colors = matplotlib.colormaps["turbo"](clusters / (num_clusters - 1))
    figure = Figure(figsize=(7.0, 6.0), dpi=100)
    axis = figure.subplots()
    size = float(np.clip(3000 / len(rows), 2, 30))
    axis.scatter(coordinates[:, 0], coordinates[:, 1], c=colors, s=size, linewidths=0)
    if num_clusters <= 20:
        for cluster in np.unique(clusters):
            axis.scatter([], [], color=colors[clusters == cluster][0], label=str(cluster))
        axis.legend(title="cluster", loc="best", fontsize=8, markerscale=1.5)
    axis.set_xticks([])
    axis.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue(), caption


def _umap(points: np.ndarray, seed: int) -> np.ndarray:
    # UMAP warns about its own internals (tensorflow missing, disconnected neighbour graphs,
    # spectral initialisation falling back to random, numba and scikit-learn deprecations);
    # none of it is actionable by someone reading the report, and the map is drawn anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(15, len(points) - 1),
            random_state=seed,
            n_jobs=1,  # a seed forces one job anyway; saying so avoids its warning
        )
        return np.asarray(reducer.fit_transform(points), dtype=np.float64)


def _pca(points: np.ndarray) -> np.ndarray:
    centered = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    coordinates = centered @ components[:2].T
    return np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))


def _errors_section(errors: list[tuple[str, str]]) -> str:
    if not errors:
        return ""
    rows = "".join(
        f"<tr><td>{_esc(path)}</td><td>{_esc(reason)}</td></tr>" for path, reason in errors
    )
    return (
        f'<section id="errors"><h2>Unreadable files ({len(errors):,})</h2>'
        "<p>These files could not be decoded and are in no cluster.</p>"
        f'<table class="errors"><tr><th>file</th><th>reason</th></tr>{rows}</table></section>'
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1a1a1a; background: #fff; line-height: 1.4; }
h1 { margin-bottom: 0.5rem; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
table.facts th { background: #f4f4f4; font-weight: 600; }
table.confusion td { text-align: right; min-width: 2rem; }
table.errors td { font-family: monospace; word-break: break-all; }
.scroll { overflow-x: auto; }
.cluster { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem; margin: 1rem 0; }
.cluster.empty { background: #fafafa; color: #666; }
.cluster h3 { margin: 0.3rem 0; }
.facts { color: #444; }
.note { color: #8a5a00; }
.grid { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.5rem 0; }
figure { margin: 0; text-align: center; font-size: 0.75rem; max-width: 170px; }
figure img { image-rendering: pixelated; border: 1px solid #ccc; display: block;
             margin: 0 auto; }
figure.map { max-width: none; }
figure.map img { image-rendering: auto; max-width: 100%; height: auto; }
.path { color: #666; word-break: break-all; }
"""

# Nothing may be fetched or run: images are data URIs and styles are inline.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )

"""``report.html`` of a training run: its final model on the run's own images.

Everything is read from the run directory (:mod:`semclust.rundir`): the final model, the
data config the manifest recorded for its stage, for heads trained on a frozen backbone the
cached validation features and, with ``data.num_clusters=auto``, how K was chosen. With
labels, the scores against the number of query images are computed here, into the report's
data.
"""

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import nn

from semclust.data import MultiViewDataset, build_dataset, make_loader, view_transforms
from semclust.inference.export import load_trained_model
from semclust.models import head_logits
from semclust.reporting import (
    KChoiceSummary,
    ReportData,
    grad_cam_for,
    scores_by_query_count,
    write_report,
)
from semclust.rundir import K_CHOICE, RunDirectory, mined, read_json


def write_run_report(
    run_dir: str | Path, out_path: str | Path | None = None, split: str = "val"
) -> Path:
    """``report.html`` for a training run: its final model on its own ``split`` images,
    with ACC/NMI/ARI and the confusion matrix where the data has labels."""
    from torchvision.transforms.v2.functional import to_pil_image

    run = RunDirectory(run_dir, create=False)
    model, spec = load_trained_model(run.root)
    stage = spec.get("stage", "scan")
    recorded = run.read_manifest()["stages"]
    entry = _stage_entry(run, recorded, stage)
    data_cfg = entry["config"]["data"]
    dataset = build_dataset(data_cfg, split)
    transform = view_transforms(data_cfg).eval
    model.eval()
    cached = [run.path(mined("val", kind)) for kind in ("features", "targets")]
    if split == "val" and entry["metrics"].get("cached_features") and cached[0].is_file():
        # A frozen backbone's features of these images are on disk: only the head runs.
        features, targets = [np.load(cached[0])], [np.load(cached[1])]
        with torch.inference_mode():
            logits = model.cluster_heads(torch.from_numpy(features[0]).float())[0]
        probabilities = [torch.softmax(logits, dim=1).numpy()]
    else:
        features, probabilities, targets = _embed_and_classify(model, dataset, transform, data_cfg)

    def load_image(row: int) -> PIL.Image.Image:
        image = dataset.load_image(row)
        return to_pil_image(image) if isinstance(image, torch.Tensor) else image

    k_choice = load_k_choice(run.root)
    if k_choice is not None and k_choice.value != probabilities[0].shape[1]:
        # Left by an earlier run in this directory: it did not choose this model's K.
        k_choice = None
    paths = getattr(dataset, "paths", None) or [
        f"{data_cfg['kind']}[{index}]" for index in range(len(dataset))
    ]
    all_probabilities, embeddings = np.concatenate(probabilities), np.concatenate(features)
    all_targets = np.concatenate(targets)
    data = ReportData(
        title=f"semclust run {run.root} ({stage}, {data_cfg['kind']}/{split})",
        paths=[str(path) for path in paths],
        probabilities=all_probabilities,
        embeddings=embeddings,
        targets=all_targets,
        class_names=dataset.class_names,
        errors=list(getattr(dataset, "skipped", [])),
        k_choice=k_choice,
        query_curves=scores_by_query_count(
            all_probabilities.argmax(axis=1), all_targets, embeddings
        ),
        notes=[
            f"Stage {name} was skipped: {record['note']}"
            for name, record in recorded.items()
            if record.get("status") == "skipped" and record.get("note")
        ],
    )
    explainer, reason = grad_cam_for(model, transform)
    out_path = Path(out_path) if out_path else run.report_path
    return write_report(out_path, data, load_image, explainer, no_heatmaps_reason=reason)


def load_k_choice(run_dir: str | Path) -> KChoiceSummary | None:
    """How ``data.num_clusters=auto`` chose K, as the run saved it (``choose_k/choice.json``,
    else the manifest's copy), with its saved plot; None when the run was given K."""
    run = RunDirectory(run_dir, create=False)
    path = run.path(K_CHOICE)
    entry = read_json(path) if path.is_file() else run.read_manifest().get("num_clusters")
    if not entry:
        return None
    return KChoiceSummary.from_saved(
        entry, _saved_file(run, entry.get("files", {}).get("criteria"))
    )


def _saved_file(run: RunDirectory, relative: str | None) -> bytes | None:
    """A file the run saved (a path relative to it), or None when it is gone or outside it."""
    if not relative:
        return None
    path = (run.root / relative).resolve()
    if not path.is_file() or not path.is_relative_to(run.root.resolve()):
        return None
    return path.read_bytes()


def _stage_entry(run: RunDirectory, recorded: dict[str, Any], stage: str) -> dict[str, Any]:
    """The manifest's record of ``stage``: its config (the data to report on) and metrics."""
    entry = recorded.get(stage)
    if entry is None:
        raise FileNotFoundError(
            f"{run.manifest_path} records no {stage!r} stage, whose model this report shows"
        )
    return entry


def _embed_and_classify(
    model: nn.Module, dataset: Any, transform: Any, data_cfg: dict[str, Any]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Features, cluster probabilities and targets of every image, batch by batch."""
    loader = make_loader(
        MultiViewDataset(dataset, {"image": transform}),
        data_cfg["eval_batch_size"],
        shuffle=False,
        num_workers=0,
    )
    features, probabilities, targets = [], [], []
    with torch.inference_mode():
        for batch in loader:
            batch_features, logits = head_logits(model, batch["image"])
            features.append(batch_features.numpy())
            probabilities.append(torch.softmax(logits, dim=1).numpy())
            targets.append(batch["target"].numpy())
    return features, probabilities, targets

"""Evaluate a saved SCAN or self-label checkpoint: metrics.json and a confusion matrix."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import matplotlib
import numpy as np
import torch
from omegaconf import DictConfig

from semclust.artifacts import load_weights, read_json, write_json
from semclust.callbacks import ClusterEvaluation
from semclust.data import MultiViewDataset, build_dataset, make_loader
from semclust.metrics import contingency_matrix, hungarian_match
from semclust.models import ClusteringModel
from semclust.stages.common import backbone_from_spec, to_plain, view_transforms
from semclust.stages.scan import ScanModule

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

_REQUIRED_METADATA = ("stage", "backbone", "num_clusters", "num_heads", "data")


def load_clustering_checkpoint(path: str | Path) -> tuple[ClusteringModel, dict[str, Any]]:
    """Rebuild the model of a SCAN or self-label ``.ckpt`` with the head it chose.

    The file is read with ``weights_only=True``: nothing in it is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    metadata = checkpoint.get("semclust") if isinstance(checkpoint, Mapping) else None
    if not metadata or any(key not in metadata for key in _REQUIRED_METADATA):
        raise ValueError(
            f"{path} is not a semclust SCAN or self-label checkpoint "
            f"(it lacks the 'semclust' metadata {list(_REQUIRED_METADATA)})"
        )
    model = ClusteringModel(
        backbone_from_spec(metadata["backbone"]), metadata["num_clusters"], metadata["num_heads"]
    )
    # A self-label checkpoint with EMA evaluates the averaged weights, as the pipeline does.
    prefix = "ema.module." if metadata.get("ema") else "model."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    loaded: torch.nn.Module = model
    if metadata.get("cached_features"):
        # Heads trained on cached features: the frozen backbone is the run's pretext one.
        backbone_path = path.resolve().parents[2] / "pretext" / "backbone.safetensors"
        if not backbone_path.is_file():
            raise ValueError(
                f"{path} holds cluster heads trained on cached features, but their frozen "
                f"backbone {backbone_path} is missing; use the stage's model.safetensors"
            )
        load_weights(model.backbone, backbone_path)
        loaded = model.cluster_heads  # the checkpoint's state covers the heads only
        state = {key: value for key, value in state.items() if key.startswith("cluster_heads.")}
        state = {key[len("cluster_heads.") :]: value for key, value in state.items()}
    try:
        loaded.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"weights in {path} do not fit the model its metadata describes: {error}"
        ) from error
    model.cluster_heads.keep(int(metadata.get("best_head", 0)))
    return model, metadata


def save_confusion_matrix(
    predictions: np.ndarray, targets: np.ndarray, path: Path, class_names: list[str] | None = None
) -> None:
    """Classes (rows) against clusters (columns), clusters ordered by their matched class."""
    counts = contingency_matrix(predictions, targets).T  # (classes, clusters)
    matched = hungarian_match(predictions, targets)
    order = sorted(range(counts.shape[1]), key=lambda c: (matched.get(c, counts.shape[0]), c))
    counts = counts[:, order]
    size = max(4.0, 0.45 * max(counts.shape))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis)
    axis.set_xticks(range(len(order)), [str(c) for c in order])
    axis.set_yticks(range(counts.shape[0]), class_names or [str(c) for c in range(len(counts))])
    axis.set_xlabel("cluster")
    axis.set_ylabel("class")
    for (row, col), value in np.ndenumerate(counts):
        if value:
            color = "white" if value > counts.max() / 2 else "black"
            axis.text(col, row, str(value), ha="center", va="center", color=color, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt`` on ``cfg.data`` (default: its training data), write the results;
    or, with ``predict.input_dir`` set, cluster that folder as ``semclust predict`` does."""
    if cfg.get("predict") and cfg.predict.get("input_dir"):
        from semclust.predict import predict_folder

        options = {k: v for k, v in to_plain(cfg.predict).items() if k not in ("input_dir", "out")}
        return predict_folder(cfg.ckpt, cfg.predict.input_dir, cfg.predict.out, **options)
    model, metadata = load_clustering_checkpoint(cfg.ckpt)
    data_cfg = to_plain(cfg.data) if cfg.get("data") else metadata["data"]
    if cfg.split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {cfg.split!r}")
    if data_cfg["channels"] != metadata["data"]["channels"]:
        raise ValueError(
            f"the checkpoint expects {metadata['data']['channels']}-channel images "
            f"but data has {data_cfg['channels']}"
        )
    dataset = build_dataset(data_cfg, cfg.split)
    views = MultiViewDataset(dataset, {"image": view_transforms(data_cfg).eval})
    loader = make_loader(
        views, data_cfg["eval_batch_size"], shuffle=False, num_workers=data_cfg["num_workers"]
    )
    module = ScanModule(model, entropy_weight=0.0)
    evaluation = ClusterEvaluation(metadata["num_clusters"], cfg.seed)
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[evaluation]
    )
    trainer.validate(module, loader, verbose=False)
    result = module.validation_result()

    output_dir = (
        Path(cfg.output_dir)
        if cfg.get("output_dir")
        else (Path(cfg.ckpt).resolve().parent.parent / "evaluation")
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    scores = {key: value for key, value in evaluation.latest.items()}
    summary = {
        "ckpt": str(cfg.ckpt),
        "stage": metadata["stage"],
        "dataset": data_cfg["kind"],
        "split": cfg.split,
        "num_images": len(dataset),
        **scores,
    }
    write_json(output_dir / "metrics.json", summary)
    targets = result.targets.numpy()
    if (targets >= 0).all():
        save_confusion_matrix(
            result.predictions.numpy(),
            targets,
            output_dir / "confusion_matrix.png",
            dataset.class_names,
        )
    print(
        f"{metadata['stage']} checkpoint on {data_cfg['kind']}/{cfg.split} "
        f"({len(dataset)} images): "
        + ", ".join(f"{k.upper()} {scores[k]:.4f}" for k in ("acc", "nmi", "ari") if k in scores)
    )
    print(f"wrote {output_dir / 'metrics.json'}")
    return summary


def write_run_report(
    run_dir: str | Path, out_path: str | Path | None = None, split: str = "val"
) -> Path:
    """``report.html`` for a training run: its final model on its own ``split`` images,
    with ACC/NMI/ARI and the confusion matrix where the data has labels."""
    from torchvision.transforms.v2.functional import to_pil_image

    from semclust.export import load_trained_model
    from semclust.predict import grad_cam_for
    from semclust.report import ReportData, write_report

    run_dir = Path(run_dir)
    model, spec = load_trained_model(run_dir)
    stage = spec.get("stage", "scan")
    entry = read_json(run_dir / "manifest.json")["stages"][stage]
    data_cfg = entry["config"]["data"]
    dataset = build_dataset(data_cfg, split)
    transform = view_transforms(data_cfg).eval
    model.eval()
    cached = [run_dir / "mine" / f"val_{name}.npy" for name in ("features", "targets")]
    if split == "val" and entry["metrics"].get("cached_features") and cached[0].is_file():
        # A frozen backbone's features of these images are on disk: only the head runs.
        features, targets = [np.load(cached[0])], [np.load(cached[1])]
        with torch.inference_mode():
            logits = model.cluster_heads(torch.from_numpy(features[0]).float())[0]
        probabilities = [torch.softmax(logits, dim=1).numpy()]
    else:
        features, probabilities, targets = _embed_and_classify(model, dataset, transform, data_cfg)

    def load_image(row: int) -> Any:
        image = dataset.load_image(row)
        return to_pil_image(image) if isinstance(image, torch.Tensor) else image

    paths = getattr(dataset, "paths", None) or [
        f"{data_cfg['kind']}[{index}]" for index in range(len(dataset))
    ]
    data = ReportData(
        title=f"semclust run {run_dir} ({stage}, {data_cfg['kind']}/{split})",
        paths=[str(path) for path in paths],
        probabilities=np.concatenate(probabilities),
        embeddings=np.concatenate(features),
        targets=np.concatenate(targets),
        class_names=dataset.class_names,
        errors=list(getattr(dataset, "skipped", [])),
    )
    explainer, reason = grad_cam_for(model, transform)
    out_path = Path(out_path) if out_path else run_dir / "report.html"
    return write_report(out_path, data, load_image, explainer, no_heatmaps_reason=reason)


def _embed_and_classify(
    model: torch.nn.Module, dataset: Any, transform: Any, data_cfg: dict
) -> tuple[list, list, list]:
    """Features, cluster probabilities and targets of every image, batch by batch."""
    from semclust.export import head_logits

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

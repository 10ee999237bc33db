"""Evaluate a saved SCAN or self-label checkpoint: metrics.json and a confusion matrix."""

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from semclust.data import build_dataset
from semclust.folder_recipe import as_trained
from semclust.inference.checkpoint import load_clustering_checkpoint
from semclust.inference.spec import to_plain
from semclust.metrics import HEADLINE_SCORES, LABEL_FREE_SCORES, SCORE_TITLES
from semclust.reporting.confusion import save_confusion_matrix
from semclust.rundir import RunDirectory, write_json
from semclust.runlog import quiet_lightning
from semclust.stages.common import eval_loader
from semclust.stages.scan import ScanModule
from semclust.stages.scoring import ClusterEvaluation


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt`` on ``cfg.data`` (default: its training data), write the results;
    or, with ``predict.input_dir`` set, cluster that folder as ``semclust predict`` does."""
    if cfg.get("predict") and cfg.predict.get("input_dir"):
        from semclust.inference.predict import predict_folder

        options = {k: v for k, v in to_plain(cfg.predict).items() if k not in ("input_dir", "out")}
        return predict_folder(cfg.ckpt, cfg.predict.input_dir, cfg.predict.out, **options)
    quiet_lightning()
    checkpoint = checkpoint_to_score(cfg.ckpt)
    model, metadata = load_clustering_checkpoint(checkpoint)
    trained = metadata["data"]
    data_cfg = as_trained(to_plain(cfg.data), trained) if cfg.get("data") else trained
    if cfg.split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {cfg.split!r}")
    if data_cfg["channels"] != metadata["data"]["channels"]:
        raise ValueError(
            f"the checkpoint expects {metadata['data']['channels']}-channel images "
            f"but data has {data_cfg['channels']}"
        )
    dataset = build_dataset(data_cfg, cfg.split)
    # The pipeline's own evaluation loader (batched or per-image views by the same rule), so
    # the scores are those the pipeline recorded, not a grey level's rounding away.
    loader = eval_loader(OmegaConf.create({"data": data_cfg}), dataset)
    module = ScanModule(model, entropy_weight=0.0)
    evaluation = ClusterEvaluation(metadata["num_clusters"], cfg.seed)
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, callbacks=[evaluation]
    )
    trainer.validate(module, loader, verbose=False)
    result = module.validation_result()

    output_dir = (
        Path(cfg.output_dir) if cfg.get("output_dir") else RunDirectory.evaluation_dir(checkpoint)
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    scores = {key: value for key, value in evaluation.latest.items()}
    summary = {
        "ckpt": str(checkpoint),
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
    # Labels give ACC, NMI and ARI; an unlabelled folder the label-free scores.
    shown = [key for key in HEADLINE_SCORES if key in scores] or [
        key for key in LABEL_FREE_SCORES if scores.get(key) is not None
    ]
    details = ", ".join(f"{SCORE_TITLES[key]} {scores[key]:.4f}" for key in shown)
    print(
        f"{metadata['stage']} checkpoint on {data_cfg['kind']}/{cfg.split} "
        f"({len(dataset)} images): "
        + (details or f"{scores.get('clusters_used')} cluster(s) used, no scores defined")
    )
    print(f"wrote {output_dir / 'metrics.json'}")
    return summary


def checkpoint_to_score(source: str | Path) -> Path:
    """``source`` when it is a file; else the checkpoint of a stage folder's model, or of the
    model of a run directory's final clustering stage (self-labeling if it completed)."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise FileNotFoundError(f"ckpt={source} does not exist")
    run = RunDirectory(source, create=False)
    if (source / "checkpoints").is_dir():  # a stage folder
        run, stage = RunDirectory(source.parent, create=False), source.name
    elif run.manifest_path.is_file():  # a run directory
        stage = run.final_model_stage()
        if stage is None:
            raise FileNotFoundError(f"run {source} has no completed scan or selflabel stage")
    else:
        raise FileNotFoundError(
            f"ckpt={source} is a folder but neither a run directory (no manifest.json) nor "
            "a stage folder (no checkpoints/); give a SCAN or self-label .ckpt"
        )
    checkpoint = run.model_checkpoint(stage)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{source}: the {stage} stage's checkpoint {checkpoint} is missing")
    return checkpoint

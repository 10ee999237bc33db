"""Runs the stages in order, passes artifacts between them and writes the manifest.

``train(cfg)`` is what ``train.py`` calls; tests call it with a composed config. The stages
themselves live in ``semclust.stages``, one module each, found by name in its registry.
"""

import copy
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from semclust import budget
from semclust.budget import OutOfTime
from semclust.config_checks import check_config
from semclust.environment import (
    cpu_multiplies_bf16,
    environment_changes,
    software_environment,
)
from semclust.failpoints import failpoint
from semclust.fingerprints import data_fingerprint, describe_data, digest, outputs_digest
from semclust.folder_recipe import complete_folder_recipe, settle_scan_neighbors
from semclust.inference.spec import to_plain
from semclust.metrics import HEADLINE_SCORES, LABEL_FREE_SCORES, SCORE_TITLES
from semclust.rotation_invariance import apply_rotation_invariance
from semclust.rundir import MODEL_STAGES, RunDirectory, write_json
from semclust.runlog import attach_log_file, quiet_lightning
from semclust.stages.common import clear_checkpoints, known_num_clusters
from semclust.stages.num_clusters import chosen_num_clusters
from semclust.stages.registry import Stage, StageSkipped, registered_stages

log = logging.getLogger(__name__)

SYNC_BATCHNORM_PLUGIN = "semclust.stages.sync_batchnorm.SyncBatchNormPlugin"

#: Trainer options that change a stage's numbers (devices change the batches under DDP).
_RESULT_TRAINER_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision")
#: Recorded states of a stage that the same command continues rather than starts again.
_RESUMABLE = ("running", "paused", "failed")


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the configured stages in order and return the run's ``metrics.json`` content.

    The caller's config is left as it is: the pipeline works on a copy, which the stages'
    ``prepare`` hooks, the folder recipe and a chosen ``data.num_clusters`` complete.
    ``overrides`` are the command line's (``key=value``): the settings they name are never
    chosen for the user (see :mod:`semclust.folder_recipe`). A stage finished earlier
    in the same run directory from the same inputs is skipped (``resume=false`` runs it
    again); an interrupted one continues from its last checkpoint.
    """
    quiet_lightning()
    check_config(cfg)
    budget.start(cfg.get("stop_after_minutes"))
    stages = registered_stages()
    known = [stage.name for stage in stages]
    unknown = [name for name in cfg.stages if name not in known]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {known}")
    cfg = copy.deepcopy(cfg)
    _sync_batchnorm_on_any_device(cfg)
    _require_the_gpu_asked_for(cfg)  # before the folder is read and the run folder claimed
    recipe = complete_folder_recipe(cfg, overrides)  # may name the run after the folder
    check_config(cfg)  # the chosen values too
    run = RunDirectory(cfg.paths.run_dir, create=False)
    run.claim(overwrite=bool(cfg.get("overwrite", False)))
    attach_log_file(run.root / "train.log")
    if recipe is not None:
        log.info("%s", recipe["line"])
    if run.is_writer():
        OmegaConf.save(cfg, run.root / "config.yaml")
        if recipe is not None:
            run.record("folder_recipe", recipe)
    log.info("run directory: %s", run.root.resolve())
    _warn_of_emulated_bf16(cfg)
    for stage in stages:
        if stage.prepare is not None:
            stage.prepare(cfg)
    rotation = apply_rotation_invariance(cfg)  # after the prepares: it needs the final mean/std
    if rotation is not None:
        log.info("%s", rotation["line"])
        if run.is_writer():
            run.record("rotation_invariance", rotation)
    data = data_fingerprint(to_plain(cfg.data))
    training_images = recipe["chosen"].get("training_images", 0) if recipe else 0
    ran = False
    for stage in (stage for stage in stages if stage.name in cfg.stages):
        # Each invocation gets at least one stage (or one batch of it) done.
        if ran and budget.spent_everywhere():
            raise OutOfTime(f"time budget spent before {stage.name} started")
        ran |= _run_stage(stage, stages, cfg, run, data, training_images)
        _wait_for_all_processes()  # later stages on every rank read what rank zero wrote
    summary = summarize(run, stages)
    write_json(run.metrics_path, summary)
    if cfg.get("report") and summary["final_stage"] in MODEL_STAGES and run.is_writer():
        if ran or not run.report_path.is_file():
            from semclust.inference.run_report import write_run_report

            write_run_report(run.root)
        summary["report"] = str(run.report_path)
        log.info("report: %s", summary["report"])
    if run.is_writer():
        print(format_table(summary, stages))
    return summary


def _run_stage(
    stage: Stage,
    stages: list[Stage],
    cfg: DictConfig,
    run: RunDirectory,
    data: str,
    training_images: int,
) -> bool:
    """Run one stage, or skip it if it finished from the same inputs; record how it went.

    ``training_images`` sizes SCAN's neighbours once K is chosen (folder recipe). Returns
    whether it ran.
    """
    if stage.needs_num_clusters and known_num_clusters(cfg) is None:
        cfg.data.num_clusters = chosen_num_clusters(run, stage.name)
        settle_scan_neighbors(cfg, training_images)
    run.stage_dir(stage.name)
    recorded = run.read_manifest()["stages"]
    upstream = stage.upstream(cfg, stages)
    _refuse_other_data(stage.name, upstream, recorded, data, cfg)
    stage_config = _stage_config(stage, cfg)
    fingerprint = {
        "config": digest(stage_config),
        "data": data if stage.depends_on_images(cfg) else None,
        "upstream": {
            name: recorded[name].get("outputs_digest")
            for name in upstream
            if recorded.get(name, {}).get("status") == "completed"
        },
    }
    entry = recorded.get(stage.name, {})
    same_inputs = cfg.resume and entry.get("fingerprint") == fingerprint
    if same_inputs and _finished_intact(run, entry):
        log.info("%s: finished earlier from the same inputs; skipped", stage.name)
        return False
    environment = software_environment()
    changes = environment_changes(entry.get("environment"), environment)
    if same_inputs and changes and entry.get("status") in _RESUMABLE:
        log.warning(
            "%s: continuing a stage begun under other software (%s); its result may differ "
            "in rounding from a run made in one go",
            stage.name,
            ", ".join(changes),
        )
    if entry and (not same_inputs or entry.get("status") in ("completed", "skipped")):
        clear_checkpoints(run, stage.name)  # its inputs changed, or it is asked for afresh
    record = functools.partial(
        run.record_stage, stage.name, config=stage_config, environment=environment
    )
    record(status="running", fingerprint=fingerprint)
    pl.seed_everything(stage.seed(cfg.seed), workers=True, verbose=False)
    started = time.perf_counter()

    def ended(status: str, **fields: Any) -> None:
        record(
            status=status,
            wall_time_s=time.perf_counter() - started,
            fingerprint=fingerprint,
            **fields,
        )

    try:
        outputs, metrics = stage.run(cfg, run)
    except OutOfTime as reason:
        log.warning("%s: %s; run the same command again to continue", stage.name, reason)
        ended("paused", note=str(reason))
        raise
    except StageSkipped as reason:
        log.warning("%s: %s", stage.name, reason)
        ended("skipped", note=str(reason))
        return True
    except BaseException as error:
        ended("failed", note=f"{type(error).__name__}: {error}")
        raise
    failpoint("stage.finished")
    ended(
        "completed",
        outputs=outputs,
        metrics=metrics,
        outputs_digest=outputs_digest(outputs.values(), run.root),
    )
    return True


def _stage_config(stage: Stage, cfg: DictConfig) -> dict[str, Any]:
    """The part of the config a stage's result depends on (recorded, and fingerprinted)."""
    config = {
        "data": to_plain(cfg.data),
        "backbone": to_plain(cfg.backbone),
        stage.name: to_plain(cfg[stage.name]),
        "seed": cfg.seed,
        "trainer": {key: to_plain(cfg.trainer.get(key)) for key in _RESULT_TRAINER_KEYS},
    }
    # Seeded per sample: which processes make the views changes no draw.
    config["data"].pop("num_workers", None)
    config["data"].pop("batch_views_in", None)
    config["data"].pop("schedule", None)  # already in each stage's epochs and batch size
    if known_num_clusters(cfg) is None:
        config["choose_k"] = to_plain(cfg.choose_k)
    for key in stage.fingerprint_ignores:
        group, _, name = key.partition(".")
        config.get(group, {}).pop(name, None)
    return config


def _finished_intact(run: RunDirectory, entry: dict[str, Any]) -> bool:
    """A finished stage whose outputs are still as it wrote them."""
    if entry.get("status") == "skipped":
        return True
    if entry.get("status") != "completed":
        return False
    paths = [run.root / path for path in entry.get("outputs", {}).values()]
    return outputs_digest(paths, run.root) == entry.get("outputs_digest")


def _refuse_other_data(
    name: str, upstream: tuple[str, ...], recorded: dict, data: str, cfg: DictConfig
) -> None:
    """A stage never reads outputs that earlier stages made from other images."""
    for source in upstream:
        made_from = recorded.get(source, {}).get("fingerprint", {}).get("data")
        if made_from is not None and made_from != data:
            raise ValueError(
                f"stage {name!r} would read the outputs of {source!r} in {cfg.paths.run_dir}, "
                f"which were made from other data than {describe_data(to_plain(cfg.data))}; "
                f"run {source!r} again too (stages=[{source},...,{name}]) or use a new "
                "paths.run_dir"
            )


def _warn_of_emulated_bf16(cfg: DictConfig) -> None:
    """bf16 on a CPU without AMX is emulated: one ResNet-18 step took 13 times float32's."""
    precision, accelerator = str(cfg.trainer.precision), str(cfg.trainer.accelerator)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and cpu_multiplies_bf16() is False:
        log.warning(
            "trainer.precision=%s on a CPU without AMX: its bf16 arithmetic is emulated, "
            "slower than float32 (trainer.precision=32-true)",
            precision,
        )


def _require_the_gpu_asked_for(cfg: DictConfig) -> None:
    """``trainer=gpu`` where torch sees no GPU fails at once, saying so; Lightning fails only
    once the data has been read, with "No supported gpu backend found!"."""
    accelerator = str(cfg.trainer.accelerator).lower()
    if accelerator not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    if accelerator == "gpu" and torch.backends.mps.is_available():
        return  # Lightning's "gpu" is Apple's GPU too
    raise ValueError(
        f"trainer.accelerator={accelerator}, but torch {torch.__version__} sees no GPU here "
        f"(CUDA build: {torch.version.cuda or 'none'}); use trainer=cpu, or trainer=default "
        "to take a GPU where there is one"
    )


def _sync_batchnorm_on_any_device(cfg: DictConfig) -> None:
    """``trainer.sync_batchnorm`` through our plugin: Lightning's own is CUDA-only."""
    if not cfg.trainer.get("sync_batchnorm"):
        return
    with open_dict(cfg.trainer):
        cfg.trainer.sync_batchnorm = False
        plugins = list(cfg.trainer.get("plugins") or [])
        cfg.trainer.plugins = [*plugins, {"_target_": SYNC_BATCHNORM_PLUGIN}]


def _wait_for_all_processes() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def summarize(run: RunDirectory, stages: list[Stage] | None = None) -> dict[str, Any]:
    """Top-level ACC/NMI/ARI of the run's final result, per-stage metrics beside them.

    ``stages`` holds every recorded stage's status and scalar metrics, plus the rows the
    stages name for nested metrics (mine's ``kmeans``: k-means on the pretext features of
    the validation images). The final result is the last completed model stage's or, with
    none, the last completed stage whose metrics score a partition (classic run alone).
    """
    stages = registered_stages() if stages is None else stages
    manifest = run.read_manifest()
    recorded = manifest["stages"]
    summary: dict[str, Any] = {"run_dir": str(run.root), "final_stage": None, "stages": {}}
    if "num_clusters" in manifest:
        summary["num_clusters"] = manifest["num_clusters"]
    partitions = []
    for stage in stages:
        entry = recorded.get(stage.name)
        if entry is None:
            continue
        # Scores only: bookkeeping such as which cached features were reused stays in the
        # manifest, so an interrupted run's metrics.json equals an uninterrupted one's.
        metrics = {
            k: v for k, v in entry["metrics"].items() if isinstance(v, int | float | str | bool)
        }
        summary["stages"][stage.name] = {"status": entry["status"], **metrics}
        if entry["status"] == "skipped" and entry.get("note"):
            summary["stages"][stage.name]["note"] = entry["note"]  # format_table prints it
        for row in stage.table_rows:
            if row != stage.name and row in entry["metrics"]:
                summary["stages"][row] = entry["metrics"][row]
        if stage.partitions and entry["status"] == "completed":
            partitions.append(stage.name)
    summary["final_stage"] = run.final_model_stage() or (partitions[-1] if partitions else None)
    if summary["final_stage"]:
        final = summary["stages"][summary["final_stage"]]
        summary.update(
            {key: final[key] for key in HEADLINE_SCORES + LABEL_FREE_SCORES if key in final}
        )
    return summary


def format_table(summary: dict[str, Any], stages: list[Stage] | None = None) -> str:
    """The closing table: one row per stage result (k-means on pretext features, SCAN,
    self-labeling, classic).

    ACC/NMI/ARI where the data has labels; otherwise the label-free silhouette,
    Calinski-Harabasz and Davies-Bouldin scores. A skipped stage's reason follows the table.
    """
    stages = registered_stages() if stages is None else stages
    names = {row: title for stage in stages for row, title in stage.table_rows.items()}
    entries = {key: summary["stages"].get(key) for key in names}
    labeled = any(entry and "acc" in entry for entry in entries.values())
    columns = {
        key: SCORE_TITLES[key] for key in (HEADLINE_SCORES if labeled else LABEL_FREE_SCORES)
    }
    rows = [f"{'method':<28}" + "".join(f"{title:>12}" for title in columns.values())]
    notes = []
    for key, name in names.items():
        entry = entries[key]
        if entry is None:
            continue
        if entry.get("status", "completed") != "completed":
            rows.append(f"{name:<28}{entry['status']:>36}")
            if entry.get("note"):
                notes.append(f"{name} {entry['status']}: {entry['note']}")
            continue
        cells = [f"{entry[k]:>12.4f}" if k in entry else f"{'n/a':>12}" for k in columns]
        rows.append(f"{name:<28}{''.join(cells)}")
    rows += notes
    rows.append(f"final stage: {summary['final_stage']}   run: {summary['run_dir']}")
    return "\n".join(rows)

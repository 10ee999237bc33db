"""What a rerun may and may not do with a run directory: items 3, 5, 6 and 7 of issue 11.

Someone else's folder is refused untouched; outputs made from other data are never combined;
bad values and unusable folders end in one line, without a traceback; an unreadable
checkpoint is set aside and the stage starts over.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semclust.pipeline import train
from semclust.rundir import RUN_FORMAT, RunDirectory, RunDirectoryError

REPO = Path(__file__).resolve().parents[2]


def run_train_py(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# 6. a run directory is new, empty or ours --------------------------------------------------


def test_someone_elses_folder_is_refused_and_left_untouched(tiny_config, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "metrics.json").write_text('{"their": "numbers"}')
    (theirs / "report.html").write_text("<p>their report</p>")
    before = snapshot(theirs)
    with pytest.raises(RunDirectoryError, match="not a semclust run.*overwrite=true"):
        train(tiny_config(f"paths.run_dir={theirs}", "stages=[pretext]"))
    assert snapshot(theirs) == before
    assert sorted(path.name for path in theirs.iterdir()) == ["metrics.json", "report.html"]


def test_a_foreign_manifest_is_refused_without_a_key_error(tiny_config, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "manifest.json").write_text('{"name": "some other tool"}')
    before = snapshot(theirs)
    with pytest.raises(RunDirectoryError, match="not a semclust run"):
        train(tiny_config(f"paths.run_dir={theirs}", "stages=[pretext]"))
    assert snapshot(theirs) == before


def test_overwrite_true_writes_the_run_into_a_used_folder(tiny_config, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    train(tiny_config(f"paths.run_dir={theirs}", "stages=[pretext]", "++overwrite=true"))
    assert (theirs / "notes.txt").read_text() == "keep me"
    assert json.loads((theirs / "manifest.json").read_text())["format"] == RUN_FORMAT


def test_empty_and_own_folders_are_accepted(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDirectory(empty, create=False).claim()
    RunDirectory(empty, create=False).claim()  # now ours: claimed again without complaint
    legacy = tmp_path / "legacy"  # a run written before manifests carried the format
    legacy.mkdir()
    (legacy / "manifest.json").write_text('{"stages": {}}')
    (legacy / "pretext").mkdir()
    RunDirectory(legacy, create=False).claim()
    for folder in (empty, legacy):  # both now say they are runs of this format
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest == {"format": RUN_FORMAT, "stages": {}}


def test_a_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(RunDirectoryError, match="cannot write to paths.run_dir=.*Permission"):
        RunDirectory(tmp_path / "run", create=False).claim()


# 5 and 7: one line, no traceback ------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("pretext.epochs=-1", "pretext.epochs must be an integer >= 1, got -1"),
        ("pretext.epochs=0", "pretext.epochs must be an integer >= 1, got 0"),
        ("seed=abc", "seed must be an integer"),
    ],
)
def test_bad_values_end_in_one_line_without_a_traceback(tmp_path, override, named):
    process = run_train_py(f"paths.run_dir={tmp_path / 'run'}", override)
    assert process.returncode == 2
    assert "Traceback" not in process.stderr + process.stdout
    errors = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and named in errors[0], process.stderr
    assert not (tmp_path / "run").exists()  # nothing written before the values are checked


def test_an_option_refused_by_the_class_it_configures_ends_in_one_line(tmp_path):
    """Before, Hydra's InstantiationException: no traceback, but several lines and status 1."""
    process = run_train_py(f"paths.run_dir={tmp_path / 'run'}", "trainer.devices=0")
    assert process.returncode == 2
    assert "Traceback" not in process.stderr + process.stdout
    errors = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, process.stderr
    assert errors[0].startswith("train.py: error: trainer: `Trainer(devices=0)`"), errors[0]
    assert "traceback in" in errors[0] and (tmp_path / "run" / "train.log").is_file()


def test_a_gpu_trainer_without_a_gpu_fails_before_anything_is_read(
    tiny_config, tmp_path, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"trainer.accelerator=gpu, but torch .* sees no GPU"):
        train(tiny_config("trainer=gpu"))
    assert not (tmp_path / "run").exists()


def test_an_unusable_run_directory_ends_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    process = run_train_py(f"paths.run_dir={blocker / 'run'}", "stages=[pretext]")
    assert process.returncode == 2
    assert "Traceback" not in process.stderr + process.stdout
    errors = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and str(blocker) in errors[0], process.stderr


def test_an_unreadable_checkpoint_is_set_aside_and_the_stage_starts_over(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "pretext" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"format": RUN_FORMAT, "stages": {}}))
    (checkpoints / "last.ckpt").write_bytes(b"PK\x03\x04 truncated by a kill")
    summary = train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext]"))
    assert summary["stages"]["pretext"]["status"] == "completed"
    assert (checkpoints / "last.ckpt.unreadable").read_bytes().endswith(b"by a kill")
    log = (run_dir / "train.log").read_text()
    assert "cannot read the checkpoint" in log and "starts over" in log


# 2 and 3: what a rerun reuses ----------------------------------------------------------------


def test_outputs_made_from_other_data_are_not_combined(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine]"))
    # The same number of images (the seeded 20% split), but other ones.
    other_images = ["data.options.split_seed=1"]
    with pytest.raises(ValueError, match="'scan' would read the outputs of 'pretext'.*other data"):
        train(tiny_config(f"paths.run_dir={run_dir}", "stages=[scan,selflabel]", *other_images))
    # Running the upstream stages again on the new images is the way out.
    summary = train(
        tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine,scan]", *other_images)
    )
    assert summary["stages"]["scan"]["status"] == "completed"


def test_a_changed_option_reruns_that_stage_and_what_depends_on_it_only(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine,scan]"))
    first = json.loads((run_dir / "manifest.json").read_text())["stages"]
    train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine,scan]", "scan.epochs=1"))
    second = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert second["pretext"] == first["pretext"] and second["mine"] == first["mine"]
    assert second["scan"]["config"]["scan"]["epochs"] == 1
    # A new K retrains no backbone, but mines and clusters again.
    train(
        tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine,scan]", "data.num_clusters=5")
    )
    third = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert third["pretext"] == first["pretext"]
    assert third["mine"]["fingerprint"] != second["mine"]["fingerprint"]
    assert third["scan"]["config"]["data"]["num_clusters"] == 5


def test_resume_false_runs_a_finished_stage_again(tiny_config, tmp_path, caplog):
    run_dir = tmp_path / "run"
    train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext]"))
    backbone = run_dir / "pretext/backbone.safetensors"
    written = backbone.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level("INFO"):
        train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext]", "resume=false"))
    assert "skipped" not in caplog.text
    assert backbone.stat().st_mtime_ns != written  # trained and written anew
    with caplog.at_level("INFO"):
        train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext]"))
    assert "pretext: finished earlier from the same inputs; skipped" in caplog.text


def test_a_run_directory_moved_elsewhere_retrains_nothing(tiny_config, tmp_path, caplog):
    """Before, each output's digest held its absolute path: a copied or renamed run
    directory ran every stage again."""
    run_dir = tmp_path / "run"
    train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine,scan]"))
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run_dir, moved)
    shutil.rmtree(run_dir)
    with caplog.at_level("INFO"):
        train(tiny_config(f"paths.run_dir={moved}", "stages=[pretext,mine,scan]"))
    for stage in ("pretext", "mine", "scan"):
        assert f"{stage}: finished earlier from the same inputs; skipped" in caplog.text


def test_a_deleted_output_makes_its_stage_run_again(tiny_config, tmp_path, caplog):
    run_dir = tmp_path / "run"
    train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine]"))
    (run_dir / "mine" / "train_neighbors.npy").unlink()
    with caplog.at_level("INFO"):
        train(tiny_config(f"paths.run_dir={run_dir}", "stages=[pretext,mine]"))
    assert "pretext: finished earlier" in caplog.text
    assert "mine: finished earlier" not in caplog.text
    assert (run_dir / "mine" / "train_neighbors.npy").is_file()


@pytest.mark.parametrize(
    ("ckpt_argument", "message"),
    [
        # Before, Hydra failed on its own run directory (a null output_dir) with a traceback.
        ("ckpt={missing}", "missing.ckpt does not exist"),
        # Before, OmegaConf's MissingMandatoryValue traceback.
        (None, "ckpt is required"),
    ],
)
def test_evaluate_py_reports_a_missing_checkpoint_in_one_line(tmp_path, ckpt_argument, message):
    arguments = (
        [] if ckpt_argument is None else [ckpt_argument.format(missing=tmp_path / "missing.ckpt")]
    )
    process = subprocess.run(
        [sys.executable, "evaluate.py", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stderr + process.stdout
    errors = [line for line in process.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], process.stderr

"""Which errors are the user's to fix, and how they are reported."""

import hydra
import pytest

from semclust import runlog


def refuse_size(size: int) -> None:
    raise ValueError(f"size must be positive, got {size}")


def buggy(size: int) -> None:
    raise TypeError("a bug of ours")


def instantiation_error(target: str):
    with pytest.raises(hydra.errors.InstantiationException) as caught:
        hydra.utils.instantiate({"model": {"_target_": target, "size": -1}}, _recursive_=True)
    return caught.value


def test_a_target_refusing_a_value_is_the_users_error_named_by_its_key(
    capsys, monkeypatch, tmp_path
):
    log_file = tmp_path / "train.log"
    monkeypatch.setattr(runlog, "_log_file", log_file)  # as attach_log_file leaves it
    error = instantiation_error(f"{__name__}.refuse_size")
    assert runlog.is_user_error(error)
    assert runlog.report_user_error(error, "train.py") == 2
    assert capsys.readouterr().err == (
        f"train.py: error: model: size must be positive, got -1 (traceback in {log_file})\n"
    )
    assert "Traceback" in log_file.read_text() and "refuse_size" in log_file.read_text()


def test_a_bug_inside_a_target_stays_a_bug():
    assert not runlog.is_user_error(instantiation_error(f"{__name__}.buggy"))
    assert not runlog.is_user_error(TypeError("a bug of ours"))


def test_lightnings_misconfiguration_is_the_users_error():
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    assert runlog.is_user_error(MisconfigurationException("devices=0 is not valid"))
    assert runlog.is_user_error(FileNotFoundError("no such file"))

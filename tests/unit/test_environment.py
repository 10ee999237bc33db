"""The software record of each stage, and what it tells about a continued one."""

import logging
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from semclust import environment, pipeline
from semclust.environment import environment_changes, software_environment


def test_the_record_names_the_libraries_and_threads_in_use():
    environment = software_environment()
    assert environment["versions"]["torch"] == torch.__version__.split("+")[0]
    assert environment["versions"]["numpy"] == np.__version__
    assert environment["torch_threads"] == torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    assert environment["cuda_device"] == gpu
    assert environment["python"] == platform.python_version()
    assert environment["machine"] == platform.machine()
    assert environment["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()


def test_changes_list_every_difference_and_nothing_else():
    before = software_environment()
    assert environment_changes(before, before) == []
    assert environment_changes(None, before) == []  # an older run recorded nothing
    after = {
        **before,
        "torch_threads": before["torch_threads"] + 1,
        "python": "3.0.0",
        "machine": "pdp11",
        "cpu_kernels": "MMX",
        "cuda_device": "No Such GPU",
        "versions": {**before["versions"], "torch": "0.0.1", "extra-lib": "1.0"},
    }
    changes = environment_changes(before, after)
    assert f"torch {before['versions']['torch']} -> 0.0.1" in changes
    assert "extra-lib none -> 1.0" in changes
    assert f"torch_threads {before['torch_threads']} -> {before['torch_threads'] + 1}" in changes
    assert f"python {before['python']} -> 3.0.0" in changes
    assert f"machine {before['machine']} -> pdp11" in changes
    assert f"cuda_device {before['cuda_device']} -> No Such GPU" in changes
    assert f"cpu_kernels {before['cpu_kernels']} -> MMX" in changes
    assert len(changes) == 7
    # A run recorded before the kernels were: no change claimed for them.
    older = {key: value for key, value in before.items() if key != "cpu_kernels"}
    assert environment_changes(older, before) == []


@pytest.mark.parametrize(
    ("precision", "accelerator", "has_amx", "warned"),
    [
        ("bf16-mixed", "cpu", False, True),
        ("bf16-mixed", "cpu", True, False),
        ("bf16-mixed", "cpu", None, False),  # unknown: no claim
        ("32-true", "cpu", False, False),
        ("bf16-mixed", "gpu", False, False),
    ],
)
def test_bf16_on_a_cpu_without_amx_is_warned_of(
    precision, accelerator, has_amx, warned, monkeypatch, caplog
):
    monkeypatch.setattr(pipeline, "cpu_multiplies_bf16", lambda: has_amx)
    cfg = OmegaConf.create({"trainer": {"precision": precision, "accelerator": accelerator}})
    with caplog.at_level(logging.WARNING, logger="semclust.pipeline"):
        pipeline._warn_of_emulated_bf16(cfg)
    messages = [record.getMessage() for record in caplog.records]
    assert bool(messages) == warned, messages
    if warned:
        assert "trainer.precision=bf16-mixed on a CPU without AMX" in messages[0]


def test_the_amx_probe_agrees_with_the_kernel_s_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = {
        word
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("flags")
        for word in line.split(":", 1)[1].split()
    }
    probed = environment.cpu_multiplies_bf16()
    if probed is None:
        pytest.skip("this torch does not say which CPU features it found")
    assert probed == ("amx_bf16" in flags)

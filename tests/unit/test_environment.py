"""The software record of each stage, and what it tells about a continued one."""

import platform

import numpy as np
import torch

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


def test_changes_list_every_difference_and_nothing_else():
    before = software_environment()
    assert environment_changes(before, before) == []
    assert environment_changes(None, before) == []  # an older run recorded nothing
    after = {
        **before,
        "torch_threads": before["torch_threads"] + 1,
        "python": "3.0.0",
        "machine": "pdp11",
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
    assert len(changes) == 6

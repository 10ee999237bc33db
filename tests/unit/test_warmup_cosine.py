"""pretext=clip_captions's schedule: a linear warm-up per step, then cosine decay."""

import math

import pytest
import torch

from semclust.stages.pretext.clip_captions import warmup_cosine


def rates(total_steps: int, **options) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps, **options)
    seen = []
    for _ in range(total_steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_the_rate_rises_over_the_warm_up_then_follows_a_cosine():
    seen = rates(100, warmup_fraction=0.1, eta_min=0.01)
    assert seen[:10] == pytest.approx([(step + 1) / 11 for step in range(10)])
    cosine = [0.01 + 0.99 * (1 + math.cos(math.pi * step / 90)) / 2 for step in range(90)]
    assert seen[10:] == pytest.approx(cosine)


def test_without_warm_up_it_is_the_cosine_alone():
    assert rates(10, warmup_fraction=0.0) == pytest.approx(
        [(1 + math.cos(math.pi * step / 10)) / 2 for step in range(10)]
    )
    assert rates(1, warmup_fraction=0.5) == [1.0]  # one step: no room for a warm-up

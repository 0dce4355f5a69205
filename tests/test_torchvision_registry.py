"""Every torchvision classification builder, end to end, as timm's tests run over its models:
trace, a 50%FLOPs genome and a random one, shrink, forward + backward, cost == thop.

A fast subset runs by default; the whole registry runs under the `registry` marker
(`pytest -m registry`: about 16 minutes of CPU, so not in the default run or CI), at the
smallest input size each builder accepts (bench/torchvision_coverage.py is the same check,
writing the coverage table of docs/models.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from torchvision_coverage import check  # noqa: E402

ALL = torchvision.models.list_models(module=torchvision.models)
FAST = ["mobilenet_v3_small", "shufflenet_v2_x0_5", "regnet_x_400mf", "squeezenet1_1",
        "vit_b_32"]


def _assert_works(name: str) -> None:
    torch.manual_seed(0)
    row = check(name)
    assert row["ok"], f"{name} fails at {row['stage']}: {row.get('error')}"
    assert row["share"] > 0
    if name.startswith("vit"):  # whole heads are cut to meet the budget
        assert 0 < row["heads_50"] < row["heads"]


@pytest.mark.parametrize("name", FAST)
def test_builder_end_to_end(name):
    _assert_works(name)


@pytest.mark.registry
@pytest.mark.parametrize("name", [n for n in ALL if n not in FAST])
def test_every_builder_end_to_end(name):
    _assert_works(name)


def test_the_fast_subset_is_in_the_registry():
    assert set(FAST) <= set(ALL) and len(ALL) >= 80

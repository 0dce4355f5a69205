"""CIFAR-10 from the shared JPEG copy: sparsity training on the `cifar` preset, short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.genome import Genome
from archsearch.pipeline import load_base
from archsearch.presets import get_preset, sparsity_for
from archsearch.pruners import SlimmingPruner, top_channels
from archsearch.pruners._evidence import SEPARATION_MIN, channel_separation, separation
from tests.conftest import SHARED_CIFAR, needs_shared_cifar

STEPS, BATCH = 200, 128  # a few hundred steps of the preset's batch


@pytest.mark.slow
@needs_shared_cifar
def test_slimming_separation_on_a_short_cifar10_run(tmp_path: Path, capsys) -> None:
    """200 steps of slimming on resnet20 at the cifar preset: the run reports the separation
    of the scores it trained, recomputed here from its checkpoint, and says why when the
    scores did not separate; λ is the auto rule's for this schedule."""
    out = tmp_path / "run"
    images = STEPS * BATCH
    code = main(["discover", "--method", "slimming", "--space", "resnet20",
                 "--dataset", "cifar10", "--data-root", str(SHARED_CIFAR), "--preset", "cifar",
                 "--epochs", "1", "--subset", str(images), "--budget", "12.5%FLOPs",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    genome = Genome.load(out / "genome.json")
    bound = bind("resnet20", "cifar10")
    assert genome.cost["macs"] == pytest.approx(0.125 * bound.base_cost.macs, rel=0.01)
    preset = get_preset("cifar")
    lam = sparsity_for(SlimmingPruner.sparsity_rule, "resnet_cifar", images, 1, BATCH,
                       lr=preset.lr, shape=preset.lr_schedule)
    assert genome.provenance["sparsity"] == lam
    # the reported statistic is the one of the trained scales split at the genome's cut: the
    # scores' own split (the threshold in the provenance) when the survivors were scaled to
    # the budget, else the channels the genome keeps against those it drops
    pruner = SlimmingPruner(bound, sparsity=lam)
    scores = pruner.importance(load_base(out / "sparse.pt", pruner))
    reported = result["separation"]
    if reported["cut"].startswith("survivors"):
        values = torch.cat([v.flatten().float() for v in scores.values()])
        cut = genome.provenance["threshold"]
        evidence = separation(values[values > cut], values[values <= cut])
    else:
        evidence = channel_separation(scores, top_channels(scores, genome, bound))
    assert reported["statistic"] == pytest.approx(evidence["statistic"], abs=1e-6)
    assert reported["separated"] == (evidence["statistic"] >= SEPARATION_MIN)
    assert f"separation {reported['statistic']:.2f}" in printed
    if not reported["separated"]:  # says why, in one line
        assert "did not separate" in printed and any(
            advice in printed for advice in ("lower --sparsity", "raise --sparsity",
                                             "train longer"))
    assert (out / "scales.png").stat().st_size > 0

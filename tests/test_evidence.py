"""Issue 10: sparsity sized to the schedule, evidence before a genome, no collapse from noise,
presets. Planted scores exercise the statistic; tiny real runs exercise discover."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.discover import DiscoverConfig, RethinkConfig, plan, resolve_sparsity
from archsearch.genome import Genome
from archsearch.presets import (
    AUTO_TRAVEL,
    PAPER_LR_SUM,
    Schedule,
    SparsityRule,
    get_preset,
    lr_sum,
    sparsity_for,
    travel,
)
from archsearch.pruners import SlimmingPruner, SSSPruner
from archsearch.pruners._evidence import (
    SEPARATION_MIN,
    natural_cut,
    separation,
    upper_natural_cut,
    warning_line,
)
from archsearch.pruners._slimming import MIN_KEEP
from archsearch.train import TrainConfig

from .test_discover import needs_fmnist

SLIMMING, SSS = SlimmingPruner.sparsity_rule, SSSPruner.sparsity_rule


def _plant(pruner: SlimmingPruner, model: torch.nn.Module, fill) -> None:
    """Set every scored BatchNorm's |gamma| by `fill(group, bn_index, size)`."""
    with torch.no_grad():
        for group, mods in pruner._norms(model).items():
            for i, bn in enumerate(mods):
                bn.weight.copy_(fill(group, i, bn.weight.numel()))


def test_statistic_tells_separated_from_noise_and_from_the_zero_pile() -> None:
    gen = torch.Generator().manual_seed(0)
    alive = 0.5 + 0.5 * torch.rand(200, generator=gen)
    dead = 1e-3 * torch.rand(200, generator=gen)
    assert separation(alive, dead)["statistic"] > 0.5
    assert separation(alive, dead)["separated"]
    noise = 1 + 0.1 * torch.randn(400, generator=gen)
    cut = noise.sort().values
    assert not separation(cut[200:], cut[:200])["separated"]  # one mass cut in two
    pile = torch.cat([alive[:40], dead])  # the budget keeps part of the zero pile
    order = pile.sort().values
    assert not separation(order[120:], order[:120])["separated"]
    assert separation([], [1.0])["separated"] and separation([1.0], [])["statistic"] is None


def test_planted_noise_is_not_separated_and_planted_structure_is() -> None:
    pruner = SlimmingPruner(bind("vgg11", "synthetic"))
    model = pruner.bound.base_model()
    gen = torch.Generator().manual_seed(1)
    _plant(pruner, model, lambda g, i, n: 1 + 0.05 * torch.randn(n, generator=gen))
    noisy = pruner.genome(model, "50%FLOPs").provenance["separation"]
    assert noisy["separated"] is False and noisy["statistic"] < SEPARATION_MIN

    def bimodal(g: str, i: int, n: int) -> torch.Tensor:
        out = 1e-4 * torch.rand(n, generator=gen)
        out[: n // 2] = 0.5 + 0.5 * torch.rand(n // 2, generator=gen)
        return out

    _plant(pruner, model, bimodal)
    clean = pruner.genome(model, "30%FLOPs").provenance["separation"]
    assert clean["separated"] is True and clean["statistic"] > 0.4


def test_the_warning_tells_a_cut_through_live_channels_from_one_in_the_pile() -> None:
    """Half the scales at ~0 and a budget that drops ~80% of the channels (vgg11-half's
    shape on CIFAR-10): the cut runs through live channels, so the line says raise
    --sparsity, with both shares; a cut inside a larger pile says lower it; no pile at all
    says train longer."""
    pruner = SlimmingPruner(bind("vgg11", "synthetic"))
    model = pruner.bound.base_model()
    gen = torch.Generator().manual_seed(5)

    def half_dead(g: str, i: int, n: int) -> torch.Tensor:
        out = 0.3 + 0.7 * torch.rand(n, generator=gen)  # one live mass, no valley inside
        out[torch.randperm(n, generator=gen)[: n // 2]] = 1e-7
        return out

    _plant(pruner, model, half_dead)
    ev = pruner.genome(model, "5%FLOPs").provenance["separation"]
    dropped = ev["dropped"] / (ev["kept"] + ev["dropped"])
    assert not ev["separated"] and dropped > ev["near_zero_share"] + 0.05
    assert ev["near_zero_share"] == pytest.approx(0.5, abs=0.01)
    line = warning_line(ev, "slimming")
    assert "raise --sparsity" in line and "lower" not in line
    assert f"drops {dropped:.0%}" in line and "only 50%" in line
    # the same shares the other way round: the budget keeps part of a larger pile
    pile = torch.cat([1e-7 * torch.rand(800, generator=gen), torch.rand(200, generator=gen)])
    order = pile.sort().values
    inside = {**separation(order[300:], order[:300]), "near_zero_share": 0.8}
    assert not inside["separated"]
    assert "lower --sparsity" in warning_line(inside, "slimming")
    _plant(pruner, model, lambda g, i, n: 1 + 0.05 * torch.randn(n, generator=gen))
    noisy = pruner.genome(model, "50%FLOPs").provenance["separation"]
    assert noisy["near_zero_share"] == 0 and "train longer" in warning_line(noisy, "slimming")


def _split(scores: dict[str, torch.Tensor], threshold: float) -> dict:
    values = torch.cat([s.flatten() for s in scores.values()])
    return separation(values[values > threshold], values[values <= threshold])


def test_a_dying_population_between_the_pile_and_the_survivors_is_cut_above() -> None:
    """Dead (most), dying (still on their way down), alive: two-class Otsu merges the dying
    with the alive and does not separate; the cut above the dying does (vgg16's shape)."""
    pruner = SlimmingPruner(bind("vgg11", "synthetic"))
    model = pruner.bound.base_model()
    gen = torch.Generator().manual_seed(3)

    def three(g: str, i: int, n: int) -> torch.Tensor:  # log10: a pile, a ramp, a mode
        where, u, z = (torch.rand(n, generator=gen), torch.rand(n, generator=gen),
                       torch.randn(n, generator=gen))
        dead, dying, alive = -5.3 + 0.5 * z, -4.8 + 2.3 * u, -0.9 + 0.25 * z
        return 10 ** torch.where(where < 0.68, dead, torch.where(where < 0.93, dying, alive))

    _plant(pruner, model, three)
    scores = pruner.importance(model)
    assert not _split(scores, natural_cut(scores))["separated"]  # two classes fail here
    values = torch.cat([s.flatten() for s in scores.values()])
    upper = upper_natural_cut(scores)  # between the dying (<= 10^-2.5) and the alive
    assert int((values > upper).sum()) == int((values > 10 ** -2.2).sum()) > 0
    genome = pruner.genome(model, "25%FLOPs")
    ev = genome.provenance["separation"]
    assert ev["separated"] is True and ev["cut"] == "survivors scaled to the budget"
    assert abs(genome.cost["macs_ratio"] - 0.25) <= 0.0025


def test_a_tail_above_one_mass_of_scores_is_no_separation() -> None:
    """No zero pile (a run without pull): a few high scores above one narrow mass pass the
    statistic at the three-class cut, but that cut is only tried above a pile of zeros."""
    pruner = SlimmingPruner(bind("vgg11", "synthetic"))
    model = pruner.bound.base_model()
    gen = torch.Generator().manual_seed(4)

    def tail(g: str, i: int, n: int) -> torch.Tensor:  # log10: one peak, a thin upper tail
        where, u, z = (torch.rand(n, generator=gen), torch.rand(n, generator=gen),
                       torch.randn(n, generator=gen))
        return 10 ** torch.where(where < 0.96, -0.05 + 0.025 * z, 0.17 * u ** 2)

    _plant(pruner, model, tail)
    scores = pruner.importance(model)
    assert _split(scores, upper_natural_cut(scores))["separated"]  # the trap
    ev = pruner.genome(model, "25%FLOPs").provenance["separation"]
    assert ev["separated"] is False and ev["cut"] == "global threshold at the budget"


def test_no_group_falls_below_the_floor_by_a_drift_but_zeros_may() -> None:
    """A group scored systematically lower (but alive) keeps min_keep; a dead group may go."""
    bound = bind("resnet20", "synthetic")
    pruner = SlimmingPruner(bound)
    model = bound.base_model()
    gen = torch.Generator().manual_seed(2)
    drift, dead = "layer3.stream", "layer2.stream"

    def fill(group: str, i: int, n: int) -> torch.Tensor:
        base = 0.8 + 0.2 * torch.rand(n, generator=gen)
        if group == drift:
            return 0.3 * base  # alive, but every score below everyone else's
        if group == dead:
            return 1e-5 * torch.rand(n, generator=gen)
        return base

    _plant(pruner, model, lambda g, i, n: fill(g, i, n) if g != dead else 0.9 * torch.ones(n))
    genome = pruner.genome(model, "25%FLOPs")
    size = bound.graph.groups[drift].size
    assert genome.widths[drift] >= math.ceil(MIN_KEEP * size)
    unfloored = SlimmingPruner(bound, min_keep=0.0).genome(model, "25%FLOPs")
    assert unfloored.widths[drift] < genome.widths[drift]  # the floor did the work
    assert abs(genome.cost["macs_ratio"] - 0.25) <= 0.0025
    _plant(pruner, model, fill)  # now one group's scores are zeros: it may go below
    genome = pruner.genome(model, "25%FLOPs")
    assert genome.widths[dead] < math.ceil(MIN_KEEP * bound.graph.groups[dead].size)


def test_sss_records_separation_of_its_block_factors() -> None:
    pruner = SSSPruner(bind("resnet20", "synthetic"))
    model = pruner.prepare(pruner.bound.base_model())
    with torch.no_grad():
        for k, block in enumerate(pruner.bound.graph.blocks):
            gate = model.get_submodule(f"sss_gates.{block.replace('.', '_')}")
            gate.sparse.fill_(0.0 if k % 3 == 0 else 0.8 + 0.01 * k)
    evidence = pruner.genome(model, "60%FLOPs").provenance["separation"]
    assert evidence["dropped"] > 0 and evidence["separated"] is True


def test_auto_sparsity_gives_every_schedule_the_same_travel() -> None:
    # travel = Σ lr · λ / (1 - momentum): the same on a short and on the paper's schedule
    for images, epochs, batch in [(8000, 5, 64), (4000, 3, 64), (50_000, 160, 64),
                                  (59_400, 4, 128)]:
        lam = sparsity_for(SLIMMING, "vgg", images, epochs, batch)
        assert travel(lam, images, epochs, batch) == pytest.approx(AUTO_TRAVEL, rel=1e-2)
        assert lam == sparsity_for(SLIMMING, "resnet_cifar", images, epochs, batch)
    # the paper's λ has the paper's travel on its own schedule (0.66 ResNet, 6.6 VGG)
    assert travel(1e-5, 50_000, 160, 64) == pytest.approx(0.659, rel=1e-2)
    assert travel(1e-4, 50_000, 160, 64) == pytest.approx(PAPER_LR_SUM * 1e-3, rel=1e-6)
    # the lr sum follows the trainer's step schedule and its dropped last batch
    cfg = TrainConfig(schedule="base", epochs=8)
    assert lr_sum(1000, 8, 64) == pytest.approx(15 * sum(cfg.lr_at(e, 8) for e in range(8)))
    # sss: the anchor, unless too few steps for a gate to travel to zero
    assert sparsity_for(SSS, "resnet_cifar", 50_000, 160, 64) == SSS.paper("x")
    assert sparsity_for(SSS, "resnet_cifar", 640, 1, 64) > SSS.paper("x")


class _HalfTravelRule(SparsityRule):
    """A toy rule: half slimming's auto λ, a fixed paper value, and one option it reads."""

    options = ("gain",)

    def paper(self, family: str) -> float:
        return 0.125

    def auto(self, family: str, schedule: Schedule, gain: float = 1.0, **options: float) -> float:
        return gain * SLIMMING.auto(family, schedule) / 2


def test_a_method_brings_its_own_sparsity_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    # a new method with a sparsity term gets its own rule, not slimming's by default
    monkeypatch.setattr(SlimmingPruner, "sparsity_rule", _HalfTravelRule())
    cfg = DiscoverConfig(method="slimming", budget="50%FLOPs", space="vgg11", epochs=2,
                         subset=640, pruner_options={"gain": 3.0})
    expected = 3.0 * sparsity_for(SLIMMING, "vgg", 640, 2, 64) / 2
    assert resolve_sparsity(cfg, "vgg", 640) == pytest.approx(expected)
    paper = DiscoverConfig(method="slimming", budget="50%FLOPs", space="vgg11", sparsity="paper")
    assert resolve_sparsity(paper, "vgg", 640) == 0.125
    # sss's rule reads its own options (the gates' step), slimming's reads none
    sss = DiscoverConfig(method="sss", budget="50%FLOPs", space="resnet20", epochs=1,
                         subset=640, pruner_options={"gate_lr": 0.2})
    assert resolve_sparsity(sss, "resnet_cifar", 640) == sparsity_for(
        SSS, "resnet_cifar", 640, 1, 64, gate_lr=0.2) < sparsity_for(SSS, "resnet_cifar",
                                                                    640, 1, 64)


def test_paper_preset_resolves_to_the_papers_recipe(tmp_path: Path) -> None:
    cfg = RethinkConfig.from_preset("paper", method="slimming", budget="50%FLOPs",
                                    space="vgg16", out=str(tmp_path / "r"))
    assert (cfg.epochs, cfg.subset, cfg.batch_size, cfg.finetune_epochs) == (160, None, 64, 40)
    assert cfg.sparsity == "paper"
    assert resolve_sparsity(cfg, "vgg", 50_000) == 1e-4
    assert resolve_sparsity(cfg, "resnet_cifar", 50_000) == 1e-5
    train = TrainConfig(schedule="base", epochs=cfg.epochs, batch_size=cfg.batch_size)
    assert train.lr_at(0, 160) == 0.1 and train.lr_at(80, 160) == pytest.approx(0.01)
    assert train.lr_at(120, 160) == pytest.approx(0.001)
    quick = DiscoverConfig.from_preset("quick", method="slimming", budget="50%FLOPs",
                                       epochs=5)
    assert (quick.epochs, quick.subset, quick.sparsity) == (5, get_preset("quick").subset,
                                                            "auto")


@needs_fmnist
@pytest.mark.parametrize("space", ["resnet20", "vgg11"])
def test_default_discover_sizes_lambda_to_its_schedule(space: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["discover", "--method", "slimming", "--budget", "50%FLOPs", "--space", space,
                 "--epochs", "1", "--subset", "640", "--out", str(out), "--json"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    genome = Genome.load(out / "genome.json")
    p = plan(DiscoverConfig(method="slimming", budget="50%FLOPs", space=space, epochs=1,
                            subset=640, out=str(tmp_path / "other")))
    family = p.bound.space.family
    expected = sparsity_for(SLIMMING, family, 640, 1, 64)
    assert genome.provenance["sparsity"] == expected == p.pruner.sparsity
    assert genome.provenance["sparsity_rule"] == "auto" and genome.provenance["preset"] == "quick"
    assert set(result["separation"]) >= {"statistic", "separated"}
    bound = bind(space, "fashion-mnist")
    for name in bound.graph.prunable:
        assert genome.widths[name] >= min(math.ceil(MIN_KEEP * bound.graph.groups[name].size),
                                          bound.graph.groups[name].size) or \
            result["separated"], name


def test_require_separation_refuses_an_unseparated_run(tmp_path: Path, capsys) -> None:
    """No pull at all (sparsity 0, one short epoch): scores stay together → one line, exit 2,
    no genome; result.json keeps the evidence."""
    out = tmp_path / "run"
    args = ["discover", "--method", "slimming", "--budget", "50%FLOPs", "--space", "vgg11",
            "--dataset", "synthetic", "--epochs", "1", "--subset", "128", "--sparsity", "0",
            "--out", str(out)]
    assert main([*args, "--require-separation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not separate" in err[0] and "--epochs" in err[0]
    assert not (out / "genome.json").exists()
    result = json.loads((out / "result.json").read_text())
    assert result["separated"] is False and result["warnings"]
    out2 = tmp_path / "run2"
    assert main([*args[:-1], str(out2)]) == 0  # without the flag: a warning line, a genome
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("warning:")]
    assert (out2 / "genome.json").exists()

"""The cost-aware cut of ranked pruners (`--cut cost`): channels go in order of score per
unit of the budget's cost, on real spaces with planted scores (no training)."""

from __future__ import annotations

import pytest
import torch

from archsearch.budget import TOLERANCE, parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.errors import ArchsearchError
from archsearch.latency import LatencySettings
from archsearch.pruners import SlimmingPruner, TaylorPruner
from archsearch.pruners._report import scale_cuts, scale_distribution
from archsearch.pruners._slimming import cost_shape, group_floor, ranked_genome

from .test_evidence import _plant
from .test_latency import _install, bilinear_table, fake_settings, tiny


def _scores(bound, fill) -> dict[str, torch.Tensor]:
    return {g: fill(g, bound.graph.groups[g].size) for g in bound.graph.prunable}


@pytest.mark.parametrize("cut,how", [("cost", "at the budget"),
                                     ("base-cost", "at the base widths")])
@pytest.mark.parametrize("space", ["vgg11-half", "resnet20"])
@pytest.mark.parametrize("budget", ["12.5%FLOPs", "6.25%FLOPs", "25%params"])
def test_cost_cut_meets_the_budget_and_keeps_the_floor(space, budget, cut, how):
    bound = bind(space, "cifar10")
    gen = torch.Generator().manual_seed(1)
    scores = _scores(bound, lambda g, n: torch.rand(n, generator=gen))
    pruner = SlimmingPruner(bound, cut=cut)
    genome = ranked_genome(pruner, scores, parse_budget(budget), 0.1, pruner.cut)
    metric = "macs" if budget.endswith("FLOPs") else "params"
    assert genome.cost[f"{metric}_ratio"] == pytest.approx(
        parse_budget(budget).value, rel=TOLERANCE)
    for g in bound.graph.prunable:
        assert genome.widths[g] >= 0.1 * bound.graph.groups[g].size - 1e-9
    prov = genome.provenance
    assert prov["cut"] == cut and prov["threshold"] is None
    assert prov["separation"]["cut"] == f"score per unit of cost {how}"
    assert prov["score_per_cost"] > 0


def test_base_cost_prices_once_and_so_does_not_alternate():
    """Priced at the moment's widths, equal scores alternate narrow and wide layers along
    vgg11-half's chain (a narrow layer makes both neighbours cheap); priced once at the base
    widths they do not, and every channel cut has a score per base price no higher than
    any channel kept (the cut's own threshold between them)."""
    bound = bind("vgg11-half", "cifar10")
    gen = torch.Generator().manual_seed(4)
    scores = _scores(bound, lambda g, n: 1 + 0.01 * torch.rand(n, generator=gen))
    budget, groups, base = parse_budget("12.5%FLOPs"), bound.graph.prunable, \
        bound.graph.base_widths()

    def kept(at_base):
        shape, last = cost_shape(scores, budget, bound, 0.1, at_base=at_base)
        return [round(shape[g] * base[g]) for g in groups], last

    moment, _ = kept(False)
    ratios = [w / base[g] for w, g in zip(moment, groups, strict=True)]
    assert any(a > b for a, b in zip(ratios, ratios[1:], strict=False))  # alternates
    widths, last = kept(True)
    floor = group_floor(scores, bound, 0.1)
    above = [w > floor[g] for w, g in zip(widths, groups, strict=True)]
    assert above == sorted(above) and any(above)  # floors first, then widening: no zigzag
    ratios = [w / base[g] for w, g, up in zip(widths, groups, above, strict=True) if up]
    assert ratios == sorted(ratios)
    pricer, active = budget.pricer(bound), bound.costs.active({})
    full = pricer.vector(bound.costs.widths_vector(base), active)
    for w, g in zip(widths, groups, strict=True):
        price = full - pricer.vector(bound.costs.widths_vector(dict(base, **{g: base[g] - 1})),
                                     active)
        ranked = scores[g].sort(descending=True).values / price
        if w < base[g]:
            assert ranked[w:].max() <= last * (1 + 1e-6)
        if w > floor[g]:  # a group at its floor keeps channels below the threshold
            assert ranked[:w].min() >= last * (1 - 1e-6)


def test_equal_scores_keep_more_channels_than_one_threshold():
    """With every score (nearly) equal, the score per cost ranks channels by cost: at the same
    MACs the cost cut keeps more channels than the global threshold, and the cheap late
    groups (2x2 maps) keep a larger share than the costly first ones (32x32)."""
    bound = bind("vgg11-half", "cifar10")
    gen = torch.Generator().manual_seed(4)
    scores = _scores(bound, lambda g, n: 1 + 0.01 * torch.rand(n, generator=gen))
    pruner = SlimmingPruner(bound)
    budget = parse_budget("12.5%FLOPs")
    cost = ranked_genome(pruner, scores, budget, 0.1, "cost")
    flat = ranked_genome(pruner, scores, budget, 0.1, "global")
    assert cost.cost["macs_ratio"] == pytest.approx(flat.cost["macs_ratio"], rel=2 * TOLERANCE)
    assert sum(cost.widths.values()) > 1.2 * sum(flat.widths.values())
    groups, base = bound.graph.prunable, bound.graph.base_widths()
    first, last = groups[0], groups[-1]
    assert cost.widths[last] / base[last] > 2 * cost.widths[first] / base[first]


def test_a_zero_goes_before_a_live_channel_however_cheap():
    """Dead channels (score 0) go first, even in the cheapest group: a zero per any cost is
    below every live score per cost."""
    bound = bind("vgg11-half", "cifar10")
    groups = bound.graph.prunable
    last = groups[-1]

    def fill(g, n):
        s = 0.5 + 0.5 * torch.rand(n, generator=torch.Generator().manual_seed(len(g)))
        if g == last:
            s[: n // 2] = 0.0  # half the cheapest group is dead
        return s

    scores = _scores(bound, fill)
    shape, _ = cost_shape(scores, parse_budget("80%FLOPs"), bound, 0.1)
    base = bound.graph.base_widths()
    assert round(shape[last] * base[last]) <= base[last] // 2  # every zero went
    live_cut = [g for g in groups[:-1] if round(shape[g] * base[g]) < base[g]]
    assert live_cut  # ... before live channels elsewhere, costlier per channel, had to go


def test_cost_cut_on_a_latency_budget(tmp_path):
    """The cut prices channels in the budget's own metric: a latency table's."""
    bound = tiny()
    settings = fake_settings(tmp_path)
    _install(bound, settings, bilinear_table())
    scores = _scores(bound, lambda g, n: torch.linspace(0.1, 1.0, n))
    budget = parse_budget("45%latency", settings)
    genome = ranked_genome(SlimmingPruner(bound, cut="cost"), scores, budget, 0.0, "cost")
    got = bound.cost_at(genome.widths, None, "latency", settings)
    assert got == pytest.approx(0.45 * bound.base_in("latency", settings), rel=TOLERANCE)
    assert isinstance(settings, LatencySettings)


def test_taylor_takes_the_cut_and_a_bad_cut_is_refused():
    bound = bind("resnet20", "synthetic")
    assert TaylorPruner(bound, cut="cost").options()["cut"] == "cost"
    with pytest.raises(ArchsearchError, match="cut is one of global, cost"):
        SlimmingPruner(bound, cut="knapsack")


def test_scales_plot_marks_no_score_threshold_for_the_cost_cut(tmp_path):
    bound = bind("resnet20", "synthetic")
    pruner = SlimmingPruner(bound, cut="cost")
    model = bound.base_model()
    gen = torch.Generator().manual_seed(3)
    _plant(pruner, model, lambda g, i, n: torch.rand(n, generator=gen))
    genome = pruner.genome(model, "40%FLOPs")
    cuts = scale_cuts(scale_distribution(pruner, model), genome.provenance["threshold"])
    assert "cut at the budget" not in cuts


def test_cli_refuses_an_unknown_cut(capsys):
    assert main(["discover", "--method", "slimming", "--cut", "knapsack", "--budget",
                 "50%FLOPs", "--dataset", "synthetic"]) == 2
    assert "invalid choice: 'knapsack'" in capsys.readouterr().err


@pytest.mark.parametrize("cut", ["cost", "base-cost"])
def test_discover_with_the_cost_cut(tmp_path, capsys, cut):
    """A real (one short epoch) sparsity training on synthetic data, cut by cost."""
    import json

    out = tmp_path / "d"
    assert main(["discover", "--method", "slimming", "--cut", cut, "--budget", "30%FLOPs",
                 "--space", "resnet20", "--dataset", "synthetic", "--epochs", "1", "--subset",
                 "64", "--batch-size", "32", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["provenance"]["cut"] == cut
    assert result["cost"]["macs_ratio"] == pytest.approx(0.3, rel=TOLERANCE)
    assert (out / "scales.png").is_file()


def test_stream_value_sum_values_a_stream_channel_for_every_block_writing_it():
    """resnet20's streams have one BatchNorm per block writing them. With equal planted
    scales, 'max' values a stream channel for one of them while its price counts every conv
    it touches, and the cost cut takes the streams first; 'sum' values it for all of them, and
    the streams stay wider than the blocks' inner convs. Single-BatchNorm groups score the
    same either way, and the global threshold does not read the option."""
    from archsearch.budget import parse_budget

    bound = bind("resnet20", "cifar10")
    gen = torch.Generator().manual_seed(0)
    fill = {}

    def plant(g, i, n):
        fill[g, i] = 1 + 0.01 * torch.rand(n, generator=gen)
        return fill[g, i]

    by_max = SlimmingPruner(bound, cut="cost")
    model = bound.base_model()
    _plant(by_max, model, plant)
    by_sum = SlimmingPruner(bound, cut="cost", stream_value="sum")
    summed, top = by_sum.cost_importance(model), by_sum.importance(model)
    members = {g: len(m) for g, m in by_sum._norms(model).items()}
    assert members["layer1.stream"] == 4 and members["layer1.0.conv1"] == 1
    for g, n in members.items():
        planted = torch.stack([fill[g, i] for i in range(n)])
        assert torch.allclose(summed[g], planted.sum(dim=0))
        assert torch.allclose(top[g], planted.amax(dim=0))
    assert torch.allclose(by_max.cost_importance(model)["layer1.stream"], top["layer1.stream"])
    base = bound.graph.base_widths()
    for budget in ("25%FLOPs", "12.5%FLOPs"):
        share = {how: {g: w / base[g] for g, w in p.genome(model, budget).widths.items()}
                 for how, p in (("max", by_max), ("sum", by_sum))}
        for stage in ("layer1", "layer2"):
            inner = [g for g in bound.graph.prunable if g.startswith(stage) and "conv1" in g]
            stream = f"{stage}.stream"
            assert share["max"][stream] < min(share["max"][g] for g in inner)
            assert share["sum"][stream] > max(share["sum"][g] for g in inner)
        assert by_sum.genome(model, budget).cost["macs_ratio"] == pytest.approx(
            parse_budget(budget).value, rel=TOLERANCE)
    flat = [SlimmingPruner(bound, stream_value=how).genome(model, "12.5%FLOPs").widths
            for how in ("max", "sum")]
    assert flat[0] == flat[1]
    with pytest.raises(ArchsearchError, match="stream_value is one of max, sum"):
        SlimmingPruner(bound, stream_value="mean")

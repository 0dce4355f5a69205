"""Planted structure for taylor, pfa, thinet and sfp: a base whose unimportant channels are
known by construction (no effect on the loss, duplicated responses, dead channels, nothing
to contribute to the next layer) must lose exactly those channels."""

from __future__ import annotations

import torch
from torch import nn

from archsearch.budget import parse_budget
from archsearch.build import BoundSpace, bind
from archsearch.pruners import (
    L1NormPruner,
    PFAPruner,
    Pruner,
    SFPPruner,
    TaylorPruner,
    ThiNetPruner,
)
from archsearch.pruners._slimming import ranked_genome
from archsearch.pruners._taylor import TaylorStats
from archsearch.pruners._thinet import _patches, greedy_removal_rank

SPACE, DATASET = "vgg11", "fashion-mnist"
MUTED = {"features.0": [3, 17, 40], "features.8": list(range(0, 256, 4)),
         "features.18": list(range(100, 300)), "features.25": [0, 511]}


def consumers(bound: BoundSpace, group: str) -> list[tuple[str, torch.Tensor]]:
    """(conv/linear module, input feature indices) of every layer that reads `group`."""
    out = []
    for call in bound.graph.calls:
        if call.kind not in ("conv", "linear") or call.depthwise:
            continue
        offset = 0
        for seg in call.inputs:
            if seg.group == group:
                idx = offset + torch.arange(seg.size * seg.repeat)
                out.append((call.module, idx))
            offset += seg.size * seg.repeat
    return out


def mute(bound: BoundSpace, model: nn.Module, planted: dict[str, list[int]]) -> None:
    """Planted channels: outgoing weights zero (no effect on anything downstream), their own
    filters 10x larger than the rest (a filter-norm criterion would keep them)."""
    with torch.no_grad():
        for group, channels in planted.items():
            for producer in bound.graph.groups[group].producers:
                model.get_submodule(producer).weight[channels] *= 10
            for module, idx in consumers(bound, group):
                model.get_submodule(module).weight[:, idx[channels]] = 0


def steps(pruner: Pruner, model: nn.Module, n: int = 3, batch: int = 16) -> None:
    """Real training steps on random images: forward, backward, regularize (no update)."""
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(n):
        x = torch.randn(batch, *pruner.bound.info.input_shape, generator=gen)
        y = torch.randint(0, pruner.bound.info.num_classes, (batch,), generator=gen)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.regularize(model)


def expected_widths(bound: BoundSpace, planted: dict[str, list[int]]) -> dict[str, int]:
    return {g: s - len(planted.get(g, [])) for g, s in bound.graph.base_widths().items()}


def keeps_none_of_the_muted(pruner: Pruner, n: int) -> nn.Module:
    """Mute the planted channels of a fresh base, run `n` steps of the pruner's training,
    and check the channels it keeps at the expected widths avoid every muted one; the
    trained model."""
    torch.manual_seed(0)
    model = pruner.prepare(pruner.bound.base_model())
    mute(pruner.bound, model, MUTED)
    steps(pruner, model, n=n)
    expected = expected_widths(pruner.bound, MUTED)
    keep = pruner.keep(model, pruner.bound.genome(expected))
    for group, planted in MUTED.items():
        assert not set(planted) & set(keep[group].tolist())
        assert len(keep[group]) == expected[group]
    return model


def test_taylor_removes_channels_without_effect_on_the_loss() -> None:
    torch.manual_seed(0)
    pruner = TaylorPruner(bind(SPACE, DATASET), decay=1.0)
    model = pruner.prepare(pruner.bound.base_model())
    mute(pruner.bound, model, MUTED)
    steps(pruner, model)
    scores = pruner.importance(model)
    for group, planted in MUTED.items():
        assert torch.all(scores[group][planted] == 0)
        live = torch.ones(len(scores[group]), dtype=torch.bool)
        live[planted] = False
        assert torch.all(scores[group][live] > 0)
        assert torch.isclose(scores[group].pow(2).mean(), torch.tensor(1.0))  # unit RMS
    expected = expected_widths(pruner.bound, MUTED)
    genome = pruner.genome(model, f"{pruner.bound.costs.cost(expected).macs}FLOPs")
    assert genome.widths == expected
    keep = pruner.keep(model, genome)
    l1_keep = L1NormPruner(pruner.bound).keep(pruner.restore(model), genome)
    for group, planted in MUTED.items():
        assert not set(planted) & set(keep[group].tolist())
        assert set(planted) <= set(l1_keep[group].tolist())  # filter norms would keep them


def test_taylor_criterion_is_mean_abs_activation_times_gradient() -> None:
    torch.manual_seed(0)
    pruner = TaylorPruner(bind(SPACE, DATASET), decay=1.0)
    model = pruner.prepare(pruner.bound.base_model()).train()
    seen = {}
    bn = model.get_submodule("features.5")
    bn.register_forward_hook(lambda m, a, o: seen.update(out=o))
    x = torch.randn(8, 1, 28, 28)
    nn.functional.cross_entropy(model(x), torch.arange(8)).backward()
    pruner.regularize(model)
    # features.5 is followed by an in-place ReLU: `out` is the activation the next layer sees
    a, g = seen["out"].detach(), seen["out"].grad
    manual = (a * g).mean(dim=(2, 3)).abs().mean(dim=0)
    stats = pruner.stats(model)
    assert torch.allclose(stats.mean("features.5"), manual, rtol=1e-4, atol=1e-12)
    assert stats.pending == []
    model.eval()
    with torch.no_grad():
        model(x)
    assert stats.pending == [] and stats.steps("features.5") == 1  # evaluation not counted


def test_taylor_running_mean_and_checkpoint_round_trip() -> None:
    torch.manual_seed(0)
    pruner = TaylorPruner(bind("resnet20", "synthetic"), decay=0.5)
    model = pruner.prepare(pruner.bound.base_model())
    steps(pruner, model, n=2, batch=4)
    stats = pruner.stats(model)
    assert stats.steps("layer2.0.bn1") == 1.5  # 0.5 * 1 + 1
    state = model.state_dict()
    reloaded = pruner.prepare(pruner.bound.base_model())
    reloaded.load_state_dict(state)
    for group, score in pruner.importance(model).items():
        assert torch.equal(pruner.importance(reloaded)[group], score)
    base = pruner.restore(model)
    assert set(base.state_dict()) == set(pruner.bound.base_model().state_dict())


def _planted_taylor_by_width() -> tuple[TaylorPruner, nn.Module]:
    """resnet20 (groups 16, 32 and 64 wide) whose recorded Taylor criteria are, in every
    group, the same distribution (log-normal quantiles, shuffled) times a random per-group
    scale: no group deserves a larger share of its channels than another."""
    pruner = TaylorPruner(bind("resnet20", "synthetic"), decay=1.0)
    model = pruner.prepare(pruner.bound.base_model())
    stats = model.get_submodule(pruner.stats_name)
    assert isinstance(stats, TaylorStats)
    gen = torch.Generator().manual_seed(0)
    normal = torch.distributions.Normal(0.0, 1.0)
    for group, mods in pruner._points.items():
        n = pruner.bound.graph.groups[group].size
        quantiles = normal.icdf((torch.arange(n) + 0.5) / n)
        scale = 10 ** (4 * torch.rand((), generator=gen) - 2)
        value = scale * torch.exp(quantiles[torch.randperm(n, generator=gen)])
        for module in mods:  # every BatchNorm of a stream the same: the mean is `value`
            stats.accumulate(module, value)
    return pruner, model


def _kept_share(pruner: TaylorPruner, widths: dict[str, int]) -> dict[int, float]:
    """The share of its channels a genome keeps, over all groups of each base width."""
    out: dict[int, list[float]] = {}
    for group in pruner._points:
        size = pruner.bound.graph.groups[group].size
        out.setdefault(size, []).append(widths[group] / size)
    return {size: sum(v) / len(v) for size, v in out.items()}


def test_taylor_global_ranking_is_not_biased_by_group_width() -> None:
    pruner, model = _planted_taylor_by_width()
    budget = parse_budget("25%FLOPs")
    genome = pruner.genome(model, budget)
    assert abs(genome.cost["macs_ratio"] - 0.25) <= 0.0025
    share = _kept_share(pruner, genome.widths)
    assert sorted(share) == [16, 32, 64]
    assert max(share.values()) - min(share.values()) <= 0.1, share
    for group in pruner._points:  # and no single group far from the rest
        size = pruner.bound.graph.groups[group].size
        assert abs(genome.widths[group] / size - share[size]) <= 0.1
    # the paper's L2 normalisation of the same criteria: a channel's score falls as
    # 1 / sqrt(width), and the one threshold cuts the wider groups harder
    scores = pruner.importance(model)
    l2 = {g: s / s.norm() for g, s in scores.items()}
    old = _kept_share(pruner, ranked_genome(pruner, l2, budget, pruner.min_keep).widths)
    assert old[16] > old[32] > old[64] and old[16] - old[64] > 0.2, old


def _duplicated_vgg() -> tuple[PFAPruner, nn.Module, list[int]]:
    """features.0: channels 32..63 copy 0..31; features.4: planted dead channels."""
    torch.manual_seed(0)
    pruner = PFAPruner(bind(SPACE, DATASET), decay=1.0)
    model = pruner.prepare(pruner.bound.base_model())
    dead = [1, 5, 77, 100]
    with torch.no_grad():
        conv = model.get_submodule("features.0")
        conv.weight[32:] = conv.weight[:32]
        bn = model.get_submodule("features.5")
        bn.weight[dead] = 0.0
        bn.bias[dead] = -1.0  # relu(-1) = 0 everywhere
    steps(pruner, model)
    return pruner, model, dead


def test_pfa_energy_sees_duplicated_responses() -> None:
    pruner, model, _ = _duplicated_vgg()
    spectra = pruner.spectra(model)
    eig = spectra["features.0"]
    assert float(eig[32:].sum()) <= 1e-6 * float(eig.sum())  # rank 32 of 64
    widths = pruner.widths_at(spectra, 0.9999)
    assert widths["features.0"] <= 32
    assert widths["features.8"] > 32  # random filters: no such collapse
    # more energy never means fewer channels
    low = pruner.widths_at(spectra, 0.5)
    assert all(low[g] <= widths[g] for g in widths)


def test_pfa_keeps_one_of_each_duplicate_and_drops_dead_channels() -> None:
    pruner, model, dead = _duplicated_vgg()
    bound = pruner.bound
    widths = dict(bound.graph.base_widths(), **{"features.0": 32, "features.4": 128 - 4})
    genome = bound.genome(widths)
    keep = pruner.keep(model, genome)
    kept0 = set(keep["features.0"].tolist())
    assert all(len({j, j + 32} & kept0) == 1 for j in range(32))
    assert not set(dead) & set(keep["features.4"].tolist())
    genome = pruner.genome(model, "50%FLOPs")
    assert abs(genome.cost["macs_ratio"] - 0.5) <= 0.005
    assert 0 < genome.provenance["energy"] <= 1


def test_thinet_removes_channels_the_next_layer_does_not_read() -> None:
    pruner = ThiNetPruner(bind(SPACE, DATASET))
    model = keeps_none_of_the_muted(pruner, n=4)
    # the widths are predefined: the genome does not look at the weights
    assert pruner.genome(model, "50%FLOPs").widths == pruner.bound.uniform(
        parse_budget("50%FLOPs")).widths


def test_thinet_greedy_keeps_what_reconstructs_the_output() -> None:
    gen = torch.Generator().manual_seed(0)
    contrib = torch.randn(200, 5, generator=gen)
    contrib[:, 0] *= 0.01  # almost nothing to contribute
    contrib[:, 2] *= 0.5
    contrib[:, 3] = -contrib[:, 2]  # 2 and 3 cancel: removing both changes nothing
    rank = greedy_removal_rank(contrib)
    assert rank[0] == 0 and {int(rank[2]), int(rank[3])} == {1, 2}
    assert sorted(rank.tolist()) == [0, 1, 2, 3, 4]  # a total order: any width can be kept


def test_thinet_patches_reproduce_the_conv_output() -> None:
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, stride=2, padding=1, bias=False)
    x = torch.randn(3, 6, 9, 9, generator=gen)
    out = conv(x)
    b, pi, pj = torch.tensor([0, 2, 1]), torch.tensor([0, 4, 2]), torch.tensor([4, 0, 3])
    patch = _patches(conv, x, b, pi, pj)
    w = conv.weight.detach().reshape(4, 6, 9)
    for n in range(3):
        for o in range(4):
            got = (w[o] * patch[n]).sum()
            assert torch.isclose(got, out[b[n], o, pi[n], pj[n]], atol=1e-5)


def test_thinet_samples_travel_in_the_checkpoint() -> None:
    torch.manual_seed(0)
    pruner = ThiNetPruner(bind("resnet20", "synthetic"), samples=8, per_step=4)
    model = pruner.prepare(pruner.bound.base_model())
    steps(pruner, model, n=3, batch=4)
    stats = pruner.stats(model)
    assert stats.filled("layer2.0.conv1") == 8  # a ring of the last 8 samples
    reloaded = pruner.prepare(pruner.bound.base_model())
    reloaded.load_state_dict(model.state_dict())
    for group, score in pruner.importance(model).items():
        assert torch.equal(pruner.importance(reloaded)[group], score)


def _planted_sfp() -> tuple[SFPPruner, nn.Module, dict[str, list[int]]]:
    """Filters planted large (the survivors) in every group, as many as its width."""
    torch.manual_seed(0)
    pruner = SFPPruner(bind(SPACE, DATASET))
    pruner.set_budget(parse_budget("50%FLOPs"))
    model = pruner.prepare(pruner.bound.base_model())
    gen = torch.Generator().manual_seed(1)
    strong: dict[str, list[int]] = {}
    with torch.no_grad():
        for group, width in pruner.widths.items():
            (producer,) = pruner.bound.graph.groups[group].producers
            size = pruner.bound.graph.groups[group].size
            strong[group] = sorted(torch.randperm(size, generator=gen)[:width].tolist())
            model.get_submodule(producer).weight[strong[group]] *= 100
    return pruner, model, strong


def test_sfp_zeroes_the_weakest_filters_and_lets_them_recover() -> None:
    pruner, model, strong = _planted_sfp()
    steps(pruner, model, n=1)  # the first step zeroes (SFP masks at the start)
    bound = pruner.bound
    for group, keep in strong.items():
        (producer,) = bound.graph.groups[group].producers
        weight = model.get_submodule(producer).weight.detach()
        zero = (weight.flatten(1).abs().sum(dim=1) == 0).nonzero().flatten().tolist()
        assert set(zero) == set(range(bound.graph.groups[group].size)) - set(keep)
    # soft: gradients are not masked, so an update brings the zeroed filters back
    nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.arange(4)).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    weight = model.get_submodule("features.4").weight.detach()
    dropped = sorted(set(range(128)) - set(strong["features.4"]))
    assert weight[dropped].abs().sum() > 0
    zeroed = pruner.zero_filters(model)  # the end of the epoch zeroes them again
    assert zeroed["features.4"] == dropped
    assert weight[dropped].abs().sum() == 0
    keep = pruner.keep(model, pruner.genome(model, "50%FLOPs"))
    assert all(keep[g].tolist() == strong[g] for g in strong)

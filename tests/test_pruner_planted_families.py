"""Planted structure for taylor, pfa, thinet and sfp: a base whose unimportant channels are
known by construction (no effect on the loss, duplicated responses, dead channels, nothing
to contribute to the next layer) must lose exactly those channels."""

from __future__ import annotations

import torch
from torch import nn

from archsearch.build import BoundSpace, bind
from archsearch.pruners import L1NormPruner, PFAPruner, Pruner, TaylorPruner

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
        assert torch.isclose(scores[group].norm(), torch.tensor(1.0))
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

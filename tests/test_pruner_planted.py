"""Planted structure: channels/blocks made clearly unimportant are the ones removed first."""

from __future__ import annotations

import io

import torch
from torch import nn

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.pruners import SlimmingPruner, SSSPruner

PLANTED = {"features.0": [3, 17, 40], "features.8": list(range(0, 256, 4)),
           "features.18": list(range(100, 300)), "features.25": [0, 511]}


def _planted_vgg() -> tuple[SlimmingPruner, nn.Module]:
    pruner = SlimmingPruner(bind("vgg11", "fashion-mnist"))
    model = pruner.bound.base_model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in pruner.bound.graph.prunable:
            (bn_name,) = pruner.bound.graph.groups[name].norms
            bn = model.get_submodule(bn_name)
            bn.weight.copy_(0.5 + 0.5 * torch.rand(bn.num_features, generator=gen))
            for i in PLANTED.get(name, []):
                bn.weight[i] = 1e-3 * (1 + i % 7) * (-1) ** i  # tiny, either sign
    return pruner, model


def test_slimming_removes_planted_channels_exactly() -> None:
    pruner, model = _planted_vgg()
    bound = pruner.bound
    expected = {g: s - len(PLANTED.get(g, [])) for g, s in bound.graph.base_widths().items()}
    macs = bound.costs.cost(expected).macs
    genome = pruner.genome(model, f"{macs}FLOPs")
    assert genome.widths == expected
    keep = pruner.keep(model, genome)
    for group, planted in PLANTED.items():
        assert not set(planted) & set(keep[group].tolist())
        assert len(keep[group]) == bound.graph.groups[group].size - len(planted)


def test_slimming_smaller_budget_removes_planted_first() -> None:
    pruner, model = _planted_vgg()
    genome = pruner.genome(model, "50%FLOPs")
    keep = pruner.keep(model, genome)
    for group, planted in PLANTED.items():
        assert not set(planted) & set(keep[group].tolist())
    assert abs(genome.cost["macs_ratio"] - 0.5) <= 0.005


def test_slimming_half_flops_within_one_percent_never_zero() -> None:
    for space, dataset in (("resnet20", "fashion-mnist"), ("vgg11", "fashion-mnist")):
        pruner = SlimmingPruner(bind(space, dataset))
        model = pruner.bound.base_model()
        with torch.no_grad():  # a strongly skewed, sparse-ish distribution of scales
            for mod in model.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.weight.copy_(torch.rand(mod.num_features) ** 4)
                    mod.weight[: mod.num_features // 2] = 0.0  # half of every layer dead
        genome = pruner.genome(model, "50%FLOPs")
        half = pruner.bound.base_cost.macs / 2
        assert abs(genome.cost["macs"] - half) <= 0.01 * half
        assert min(genome.widths.values()) >= min(pruner.bound.space.min_width, 1)
        assert all(w >= 1 for w in genome.widths.values())


def test_slimming_stream_importance_is_the_max_over_its_bns() -> None:
    """A stream channel one block needs (|gamma| 4 there, 0 elsewhere) is as important as
    that block says; only a channel every writer leaves at ~0 is dropped."""
    pruner = SlimmingPruner(bind("resnet20", "synthetic"))
    model = pruner.bound.base_model()
    norms = pruner.bound.graph.groups["layer2.stream"].norms
    assert len(norms) == 4
    with torch.no_grad():
        for i, name in enumerate(norms):
            model.get_submodule(name).weight.fill_(1.0)
            model.get_submodule(name).weight[5] = 0.0 if i else 4.0  # one writer needs it
            model.get_submodule(name).weight[9] = 1e-3  # planted on every member
    scores = pruner.importance(model)["layer2.stream"]
    assert torch.isclose(scores[5], torch.tensor(4.0))
    assert int(scores.argmin()) == 9
    genome = pruner.genome(model, "90%FLOPs")
    assert 9 not in pruner.keep(model, genome)["layer2.stream"].tolist()


def test_slimming_regularizer_adds_l1_subgradient() -> None:
    pruner = SlimmingPruner(bind("vgg11", "fashion-mnist"), sparsity=1e-2)
    model = pruner.bound.base_model()
    bn = model.get_submodule("features.5")
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1, 1, bn.num_features))
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    before = bn.weight.grad.clone()
    pruner.regularize(model)
    assert torch.allclose(bn.weight.grad - before, 1e-2 * torch.sign(bn.weight.detach()),
                          atol=1e-5)
    assert model.get_submodule("features.4").weight.grad is not None


def _gated(planted: dict[str, float]) -> tuple[SSSPruner, nn.Module]:
    pruner = SSSPruner(bind("resnet20", "synthetic"))
    model = pruner.prepare(pruner.bound.base_model())
    with torch.no_grad():
        for i, block in enumerate(pruner.bound.graph.blocks):
            gate = model.get_submodule(f"sss_gates.{block.replace('.', '_')}")
            value = planted.get(block, 0.6 + 0.05 * i)
            gate.sparse.fill_(value)
            gate.scale.fill_(value)
    return pruner, model


def test_sss_removes_planted_blocks_exactly() -> None:
    planted = {"layer1.1": 0.0, "layer3.2": 0.0, "layer2.2": 0.01}
    pruner, model = _gated(planted)
    bound = pruner.bound
    zero = {b: b not in ("layer1.1", "layer3.2") for b in bound.graph.blocks}
    macs = bound.costs.cost({}, zero).macs
    genome = pruner.genome(model, f"{macs}FLOPs")
    assert genome.removed_blocks() == {"layer1.1", "layer3.2"}
    assert genome.widths == bound.graph.base_widths()
    # a smaller budget takes the next-smallest factor, then narrows widths
    genome = pruner.genome(model, "40%FLOPs")
    assert {"layer1.1", "layer3.2", "layer2.2"} <= genome.removed_blocks()
    target = parse_budget("40%FLOPs").target(bound.base_cost)
    assert abs(genome.cost["macs"] - target) <= 0.01 * target


def test_sss_apg_reaches_exact_zero_and_checkpoint_keeps_gates() -> None:
    pruner = SSSPruner(bind("resnet20", "synthetic"), sparsity=0.5, gate_lr=0.1)
    torch.manual_seed(0)
    model = pruner.prepare(pruner.bound.base_model()).train()
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if "sss_gates" not in n],
                          lr=0.01)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.regularize(model)
        opt.step()
    gates = pruner.gates(model)
    assert sum(v == 0.0 for v in gates.values()) >= 1
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert pruner.gates(state) == gates
    reloaded = pruner.prepare(pruner.bound.base_model())
    reloaded.load_state_dict(state)
    assert pruner.gates(reloaded) == gates


def test_sss_restore_folds_gates_into_branches() -> None:
    pruner, model = _gated({"layer1.1": 0.0, "layer2.1": 0.3})
    model.eval()
    restored = pruner.restore(model).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), restored(x), atol=1e-5)
    assert set(restored.state_dict()) == set(pruner.bound.base_model().state_dict())

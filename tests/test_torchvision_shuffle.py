"""ShuffleNetV2's channel shuffle and chunk in the channel graph: the shuffled stream and the
branches are prunable, the coupling the shuffle imposes is kept (parts cut by a chunk or
interleaved by a shuffle keep equal widths and the same channels), and the shrunk model
computes exactly what the kept channels computed in the base."""

from __future__ import annotations

import random

import torch
import torchvision

from archsearch._shrink import channel_indices, shrink
from archsearch.cost import CostModel, thop_cost
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph

SIZE = (3, 32, 32)


def _net() -> tuple[torch.nn.Module, ChannelGraph]:
    torch.manual_seed(0)
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    return model, ChannelGraph(model, torch.zeros(1, *SIZE))


def _random_widths(graph: ChannelGraph, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    return {g: graph.groups[g].unit * rng.randint(1, graph.groups[g].size // graph.groups[g].unit)
            for g in graph.prunable}


def _features(segments, idx) -> set[int]:
    out, offset = set(), 0
    for seg in segments:
        for c in idx[seg.group].tolist():
            out.update(range(offset + c * seg.repeat, offset + (c + 1) * seg.repeat))
        offset += seg.size * seg.repeat
    return out


def test_the_shuffled_streams_and_the_branches_are_prunable():
    _, graph = _net()
    shuffled = [c for c in graph.calls if c.kind == "conv" and any(
        s.repeat > 1 for s in c.inputs)]
    assert shuffled  # convs reading a shuffled stream see channels several features wide
    prunable = {s.group for c in shuffled for s in c.inputs} & set(graph.prunable)
    assert prunable
    branch = graph.groups["stage2.1.branch2.0"]
    assert branch.prunable and branch.size == 24
    produced = [(s, graph.groups[s.group].prunable) for c in graph.calls
                if c.kind == "conv" and not c.depthwise for s in c.outputs]
    share = sum(s.size * s.repeat for s, p in produced if p) / sum(
        s.size * s.repeat for s, _ in produced)
    assert share > 0.8


def test_a_random_genome_builds_trains_and_costs_what_thop_counts():
    model, graph = _net()
    costs = CostModel(graph)
    assert costs.cost({}) == thop_cost(model, SIZE)
    for seed in (0, 1):
        widths = _random_widths(graph, seed)
        small = shrink(model, Genome("t", widths, {}), graph=graph)
        assert costs.cost(widths) == thop_cost(small, SIZE)
        small.train()
        small(torch.randn(2, *SIZE)).sum().backward()


def test_kept_channels_compute_what_they_computed_in_the_base():
    """Silence the dropped channels at every BatchNorm (weight and bias 0: every conv here
    feeds one, so a dropped channel is 0 wherever it is read); the shrunk model, keeping random
    channels of every group, then gives the base's output exactly."""
    model, graph = _net()
    rng = random.Random(3)
    widths = _random_widths(graph, 3)
    keep = {g: rng.sample(range(graph.groups[g].size), widths[g]) for g in graph.prunable}
    idx = channel_indices(graph, Genome("t", widths, {}), keep)
    with torch.no_grad():
        for call in graph.calls:
            if call.kind == "bn":
                bn = model.get_submodule(call.module)
                kept = _features(call.inputs, idx)
                drop = [f for f in range(bn.num_features) if f not in kept]
                bn.weight[drop] = 0
                bn.bias[drop] = 0
    cut = shrink(model, Genome("t", widths, {}), keep, graph=graph).eval()
    assert thop_cost(cut, SIZE).macs < thop_cost(model, SIZE).macs
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        assert torch.allclose(cut(x), model(x), atol=1e-5)

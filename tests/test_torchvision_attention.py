"""Attention heads as a prunable unit: nn.MultiheadAttention loses whole heads, with q, k, v
and the output projection sliced as one, and its cost (which thop 0.1.1 has no rule for) is
counted the same way by the analytic counter and by `thop_cost`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch.cost import CostModel, thop_cost
from archsearch.errors import GraphError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph, SlicedMultiheadAttention
from archsearch.shrink import shrink

SIZE = (3, 16, 16)


def _vit() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)  # 16x16 images, 8x8 patches, 2 layers, 4 heads of 4, MLP 24
    return VisionTransformer(16, 8, 2, 4, 16, 24, num_classes=5).eval()


def _heads(graph: ChannelGraph) -> list[str]:
    return [g for g in graph.prunable if any(
        c.kind == "attn_in" and c.outputs[0].group == g for c in graph.calls)]


def test_vit_heads_are_groups_pruned_in_whole_heads():
    graph = ChannelGraph(_vit(), torch.zeros(1, *SIZE))
    heads = _heads(graph)
    assert len(heads) == 2
    assert all(graph.groups[g].size == 16 and graph.groups[g].unit == 4 for g in heads)


def test_dropping_heads_shrinks_the_model_and_its_cost_exactly():
    model = _vit()
    graph = ChannelGraph(model, torch.zeros(1, *SIZE))
    first, second = _heads(graph)
    widths = {first: 8, second: 4, "encoder.layers.encoder_layer_0.mlp.0": 10}
    small = shrink(model, Genome("t", widths, {}), graph=graph)
    attn = [small.get_submodule(f"encoder.layers.encoder_layer_{i}.self_attention")
            for i in (0, 1)]
    assert [type(a) for a in attn] == [SlicedMultiheadAttention] * 2
    assert [a.num_heads for a in attn] == [2, 1]
    assert attn[1].in_proj_weight.shape == (3 * 4, 16)
    costs = CostModel(graph)
    got = costs.cost(widths)
    assert got == thop_cost(small, SIZE)
    assert costs.cost({}) == thop_cost(model, SIZE)
    assert got.macs < costs.cost({}).macs and got.params < costs.cost({}).params
    small.train()
    out = small(torch.randn(2, *SIZE))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert attn[0].in_proj_weight.grad is not None


def test_kept_heads_compute_what_they_computed_before():
    """Silence heads 1 and 3 of layer 0 and head 2 of layer 1 (zero output-projection
    columns): cutting exactly those heads leaves the output unchanged, so q, k, v and the
    projection were sliced at the same heads."""
    model = _vit()
    graph = ChannelGraph(model, torch.zeros(1, *SIZE))
    first, second = _heads(graph)
    silenced = {first: [1, 3], second: [2]}
    keep = {}
    with torch.no_grad():
        for i, (group, drop) in enumerate(silenced.items()):
            proj = model.get_submodule(f"encoder.layers.encoder_layer_{i}.self_attention")
            for h in drop:
                proj.out_proj.weight[:, 4 * h:4 * h + 4] = 0
            keep[group] = [c for c in range(16) if c // 4 not in drop]
    genome = Genome("t", {g: len(k) for g, k in keep.items()}, {})
    cut = shrink(model, genome, keep, graph=graph).eval()
    x = torch.randn(3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(cut(x), model(x), atol=1e-5)
    assert cut.get_submodule("encoder.layers.encoder_layer_0.self_attention").num_heads == 2


class _SeqFirst(nn.Module):
    """Sequence-first attention whose weights are asked for (the explicit-softmax path)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 12)
        self.attn = nn.MultiheadAttention(12, 3)
        self.head = nn.Linear(12, 2)

    def forward(self, x):
        h = self.embed(x)
        out, weights = self.attn(h, h, h)
        return self.head(out + h).mean(0) + weights.sum()


def test_sequence_first_attention_with_weights_is_sliced_exactly():
    torch.manual_seed(0)
    model = _SeqFirst().eval()
    x = torch.randn(5, 1, 6)
    graph = ChannelGraph(model, x)
    (heads,) = _heads(graph)
    assert graph.groups[heads].unit == 4
    keep = {heads: list(range(12)), "embed": list(range(12))}
    same = shrink(model, Genome("t", {}, {}), keep, graph=graph).eval()
    with torch.no_grad():
        assert torch.allclose(same(x), model(x), atol=1e-5)
    small = shrink(model, Genome("t", {heads: 4, "embed": 12}, {}), graph=graph)
    assert small.get_submodule("attn").num_heads == 1
    small(torch.randn(5, 2, 6)).sum().backward()


class _Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)
        self.register_buffer("mask", torch.ones(5, 5, dtype=torch.bool).triu(1))

    def forward(self, x):
        h = self.embed(x)
        return self.head(self.attn(h, h, h, attn_mask=self.mask)[0]).mean(1)


def test_attention_the_graph_does_not_model_is_refused_not_undercounted():
    graph = ChannelGraph(_Masked(), torch.zeros(1, 5, 4))
    assert not any(c.kind.startswith("attn") for c in graph.calls)
    with pytest.raises(GraphError, match=r"cannot count the cost of attn"):
        CostModel(graph)


def test_the_vit_residual_stream_is_prunable_through_its_layer_norms():
    """The stream runs from the patch embedding (a reshape writing the width as a constant,
    then a permute) past the class token and the position embedding, through every
    LayerNorm, attention and MLP, to the class-token read by the head."""
    model = _vit()
    graph = ChannelGraph(model, torch.zeros(1, *SIZE))
    (stream,) = [g for g in graph.prunable if "conv_proj" in graph.groups[g].producers]
    assert graph.groups[stream].size == 16
    normed = {s.group for c in graph.calls if c.kind == "ln" for s in c.inputs}
    assert normed == {stream}
    heads = _heads(graph)
    widths = {stream: 10, heads[0]: 8}
    small = shrink(model, Genome("t", widths, {}), graph=graph)
    assert small.class_token.shape == (1, 1, 10)
    assert small.encoder.pos_embedding.shape[-1] == 10
    assert small.get_submodule("heads.head").in_features == 10
    attn = small.get_submodule("encoder.layers.encoder_layer_0.self_attention")
    assert attn.in_proj_weight.shape == (3 * 8, 10) and attn.out_proj.weight.shape == (10, 8)
    assert CostModel(graph).cost(widths) == thop_cost(small, SIZE)
    small.train()
    small(torch.randn(2, *SIZE)).sum().backward()


def test_a_shrunk_vit_traces_and_shrinks_again():
    model = _vit()
    graph = ChannelGraph(model, torch.zeros(1, *SIZE))
    first, second = _heads(graph)
    small = shrink(model, Genome("t", {first: 8, second: 12}, {}), graph=graph).eval()
    again = ChannelGraph(small, torch.zeros(1, *SIZE))
    assert sorted(again.groups[g].size for g in _heads(again)) == [8, 12]
    costs = CostModel(again)
    assert costs.cost({}) == thop_cost(small, SIZE)
    (head,) = [g for g in _heads(again) if again.groups[g].size == 12]
    smaller = shrink(small, Genome("t", {head: 4}, {}), graph=again)
    assert costs.cost({head: 4}) == thop_cost(smaller, SIZE)
    smaller.train()
    smaller(torch.randn(2, *SIZE)).sum().backward()

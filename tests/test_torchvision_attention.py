"""Attention heads as a prunable unit: nn.MultiheadAttention loses whole heads, with q, k, v
and the output projection sliced as one, and its cost (which thop 0.1.1 has no rule for) is
counted the same way by the analytic counter and by `thop_cost`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch import shrink
from archsearch.cost import Cost, CostModel, thop_cost
from archsearch.errors import GraphError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph, SlicedMultiheadAttention, SlicedWindowAttention

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


# -- torchvision's window attention: Swin (V1, V2) and MaxViT --------------------------------

class _Alone(nn.Module):
    """One attention module as a model, so both counters see just it."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, x):
        return self.attn(x)


def _swin_attention(v2: bool) -> tuple[nn.Module, int]:
    """16 channels in 2 heads, 4x4 windows shifted by 2, on a 6x7 map (padded to 8x8: 4
    windows of 16 tokens); and the hand count of its MACs."""
    from torchvision.models.swin_transformer import (
        ShiftedWindowAttention,
        ShiftedWindowAttentionV2,
    )

    torch.manual_seed(0)
    attn = (ShiftedWindowAttentionV2 if v2 else ShiftedWindowAttention)(16, [4, 4], [2, 2], 2)
    tokens, window, c = 8 * 8, 4 * 4, 16
    macs = tokens * c * 3 * c + 2 * tokens * window * c + tokens * c * c
    if v2:  # the bias MLP on the 7x7 relative offsets: Linear(2, 512), Linear(512, heads)
        macs += 49 * 2 * 512 + 49 * 512 * 2
    return attn, macs


def _maxvit_attention() -> tuple[nn.Module, int]:
    """24 channels in 3 heads of 8, 3 windows of 16 tokens; and the hand count."""
    from torchvision.models.maxvit import RelativePositionalMultiHeadAttention

    torch.manual_seed(0)
    tokens, window, c = 3 * 16, 16, 24
    macs = tokens * c * 3 * c + 2 * tokens * window * c + tokens * c * c
    return RelativePositionalMultiHeadAttention(c, 8, window), macs


@pytest.mark.parametrize("kind", ["swin", "swin_v2", "maxvit"])
def test_window_attention_costs_its_matmuls_by_hand_count(kind):
    """q/k/v, q·kᵀ, attn·v and the output projection per window (and V2's bias MLP) are
    counted, equal by both counters, to a hand count and to torch's own FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    attn, macs = _maxvit_attention() if kind == "maxvit" else _swin_attention(kind == "swin_v2")
    model = _Alone(attn).eval()
    shape = (3, 16, 24) if kind == "maxvit" else (6, 7, 16)
    params = sum(p.numel() for p in model.parameters())
    graph = ChannelGraph(model, torch.zeros(1, *shape))
    assert CostModel(graph).cost({}) == thop_cost(model, shape) == Cost(macs, params)
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        model(torch.zeros(1, *shape))
    assert flops.get_total_flops() == 2 * macs


def _swin() -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)  # 16, then 32 channels; 4x4 windows; 2, then 4 heads
    return SwinTransformer([4, 4], 16, [2, 1], [2, 4], [4, 4], num_classes=5).eval()


def test_a_small_swin_counts_attention_in_both_counters_and_in_removed_blocks():
    """At 32x32 the first stage is 8x8 (4 windows), the second 4x4 (1 window); a removed
    block takes its attention's cost with it."""
    model = _swin()
    graph = ChannelGraph(model, torch.zeros(1, *(3, 32, 32)))
    costs = CostModel(graph)
    base = costs.cost({})
    assert base == thop_cost(model, (3, 32, 32))
    stage1 = 64 * 16 * 48 + 2 * 64 * 16 * 16 + 64 * 16 * 16
    stage2 = 16 * 32 * 96 + 2 * 16 * 16 * 32 + 16 * 32 * 32
    assert len([c for c in graph.calls if c.kind.startswith("attn")]) == 6
    block = next(b for b in graph.blocks.values() if "features.1.1.attn" in b.modules)
    cut = shrink(model, Genome("t", {}, {block.name: False}), graph=graph)
    small = costs.cost({}, {block.name: False})
    assert small == thop_cost(cut, (3, 32, 32))
    assert base.macs - small.macs == stage1 + 4 * 64 * 16  # with its LayerNorm (4 a feature)
    import thop  # thop alone counts none of it (qkv and proj are called as F.linear)

    alone, _ = thop.profile(_swin(), inputs=(torch.zeros(1, 3, 32, 32),), verbose=False)
    assert base.macs - alone == 2 * stage1 + stage2
    cut.train()
    cut(torch.randn(2, 3, 32, 32)).sum().backward()


def _swin_v(v2: bool) -> nn.Module:
    """`_swin`, V1 or V2, with random biases, tables and logit scales (not their inits)."""
    from torchvision.models.swin_transformer import (
        PatchMergingV2,
        SwinTransformer,
        SwinTransformerBlockV2,
    )

    torch.manual_seed(0)
    kw = {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2} if v2 else {}
    model = SwinTransformer([4, 4], 16, [2, 1], [2, 4], [4, 4], num_classes=5, **kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2 or p.shape[-1] in (2, 4):  # biases, tables, logit scales
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("v2", [False, True])
def test_swin_kept_heads_compute_what_they_computed_before(v2):
    """At 28x28 (7x7 padded to 8x8: shifted windows and padding both in play), silence head
    0 of features.1.0.attn and heads 1 and 3 of features.3.0.attn (zero output-projection
    columns): cutting exactly those heads leaves the output unchanged, so q, k, v, the
    position tables (V2: the bias MLP's last layer and the logit scale) and the projection
    were sliced at the same heads. Keeping every channel gives torchvision's output."""
    model = _swin_v(v2)
    graph = ChannelGraph(model, torch.zeros(1, 3, 28, 28))
    x = torch.randn(2, 3, 28, 28)
    assert {g: graph.groups[g].unit for g in graph.prunable if g.endswith("attn")} == {
        "features.1.0.attn": 8, "features.1.1.attn": 8, "features.3.0.attn": 8}
    full = {g: list(range(graph.groups[g].size)) for g in graph.prunable}
    same = shrink(model, Genome("t", {}, {}), full, graph=graph).eval()
    assert type(same.get_submodule("features.1.0.attn")) is SlicedWindowAttention
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
    silenced = {"features.1.0.attn": [0], "features.3.0.attn": [1, 3]}
    keep = {}
    with torch.no_grad():
        for name, drop in silenced.items():
            for h in drop:
                model.get_submodule(name).proj.weight[:, 8 * h:8 * h + 8] = 0
            keep[name] = [c for c in range(graph.groups[name].size) if c // 8 not in drop]
    cut = shrink(model, Genome("t", {g: len(k) for g, k in keep.items()}, {}), keep,
                 graph=graph).eval()
    assert [cut.get_submodule(n).num_heads for n in silenced] == [1, 2]
    with torch.no_grad():
        assert torch.allclose(cut(x), model(x), atol=1e-5)


@pytest.mark.parametrize("v2", [False, True])
def test_narrowed_swin_costs_what_thop_counts_and_shrinks_again(v2):
    """Fewer heads in every attention and a narrower last-stage stream: analytic == thop,
    forward + backward work, and the shrunk model traces to the same widths and cost."""
    model = _swin_v(v2)
    graph = ChannelGraph(model, torch.zeros(1, 3, 32, 32))
    costs = CostModel(graph)
    widths = {"features.1.0.attn": 8, "features.1.1.attn": 8, "features.3.0.attn": 16,
              "features.3.0.stream": 20}
    assert set(widths) <= set(graph.prunable)
    small = shrink(model, Genome("t", widths, {}), graph=graph)
    got = costs.cost(widths)
    assert got == thop_cost(small, (3, 32, 32))
    assert got.macs < costs.cost({}).macs
    stage1 = 64 * 16 * 48 + 2 * 64 * 16 * 16 + 64 * 16 * 16  # one head of 8 of two: half
    per_head = stage1 // 2 + (49 * 512 if v2 else 0)  # V2: a row of the bias MLP's last layer
    assert costs.cost({"features.1.0.attn": 8}).macs == costs.cost({}).macs - per_head
    small.train()
    small(torch.randn(2, 3, 32, 32)).sum().backward()
    again = ChannelGraph(small.eval(), torch.zeros(1, 3, 32, 32))
    assert {g: again.groups[g].size for g in widths} == widths
    assert CostModel(again).cost({}) == got


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_t", "maxvit_t"])
def test_torchvision_window_models_cost_equals_thop_with_attention(name):
    """swin_t (32x32) and maxvit_t (224x224, the smallest its partitions allow), as
    bench/torchvision_coverage.py builds them: analytic == thop at the base and at a random
    genome, and both now hold every attention module's parameters and matmuls."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from torchvision_coverage import bound_space, random_genome

    torch.manual_seed(0)
    bound = bound_space(name)
    shape = bound.info.input_shape
    base = bound.base_model()
    assert bound.base_cost == thop_cost(base, shape)
    attn = [m for m in base.modules() if type(m).__name__ in (
        "ShiftedWindowAttention", "RelativePositionalMultiHeadAttention")]
    assert len(attn) == (12 if name == "swin_t" else 22)
    assert bound.base_cost.params == sum(p.numel() for p in base.parameters())
    genome = random_genome(bound, seed=1)
    assert genome.cost["macs"] < bound.base_cost.macs
    built = bound.build(genome)
    assert thop_cost(built, shape) == Cost(genome.cost["macs"], genome.cost["params"])


@pytest.mark.parametrize("model_of", [_vit, _swin])
def test_filter_norms_score_attention_heads_by_their_qkv_rows(model_of):
    """l1norm/l2norm score a head group by its q, k and v rows (attention modules have no
    `.weight`): a head whose rows are zeroed scores 0 and the others do not."""
    from types import SimpleNamespace

    from archsearch.pruners._base import filter_norms

    model = model_of()
    graph = ChannelGraph(model, torch.zeros(1, *(SIZE if model_of is _vit else (3, 32, 32))))
    group = _heads(graph)[0]
    producer = graph.groups[group].producers[0]
    attn = model.get_submodule(producer)
    qkv = attn.in_proj_weight if hasattr(attn, "in_proj_weight") else attn.qkv.weight
    width, d = qkv.shape[0] // 3, graph.groups[group].unit
    with torch.no_grad():
        for part in range(3):  # head 1's q, k and v rows
            qkv[part * width + d: part * width + 2 * d] = 0
    scores = filter_norms(model, SimpleNamespace(graph=graph), 1)
    assert scores.keys() == set(graph.prunable)
    head = scores[group].view(-1, d).sum(dim=1)
    assert head[1] == 0 and bool((head[[0, *range(2, len(head))]] > 0).all())

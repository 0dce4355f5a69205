"""torchvision classifiers through the channel graph: exact cost, clear refusals, input size,
auxiliary heads, and shrink on the layers transformer-era models use."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from archsearch import shrink
from archsearch.build import bind
from archsearch.cost import CostModel, thop_cost
from archsearch.errors import GraphError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph


def _space(tmp_path, name: str, body: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return str(path)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archsearch", *argv], capture_output=True,
                          text=True, timeout=600)


class _PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.act = nn.PReLU()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_a_module_thop_counts_but_the_counter_cannot_is_refused_by_name():
    graph = ChannelGraph(_PReLUNet(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(GraphError, match=r"cannot count the cost of act \(PReLU"):
        CostModel(graph)


class _Upsampling(nn.Module):
    """Adaptive average pooling to a larger grid: thop counts the true area ratio (2/7)²."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(12, 10, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.fc = nn.Linear(10 * 49, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv2(torch.relu(self.conv1(x)))), 1))


@pytest.mark.parametrize("widths", [{}, {"conv1": 5, "conv2": 3}, {"conv1": 1, "conv2": 7}])
def test_adaptive_average_pooling_costs_exactly_what_thop_counts(widths):
    model = _Upsampling()
    graph = ChannelGraph(model, torch.zeros(1, 3, 2, 2))
    genome = Genome("t", widths, {})
    got = CostModel(graph).cost(widths)
    assert got == thop_cost(shrink(model, genome, graph=graph), (3, 2, 2))


class _BiasFree(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.proj = nn.Linear(16, 12, bias=False)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(torch.relu(self.proj(self.conv(x).mean((2, 3)))))


def test_shrink_initialises_linear_layers_without_bias():
    model = _BiasFree()
    graph = ChannelGraph(model, torch.zeros(1, 3, 6, 6))
    for widths in ({}, {"conv": 5, "proj": 4}):
        small = shrink(model, Genome("t", widths, {}), graph=graph)
        assert small.get_submodule("proj").bias is None
        assert small(torch.randn(2, 3, 6, 6)).shape == (2, 3)
        assert small.get_submodule("proj").weight.shape == (widths.get("proj", 12),
                                                            widths.get("conv", 16))


def test_a_model_failing_at_its_input_size_is_one_line_exit_2(tmp_path):
    path = _space(tmp_path, "alex", '[model]\nfamily = "torchvision"\nname = "alexnet"\n'
                  '[dataset]\ndefault = "fashion-mnist"\n')
    proc = _cli("show", path, "--budget", "50%FLOPs")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "fails on input 1x28x28 at features.5" in proc.stderr
    assert "Output size is too small" in proc.stderr and "--input-size" in proc.stderr
    # the same space works at a size it accepts
    ok = _cli("show", path, "--input-size", "64", "--json")
    assert ok.returncode == 0, ok.stderr


def test_a_space_without_a_prunable_group_is_one_line_exit_2(tmp_path):
    # a conv-less vgg is refused by the space validator already: one line, exit 2
    path = _space(tmp_path, "nogroup", '[model]\nfamily = "vgg"\ncfg = ["M"]\n'
                  '[dataset]\ndefault = "synthetic"\n')
    proc = _cli("show", path, "--budget", "50%FLOPs")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    # a bound space whose graph has no prunable group: fit_to_budget says so
    from types import SimpleNamespace

    from archsearch.budget import BudgetError, fit_to_budget, parse_budget
    from archsearch.build import bind

    bound = bind("vgg11", "synthetic")
    graph = SimpleNamespace(base_widths=dict, prunable=[], groups={})
    empty = SimpleNamespace(graph=graph, space=bound.space, base_cost=bound.base_cost,
                            costs=bound.costs)
    with pytest.raises(BudgetError, match="has no prunable channel group"):
        fit_to_budget({}, parse_budget("50%FLOPs"), empty)


def test_untraceable_models_fail_in_one_line():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(GraphError) as info:
        ChannelGraph(Branchy(), torch.zeros(1, 3, 8, 8))
    assert "\n" not in str(info.value) and "cannot trace Branchy" in str(info.value)


def test_the_space_sets_the_input_size_and_inception_traces_at_it(tmp_path):
    path = _space(tmp_path, "inc", '[model]\nfamily = "torchvision"\nname = "inception_v3"\n'
                  '[dataset]\ndefault = "cifar10"\nsize = 80\n')
    bound = bind(path)
    assert bound.info.input_shape == (3, 80, 80) and bound.info.name == "cifar10"
    assert len(bound.graph.prunable) > 90
    model = bound.base_model()
    assert bound.base_cost == thop_cost(model, bound.info.input_shape)
    with pytest.raises(GraphError, match="fails on input 3x32x32"):
        _ = bind(path, input_size=32).graph


def test_vit_image_size_follows_the_input_size(tmp_path):
    path = _space(tmp_path, "vit", '[model]\nfamily = "torchvision"\nname = "vit_b_32"\n'
                  '[dataset]\ndefault = "cifar10"\nsize = 64\n')
    bound = bind(path)
    assert bound.base_model().image_size == 64
    assert bound.graph.input_shape == (3, 64, 64)


@pytest.mark.parametrize("aux", [False, True])
def test_aux_heads_are_traced_and_costed_as_inference_runs(tmp_path, aux):
    body = '[model]\nfamily = "torchvision"\nname = "googlenet"\n'
    body += f"aux_logits = {str(aux).lower()}\n" + '[dataset]\ndefault = "cifar10"\n'
    bound = bind(_space(tmp_path, f"g{aux}", body))
    base = bound.base_model()
    assert not any(n.startswith("aux") for n in bound.graph.leaves)
    assert bound.base_cost == thop_cost(base, (3, 32, 32))
    genome = bound.uniform(__import__("archsearch.budget").budget.parse_budget("50%FLOPs"))
    small = bound.build(genome)
    assert not any(n.startswith("aux") for n, _ in small.named_modules())
    x = torch.randn(2, 3, 32, 32)
    for train in (True, False):
        small.train(train)
        base.train(train)
        out, ref = small(x), base(x)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
        assert isinstance(ref, torch.Tensor) is (not (aux and train))
    # full width with every channel kept: the same function as the original, in eval mode
    keep = {g: range(bound.graph.groups[g].size) for g in bound.graph.prunable}
    same = shrink(base.eval(), bound.base_genome(), keep, graph=bound.graph).eval()
    with torch.no_grad():
        assert torch.allclose(same(x), base(x), atol=1e-5)


def test_grouped_convs_are_pruned_in_whole_groups(tmp_path):
    from archsearch.budget import parse_budget
    from archsearch.errors import ArchsearchError

    path = _space(tmp_path, "rx", '[model]\nfamily = "torchvision"\nname = "resnext50_32x4d"\n'
                  '[search]\ndivisor = 8\n[dataset]\ndefault = "cifar10"\n')
    bound = bind(path)
    conv2 = next(c for c in bound.graph.calls if c.module == "layer1.0.conv2")
    group = bound.graph.groups[conv2.inputs[0].group]
    assert group.prunable and group.unit == 4 and conv2.outputs == conv2.inputs
    genome = bound.uniform(parse_budget("40%FLOPs"))
    units = {g: bound.graph.groups[g].unit for g in bound.graph.prunable}
    assert all(w % units[g] == 0 and w % 8 == 0 for g, w in genome.widths.items())
    assert genome.widths[group.name] < group.size
    model = bound.build(genome)
    assert model.get_submodule("layer1.0.conv2").groups == genome.widths[group.name] // 4
    assert thop_cost(model, (3, 32, 32)) == bound.costs.cost(genome.widths)
    with pytest.raises(ArchsearchError, match="must be a multiple of 4"):
        bound.genome({group.name: 33})


def _tiny_transformers():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return {
        "convnext": ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)],
                             num_classes=5),
        "swin": SwinTransformer([4, 4], 8, [1, 1], [1, 2], [2, 2], num_classes=5),
        "vit": VisionTransformer(16, 8, 1, 2, 8, 16, num_classes=5),
    }


@pytest.mark.parametrize("name", ["convnext", "swin", "vit"])
def test_transformer_blocks_prune_their_mlps_exactly(name):
    import random

    model = _tiny_transformers()[name].eval()
    graph = ChannelGraph(model, torch.zeros(1, 3, 16, 16))
    mlp = [g for g in graph.prunable if any(c.kind == "linear" and c.outputs[0].group == g
                                            and len(c.outputs) == 1 for c in graph.calls)]
    assert mlp, graph.prunable
    normed = {s.group for c in graph.calls if c.kind == "ln" for s in c.inputs}
    rng = random.Random(1)
    units = {g: graph.groups[g].unit for g in graph.prunable}  # attention: whole heads
    widths = {g: units[g] * rng.randint(1, graph.groups[g].size // units[g])
              for g in graph.prunable}
    small = shrink(model, Genome("t", widths, {}), graph=graph)
    assert CostModel(graph).cost(widths) == thop_cost(small, (3, 16, 16))
    small.train()
    small(torch.randn(2, 3, 16, 16)).sum().backward()
    # channels of MLP hidden widths (no LayerNorm over them) can be cut exactly
    keep = {g: sorted(rng.sample(range(graph.groups[g].size), widths[g]))
            for g in mlp if g not in normed and units[g] == 1}
    assert keep
    modules = dict(model.named_modules())
    with torch.no_grad():
        for c in graph.calls:
            if c.kind == "linear" and c.outputs[0].group in keep:
                drop = sorted(set(range(c.outputs[0].size)) - set(keep[c.outputs[0].group]))
                modules[c.module].weight[drop] = 0
                modules[c.module].bias[drop] = 0
    genome = Genome("t", {g: len(k) for g, k in keep.items()}, {})
    cut = shrink(model, genome, keep, graph=graph).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(cut(x), model(x), atol=1e-5)

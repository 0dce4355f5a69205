"""Genome files load with clear errors; shrink is exact surgery."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torchvision
from torch import nn

from archsearch import shrink
from archsearch.build import bind
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph

from .test_cost_budget import random_genome


def test_genome_round_trip(tmp_path):
    bound = bind("resnet20", "cifar10")
    genome = random_genome(bound, seed=1)
    genome.provenance = {"method": "test", "seed": 3}
    path = genome.save(tmp_path / "g.json")
    loaded = Genome.load(path)
    assert loaded == genome
    assert json.loads(path.read_text())["format"] == "archsearch.genome"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(version=99), "unsupported genome version 99"),
    (lambda d: d.update(format="x"), "not an archsearch genome"),
    (lambda d: d["widths"].update({"nope": 3}), "unknown group 'nope'"),
    (lambda d: d["widths"].update({"layer1.stream": 0}), "must be >= 1"),
    (lambda d: d["widths"].update({"layer1.stream": 17}), r"must be in 1\.\.16"),
    (lambda d: d["widths"].update({"layer1.stream": "8"}), "must be int"),
    (lambda d: d.update(space="vgg11"), "genome is for space 'vgg11'"),
    (lambda d: d["blocks"].update({"layer9.9": False}), "unknown block"),
    (lambda d: d.update(extra=1), "unknown genome field"),
])
def test_malformed_genomes_are_rejected(tmp_path, edit, message):
    bound = bind("resnet20", "cifar10")
    doc = bound.base_genome().to_dict()
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ArchsearchError, match=message):
        bound.validate(Genome.load(path))


def test_malformed_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArchsearchError, match="malformed JSON"):
        Genome.load(bad)
    with pytest.raises(ArchsearchError, match="not found"):
        Genome.load(tmp_path / "missing.json")


def test_failed_save_leaves_the_old_file(tmp_path):
    genome = bind("resnet20", "cifar10").base_genome()
    path = genome.save(tmp_path / "g.json")
    before = path.read_text()
    genome.provenance = {"bad": object()}
    with pytest.raises(TypeError):
        genome.save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]


def _randomise(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _silence(model: nn.Module, graph: ChannelGraph, keep, removed) -> None:
    """Zero every weight that writes a pruned channel, and every parameter of removed blocks."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for call in graph.calls:
            if call.kind not in ("conv", "linear", "bn"):
                continue
            mod, offset = modules[call.module], 0
            for seg in call.outputs:
                dropped = sorted(set(range(seg.size)) - set(keep.get(seg.group, range(seg.size))))
                for c in dropped:
                    mod.weight[offset + c] = 0
                    if mod.bias is not None:
                        mod.bias[offset + c] = 0
                offset += seg.size
        for name in removed:
            for mname in graph.blocks[name].modules:
                for p in modules[mname].parameters():
                    p.zero_()


def _check_surgery(model: nn.Module, graph: ChannelGraph, seed: int, drop_blocks: float):
    _randomise(model, seed)
    rng = random.Random(seed)
    keep, widths = {}, {}
    for g in graph.prunable:
        size, unit = graph.groups[g].size, graph.groups[g].unit  # unit: whole conv groups
        blocks = sorted(rng.sample(range(size // unit), rng.randint(1, size // unit)))
        widths[g] = len(blocks) * unit
        keep[g] = [b * unit + i for b in blocks for i in range(unit)]
    blocks = {b: rng.random() > drop_blocks for b in graph.blocks}
    genome = Genome("test", widths, blocks)
    _silence(model, graph, keep, genome.removed_blocks())
    model = model.double().eval()
    small = shrink(model, genome, keep, graph=graph).eval()
    x = torch.randn(3, *graph.input_shape, dtype=torch.float64)
    with torch.no_grad():
        expected, got = model(x), small(x)
    assert torch.allclose(expected, got, atol=1e-5, rtol=0), (expected - got).abs().max()
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("space", ["vgg11", "resnet20", "preresnet164", "resnet18",
                                   "mobilenet_v2"])
def test_surgery_with_kept_indices_is_exact(space):
    bound = bind(space, "cifar10")
    _check_surgery(bound.base_model(), bound.graph, seed=len(space), drop_blocks=0.3)


def test_surgery_is_exact_on_densenet_concatenation():
    model = torchvision.models.densenet121(num_classes=10)
    graph = ChannelGraph(model, torch.zeros(1, 3, 32, 32))
    _check_surgery(model, graph, seed=5, drop_blocks=0.0)


@pytest.mark.parametrize("builder", ["resnext", "regnet_y_400mf"])
def test_surgery_is_exact_on_grouped_convs(builder):
    """Grouped convs lose whole groups: the kept groups compute exactly what they did."""
    from torchvision.models.resnet import Bottleneck, ResNet

    model = (ResNet(Bottleneck, [1, 2, 1, 1], groups=4, width_per_group=4, num_classes=10)
             if builder == "resnext" else torchvision.models.regnet_y_400mf(num_classes=10))
    graph = ChannelGraph(model, torch.zeros(1, 3, 32, 32))
    grouped = [g for g in graph.prunable if graph.groups[g].unit > 1]
    assert len(grouped) >= 4 and graph.groups[grouped[0]].unit in (4, 8)
    _check_surgery(model, graph, seed=3, drop_blocks=0.3)


def test_without_keep_the_model_is_freshly_initialised():
    bound = bind("resnet20", "cifar10")
    base = bound.base_model()
    with torch.no_grad():
        for p in base.parameters():
            p.fill_(0.123)
    genome = bound.uniform(__import__("archsearch.budget").budget.parse_budget("50%FLOPs"))
    small = bound.build(genome, base=base)
    conv = small.get_submodule("layer1.0.conv1")
    assert conv.weight.shape[0] == genome.widths["layer1.0.conv1"]
    assert not torch.all(conv.weight == 0.123)
    assert torch.all(small.get_submodule("layer1.0.bn1").weight == 1)


@pytest.mark.parametrize("space", ["resnet20", "resnet18"])
def test_removed_blocks_train_backward(space):
    """Cutting a block leaves relu(skip): it must not run in place on a tensor autograd
    saved (found by the search: two in-place ReLUs in a row broke backward)."""
    info = "fashion-mnist" if space == "resnet20" else "synthetic"
    bound = bind(space, info)
    blocks = sorted(bound.graph.blocks)
    genome = bound.genome({}, {b: i % 2 == 1 for i, b in enumerate(blocks)})
    assert genome.removed_blocks()
    model = bound.build(genome)
    x = torch.randn(4, *bound.info.input_shape)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # and the base model keeps its in-place activations
    assert any(getattr(m, "inplace", False) for m in bound.base_model().modules())

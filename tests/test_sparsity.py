"""Sparsity genomes and unstructured magnitude pruning: the JSON format loads with clear
errors, the non-zero cost is what a masked model really holds, budgets are met, planted
large weights are exactly the ones kept, and masks survive training."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archsearch.budget import BudgetError, parse_budget
from archsearch.build import bind
from archsearch.errors import ArchsearchError
from archsearch.pruners import SPARSIFIERS, MagnitudePruner, get_pruner
from archsearch.sparsity import (
    MaskedTraining,
    SparsityGenome,
    conv_layers,
    density_of,
    layout,
    make_genome,
    random_masks,
    validate,
)

SPACES = [("resnet20", "synthetic"), ("vgg11", "fashion-mnist")]


def _doc(**over):
    doc = {"format": "archsearch.sparsity", "version": 1, "space": "resnet20",
           "dataset": "synthetic", "density": {"conv1": 0.5}, "provenance": {}, "cost": {}}
    return {**doc, **over}


@pytest.mark.parametrize(("doc", "message"), [
    (_doc(format="archsearch.genome"), "not an archsearch sparsity genome"),
    (_doc(version=2), "unsupported sparsity genome version 2"),
    (_doc(extra=1), "unknown sparsity genome field(s) ['extra']"),
    (_doc(density={"conv1": 0}), "density['conv1'] must be a fraction in (0, 1]"),
    (_doc(density={"conv1": 1.5}), "must be a fraction"),
    (_doc(density={"conv1": True}), "must be a fraction"),
    (_doc(density=[0.5]), "'density' must be an object"),
    (_doc(space=""), "'space' must be a space name"),
    ([1, 2], "is a JSON object"),
])
def test_bad_sparsity_genomes_are_refused(doc, message):
    with pytest.raises(ArchsearchError) as exc:
        SparsityGenome.from_dict(doc)
    assert message in str(exc.value)


def test_round_trip_and_validation(tmp_path):
    bound = bind("resnet20", "synthetic")
    genome = make_genome(bound, {"conv1": 0.5, "fc": 0.25}, {"method": "test"})
    path = genome.save(tmp_path / "s.json")
    again = SparsityGenome.load(path)
    assert again == genome and again.cost["params"] < bound.base_cost.params
    with pytest.raises(ArchsearchError, match="unknown layer"):
        validate(bound, SparsityGenome("resnet20", {"bn1": 0.5}))
    with pytest.raises(ArchsearchError, match="not 'resnet20'"):
        validate(bound, SparsityGenome("vgg11", {}))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ArchsearchError, match="malformed JSON"):
        SparsityGenome.load(tmp_path / "bad.json")
    with pytest.raises(ArchsearchError, match="not found"):
        SparsityGenome.load(tmp_path / "missing.json")


@pytest.mark.parametrize(("space", "dataset"), SPACES)
def test_cost_counts_the_non_zero_weights_of_a_masked_model(space, dataset):
    bound = bind(space, dataset)
    gen = torch.Generator().manual_seed(0)
    density = {m: float(torch.rand(1, generator=gen)) * 0.9 + 0.05 for m in layout(bound).numel}
    genome = make_genome(bound, density)
    model = bound.base_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)  # every parameter non-zero until a mask says otherwise
    MaskedTraining(random_masks(bound, density, seed=3)).apply(model)
    assert genome.cost["params"] == sum(int((p != 0).sum()) for p in model.parameters())
    spatial: dict[str, int] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod.register_forward_hook(lambda m, a, o, name=name: spatial.update(
                {name: o[0, 0].numel()}))
    model.eval()(torch.zeros(1, *bound.info.input_shape))
    dropped = sum((m.weight.numel() - int((m.weight != 0).sum())) * spatial[n]
                  for n, m in model.named_modules() if n in spatial)
    assert genome.cost["macs"] == bound.base_cost.macs - dropped


def _trained_like(bound, seed=0):
    torch.manual_seed(seed)
    return bound.base_model()


@pytest.mark.parametrize(("space", "dataset"), SPACES)
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("budget", ["10%params", "50%params", "30%FLOPs"])
def test_magnitude_meets_the_budget_and_masks_match(space, dataset, scope, budget):
    bound = bind(space, dataset)
    pruner = get_pruner("magnitude", bound, scope=scope)
    model = _trained_like(bound)
    genome = pruner.genome(model, budget)
    parsed = parse_budget(budget)
    target = parsed.target(bound.base_cost)
    got = genome.cost["macs" if parsed.metric == "macs" else "params"]
    assert abs(got - target) <= 0.01 * target
    assert set(genome.density) == set(conv_layers(bound))  # the classifier stays dense
    masks = pruner.masks(model, genome)
    kept = layout(bound).kept(genome.density)
    assert all(int(masks[m].sum()) == kept[m] for m in kept)
    pruned = MaskedTraining(masks).apply(model)
    assert all(abs(d - kept[m] / layout(bound).numel[m]) < 1e-9
               for m, d in density_of(pruned, bound).items())
    assert torch.isfinite(pruned.eval()(torch.randn(2, *bound.info.input_shape))).all()
    if scope == "layer":
        assert len({round(genome.density[m], 2) for m in genome.density}) == 1


def test_magnitude_options_and_impossible_budgets():
    bound = bind("resnet20", "synthetic")
    assert list(SPARSIFIERS) == ["magnitude", "guided-sparsity"]
    with pytest.raises(ArchsearchError, match="scope=.sideways"):
        get_pruner("magnitude", bound, scope="sideways")
    with pytest.raises(ArchsearchError, match="layers=.fc"):
        get_pruner("magnitude", bound, layers="fc")
    with pytest.raises(BudgetError, match="never pruned"):
        MagnitudePruner(bound).set_budget(parse_budget("0.5%params"))
    everything = MagnitudePruner(bound, layers="all").genome(_trained_like(bound), "10%params")
    assert "fc" in everything.density


def test_magnitude_keeps_exactly_the_planted_large_weights():
    bound = bind("resnet20", "synthetic")
    pruner = MagnitudePruner(bound)
    model = bound.base_model()
    gen = torch.Generator().manual_seed(0)
    planted: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in conv_layers(bound):
            weight = model.get_submodule(name).weight
            weight.copy_(0.1 * torch.rand(weight.shape, generator=gen) - 0.05)  # |w| <= .05
            count = 1 + int(torch.randint(weight.numel() // 5, (1,), generator=gen))
            idx = torch.randperm(weight.numel(), generator=gen)[:count]
            sign = torch.where(torch.rand(count, generator=gen) < 0.5, -1.0, 1.0)
            weight.view(-1)[idx] = sign * (1 + torch.rand(count, generator=gen))
            planted[name] = idx.sort().values
    expected = {m: len(idx) / layout(bound).numel[m] for m, idx in planted.items()}
    params = make_genome(bound, expected).cost["params"]
    genome = pruner.genome(model, f"{params}params")
    assert genome.density == pytest.approx(expected)
    for name, mask in pruner.masks(model, genome).items():
        if name in planted:
            assert torch.equal(mask.view(-1).nonzero().flatten(), planted[name])


def test_random_masks_are_exact_seeded_and_differ_by_seed():
    bound = bind("resnet20", "synthetic")
    density = dict.fromkeys(conv_layers(bound), 0.3)
    a, b, c = (random_masks(bound, density, seed=s) for s in (1, 1, 2))
    kept = layout(bound).kept(density)
    for m in density:
        assert int(a[m].sum()) == kept[m]
        assert torch.equal(a[m], b[m])
    assert any(not torch.equal(a[m], c[m]) for m in density)


def test_masked_training_keeps_pruned_weights_at_zero():
    bound = bind("resnet20", "synthetic")
    torch.manual_seed(0)
    model = bound.base_model().train()
    masks = random_masks(bound, dict.fromkeys(conv_layers(bound), 0.2), seed=0)
    keeper = MaskedTraining(masks)
    keeper.apply(model)
    before = model.get_submodule("layer1.0.conv1").weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(4):
        opt.zero_grad()
        x = torch.randn(4, 3, 32, 32)
        nn.functional.cross_entropy(model(x), torch.arange(4)).backward()
        keeper.regularize(model)
        opt.step()
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight.detach()
        assert torch.all(weight[~mask] == 0)
    after = model.get_submodule("layer1.0.conv1").weight.detach()
    assert not torch.equal(before[masks["layer1.0.conv1"]], after[masks["layer1.0.conv1"]])


def test_sparsity_genome_json_is_plain(tmp_path):
    bound = bind("vgg11", "fashion-mnist")
    genome = MagnitudePruner(bound).genome(bound.base_model(), "20%params")
    doc = json.loads(genome.save(tmp_path / "g.json").read_text())
    assert doc["format"] == "archsearch.sparsity" and doc["version"] == 1
    assert doc["provenance"] == {"method": "magnitude", "budget": "20%params",
                                 "scope": "global", "layers": "conv"}


def _profile(space: str, dataset: str, first: float, last: float) -> SparsityGenome:
    bound = bind(space, dataset)
    names = conv_layers(bound)
    values = torch.linspace(first, last, len(names)).tolist()
    return make_genome(bound, dict(zip(names, values, strict=True)), {"method": "test"})


def test_guided_sparsity_reproduces_a_same_space_guide():
    guide = _profile("vgg11", "fashion-mnist", 0.8, 0.1)
    bound = bind("vgg11", "fashion-mnist")
    pruner = get_pruner("guided-sparsity", bound, guides=[guide])
    genome = pruner.genome(None, f"{guide.cost['params']}params")
    for layer, density in guide.density.items():
        assert genome.density[layer] == pytest.approx(density, rel=0.01)
    assert genome.provenance["method"] == "guided-sparsity"


def test_guided_sparsity_transfers_by_relative_depth_and_averages_guides(tmp_path):
    a = _profile("vgg11", "fashion-mnist", 0.9, 0.1)  # 8 conv layers
    b = _profile("resnet20", "fashion-mnist", 0.5, 0.5)  # 19 conv layers, flat
    path = a.save(tmp_path / "a.json")
    bound = bind("vgg16", "fashion-mnist")  # 13 conv layers
    genome = get_pruner("guided-sparsity", bound, guides=[path]).genome(None, "10%params")
    values = [genome.density[m] for m in conv_layers(bound)]
    assert all(x >= y for x, y in zip(values, values[1:], strict=False))  # the guide's trend
    assert values[0] / values[-1] == pytest.approx(9.0, rel=0.02)  # its shape, scaled
    assert genome.cost["params_ratio"] == pytest.approx(0.1, abs=0.001)
    both = get_pruner("guided-sparsity", bound, guides=[a, b]).genome(None, "10%params")
    mixed = [both.density[m] for m in conv_layers(bound)]
    assert mixed[0] / mixed[-1] == pytest.approx(0.7 / 0.3, rel=0.02)  # mean of the curves


def test_guided_sparsity_needs_a_guide():
    bound = bind("vgg11", "fashion-mnist")
    with pytest.raises(ArchsearchError, match="at least one sparsity genome"):
        get_pruner("guided-sparsity", bound)
    with pytest.raises(ArchsearchError, match="not found"):
        get_pruner("guided-sparsity", bound, guides=["/nonexistent/sparsity.json"])

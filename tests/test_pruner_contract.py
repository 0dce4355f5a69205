"""Every registered pruner, on a couple of tiny spaces: genomes meet the budget, keep the
right channels, and shrink into a working model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch.budget import BudgetError, parse_budget
from archsearch.build import bind
from archsearch.errors import ArchsearchError
from archsearch.pruners import PRUNERS, Pruner, get_pruner

SPACES = [("resnet20", "synthetic"), ("vgg11", "fashion-mnist")]
BUDGETS = ["50%FLOPs", "30%params", "75%FLOPs"]


def _trained_like(pruner: Pruner, seed: int = 0) -> nn.Module:
    """A prepared base with random BatchNorm scales and gates, as after sparsity training."""
    torch.manual_seed(seed)
    model = pruner.prepare(pruner.bound.base_model())
    _steps(pruner, model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(torch.rand(mod.num_features, generator=gen))
            if hasattr(mod, "sparse"):
                value = torch.rand(1, generator=gen)
                mod.sparse.copy_(value)
                mod.scale.copy_(value)
    return model


def _steps(pruner: Pruner, model: nn.Module, steps: int = 2) -> None:
    """Real training steps (forward, backward, `regularize`; no optimizer step), so pruners
    that learn from activations have recorded something."""
    model.train()
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, *pruner.bound.info.input_shape, generator=gen)
        y = torch.randint(0, pruner.bound.info.num_classes, (4,), generator=gen)
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.regularize(model)
    model.zero_grad()


def _pruner(name: str, space: str, dataset: str) -> Pruner:
    bound = bind(space, dataset)
    try:
        pruner = get_pruner(name, bound)
    except ArchsearchError as exc:
        pytest.skip(f"{name} does not apply to {space}: {exc}")
    pruner.set_budget(parse_budget("50%FLOPs"))  # as `discover` does before training
    return pruner


CASES = [(m, s, d) for m in PRUNERS for s, d in SPACES]


@pytest.mark.parametrize(("method", "space", "dataset"), CASES)
@pytest.mark.parametrize("budget", BUDGETS)
def test_genome_meets_budget(method: str, space: str, dataset: str, budget: str) -> None:
    pruner = _pruner(method, space, dataset)
    genome = pruner.genome(_trained_like(pruner), budget)
    parsed = parse_budget(budget)
    bound = pruner.bound
    target = parsed.target(bound.base_cost)
    cost = bound.costs.cost(genome.widths, genome.blocks)
    got = cost.macs if parsed.metric == "macs" else cost.params
    assert abs(got - target) <= 0.01 * target
    bound.validate(genome)
    for group in bound.graph.prunable:
        width = genome.widths.get(group, bound.graph.groups[group].size)
        assert width >= min(bound.space.min_width, bound.graph.groups[group].size) >= 1
    assert genome.provenance["method"] == method
    assert genome.space == space and genome.dataset == bound.info.name


@pytest.mark.parametrize(("method", "space", "dataset"), CASES)
def test_keep_builds_and_runs(method: str, space: str, dataset: str) -> None:
    pruner = _pruner(method, space, dataset)
    model = _trained_like(pruner, seed=1)
    genome = pruner.genome(model, "50%FLOPs")
    keep = pruner.keep(model, genome)
    bound = pruner.bound
    assert set(keep) == set(bound.graph.prunable)
    for group, idx in keep.items():
        size = bound.graph.groups[group].size
        assert idx.dtype == torch.long
        assert len(idx) == genome.widths.get(group, size) == len(idx.unique())
        assert int(idx.min()) >= 0 and int(idx.max()) < size
    pruned = bound.build(genome, keep, pruner.restore(model)).eval()
    out = pruned(torch.randn(2, *bound.info.input_shape))
    assert out.shape == (2, bound.info.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("method", "space", "dataset"), CASES)
def test_regularize_between_backward_and_step(method: str, space: str, dataset: str) -> None:
    pruner = _pruner(method, space, dataset)
    model = pruner.prepare(pruner.bound.base_model()).train()
    x = torch.randn(4, *pruner.bound.info.input_shape)
    loss = nn.functional.cross_entropy(model(x), torch.arange(4) % 2)
    loss.backward()
    pruner.regularize(model)
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).step()
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("method", list(PRUNERS))
def test_impossible_budget_raises(method: str) -> None:
    pruner = _pruner(method, "resnet20", "synthetic")
    with pytest.raises(BudgetError):
        pruner.genome(_trained_like(pruner), "0.01%FLOPs")


def test_unknown_method_and_bad_options() -> None:
    bound = bind("resnet20", "synthetic")
    with pytest.raises(ArchsearchError, match="unknown pruning method"):
        get_pruner("magic", bound)
    with pytest.raises(ArchsearchError, match="sparsity=-1"):
        get_pruner("slimming", bound, sparsity=-1)
    with pytest.raises(ArchsearchError, match="sparsity=-1"):
        get_pruner("sss", bound, sparsity=-1)
    with pytest.raises(ArchsearchError, match="residual blocks"):
        get_pruner("sss", bind("vgg11", "fashion-mnist"))

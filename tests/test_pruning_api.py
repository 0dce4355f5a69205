"""`archsearch.Pruning`: any width method in the user's own training loop, on the user's own
model and DataLoader (no space file, no run folder): real short training, a genome at the
budget, the narrower model with the surviving weights, the genome as JSON."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from archsearch import Genome, Pruning
from archsearch.errors import ArchsearchError, GraphError
from archsearch.pruners import PRUNERS


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """A user's model: a stem, two residual blocks with identity skips, a classifier."""

    def __init__(self, width: int = 16, classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1, self.block2 = Block(width), Block(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.block2(self.block1(torch.relu(self.bn(self.stem(x)))))
        return self.head(x.mean((2, 3)))


def _data(n: int = 256, classes: int = 4, seed: int = 0) -> DataLoader:
    """Images whose class shifts one channel's mean: learnable in a few epochs."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=gen)
    images = torch.randn(n, 3, 12, 12, generator=gen)
    images[:, 0] += (labels.float() - classes / 2)[:, None, None]
    return DataLoader(TensorDataset(images, labels), batch_size=32, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _train(model: nn.Module, pruning: Pruning, loader: DataLoader, epochs: int) -> list[float]:
    """The user's loop; the mean loss of each epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            pruning.regularize(model)
            optimizer.step()
            total += loss.item()
        pruning.end_epoch(model)
        losses.append(total / len(loader))
    return losses


@pytest.fixture
def example() -> torch.Tensor:
    return next(iter(_data()))[0]


def test_slimming_in_your_own_loop_gives_a_genome_and_the_narrower_model(tmp_path, example):
    torch.manual_seed(0)
    model = ResNet()
    pruning = Pruning(model, example, method="slimming", budget="50%FLOPs", sparsity=1e-3)
    model = pruning.prepare(model)
    losses = _train(model, pruning, _data(), epochs=3)
    assert losses[-1] < 0.8 * losses[0]  # it learned
    genome = pruning.genome(model)
    assert genome.cost["macs_ratio"] == pytest.approx(0.5, abs=0.01)
    assert genome.provenance["method"] == "slimming"
    assert genome.provenance["input_shape"] == [3, 12, 12]
    small = pruning.shrink(model, genome)
    assert small(example).shape == (32, 4)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    # inherited: each BatchNorm keeps the trained scales of its group's highest-|γ| channels
    keep = pruning.pruner.keep(model, genome)
    graph = pruning.bound.graph
    for name in graph.prunable:
        kept = keep[name]
        assert len(kept) == genome.widths[name]
        for norm in graph.groups[name].norms:
            assert torch.equal(small.get_submodule(norm).weight,
                               model.get_submodule(norm).weight[kept])
            gamma = model.get_submodule(norm).weight.detach().abs()
            dropped = torch.ones_like(gamma, dtype=torch.bool)
            dropped[kept] = False
            if dropped.any() and len(graph.groups[name].norms) == 1:
                assert gamma[kept].min() >= gamma[dropped].max()
    # the genome as JSON, loaded back: the same architecture; fresh weights on request
    loaded = Genome.load(genome.save(tmp_path / "genome.json"))
    assert loaded.widths == genome.widths and loaded.cost == genome.cost
    fresh = pruning.shrink(model, loaded, inherit=False)
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    assert not torch.equal(fresh.get_submodule("stem").weight, small.get_submodule("stem").weight)
    assert model(example).shape == (32, 4)  # the user's model is left as it was


def test_regularize_adds_the_l1_subgradient_to_the_batchnorm_scales(example):
    torch.manual_seed(0)
    model = ResNet()
    pruning = Pruning(model, example, method="slimming", sparsity=0.01)
    F.cross_entropy(model(example), torch.zeros(32, dtype=torch.long)).backward()
    before, head = model.bn.weight.grad.clone(), model.head.weight.grad.clone()
    pruning.regularize(model)
    assert torch.allclose(model.bn.weight.grad - before, 0.01 * torch.sign(model.bn.weight))
    assert torch.equal(model.head.weight.grad, head)  # only the BatchNorm scales


@pytest.mark.parametrize("method", sorted(PRUNERS))
def test_every_width_method_runs_in_your_own_loop(method, example):
    torch.manual_seed(0)
    model = ResNet()
    pruning = Pruning(model, example, method=method, budget="40%FLOPs")
    model = pruning.prepare(model)
    _train(model, pruning, _data(128), epochs=1)
    genome = pruning.genome(model)
    assert genome.cost["macs_ratio"] == pytest.approx(0.4, abs=0.01)
    assert set(genome.blocks) == {"block1", "block2"}
    small = pruning.shrink(model, genome)
    assert small(example).shape == (32, 4)


def test_a_sequential_model_takes_methods_that_add_statistics(example):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 4))
    pruning = Pruning(model, example, method="taylor", budget="50%FLOPs")
    model = pruning.prepare(model)  # taylor adds its statistics module to the Sequential
    _train(model, pruning, _data(128), epochs=1)
    small = pruning.shrink(model)
    assert small(example).shape == (32, 4)
    assert small.get_submodule("0").out_channels < 32 or small.get_submodule("3").out_channels < 48


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else x


@pytest.mark.parametrize(("make", "message"), [
    (lambda x: Pruning("resnet", x), "needs an nn.Module, but got model of type str"),
    (lambda x: Pruning(ResNet(), [1, 2]), "example_input must be a batch"),
    (lambda x: Pruning(ResNet(), x, method="magnitude"), "'magnitude' is unstructured"),
    (lambda x: Pruning(ResNet(), x, method="nope"), "unknown pruning method 'nope'"),
    (lambda x: Pruning(ResNet(), x, budget="50%bananas"), "50%bananas"),
    (lambda x: Pruning(ResNet(), x, sparsity=-1.0), "sparsity must be >= 0"),
    (lambda x: Pruning(ResNet(), x, divisor=0), "divisor must be >= 1"),
    (lambda x: Pruning(_Branchy(), x), "cannot trace _Branchy"),
    (lambda x: Pruning(ResNet(), x).genome(), "pass it, pruning.genome(model)"),
])
def test_bad_input_is_one_line(make, message, example):
    with pytest.raises(ArchsearchError) as info:
        make(example)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_genome_of_another_model_is_refused(example):
    one = Pruning(ResNet(), example, method="uniform", budget="40%FLOPs", name="one")
    other = Pruning(ResNet(width=8), example, method="uniform", name="other")
    with pytest.raises(ArchsearchError, match="genome is for space 'one', not 'other'"):
        other.shrink(ResNet(width=8), one.genome())
    with pytest.raises(GraphError):
        Pruning(_Branchy(), example)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_a_gpu_the_narrower_model_stays_on_the_gpu(example):
    torch.manual_seed(0)
    model = ResNet().cuda()
    pruning = Pruning(model, example.cuda(), method="slimming", sparsity=1e-3)
    loader = [(x.cuda(), y.cuda()) for x, y in _data(128)]
    _train(model, pruning, loader, epochs=1)
    small = pruning.shrink(model)
    assert next(small.parameters()).is_cuda and next(model.parameters()).is_cuda
    assert small(example.cuda()).shape == (32, 4)
    fresh = pruning.shrink(copy.deepcopy(model), inherit=False)
    assert next(fresh.parameters()).is_cuda

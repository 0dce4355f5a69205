"""Sparsity genome: the per-layer density of an unstructured-pruned model, in one versioned
JSON format beside the width genome.

```json
{"format": "archsearch.sparsity", "version": 1, "space": "resnet56", "dataset": "cifar10",
 "density": {"conv1": 0.92, "layer1.0.conv1": 0.31, ..., "fc": 0.5},
 "provenance": {"method": "magnitude", "budget": "10%params", "seed": 0},
 "cost": {"macs": 21000000, "params": 85000, "macs_ratio": 0.17, "params_ratio": 0.1}}
```
`density` maps every conv/linear layer of the space to the fraction of its weights kept, in
(0, 1] (layers left out keep all). The cost counts what is not zero: params are the kept
weights plus every parameter that is never pruned (biases, BatchNorm); MACs are the
multiply-accumulates of the kept weights plus the rest of the base's MACs. A budget
(`10%params`) is met by this cost, as a width genome's is by its size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.budget import TOLERANCE, Budget, BudgetError
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import check_header, read_input_size, read_json, with_input_size
from archsearch.io import atomic_write_json
from archsearch.metrics import metrics

FORMAT = "archsearch.sparsity"
VERSION = 1
_KEYS = {"format", "version", "space", "dataset", "density", "provenance", "cost", "input_size"}


@dataclass
class SparsityGenome:
    """The fraction of weights kept per conv/linear layer, with provenance and cost."""

    space: str
    density: dict[str, float]
    dataset: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    input_size: int | None = None  # as a width genome's (archsearch.genome)

    def to_dict(self) -> dict[str, Any]:
        return with_input_size({"format": FORMAT, "version": VERSION, "space": self.space,
                                "dataset": self.dataset, "density": dict(self.density),
                                "provenance": dict(self.provenance), "cost": dict(self.cost)},
                               self.input_size)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "sparsity genome") -> SparsityGenome:
        check_header(doc, source, "sparsity genome", FORMAT, VERSION, _KEYS)
        density = doc.get("density")
        if not isinstance(density, Mapping):
            raise ArchsearchError(f"{source}: 'density' must be an object mapping layers to "
                                  "fractions")
        for layer, value in density.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not 0 < value <= 1:
                raise ArchsearchError(f"{source}: density[{layer!r}] must be a fraction in "
                                      f"(0, 1], but got {value!r}")
        return cls(doc["space"], {str(k): float(v) for k, v in density.items()}, doc.get("dataset"),
                   dict(doc.get("provenance") or {}), dict(doc.get("cost") or {}),
                   read_input_size(doc, source))

    @classmethod
    def load(cls, path: str | Path) -> SparsityGenome:
        doc = read_json(path, "sparsity genome")
        return cls.from_dict(doc, source=str(path))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())


@dataclass(frozen=True)
class SparseLayout:
    """The prunable weights of a bound space: per conv/linear layer its weight count and the
    MACs one of its weights costs (its output positions, summed over calls)."""

    numel: dict[str, int]
    macs_per_weight: dict[str, float]

    def kept(self, density: Mapping[str, float]) -> dict[str, int]:
        """Weights kept per layer: round(density * count), at least one."""
        return {m: max(1, min(n, round(density.get(m, 1.0) * n))) for m, n in self.numel.items()}


def layout(bound: BoundSpace) -> SparseLayout:
    """The space's prunable weights (cached per space file, dataset and input shape)."""
    key = (bound.space.path or bound.space.name, bound.info.name, bound.info.input_shape)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _layout(bound)
    return _LAYOUTS[key]


_LAYOUTS: dict[tuple[object, str], SparseLayout] = {}


def _layout(bound: BoundSpace) -> SparseLayout:
    model = bound.base_model()
    numel: dict[str, int] = {}
    macs: dict[str, float] = {}
    for call in bound.graph.calls:
        if call.kind not in ("conv", "linear"):
            continue
        numel[call.module] = model.get_submodule(call.module).weight.numel()
        macs[call.module] = macs.get(call.module, 0.0) + float(call.spatial)
    return SparseLayout(numel, macs)


def density_rows(bound: BoundSpace, genome: SparsityGenome) -> list[dict[str, Any]]:
    """One row per conv/linear layer in network order: weights, kept weights, density, and
    the layer's MACs in the base and with only its kept weights."""
    lay = layout(bound)
    kept = lay.kept(genome.density)
    return [{"layer": m, "weights": n, "kept": kept[m], "density": kept[m] / n,
             "base_macs": int(round(lay.macs_per_weight[m] * n)),
             "macs": int(round(lay.macs_per_weight[m] * kept[m]))}
            for m, n in lay.numel.items()]


def validate(bound: BoundSpace, genome: SparsityGenome) -> None:
    """Raise ArchsearchError if the sparsity genome does not fit this space."""
    if genome.space != bound.space.name:
        raise ArchsearchError(f"sparsity genome is for space {genome.space!r}, not "
                              f"{bound.space.name!r}")
    unknown = sorted(set(genome.density) - set(layout(bound).numel))
    if unknown:
        raise ArchsearchError(f"sparsity genome names unknown layer(s) {unknown} in space "
                              f"{bound.space.name!r} (conv/linear layers only)")


def sparse_cost(bound: BoundSpace, density: Mapping[str, float]) -> dict[str, float]:
    """Non-zero MACs and params of the densities, with their ratios to the base."""
    lay, base = layout(bound), bound.base_cost
    kept = lay.kept(density)
    dropped = {m: lay.numel[m] - k for m, k in kept.items()}
    params = base.params - sum(dropped.values())
    macs = base.macs - sum(lay.macs_per_weight[m] * d for m, d in dropped.items())
    return {"macs": int(round(macs)), "params": int(params), "macs_ratio": macs / base.macs,
            "params_ratio": params / base.params}


def sparse_value(bound: BoundSpace, density: Mapping[str, float], budget: Budget) -> float:
    """The non-zero cost of the densities in the budget's metric: the base's, less what each
    dropped weight costs (`Metric.per_weight`); BudgetError for a metric unstructured
    sparsity does not lower (latency: dense kernels run as fast whatever the zeros)."""
    spec = budget.spec
    if spec.per_weight is None:
        raise BudgetError(f"budget {budget} cannot be met by unstructured pruning: "
                          f"{spec.label} of dense kernels does not fall with sparsity; use "
                          "a width genome, or a budget in "
                          f"{', '.join(m.name for m in metrics().values() if m.per_weight)}")
    if spec.cost_key in ("macs", "params"):
        return sparse_cost(bound, density)[spec.cost_key]
    lay = layout(bound)
    kept = lay.kept(density)
    return bound.base_in(spec.name) - sum(spec.per_weight(lay, m) * (lay.numel[m] - k)
                                          for m, k in kept.items())


def make_genome(bound: BoundSpace, density: Mapping[str, float],
                provenance: Mapping[str, Any] | None = None) -> SparsityGenome:
    genome = SparsityGenome(bound.space.name, dict(density), bound.info.name,
                            dict(provenance or {}), input_size=bound.recorded_size)
    validate(bound, genome)
    genome.cost = sparse_cost(bound, genome.density)
    return genome


def check_budget(bound: BoundSpace, genome: SparsityGenome, budget: Budget) -> None:
    """Raise BudgetError unless the genome's non-zero cost is within 1% of the budget."""
    target = budget.target(bound)
    got = sparse_value(bound, genome.density, budget)
    if abs(got - target) > TOLERANCE * target:
        raise BudgetError(f"budget {budget} cannot be met within 1% by unstructured pruning "
                          f"in space {bound.space.name!r}: the closest sparsity genome costs "
                          f"{got:.4g} {budget.spec.unit} ({got / target:.3f}x the target)")


def uniform_density(bound: BoundSpace, budget: Budget,
                    layers: Sequence[str] | None = None) -> dict[str, float]:
    """One density for every layer of `layers` (default all), solved so the genome costs the
    budget; the other layers keep all their weights."""
    lay = layout(bound)
    names = list(lay.numel) if layers is None else list(layers)
    full = sparse_value(bound, {}, budget)
    target = budget.target(bound)
    per_weight = budget.spec.per_weight
    weights = sum(per_weight(lay, m) * lay.numel[m] for m in names)
    density = (target - (full - weights)) / weights
    check_reachable(bound, budget, density)
    return dict.fromkeys(names, min(1.0, density))


def conv_layers(bound: BoundSpace) -> list[str]:
    """The conv layers among the prunable weights (the paper's code prunes only these)."""
    return [c.module for c in bound.graph.calls if c.kind == "conv"
            and c.module in layout(bound).numel]


def check_reachable(bound: BoundSpace, budget: Budget, room: float) -> None:
    """BudgetError when `room` (the density, or cost, left for pruned weights) is <= 0."""
    if room <= 0:
        raise BudgetError(f"budget {budget} cannot be met by unstructured pruning in space "
                          f"{bound.space.name!r}: the parameters that are never pruned "
                          "(biases, BatchNorm, layers left dense) already cost more")


# -- masks ---------------------------------------------------------------------------------

def top_masks(model: nn.Module, bound: BoundSpace, density: Mapping[str, float],
              score: Callable[[torch.Tensor], torch.Tensor] = torch.abs
              ) -> dict[str, torch.Tensor]:
    """Per layer, the mask of its round(density * count) highest-scoring weights (ties to
    the lower flat index)."""
    kept = layout(bound).kept(density)
    masks = {}
    for name, k in kept.items():
        weight = model.get_submodule(name).weight.detach().float().cpu()
        order = torch.sort(-score(weight).flatten(), stable=True).indices
        mask = torch.zeros(weight.numel(), dtype=torch.bool)
        mask[order[:k]] = True
        masks[name] = mask.view_as(weight)
    return masks


def random_masks(bound: BoundSpace, density: Mapping[str, float],
                 seed: int) -> dict[str, torch.Tensor]:
    """Per layer, a uniformly random mask with exactly the layer's kept count."""
    gen = torch.Generator().manual_seed(seed)
    model = bound.base_model()
    return top_masks(model, bound, density,
                     score=lambda w: torch.rand(w.shape, generator=gen))


class MaskedTraining:
    """Keeps pruned weights at zero: `apply` zeroes them, `regularize` (between backward and
    step) zeroes their gradients, so momentum and weight decay leave them at zero."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks = dict(masks)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        for name, mask in self.masks.items():
            weight = model.get_submodule(name).weight
            weight.mul_(mask.to(weight.device, weight.dtype))
        return model

    def regularize(self, model: nn.Module) -> None:
        for name, mask in self.masks.items():
            weight = model.get_submodule(name).weight
            if weight.grad is not None:
                weight.grad.mul_(mask.to(weight.grad.device, weight.grad.dtype))


def density_of(model: nn.Module, bound: BoundSpace) -> dict[str, float]:
    """The measured fraction of non-zero weights per layer of a model."""
    return {m: float((model.get_submodule(m).weight != 0).double().mean())
            for m in layout(bound).numel}


# -- guided sparsification -----------------------------------------------------------------

def density_curve(genome: SparsityGenome) -> tuple[list[float], list[float]]:
    """(relative depth in [0, 1], density) of each layer a genome prunes, in network order
    (the order of its `density` map, which is the space's layer order)."""
    values = list(genome.density.values())
    if len(values) == 1:
        return [0.0], values
    return [i / (len(values) - 1) for i in range(len(values))], values


def guide_shape(guides: Sequence[SparsityGenome], layers: Sequence[str]) -> dict[str, float]:
    """The guides' density curves averaged by relative depth and read at `layers` (in network
    order): the per-layer pattern of guided sparsification, before any scaling. A guide from
    another space transfers (its curve is interpolated at this space's depths)."""
    import numpy as np

    if not guides:
        raise ArchsearchError("guided sparsification needs at least one sparsity genome")
    names = list(layers)
    depth = np.linspace(0.0, 1.0, len(names)) if len(names) > 1 else np.zeros(1)
    curves = []
    for guide in guides:
        xs, ys = density_curve(guide)
        curves.append(np.interp(depth, xs, ys) if len(xs) > 1 else np.full(len(names), ys[0]))
    shape = np.mean(np.asarray(curves), axis=0)
    return {n: float(s) for n, s in zip(names, shape, strict=True)}


def fit_density(bound: BoundSpace, shape: Mapping[str, float],
                budget: Budget) -> dict[str, float]:
    """Densities proportional to `shape` (layer -> relative density > 0), scaled by one
    multiplier (bisection) so the genome costs the budget; a layer saturates at 1. Layers
    not in `shape` keep all their weights. Raises BudgetError when even one weight per
    shaped layer costs more than the budget."""
    if not shape or min(shape.values()) <= 0:
        raise ArchsearchError("a density shape needs a positive value for every layer")
    target = budget.target(bound)

    def cost(density: Mapping[str, float]) -> float:
        return sparse_value(bound, density, budget)

    def at(m: float) -> dict[str, float]:
        return {n: float(min(1.0, max(m * s, 1e-9))) for n, s in shape.items()}

    lo, hi = 0.0, 1.0 / min(shape.values())
    check_reachable(bound, budget, target - cost(at(lo)))
    if cost(at(hi)) <= target:
        return at(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(at(mid)) <= target else (lo, mid)
    return at(lo)


def guided_density(guides: Sequence[SparsityGenome], bound: BoundSpace, budget: Budget,
                   layers: Sequence[str]) -> dict[str, float]:
    """The paper's guided sparsification: the guides' per-layer densities, averaged by
    relative depth (so a guide from another space transfers), set on `layers` of this space
    and scaled by one multiplier (bisection) so the genome costs the budget."""
    return fit_density(bound, guide_shape(guides, layers), budget)

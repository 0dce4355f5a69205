"""Network slimming (Liu et al., ICCV 2017): L1 on BatchNorm scales, one global threshold."""

from __future__ import annotations

import logging

import torch
from torch import nn

from archsearch.budget import TOLERANCE, Budget, fit_to_budget
from archsearch.build import BoundSpace
from archsearch.genome import Genome
from archsearch.pruners._base import Pruner, as_budget, check_nonnegative

_log = logging.getLogger(__name__)


class SlimmingPruner(Pruner):
    """L1 subgradient `sparsity * sign(gamma)` on BatchNorm scales during training; the genome
    keeps channels whose |gamma| (mean over a group's BatchNorms) is above one global
    threshold, chosen by bisection so the genome costs the budget.

    Classifier BatchNorm1d layers are left out unless `include_bn1d` (their scales live on
    another scale and would dominate the threshold); groups without a BatchNorm keep the
    ratio of the rest (their scores are not comparable).
    """

    name = "slimming"

    def __init__(self, bound: BoundSpace, sparsity: float = 1e-4, include_bn1d: bool = False):
        super().__init__(bound)
        self.sparsity = check_nonnegative(sparsity, "sparsity")
        self.include_bn1d = bool(include_bn1d)

    def options(self) -> dict[str, object]:
        return {"sparsity": self.sparsity}

    def _norms(self, model: nn.Module) -> dict[str, list[nn.Module]]:
        out: dict[str, list[nn.Module]] = {}
        for name in self.bound.graph.prunable:
            mods = [model.get_submodule(m) for m in self.bound.graph.groups[name].norms]
            mods = [m for m in mods if getattr(m, "weight", None) is not None
                    and (self.include_bn1d or not isinstance(m, nn.BatchNorm1d))]
            if mods:
                out[name] = mods
        return out

    def regularize(self, model: nn.Module) -> None:
        if self.sparsity == 0:
            return
        for mods in self._norms(model).values():
            for bn in mods:
                if bn.weight.grad is not None:
                    bn.weight.grad.add_(torch.sign(bn.weight.detach()), alpha=self.sparsity)

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """|gamma| per channel, averaged over the group's BatchNorms (all BNs of a stream)."""
        return {name: torch.stack([bn.weight.detach().abs().float().cpu() for bn in mods])
                .mean(dim=0) for name, mods in self._norms(model).items()}

    def genome(self, model: nn.Module, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        scores = self.importance(model)
        shape, threshold = threshold_shape(scores, budget, self.bound)
        widths = fit_to_budget(shape, budget, self.bound)
        _log.info("slimming: threshold %.4g over %d scored groups", threshold, len(scores))
        return self.bound.genome(widths, dict.fromkeys(self.bound.graph.blocks, True),
                                 self._provenance(budget, threshold=threshold))


def _shape_at(scores: dict[str, torch.Tensor], threshold: float,
              bound: BoundSpace) -> dict[str, float]:
    """Keep ratios per group for one threshold (never below the space's minimum width)."""
    shape: dict[str, float] = {}
    for name, score in scores.items():
        size = bound.graph.groups[name].size
        count = int((score > threshold).sum())
        shape[name] = bound.space.round_width(count, size) / size
    if len(shape) < len(bound.graph.prunable):  # unscored groups follow the scored ones
        total = sum(bound.graph.groups[n].size for n in shape) or 1
        mean = sum(r * bound.graph.groups[n].size for n, r in shape.items()) / total
        for name in bound.graph.prunable:
            shape.setdefault(name, mean if shape else 1.0)
    return shape


def threshold_shape(scores: dict[str, torch.Tensor], budget: Budget,
                    bound: BoundSpace) -> tuple[dict[str, float], float]:
    """The keep-ratio shape of the global threshold that costs the budget (or just above it):
    bisection over the sorted scores, so `fit_to_budget` then only trims the rounding."""
    target = budget.target(bound.base_cost)
    metric = 0 if budget.metric == "macs" else 1
    base = bound.graph.base_widths()

    def cost(shape: dict[str, float]) -> float:
        widths = {g: round(shape[g] * base[g]) for g in shape}
        return bound.costs.cost_vector(bound.costs.widths_vector(widths),
                                       bound.costs.active({}))[metric]

    if not scores:
        return _shape_at(scores, 0.0, bound), 0.0
    values = torch.cat(list(scores.values())).sort().values
    candidates = torch.cat([values.new_tensor([-1.0]), values]).tolist()
    # candidates[i] as threshold drops the i smallest scores; cost falls as i grows
    lo, hi = 0, len(candidates) - 1
    if cost(_shape_at(scores, candidates[hi], bound)) >= target:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(_shape_at(scores, candidates[mid], bound)) >= target:
            lo = mid
        else:
            hi = mid
    threshold = candidates[lo]
    # the cheaper neighbour wins when it is within tolerance and closer to the target
    if lo + 1 < len(candidates):
        here = cost(_shape_at(scores, threshold, bound))
        nxt = cost(_shape_at(scores, candidates[lo + 1], bound))
        if target - nxt <= TOLERANCE * target and target - nxt < here - target:
            threshold = candidates[lo + 1]
    return _shape_at(scores, threshold, bound), float(threshold)

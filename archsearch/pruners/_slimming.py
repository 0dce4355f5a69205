"""Network slimming (Liu et al., ICCV 2017): L1 on BatchNorm scales, one global threshold."""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import torch
from torch import nn

from archsearch.budget import TOLERANCE, Budget, fit_to_budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.presets import ScaleTravelRule, SparsityRule
from archsearch.pruners._base import (
    Pruner,
    as_budget,
    check_choice,
    check_nonnegative,
    top_channels,
)
from archsearch.pruners._evidence import (
    channel_separation,
    dead_level,
    natural_cut,
    separation,
    upper_natural_cut,
)
from archsearch.pruners._options import (
    CUT_OPTION,
    CUTS,
    MIN_KEEP_OPTION,
    STREAM_VALUE_OPTION,
    STREAM_VALUES,
    Option,
    boolean,
)
from archsearch.widths import group_steps

_log = logging.getLogger(__name__)
# Default floor: no group below 10% of its base width unless its scores are zeros (see
# bench/results/separation.md for the measurement behind it).
MIN_KEEP = 0.1


class SlimmingPruner(Pruner):
    """L1 subgradient `sparsity * sign(gamma)` on BatchNorm scales during training; the genome
    keeps channels whose |gamma| (max over a group's BatchNorms) is above one global
    threshold, chosen by bisection so the genome costs the budget (`cut="global"`, the
    paper's); `cut="cost"` ranks each channel's |gamma| per unit of the budget's cost instead
    (`cost_shape`).

    `sparsity` None is the paper's λ for the space's family (for its 160-epoch schedule; the
    orchestration sizes it to the schedule that runs, see `archsearch.presets`). No group
    keeps fewer than `min_keep` of its channels unless its scores below that are zeros
    (`dead_level`). The genome's provenance records the threshold and the separation
    evidence (`archsearch.pruners._evidence`).

    Classifier BatchNorm1d layers are left out unless `include_bn1d` (their scales live on
    another scale and would dominate the threshold); groups without a BatchNorm keep the
    ratio of the rest (their scores are not comparable).
    """

    name = "slimming"
    sparsity_rule: ClassVar[SparsityRule] = ScaleTravelRule()
    OPTIONS = (Option("include_bn1d", "also threshold the classifier's BatchNorm1d scales",
                      boolean, metavar="BOOL"), MIN_KEEP_OPTION, CUT_OPTION, STREAM_VALUE_OPTION)

    def __init__(self, bound: BoundSpace, sparsity: float | None = None,
                 include_bn1d: bool = False, min_keep: float = MIN_KEEP, cut: str = "global",
                 stream_value: str = "max"):
        super().__init__(bound)
        if sparsity is None:
            sparsity = self.sparsity_rule.paper(bound.space.family)
        self.sparsity = check_nonnegative(sparsity, "sparsity")
        self.include_bn1d = bool(include_bn1d)
        self.min_keep = check_min_keep(min_keep)
        self.cut = check_cut(cut)
        self.stream_value = check_choice(stream_value, "stream_value", STREAM_VALUES)

    def options(self) -> dict[str, object]:
        return {"sparsity": self.sparsity, "min_keep": self.min_keep, "cut": self.cut,
                "stream_value": self.stream_value}

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
        """|gamma| per channel, the max over the group's BatchNorms: a channel of a residual
        stream can go only when no block writing it needs it (a mean would dilute a channel
        one block uses by every block that does not, and streams would drift low)."""
        return {name: scales.amax(dim=0) for name, scales in self._scales(model).items()}

    def cost_importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What the cost cut weighs against a channel's cost (`stream_value`): 'max' is
        `importance`; 'sum' is |gamma| summed over the group's BatchNorms, as the channel's
        cost is summed over every conv it feeds or is fed by. With the max, a residual
        stream's channel (one BatchNorm per block writing it) is priced for all its convs
        and valued for one, and the cost cut takes the streams first (resnet20 at
        12.5%FLOPs: layer1's stream at 2 of 16, bench/results/genome_quality_cifar10.md);
        with the sum, equal scales keep the streams and take the blocks' inner convs first.
        A group with one BatchNorm scores the same either way."""
        if self.stream_value == "max":
            return self.importance(model)
        return {name: scales.sum(dim=0) for name, scales in self._scales(model).items()}

    def _scales(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Per group, its BatchNorms' |gamma| stacked (members × channels)."""
        return {name: torch.stack([bn.weight.detach().abs().float().cpu() for bn in mods])
                for name, mods in self._norms(model).items()}

    def genome(self, model: nn.Module, budget: Budget | str) -> Genome:
        cost_scores = (self.cost_importance(model)
                       if self.cut != "global" and self.stream_value != "max" else None)
        return ranked_genome(self, self.importance(model), as_budget(budget), self.min_keep,
                             self.cut, cost_scores)


def check_min_keep(min_keep: float) -> float:
    """The group floor: a share of a group's width in [0, 1]."""
    value = check_nonnegative(min_keep, "min_keep")
    if value > 1:
        raise ArchsearchError(f"min_keep is a share of a group's width in [0, 1], but got "
                              f"min_keep={min_keep:g}")
    return value


def check_cut(cut: str) -> str:
    return check_choice(cut, "cut", CUTS)


def ranked_genome(pruner: Pruner, scores: dict[str, torch.Tensor], budget: Budget,
                  min_keep: float, cut: str = "global",
                  cost_scores: dict[str, torch.Tensor] | None = None) -> Genome:
    """The genome of one global ranking of channel scores at a budget, with its evidence.

    When the scores split by themselves (two-class Otsu; or, when that does not separate and
    most scores are ~0, the upper cut of three classes: dead, dying, alive) and the budget
    affords the channels above that split, the cut is the pruner's own: the survivors'
    shape, scaled up onto the budget (`fit_to_budget`), rather than a threshold that would
    pick among zeros by noise. Otherwise `cut` "global" is one threshold by bisection (with
    the group floor) and "cost" the greedy cut by score per unit of cost (`cost_shape`), and
    `fit_to_budget` trims the rounding. Either way the separation statistic compares the
    channels kept at the cut with those dropped. `cost_scores`, when given, are what the cost
    cut weighs against the cost (a group's value summed over its members, as its cost is);
    the natural cut and the evidence read `scores`."""
    bound = pruner.bound
    floor = group_floor(scores, bound, min_keep) if min_keep else None
    zero_share = _zero_share(scores)
    natural = natural_cut(scores)
    split = _split_at(scores, natural)
    if scores and not split["separated"] and zero_share > 0.5:
        upper = upper_natural_cut(scores)  # dead, dying, alive: the cut above the dying
        if (three := _split_at(scores, upper))["separated"]:
            natural, split = upper, three
    survivors = _shape_at(scores, natural, bound, floor)
    natural_fits = (scores and split["separated"]
                    and _cost(survivors, budget, bound) <= budget.target(bound))
    by_cost = not natural_fits and cut in ("cost", "base-cost")
    if natural_fits:
        shape, threshold, how = survivors, natural, "survivors scaled to the budget"
    elif by_cost:
        shape, threshold = cost_shape(scores if cost_scores is None else cost_scores,
                                      budget, bound, min_keep, at_base=cut == "base-cost")
        how = ("score per unit of cost at the base widths" if cut == "base-cost"
               else "score per unit of cost at the budget")
    else:
        shape, threshold = threshold_shape(scores, budget, bound, min_keep)
        how = "global threshold at the budget"
    widths = fit_to_budget(shape, budget, bound, floor=floor)
    genome = bound.genome(widths, dict.fromkeys(bound.graph.blocks, True))
    if natural_fits:
        evidence = split
    else:
        evidence = channel_separation(scores, top_channels(scores, genome, bound))
    evidence["near_zero_share"] = round(zero_share, 4)
    evidence["cut"] = how
    _log.info("%s: %s, threshold %.4g over %d scored groups, separation %s", pruner.name,
              how, threshold, len(scores), evidence["statistic"])
    # the cost cut has no one score threshold (scales.png marks none): its last score per
    # unit of cost instead
    where = ({"threshold": None, "score_per_cost": threshold} if by_cost
             else {"threshold": threshold})
    genome.provenance.update(pruner._provenance(budget, **where, separation=evidence))
    return genome


def _zero_share(scores: dict[str, torch.Tensor]) -> float:
    """The share of scores at ~0 (`dead_level`)."""
    if not scores:
        return 0.0
    values = torch.cat([s.flatten() for s in scores.values()])
    return float((values <= dead_level(scores)).float().mean())


def _split_at(scores: dict[str, torch.Tensor], threshold: float) -> dict[str, object]:
    """The separation statistic of all scores above vs at or below `threshold`."""
    if not scores:
        return separation([], [])
    values = [s.detach().float().cpu().flatten() for s in scores.values()]
    return separation(torch.cat([v[v > threshold] for v in values]),
                      torch.cat([v[v <= threshold] for v in values]))


def _cost(shape: dict[str, float], budget: Budget, bound: BoundSpace) -> float:
    """The cost of a keep-ratio shape in the budget's metric."""
    base = bound.graph.base_widths()
    widths = {g: round(shape[g] * base[g]) for g in shape}
    return budget.cost(bound, widths)


def _shape_at(scores: dict[str, torch.Tensor], threshold: float, bound: BoundSpace,
              floor: dict[str, int] | None = None) -> dict[str, float]:
    """Keep ratios per group for one threshold (never below the space's minimum width, nor
    below the group's `floor` count)."""
    shape: dict[str, float] = {}
    for name, score in scores.items():
        size = bound.graph.groups[name].size
        count = max(int((score > threshold).sum()), (floor or {}).get(name, 0))
        shape[name] = bound.space.round_width(count, size) / size
    if len(shape) < len(bound.graph.prunable):  # unscored groups follow the scored ones
        total = sum(bound.graph.groups[n].size for n in shape) or 1
        mean = sum(r * bound.graph.groups[n].size for n, r in shape.items()) / total
        for name in bound.graph.prunable:
            shape.setdefault(name, mean if shape else 1.0)
    return shape


def group_floor(scores: dict[str, torch.Tensor], bound: BoundSpace,
                min_keep: float) -> dict[str, int]:
    """Per group, the channels it keeps whatever the threshold: `min_keep` of its width, but
    only as many as score above zero (`dead_level`): zeros may go below the floor."""
    dead, div = dead_level(scores), bound.space.divisor
    floor = {}
    for name, score in scores.items():
        count = min(math.ceil(min_keep * bound.graph.groups[name].size), int((score > dead).sum()))
        floor[name] = min(bound.graph.groups[name].size, math.ceil(count / div) * div)
    return floor


def threshold_shape(scores: dict[str, torch.Tensor], budget: Budget, bound: BoundSpace,
                    min_keep: float = 0.0) -> tuple[dict[str, float], float]:
    """The keep-ratio shape of the global threshold that costs the budget (or just above it):
    bisection over the sorted scores, so `fit_to_budget` then only trims the rounding. With
    `min_keep`, no group keeps fewer channels than `group_floor` allows."""
    floor = group_floor(scores, bound, min_keep) if min_keep > 0 else None
    target = budget.target(bound)

    def cost(shape: dict[str, float]) -> float:
        return _cost(shape, budget, bound)

    if not scores:
        return _shape_at(scores, 0.0, bound, floor), 0.0
    values = torch.cat(list(scores.values())).sort().values
    candidates = torch.cat([values.new_tensor([-1.0]), values]).tolist()
    # candidates[i] as threshold drops the i smallest scores; cost falls as i grows
    lo, hi = 0, len(candidates) - 1
    if cost(_shape_at(scores, candidates[hi], bound, floor)) >= target:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(_shape_at(scores, candidates[mid], bound, floor)) >= target:
            lo = mid
        else:
            hi = mid
    threshold = candidates[lo]
    # the cheaper neighbour wins when it is within tolerance and closer to the target
    if lo + 1 < len(candidates):
        here = cost(_shape_at(scores, threshold, bound, floor))
        nxt = cost(_shape_at(scores, candidates[lo + 1], bound, floor))
        if target - nxt <= TOLERANCE * target and target - nxt < here - target:
            threshold = candidates[lo + 1]
    return _shape_at(scores, threshold, bound, floor), float(threshold)


def cost_shape(scores: dict[str, torch.Tensor], budget: Budget, bound: BoundSpace,
               min_keep: float = 0.0, at_base: bool = False) -> tuple[dict[str, float], float]:
    """The keep-ratio shape of a greedy knapsack on the scores: from full width, the step of
    channels (a group's lowest-scored `group_steps` channels) with the least score per unit
    of the budget's cost it saves goes first, until the genome costs the budget. The cost of
    a channel is priced at the widths of that moment (a conv's MACs scale with its input and
    output widths both) in the budget's own metric (MACs, params, latency). With one score
    scale across groups (slimming's |gamma| under one λ), this spends the budget where the
    scores say it buys the most; the global threshold spends it by score alone, and a
    channel on a 32×32 map costs the same score as one on a 2×2 map there. No group below
    `group_floor`; unscored groups keep the scored ones' mean ratio. `at_base` prices every
    step once, at the base widths (the 'base-cost' cut): a layer's channels then do not get
    cheaper as its neighbours narrow, which is what makes the moment's prices alternate
    narrow and wide layers. Returns the shape and the last score-per-cost removed (the
    cut's own threshold)."""
    floor = group_floor(scores, bound, min_keep) if min_keep > 0 else {}
    base = bound.graph.base_widths()
    steps = group_steps(bound)
    pricer, active = budget.pricer(bound), bound.costs.active({})
    target = budget.target(bound)
    ranked = {g: s.detach().float().cpu().sort(descending=True).values.tolist()
              for g, s in scores.items() if g in base}
    counts = {g: base[g] for g in ranked}
    scored_total = sum(base[g] for g in ranked) or 1

    def widths_of(c: dict[str, int]) -> dict[str, int]:
        mean = sum(c.values()) / scored_total
        return {g: c.get(g, max(1, round(mean * base[g]))) for g in base}

    def cost(c: dict[str, int]) -> float:
        return pricer.vector(bound.costs.widths_vector(widths_of(c)), active)

    low = {g: max(bound.space.min_width, 1, floor.get(g, 0)) for g in ranked}
    here, last = cost(counts), 0.0
    price = ({g: here - cost(dict(counts, **{g: counts[g] - steps[g]})) for g in ranked}
             if at_base else {})
    while here > target:
        best, best_ratio = None, math.inf
        for g in ranked:
            n = counts[g] - steps[g]
            if n < low[g]:
                continue
            saved = price[g] if at_base else here - cost(dict(counts, **{g: n}))
            if saved <= 0:
                continue
            ratio = sum(ranked[g][n:counts[g]]) / saved
            if ratio < best_ratio:
                best, best_ratio = g, ratio
        if best is None:  # nothing left to remove: fit_to_budget says the budget is too small
            break
        counts[best] -= steps[best]
        here, last = cost(counts), best_ratio
    shape = {g: w / base[g] for g, w in widths_of(counts).items()}
    return shape, float(last)

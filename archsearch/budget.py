"""Budgets (`50%FLOPs`, `30%params`, `120MFLOPs`, `1.5Mparams`, `3ms`, `40%latency`) and
fitting shapes onto them. The metrics a budget can name are `archsearch.metrics`' registry.

FLOPs means multiply-accumulates (MACs) throughout archsearch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archsearch.cost import Cost
from archsearch.errors import ArchsearchError
from archsearch.metrics import Metric, budget_examples, get_metric, metrics
from archsearch.widths import group_steps, round_to_step

if TYPE_CHECKING:
    from archsearch.build import BoundSpace
    from archsearch.latency import LatencySettings
    from archsearch.metrics import Pricer

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(%)?\s*([a-zµ]+)\s*$", re.I)
TOLERANCE = 0.01


class BudgetError(ArchsearchError):
    """A budget that cannot be met in this space."""


@dataclass(frozen=True)
class Budget:
    """A cost target: `metric` (a registered metric's name: macs, params, latency, ...),
    relative (a fraction of base) or absolute (in the metric's unit: MACs, params, ms);
    `latency`: where a latency budget is measured (None: `LatencySettings()`)."""

    metric: str
    value: float
    relative: bool
    text: str
    latency: LatencySettings | None = None

    @property
    def spec(self) -> Metric:
        return get_metric(self.metric)

    def pricer(self, bound: BoundSpace) -> Pricer:
        """This budget's metric priced on `bound` (a latency table is read or measured)."""
        return bound.pricer(self.metric, self.latency)

    def cost(self, bound: BoundSpace, widths: Mapping[str, int],
             blocks: Mapping[str, bool] | None = None) -> float:
        """The cost of `widths` (and kept `blocks`) on `bound` in this budget's metric."""
        return bound.cost_at(widths, blocks, self.metric, self.latency)

    def target(self, base: Cost | BoundSpace) -> float:
        """The target cost: `base` is the bound space (any metric) or its base `Cost`
        (MACs and params only)."""
        if not self.relative:
            return self.value
        if isinstance(base, Cost):
            if not hasattr(base, self.metric):
                raise ArchsearchError(f"a {self.metric} budget is priced on a bound space, "
                                      "not a Cost")
            return self.value * getattr(base, self.metric)
        return self.value * base.base_in(self.metric, self.latency)

    def where(self) -> str:
        """' on <device>, N thread(s), batch B' for a latency budget, else ''."""
        if not self.spec.settings:
            return ""
        from archsearch.latency import LatencySettings

        return f" on {(self.latency or LatencySettings()).describe()}"

    def __str__(self) -> str:
        return self.text


def parse_budget(text: str, latency: LatencySettings | None = None) -> Budget:
    """Parse `50%FLOPs`, `30%params`, `120MFLOPs`, `1.5Mparams`, `3ms`, `40%latency` (any
    registered metric; case-insensitive); `latency` is where a latency budget is measured."""
    match = _BUDGET.match(text or "")
    if not match and _BUDGET.match((text or "").replace("-", "", 1)):
        raise ArchsearchError(f"budget {text!r} must be positive, e.g. 50%FLOPs")
    found = _metric_of(match[3], bool(match[2])) if match else None
    if found is None:
        raise ArchsearchError(
            f"cannot read budget {text!r}: write e.g. {budget_examples()} "
            "(FLOPs = multiply-accumulates)")
    (metric, scale), number, unit = found, float(match[1]), match[2]
    if unit == "%":
        if not 0 < number <= 100:
            raise ArchsearchError(f"budget {text!r} must be a percentage in (0, 100], "
                                  f"but got {match[1]}%")
        return Budget(metric.name, number / 100, True, text.strip(), latency)
    value = number * scale
    if value <= 0:
        raise ArchsearchError(f"budget {text!r} must be positive")
    return Budget(metric.name, value, False, text.strip(), latency)


def _metric_of(suffix: str, relative: bool) -> tuple[Metric, float] | None:
    for metric in metrics().values():
        scale = metric.read(suffix, relative)
        if scale is not None:
            return metric, scale
    return None


def fit_to_budget(shape: Mapping[str, float], budget: Budget, bound: BoundSpace,
                  blocks: Mapping[str, bool] | None = None,
                  floor: Mapping[str, int] | None = None) -> dict[str, int]:
    """Widths with the relative `shape` (group -> ratio of base, missing = 1) scaled onto
    the budget: bisection on one multiplier, rounding to the space's divisor, then a greedy
    fill of the rounding slack; no group below its `floor` width. Lands within 1% of the
    target or raises BudgetError."""
    blocks = dict(blocks or {})
    floor = dict(floor or {})
    base = bound.graph.base_widths()
    if not base:
        raise BudgetError(f"space {bound.space.name!r} has no prunable channel group (every "
                          "group is tied to the input, the output or an op archsearch does not "
                          "model), so no width can meet a budget")
    ratios = {g: float(shape.get(g, 1.0)) for g in base}
    bad = {g: r for g, r in ratios.items() if not 0 < r <= 1}
    if bad:
        raise ArchsearchError(f"shape ratios must be in (0, 1], but got {bad}")
    target = budget.target(bound)
    pricer = budget.pricer(bound)
    active = bound.costs.active(blocks)

    steps = group_steps(bound)

    def widths_at(m: float) -> dict[str, int]:
        return {g: max(round_to_step(bound, m * ratios[g] * base[g], base[g], steps[g]),
                       floor.get(g, 0)) for g in base}

    def cost(widths: Mapping[str, int]) -> float:
        return pricer.vector(bound.costs.widths_vector(widths), active)

    lo, hi = 0.0, 1.0 / min(ratios.values())
    if cost(widths_at(lo)) > target * (1 + TOLERANCE):
        smallest = cost(widths_at(lo))
        raise BudgetError(f"budget {budget} cannot be met in space {bound.space.name!r}: the "
                          f"narrowest genome costs {smallest:.4g} {budget.spec.unit} "
                          f"({smallest / target:.1f}x the target){budget.where()}")
    if cost(widths_at(hi)) <= target:
        return _checked(widths_at(hi), cost, target, budget, bound, exact=False)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(widths_at(mid)) <= target else (lo, mid)
    widths = _fill(widths_at(lo), lo, ratios, base, cost, target, bound, floor)
    return _checked(widths, cost, target, budget, bound, exact=True)


def _fill(widths: dict[str, int], m: float, ratios: Mapping[str, float],
          base: Mapping[str, int], cost, target: float, bound: BoundSpace,
          floor: Mapping[str, int]) -> dict[str, int]:
    """Spend the rounding slack: grow the most under-rounded groups while under target;
    if single steps are too coarse to land within 1%, repair with the best single or
    paired (+one group, -another) step."""
    steps = group_steps(bound)
    while cost(widths) < target * (1 - TOLERANCE / 4):
        order = sorted((widths[g] / (m * ratios[g] * base[g]), g) for g in base
                       if widths[g] + steps[g] <= base[g])
        for _, g in order:
            trial = dict(widths, **{g: widths[g] + steps[g]})
            if cost(trial) <= target:
                widths = trial
                break
        else:
            break
    for _ in range(32):
        if abs(cost(widths) - target) <= TOLERANCE * target * 0.9:
            break
        lows = {g: max(bound.space.min_width, 1, floor.get(g, 0)) for g in base}
        repaired = _repair(widths, base, cost, target, steps, lows)
        if repaired == widths:
            break
        widths = repaired
    return widths


def _repair(widths: dict[str, int], base: Mapping[str, int], cost, target: float,
            steps: Mapping[str, int], lows: Mapping[str, int]) -> dict[str, int]:
    """The widths one single or paired step away that land closest to the target (no group
    below its `lows` width)."""
    up = [g for g in base if widths[g] + steps[g] <= base[g]]
    down = [g for g in base if widths[g] - steps[g] >= lows[g]]
    moves = [{g: widths[g] + steps[g]} for g in up] + [{g: widths[g] - steps[g]} for g in down]
    moves += [{a: widths[a] + steps[a], b: widths[b] - k * steps[b]} for a in up for b in down
              if a != b for k in range(1, 9) if widths[b] - k * steps[b] >= lows[b]]
    best, gap = widths, abs(cost(widths) - target)
    for move in moves:
        trial = dict(widths, **move)
        d = abs(cost(trial) - target)
        if d < gap:
            best, gap = trial, d
    return best


def _checked(widths: dict[str, int], cost, target: float, budget: Budget,
             bound: BoundSpace, exact: bool) -> dict[str, int]:
    got = cost(widths)
    if budget.relative and budget.value >= 1 and not exact:
        return widths
    if abs(got - target) > TOLERANCE * target:
        raise BudgetError(
            f"budget {budget} cannot be met within 1% in space {bound.space.name!r} with "
            f"divisor {bound.space.divisor}: the closest genome costs {got:.4g} "
            f"{budget.spec.unit} ({got / target:.3f}x the target){budget.where()}")
    return widths


FLAT_STEP = 0.05  # a measured table's error under another load (two tables 44 min apart: 9%)
FLAT_SPAN = 1.5   # uniform's MACs at +step over those at -step: above it, a flat budget


def flat_note(bound: BoundSpace, budget: Budget, step: float = FLAT_STEP) -> str | None:
    """A warning line when `budget` is in a measured metric (latency) and sits where its table
    is flat: uniform fitted to the target ±`step` spans more than FLAT_SPAN× in MACs, so a
    table measured under another load gives a very different genome. None otherwise (an
    analytic metric, a well-conditioned budget, or one too near the floor to bracket)."""
    if not budget.spec.settings:
        return None
    target, base = budget.target(bound), bound.base_in("macs")

    def macs_at(value: float) -> float:
        near = Budget(budget.metric, value, False, f"{value:.4g}{budget.spec.unit}",
                      budget.latency)
        return bound.cost_at(fit_to_budget({}, near, bound), None, "macs") / base

    try:
        lo, mid, hi = (macs_at(target * f) for f in (1 - step, 1.0, 1 + step))
    except BudgetError:
        return None
    if hi < FLAT_SPAN * lo:
        return None
    return (f"note: {budget} sits where the {budget.spec.name} table{budget.where()} is flat: "
            f"uniform fitted to it has {mid:.1%} of the base's MACs, but fitted to "
            f"{1 - step:.0%}..{1 + step:.0%} of it {lo:.1%}..{hi:.1%}; a table measured under "
            "another load is off by that much, so the genome found depends on the machine's "
            "load (measure on a quiet machine, or give a MACs budget)")

"""Cost metrics as data: one registry entry per metric (MACs, params, latency on a device).

Budgets (`archsearch.budget`), the cost record of a genome (`BoundSpace.with_cost`),
`fit_to_budget`, the pruners, sparsity genomes and the search's objectives all ask this
registry; adding a metric is one `register_metric` call. A metric says how a budget names
it (`50%FLOPs`, `1.5Mparams`, `3ms`, `40%latency`), how to price a genome of a bound space
(a `Pricer`: one fast function of the group-width vector and the active-call mask, as
`CostModel.cost_vector`), what a genome's `cost` records for it, and what one kept weight
of an unstructured-pruned layer costs in it (None: dense kernels run at the same speed
whatever the sparsity, so the metric cannot budget a sparsity genome).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from archsearch.errors import ArchsearchError

if TYPE_CHECKING:
    from archsearch.build import BoundSpace
    from archsearch.latency import LatencySettings


class Pricer(Protocol):
    """A metric priced on one bound space (and, for latency, one device setting)."""

    def vector(self, w: np.ndarray, active: np.ndarray) -> float:
        """The cost of group widths `w` (CostModel.widths_vector) with calls `active`."""

    def record(self, value: float, base: float) -> dict[str, Any]:
        """What a genome's `cost` records for a genome priced at `value` (`base`: the
        full-width genome's)."""


@dataclass(frozen=True)
class Metric:
    """One cost metric: its name, how a budget spells it and how it is priced.

    A budget reads `<number>%<word>` (relative) or `<number><scale><word>` (absolute, a
    `scales` prefix optional) for a word in `words`, or `<number><unit>` for a unit in
    `units` (absolute; the value times the unit's factor, in the metric's own unit)."""

    name: str
    label: str
    words: tuple[str, ...]
    example: str  # how a budget in it is written, for error messages
    pricer: Callable[[BoundSpace, LatencySettings | None], Pricer]
    key: str = ""  # the genome cost key of its value (default: the name)
    scales: Mapping[str, float] = field(default_factory=dict)
    units: Mapping[str, float] = field(default_factory=dict)
    per_weight: Callable[[Any, str], float] | None = None  # (SparseLayout, layer) -> cost
    unit: str = ""  # shown after a value in messages
    settings: bool = False  # priced per device setting (`LatencySettings`)

    @property
    def cost_key(self) -> str:
        return self.key or self.name

    def read(self, suffix: str, relative: bool) -> float | None:
        """The scale factor of a budget's `suffix` (after the number and any %) if it names
        this metric, else None."""
        suffix = suffix.lower()
        if relative:
            return 1.0 if suffix in self.words else None
        if suffix in self.units:
            return self.units[suffix]
        for word in self.words:
            if suffix == word and not self.units:  # `3latency`: write 3ms
                return 1.0
            head = suffix[: -len(word)] if suffix.endswith(word) else None
            if head and head in self.scales:
                return self.scales[head]
        return None


_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a metric (a name or a budget word already taken is refused)."""
    taken = {w for m in _REGISTRY.values() for w in (*m.words, *m.units)}
    clash = taken & {*metric.words, *metric.units}
    if metric.name in _REGISTRY or clash:
        raise ArchsearchError(f"metric {metric.name!r} is already registered or reuses a "
                              f"budget word ({', '.join(sorted(clash)) or metric.name})")
    _REGISTRY[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    _REGISTRY.pop(name, None)


def metrics() -> dict[str, Metric]:
    """Every registered metric by name, in registration order."""
    return dict(_REGISTRY)


def get_metric(name: str) -> Metric:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ArchsearchError(f"unknown cost metric {name!r}; known: "
                              f"{', '.join(_REGISTRY)}") from None


def budget_examples() -> str:
    """`50%FLOPs, 30%params, ...`: how budgets in every metric are written."""
    return ", ".join(m.example for m in _REGISTRY.values())


# -- the analytic metrics: MACs and params, from the cost counter ---------------------------

class AnalyticPricer:
    """MACs or params from `CostModel.cost_vector` (`index` 0 or 1)."""

    def __init__(self, bound: BoundSpace, index: int, name: str):
        self.costs, self.index, self.name = bound.costs, index, name

    def vector(self, w: np.ndarray, active: np.ndarray) -> float:
        return self.costs.cost_vector(w, active)[self.index]

    def record(self, value: float, base: float) -> dict[str, Any]:
        return {self.name: int(round(value)), f"{self.name}_ratio": value / base}


_SCALES = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def _latency_pricer(bound: BoundSpace, settings: LatencySettings | None) -> Pricer:
    from archsearch.latency import latency_pricer

    return latency_pricer(bound, settings)


MACS = register_metric(Metric(
    "macs", "MACs", ("flops", "macs"), "50%FLOPs", lambda b, _: AnalyticPricer(b, 0, "macs"),
    scales=_SCALES, per_weight=lambda lay, m: lay.macs_per_weight[m], unit="macs"))
PARAMS = register_metric(Metric(
    "params", "params", ("params",), "30%params", lambda b, _: AnalyticPricer(b, 1, "params"),
    scales=_SCALES, per_weight=lambda lay, m: 1.0, unit="params"))
LATENCY = register_metric(Metric(
    "latency", "latency", ("latency",), "3ms or 40%latency", _latency_pricer, key="latency_ms",
    units={"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}, unit="ms", settings=True))

"""A space bound to a dataset's shapes: graph, cost model, genome validation, model building."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from archsearch._shrink import Keep, shrink
from archsearch.budget import Budget, fit_to_budget
from archsearch.cost import Cost, CostModel
from archsearch.data import DatasetInfo, dataset_info
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph
from archsearch.metrics import MACS, PARAMS, Pricer, get_metric
from archsearch.models import init_weights
from archsearch.spaces import Space, load_space

if TYPE_CHECKING:
    from archsearch.latency import LatencySettings


@dataclass(frozen=True)
class BoundSpace:
    """A search space at one dataset's input shape and class count."""

    space: Space
    info: DatasetInfo

    def base_model(self) -> nn.Module:
        return self.space.build(self.info)

    @cached_property
    def graph(self) -> ChannelGraph:
        return ChannelGraph(self.base_model(), torch.zeros(1, *self.info.input_shape))

    @cached_property
    def costs(self) -> CostModel:
        return CostModel(self.graph)

    @cached_property
    def base_cost(self) -> Cost:
        return self.costs.cost({})

    @property
    def recorded_size(self) -> int | None:
        """The input size a genome made here records: this size when it is not the
        dataset's own (None: the dataset's size, which a genome leaves out)."""
        try:
            native = dataset_info(self.info.key).size
        except ArchsearchError:  # a dataset known only by its DatasetInfo
            native = None
        return None if self.info.size == native else self.info.size

    def genome(self, widths: Mapping[str, int], blocks: Mapping[str, bool] | None = None,
               provenance: Mapping[str, object] | None = None) -> Genome:
        """A validated genome of this space with its cost filled in."""
        facts = dict(provenance or {})
        if self.info.fingerprint:  # a folder's files, so a changed folder is noticed
            facts.setdefault("dataset_fingerprint", self.info.fingerprint)
        genome = Genome(self.space.name, dict(widths), dict(blocks or {}), self.info.key,
                        facts)
        self.validate(genome)
        return self.with_cost(genome)

    def with_cost(self, genome: Genome) -> Genome:
        """The genome's cost at this input size, which it records (`recorded_size`): MACs,
        params, and every other metric this space has been priced in (latency: with its
        device, threads and batch)."""
        cost = self.costs.cost(genome.widths, genome.blocks)
        genome.cost = {"macs": cost.macs, "params": cost.params, **cost.ratio(self.base_cost)}
        w, active = self.costs.widths_vector(genome.widths), self.costs.active(genome.blocks)
        for (name, _), pricer in self.pricers.items():
            if name not in (MACS.name, PARAMS.name):
                full = pricer.vector(self.costs.widths_vector({}), self.costs.active({}))
                genome.cost.update(pricer.record(pricer.vector(w, active), full))
        genome.input_size = self.recorded_size
        return genome

    @cached_property
    def pricers(self) -> dict[tuple[str, object], Pricer]:
        """The metrics this space has been priced in, by (metric, settings)."""
        return {}

    def pricer(self, metric: str = "macs", settings: LatencySettings | None = None) -> Pricer:
        """`metric` priced on this space (`settings`: where, for a metric priced per
        device setting such as latency; None: its default)."""
        spec = get_metric(metric)
        key = (spec.name, settings if spec.settings else None)
        if key not in self.pricers:
            self.pricers[key] = spec.pricer(self, settings)
        return self.pricers[key]

    def base_in(self, metric: str = "macs", settings: LatencySettings | None = None) -> float:
        """The full-width genome's cost in `metric`."""
        return self.cost_at({}, None, metric, settings)

    def base_genome(self) -> Genome:
        full = self.genome(self.graph.base_widths(), dict.fromkeys(self.graph.blocks, True),
                           {"method": "base"})
        return full

    def uniform(self, budget: Budget) -> Genome:
        """Every group scaled by one ratio onto the budget."""
        widths = fit_to_budget({}, budget, self)
        return self.genome(widths, dict.fromkeys(self.graph.blocks, True),
                           {"method": "uniform", "budget": str(budget)})

    def cost_at(self, widths: Mapping[str, int], blocks: Mapping[str, bool] | None = None,
                metric: str = "macs", settings: LatencySettings | None = None) -> float:
        """The cost of `widths` (and kept `blocks`) in one metric (`archsearch.metrics`): the
        fast path every budget search shares."""
        return self.pricer(metric, settings).vector(self.costs.widths_vector(widths),
                                                    self.costs.active(blocks or {}))

    def validate(self, genome: Genome) -> None:
        """Raise ArchsearchError if the genome does not fit this space."""
        if genome.space != self.space.name:
            raise ArchsearchError(f"genome is for space {genome.space!r}, not {self.space.name!r}")
        groups = self.graph.groups
        for name, width in genome.widths.items():
            if name not in groups:
                raise ArchsearchError(f"genome names unknown group {name!r} in space "
                                      f"{self.space.name!r}")
            group = groups[name]
            if not group.prunable and width != group.size:
                raise ArchsearchError(f"group {name!r} cannot be pruned (it is tied to the "
                                      f"input or output), but the genome sets width {width}")
            if not 1 <= width <= group.size:
                raise ArchsearchError(f"width of group {name!r} must be in 1..{group.size}, "
                                      f"but got {width}")
            if width % group.unit:
                raise ArchsearchError(f"width of group {name!r} must be a multiple of "
                                      f"{group.unit} (it is pruned in whole groups of a "
                                      f"grouped conv), but got {width}")
        unknown = set(genome.blocks) - set(self.graph.blocks)
        if unknown:
            raise ArchsearchError(f"genome names unknown block(s) {sorted(unknown)} in space "
                                  f"{self.space.name!r}")

    def build(self, genome: Genome, keep: Keep | None = None,
              base: nn.Module | None = None) -> nn.Module:
        """The genome's model: fresh weights, or `base`'s surviving weights with `keep`."""
        self.validate(genome)
        if keep is not None and base is None:
            raise ArchsearchError("inherited weights (keep=...) need the base model they come from")
        return shrink(base if base is not None else self.base_model(), genome, keep,
                      graph=self.graph, init=init_weights)


RECENT_BINDS = 4  # bound spaces held strongly (their traced graphs are the big part)
_ALIVE: weakref.WeakValueDictionary[tuple[Any, ...], BoundSpace] = weakref.WeakValueDictionary()
_RECENT: OrderedDict[tuple[Any, ...], BoundSpace] = OrderedDict()


def _bind(space_name: str, info: DatasetInfo, input_size: int | None = None) -> BoundSpace:
    """Cached by the dataset's facts, not its name: two folders both called `data` (or one
    folder whose files changed) are two datasets. Only the RECENT_BINDS last ones are kept
    alive by the cache (a long-lived worker binding many spaces stays bounded); any other
    still in use elsewhere is found again."""
    key = (space_name, info, input_size)
    bound = _RECENT.get(key) or _ALIVE.get(key)
    if bound is None:
        space = load_space(space_name)
        if input_size is not None:
            space = replace(space, input_size=input_size)
        bound = BoundSpace(space, info)
        _ALIVE[key] = bound
    _RECENT[key] = bound
    _RECENT.move_to_end(key)
    while len(_RECENT) > RECENT_BINDS:
        _RECENT.popitem(last=False)
    return bound


def bind(space: str | Space, dataset: str | DatasetInfo | None = None, *,
         input_size: int | None = None) -> BoundSpace:
    """The space at a dataset's shapes (default: the space's default dataset); cached.
    `input_size` overrides the image size of the space and the dataset."""
    space_obj = space if isinstance(space, Space) else load_space(space)
    if input_size is not None:
        space_obj = replace(space_obj, input_size=input_size)
    info = space_obj.dataset(dataset)
    if isinstance(space, Space) and space.path is None:
        return BoundSpace(space_obj, info)
    return _bind(space_obj.path or space_obj.name, info, input_size)


class GenomeLike(Protocol):
    """What binding needs of a genome of either kind (`archsearch.kinds`): its space, its
    dataset and the input size it was made at."""

    space: str
    dataset: str | None
    input_size: int | None


def genome_input_size(genome: GenomeLike, input_size: int | None = None,
                      source: str = "the genome") -> int | None:
    """The input size to bind a genome at: the one it records, else `input_size` (an
    explicit --input-size, which a genome without a recorded size takes); one line when
    both are given and disagree."""
    recorded = genome.input_size
    if recorded is None or input_size is None or input_size == recorded:
        return input_size if input_size is not None else recorded
    raise ArchsearchError(f"{source} was made at input size {recorded}, not --input-size "
                          f"{input_size}: leave --input-size out (or pass {recorded})")


def bind_genome(genome: GenomeLike, dataset: str | DatasetInfo | None = None,
                input_size: int | None = None, source: str = "the genome") -> BoundSpace:
    """The space a genome (width or sparsity) belongs to, at its dataset (or `dataset`) and
    its recorded input size (`genome_input_size`)."""
    return bind(genome.space, dataset or genome.dataset,
                input_size=genome_input_size(genome, input_size, source))


def base_genome(space: str | Space, info: DatasetInfo | str | None = None) -> Genome:
    return bind(space, info).base_genome()


def genome_cost(genome: Genome, info: DatasetInfo | str | None = None) -> Cost:
    bound = bind_genome(genome, info)
    bound.validate(genome)
    return bound.costs.cost(genome.widths, genome.blocks)

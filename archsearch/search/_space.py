"""Parameterisation: an Optuna trial's relative widths (and kept blocks) -> a genome on budget.

A trial samples one relative width per channel group (`w.<group>`), or per stage with
granularity "stage" (`s.<stage>`), plus keep/remove per removable block (`b.<block>`).
Only the *shape* matters: `fit_to_budget` scales it onto the budget, so every candidate
costs the same. Guide genomes are summarised as per-stage keep ratios and mapped onto the
target space by relative stage position (transferred guided pruning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.budget import Budget, BudgetError, fit_to_budget
from archsearch.build import BoundSpace, bind_genome
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome

if TYPE_CHECKING:
    from archsearch.search._search import SearchConfig

GRANULARITIES = ("group", "stage")
MIN_RATIO = 0.1  # lowest relative width a trial may propose (before projection)
# A shape whose rounded widths cannot land within 1% of the budget is blended towards the
# uniform shape (ratio ** (1 - blend)) until one does; blend 1 is the uniform shape.
BLENDS = (0.0, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Parameterisation:
    """How trials of one space, dataset and budget map to genomes."""

    bound: BoundSpace
    budget: Budget
    granularity: str = "group"
    min_ratio: float = MIN_RATIO

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ArchsearchError(f"granularity must be one of {GRANULARITIES}, but got "
                                  f"granularity={self.granularity!r}")
        if not 0 < self.min_ratio < 1:
            raise ArchsearchError(f"min_ratio must be in (0, 1), but got {self.min_ratio}")

    @property
    def stages(self) -> dict[str, int]:
        return self.bound.graph.stages()

    def width_params(self) -> dict[str, list[str]]:
        """Parameter name -> the groups it sets."""
        if self.granularity == "stage":
            out: dict[str, list[str]] = {}
            for group, stage in self.stages.items():
                out.setdefault(f"s.{stage}", []).append(group)
            return out
        return {f"w.{g}": [g] for g in self.bound.graph.prunable}

    def block_params(self) -> list[str]:
        return [f"b.{name}" for name in self.bound.graph.blocks]

    def param_stage(self, param: str) -> int | None:
        """The stage a width parameter acts on (None for block parameters)."""
        groups = self.width_params().get(param)
        return self.stages[groups[0]] if groups else None

    def suggest(self, trial: Any, budget: Budget | None = None) -> Genome:
        """Sample a shape on `trial` and project it onto the budget."""
        shape: dict[str, float] = {}
        for param, groups in self.width_params().items():
            ratio = trial.suggest_float(param, self.min_ratio, 1.0)
            shape.update(dict.fromkeys(groups, ratio))
        blocks = {p[2:]: bool(trial.suggest_categorical(p, [True, False]))
                  for p in self.block_params()}
        return self.project(shape, blocks, budget)

    def project(self, shape: Mapping[str, float], blocks: Mapping[str, bool] | None = None,
                budget: Budget | None = None, provenance: Mapping[str, Any] | None = None
                ) -> Genome:
        """The genome with this relative shape, fitted onto the budget."""
        budget = budget or self.budget
        blocks = {b: bool((blocks or {}).get(b, True)) for b in self.bound.graph.blocks}
        prov = {"method": "search", "budget": str(budget), **(provenance or {})}
        try:
            return self._fit(shape, blocks, budget, prov)
        except BudgetError:
            if all(blocks.values()):
                raise
        # too few blocks kept to reach the budget even at full width: keep them all
        prov["blocks_restored"] = sorted(b for b, kept in blocks.items() if not kept)
        return self._fit(shape, dict.fromkeys(blocks, True), budget, prov)

    def _fit(self, shape: Mapping[str, float], blocks: dict[str, bool], budget: Budget,
             prov: dict[str, Any]) -> Genome:
        for blend in BLENDS:  # soften the shape towards uniform only if it cannot be met
            softened = {g: float(r) ** (1.0 - blend) for g, r in shape.items()}
            try:
                widths = fit_to_budget(softened, budget, self.bound, blocks)
            except BudgetError:
                if blend == BLENDS[-1]:
                    raise
                continue
            if blend:
                prov["shape_blend"] = blend
            return self.bound.genome(widths, blocks, prov)
        raise AssertionError("unreachable")

    def guide_params(self, guide: Genome) -> dict[str, Any]:
        """Parameters that reproduce a same-space guide (for `study.enqueue_trial`)."""
        shape = group_ratios(guide, self.bound)
        params: dict[str, Any] = {}
        for param, groups in self.width_params().items():
            ratio = float(np.mean([shape[g] for g in groups]))
            params[param] = min(1.0, max(self.min_ratio, ratio))
        for param in self.block_params():
            params[param] = bool(guide.blocks.get(param[2:], True))
        return params

    def centres(self, guides: Sequence[Genome]) -> dict[str, float]:
        """Guided centre of each parameter: width params the guides' mean stage ratio mapped
        onto this space; block params the fraction of same-space guides keeping the block."""
        n_stages = max(self.stages.values()) + 1
        curves = [map_stages(stage_ratios(g), n_stages) for g in guides]
        mean = np.mean(np.asarray(curves), axis=0)
        peak = float(mean.max())
        out = {p: float(min(1.0, max(self.min_ratio, mean[self.param_stage(p)] / peak)))
               for p in self.width_params()}
        same = [g for g in guides if g.space == self.bound.space.name]
        for param in self.block_params():
            kept = [g.blocks.get(param[2:], True) for g in same]
            out[param] = float(np.mean(kept)) if kept else 1.0
        return out


    @classmethod
    def for_search(cls, bound: BoundSpace, budget: Budget,
                   config: SearchConfig) -> Parameterisation:
        """A width search's: at the config's granularity."""
        return cls(bound, budget, config.granularity)

    def uniform(self) -> Genome:
        """The baseline: every group scaled by one ratio onto the budget (BudgetError when
        even the narrowest genome is too big)."""
        return self.bound.uniform(self.budget)

    def enqueued(self, guides: Sequence[tuple[str, Genome]], uniform: Genome,
                 first: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The first trials (parameters, user attributes): same-space guides (evaluated
        exactly), then the uniform genome (the baseline every search should beat), as far
        as the first stage's `first` trials allow."""
        same = [(p, g) for p, g in guides if g.space == self.bound.space.name]
        out = [(self.guide_params(guide), {"guide": str(path),
                                           "guide_shape": group_ratios(guide, self.bound)})
               for path, guide in same[:first]]
        if len(same) < first and first > 1:
            out.append((self.guide_params(uniform), {
                "baseline": "uniform", "guide_shape": group_ratios(uniform, self.bound)}))
        return out

    def replay(self, shape: Mapping[str, float], sampled: Genome, budget: Budget,
               attrs: Mapping[str, Any]) -> Genome:
        """An enqueued trial's genome (a guide or the uniform baseline): its exact shape,
        with the blocks the trial sampled, on the budget."""
        label = {"guide": attrs["guide"]} if "guide" in attrs else \
            {"baseline": attrs.get("baseline")}
        return self.project(shape, sampled.blocks, budget, label)


def group_ratios(genome: Genome, bound: BoundSpace) -> dict[str, float]:
    """Kept ratio (width / base) of every prunable group."""
    base = bound.graph.base_widths()
    return {g: genome.widths.get(g, size) / size for g, size in base.items()}


def stage_ratios(genome: Genome) -> list[float]:
    """Mean kept ratio per stage of a genome (groups inside removed blocks left out)."""
    bound = bind_genome(genome)
    graph = bound.graph
    removed = genome.removed_blocks()
    inside = {m for b in removed for m in graph.blocks[b].modules}
    ratios = group_ratios(genome, bound)
    per_stage: dict[int, list[float]] = {}
    for group, stage in graph.stages().items():
        if removed and all(p in inside for p in graph.groups[group].producers):
            continue
        per_stage.setdefault(stage, []).append(ratios[group])
    n = max(graph.stages().values()) + 1
    return [float(np.mean(per_stage[s])) if s in per_stage else 1.0 for s in range(n)]


def map_stages(ratios: Sequence[float], n_target: int) -> list[float]:
    """Resample a per-stage curve onto `n_target` stages by relative stage position."""
    if n_target < 1:
        raise ArchsearchError(f"n_target must be >= 1, but got {n_target}")
    src = np.linspace(0.0, 1.0, len(ratios)) if len(ratios) > 1 else np.zeros(1)
    dst = np.linspace(0.0, 1.0, n_target) if n_target > 1 else np.zeros(1)
    if len(ratios) == 1:
        return [float(ratios[0])] * n_target
    return [float(v) for v in np.interp(dst, src, np.asarray(ratios, dtype=float))]

"""Predefined baselines: `uniform` (one ratio for every group) and `l1norm` (Li et al.,
ICLR 2017: keep the filters with the largest L1 norm, at predefined per-layer ratios)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archsearch.budget import Budget, fit_to_budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.pruners._base import Pruner, as_budget, filter_l1
from archsearch.pruners._options import STAGE_RATIOS_OPTION


class UniformPruner(Pruner):
    """Every group scaled by one ratio onto the budget; needs no training. Kept channels
    (for fine-tuning) are those with the largest filter L1 norm."""

    name = "uniform"
    needs_training = False

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return filter_l1(model, self.bound)

    def genome(self, model: nn.Module | None, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        genome = self.bound.uniform(budget)
        genome.provenance = self._provenance(budget)
        return genome


class L1NormPruner(Pruner):
    """Filters ranked by L1 norm (summed over the producers of a group), kept at per-layer
    ratios: uniform by default, or `stage_ratios` (one relative ratio per stage, scaled
    together onto the budget). The genome does not depend on the weights; `keep` does."""

    name = "l1norm"
    OPTIONS = (STAGE_RATIOS_OPTION,)
    needs_training = False

    def __init__(self, bound: BoundSpace, stage_ratios: Sequence[float] | None = None):
        super().__init__(bound)
        self.stage_ratios = check_stage_ratios(bound, stage_ratios)

    def options(self) -> dict[str, object]:
        return {"stage_ratios": self.stage_ratios} if self.stage_ratios else {}

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return filter_l1(model, self.bound)

    def genome(self, model: nn.Module | None, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        return self.bound.genome(predefined_widths(self.bound, budget, self.stage_ratios),
                                 dict.fromkeys(self.bound.graph.blocks, True),
                                 self._provenance(budget))


def check_stage_ratios(bound: BoundSpace, stage_ratios: Sequence[float] | None
                       ) -> list[float] | None:
    """One relative ratio in (0, 1] per stage of the space, or None (uniform)."""
    if stage_ratios is None:
        return None
    stages = sorted(set(bound.graph.stages().values()))
    ratios = [float(r) for r in stage_ratios]
    if len(ratios) != len(stages):
        raise ArchsearchError(f"stage_ratios needs one ratio per stage ({len(stages)} "
                              f"in space {bound.space.name!r}), but got {len(ratios)}")
    bad = [r for r in ratios if not 0 < r <= 1]
    if bad:
        raise ArchsearchError(f"stage_ratios must be in (0, 1], but got {bad}")
    return ratios


def predefined_widths(bound: BoundSpace, budget: Budget,
                      stage_ratios: Sequence[float] | None) -> dict[str, int]:
    """The predefined widths: every group by one ratio, or per stage by `stage_ratios`
    (relative, scaled together onto the budget)."""
    stages = bound.graph.stages()
    top = max(stage_ratios) if stage_ratios else 1.0
    shape = ({g: stage_ratios[s] / top for g, s in stages.items()} if stage_ratios else {})
    return fit_to_budget(shape, budget, bound)

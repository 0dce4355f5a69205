"""Soft filter pruning (He et al., IJCAI 2018): while the base trains, the lowest-norm filters
of every layer are zeroed after each epoch but keep being updated, so a pruned filter can
recover; the survivors of the last epoch are kept."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from archsearch.budget import Budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.pruners._base import Pruner, as_budget, filter_norms
from archsearch.pruners._options import STAGE_RATIOS_OPTION
from archsearch.pruners._predefined import check_stage_ratios, predefined_widths

_log = logging.getLogger(__name__)


def filter_l2(model: nn.Module, bound: BoundSpace) -> dict[str, torch.Tensor]:
    """Per prunable group, the L2 norm of each output filter over all its producers."""
    return filter_norms(model, bound, 2)


class SFPPruner(Pruner):
    """Predefined widths (uniform, or `stage_ratios` scaled onto the budget, as l1norm);
    training zeroes, in every group, the filters beyond the genome's width with the lowest
    L2 norm (over all the group's producing layers, bias included) before the first step and
    after every epoch, without masking gradients (He et al.'s soft pruning). Kept channels:
    the largest filter L2 norms of the trained base.

    The zeroing rate comes from the budget (`set_budget`, before training). Zeroing before
    the first step also repeats the zeroing a resumed run's checkpoint (saved before the
    end-of-epoch hook) lacks.
    """

    name = "sfp"
    OPTIONS = (STAGE_RATIOS_OPTION,)
    score_kind = "filter L2 norm"

    def __init__(self, bound: BoundSpace, stage_ratios: Sequence[float] | None = None):
        super().__init__(bound)
        self.stage_ratios = check_stage_ratios(bound, stage_ratios)
        self.widths: dict[str, int] | None = None
        self._fresh = True

    def options(self) -> dict[str, object]:
        return {"stage_ratios": self.stage_ratios} if self.stage_ratios else {}

    def set_budget(self, budget: Budget) -> None:
        self.widths = predefined_widths(self.bound, budget, self.stage_ratios)

    def prepare(self, model: nn.Module) -> nn.Module:
        self._fresh = True
        return model

    def regularize(self, model: nn.Module) -> None:
        if self._fresh:
            self._fresh = False
            self.zero_filters(model)

    def end_epoch(self, model: nn.Module) -> None:
        self.zero_filters(model)

    @torch.no_grad()
    def zero_filters(self, model: nn.Module) -> dict[str, list[int]]:
        """Zero the lowest-norm filters beyond each group's width; returns them per group."""
        if self.widths is None:
            raise ArchsearchError("sfp needs the budget before training (set_budget)")
        zeroed: dict[str, list[int]] = {}
        for group, norms in filter_l2(model, self.bound).items():
            drop = self.bound.graph.groups[group].size - self.widths.get(group, len(norms))
            if drop <= 0:
                continue
            idx = torch.sort(norms, stable=True).indices[:drop]
            for producer in self.bound.graph.groups[group].producers:
                layer = model.get_submodule(producer)
                layer.weight[idx.to(layer.weight.device)] = 0
                if getattr(layer, "bias", None) is not None:
                    layer.bias[idx.to(layer.bias.device)] = 0
            zeroed[group] = sorted(idx.tolist())
        return zeroed

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return filter_l2(model, self.bound)

    def genome(self, model: nn.Module | None, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        return self.bound.genome(predefined_widths(self.bound, budget, self.stage_ratios),
                                 dict.fromkeys(self.bound.graph.blocks, True),
                                 self._provenance(budget))

"""Prune your own model in your own training loop: no space file, no run folder.

    pruning = Pruning(model, example_input, method="slimming", budget="50%FLOPs")
    model = pruning.prepare(model)        # what to train (sss adds gates; most: the same model)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        pruning.regularize(model)         # the method's sparsity term: after backward, before step
        optimizer.step()
    pruning.end_epoch(model)              # after each epoch (sfp zeroes filters here)
    genome = pruning.genome(model)        # widths (and kept blocks) at the budget: a Genome
    small = pruning.shrink(model, genome) # the narrower model with the surviving weights

The model is traced once (`ChannelGraph`) on a copy made when `Pruning` is built; any width
method of `archsearch.pruners.PRUNERS` works, with the options its class takes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from archsearch.budget import Budget, parse_budget
from archsearch.build import BoundSpace
from archsearch.data import DatasetInfo
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph
from archsearch.pipeline import is_sparse
from archsearch.pruners import PRUNERS, Pruner, get_pruner
from archsearch.spaces import Space


@dataclass(frozen=True, eq=False)
class ModelSpace(BoundSpace):
    """A bound space whose base model is a given module (copied), traced at `example`; equal
    only to itself (two models of one class are two spaces)."""

    model: nn.Module = field(compare=False, repr=False, default_factory=nn.Identity)
    example: torch.Tensor = field(compare=False, repr=False,
                                  default_factory=lambda: torch.zeros(1))

    def base_model(self) -> nn.Module:
        return copy.deepcopy(self.model)

    @cached_property
    def graph(self) -> ChannelGraph:
        return ChannelGraph(self.base_model(), self.example)

    @property
    def recorded_size(self) -> int | None:
        return None  # the input shape is the example's, recorded in the provenance


class Pruning:
    """A pruning method bound to one model: `prepare`, `regularize` and `end_epoch` for its
    training, `genome` for the widths at the budget, `shrink` for the narrower model.

    `example_input` is a batch the model takes (its first item is traced); `budget` is a
    budget string (`50%FLOPs`, `30%params`, `120MFLOPs`, ...) or a `Budget`; `divisor` and
    `min_width` round the widths as a space's `[search]` does; `options` go to the method
    (e.g. `sparsity=1e-4` for slimming)."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor,
                 method: str = "slimming", budget: Budget | str = "50%FLOPs", *,
                 divisor: int = 1, min_width: int = 1, name: str | None = None,
                 **options: Any):
        if not isinstance(model, nn.Module):
            raise ArchsearchError(f"Pruning needs an nn.Module, but got model of type "
                                  f"{type(model).__name__}")
        if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
            raise ArchsearchError("example_input must be a batch the model takes (a tensor "
                                  "of shape (N, C, ...)), but got "
                                  f"{getattr(example_input, 'shape', type(example_input))}")
        if is_sparse(method):
            raise ArchsearchError(f"method {method!r} is unstructured (a sparsity genome, not "
                                  f"widths); Pruning takes the width methods: "
                                  f"{', '.join(PRUNERS)}")
        self.budget = budget if isinstance(budget, Budget) else parse_budget(budget)
        example = example_input[:1].detach().cpu()
        shape = tuple(example.shape[1:])
        space = Space(name or type(model).__name__, "python", {}, divisor=divisor,
                      min_width=min_width, description="a model given in Python")
        info = DatasetInfo("own", shape[0], shape[-1], 0)
        self.bound = ModelSpace(space, info, copy.deepcopy(model).cpu(), example)
        self.bound.costs  # noqa: B018 (trace and cost now: an untraceable model fails here)
        pruner = get_pruner(method, self.bound, **options)
        assert isinstance(pruner, Pruner)  # sparsifiers are refused above
        self.pruner = pruner
        self.pruner.set_budget(self.budget)

    @property
    def method(self) -> str:
        return self.pruner.name

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to train: the method's gates or statistics added (most methods: the
        model itself)."""
        return self.pruner.prepare(model)

    def regularize(self, model: nn.Module) -> None:
        """Add the method's sparsity term to the gradients: call it after `backward()` and
        before `optimizer.step()`, on the prepared model."""
        if self.pruner.needs_training:
            self.pruner.regularize(model)

    def end_epoch(self, model: nn.Module) -> None:
        """Call after every training epoch (sfp zeroes its weakest filters here)."""
        self.pruner.end_epoch(model)

    def genome(self, model: nn.Module | None = None, budget: Budget | str | None = None
               ) -> Genome:
        """The genome the method derives from the trained (prepared) `model` at the budget
        (this one's, or `budget`); `genome.save(path)` writes it as JSON, `to_dict()` gives
        the JSON object."""
        if model is None and self.pruner.needs_training:
            raise ArchsearchError(f"method {self.method!r} derives its genome from the trained "
                                  "model: pass it, pruning.genome(model)")
        budget = self.budget if budget is None else budget
        genome = self.pruner.genome(model, budget)
        genome.provenance.setdefault("input_shape", list(self.bound.example.shape[1:]))
        return genome

    def shrink(self, model: nn.Module, genome: Genome | None = None, *,
               inherit: bool = True) -> nn.Module:
        """The narrower model of `genome` (default: `self.genome(model)`), on `model`'s
        device. `inherit`: its surviving channels keep their trained weights (chosen by the
        method's importance: a fine-tune starts here); otherwise fresh weights (to train from
        scratch). `model` itself is left as it is."""
        genome = self.genome(model) if genome is None else genome
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if inherit:
            small = self.pruner.pruned(copy.deepcopy(model), genome)
        else:
            small = self.bound.build(genome)
        return small.to(device)

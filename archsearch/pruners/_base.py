"""The method interface: `Method` (a regularizer for sparsity training, a genome at a budget),
which width pruners (`Pruner`: and per-channel importance, which channels a fine-tuned
model inherits) and sparsifiers share."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from archsearch.budget import Budget, parse_budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.presets import SparsityRule
from archsearch.pruners._options import Option
from archsearch.sparsity import SparsityGenome

G = TypeVar("G", Genome, SparsityGenome)


class Method(abc.ABC, Generic[G]):
    """A pruning method bound to one space at one dataset's shapes: what width pruners
    (`Pruner`, genome kind "width") and sparsifiers (genome kind "sparsity") share.

    Before training, `set_budget` tells the method the budget; training calls `prepare` once
    (methods that add parameters or hooks, e.g. sss gates, taylor's statistics), then
    `regularize(model)` between every `backward()` and `step()`, and `end_epoch(model)` after
    every epoch. Afterwards `genome` (on the prepared, trained model) makes a genome of the
    method's kind (`archsearch.kinds`) meeting a budget, and `restore` gives a
    base-structured model to inherit weights from.
    """

    name: ClassVar[str] = ""
    genome_kind: ClassVar[str] = "width"  # the kind of genome it makes (archsearch.kinds)
    needs_training: ClassVar[bool] = True  # whether `genome` depends on trained weights
    OPTIONS: ClassVar[tuple[Option, ...]] = ()  # the settings a user may give
    # a method with a sparsity term: how its strength is chosen (archsearch.presets)
    sparsity_rule: ClassVar[SparsityRule | None] = None

    def __init__(self, bound: BoundSpace):
        self.bound = bound

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to train (default: unchanged)."""
        return model

    def regularize(self, model: nn.Module) -> None:  # noqa: B027 (optional hook)
        """Add the sparsity term to the gradients (called between backward and step)."""

    def set_budget(self, budget: Budget) -> None:  # noqa: B027 (optional hook)
        """The budget the run aims at, told before training (for methods whose training
        depends on the final genome, e.g. sfp; a sparsifier checks it can be met)."""

    def end_epoch(self, model: nn.Module) -> None:  # noqa: B027 (optional hook)
        """Called after every training epoch of the base (sfp zeroes filters here)."""

    def restore(self, model: nn.Module) -> nn.Module:
        """A model with the base's structure and module names (default: unchanged)."""
        return model

    @abc.abstractmethod
    def genome(self, model: nn.Module, budget: Budget | str) -> G:
        """A genome of this space that costs the budget (within 1%)."""

    def options(self) -> dict[str, object]:
        """The method's settings (recorded in the genome's provenance)."""
        return {}

    def _provenance(self, budget: Budget, **extra: object) -> dict[str, object]:
        return {"method": self.name, "budget": str(budget), **self.options(), **extra}


class Pruner(Method[Genome]):
    """A width pruner: `genome` picks widths (and blocks) meeting a budget,
    `importance`/`keep` pick the surviving channels a fine-tuned model inherits."""

    genome_kind: ClassVar[str] = "width"

    @abc.abstractmethod
    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A score per channel of every prunable group (higher = more important)."""

    def keep(self, model: nn.Module, genome: Genome) -> dict[str, torch.Tensor]:
        """The channel indices each prunable group keeps: the genome's width, by importance."""
        return top_channels(self.importance(model), genome, self.bound)

    def pruned(self, model: nn.Module, genome: Genome) -> nn.Module:
        """The genome's model inheriting `keep`'s channels from the trained `model` (where a
        fine-tune starts); lasso also rescales them."""
        return self.bound.build(genome, self.keep(model, genome), self.restore(model).cpu())


def as_budget(budget: Budget | str) -> Budget:
    return budget if isinstance(budget, Budget) else parse_budget(budget)


def top_channels(scores: Mapping[str, torch.Tensor], genome: Genome,
                 bound: BoundSpace) -> dict[str, torch.Tensor]:
    """Per prunable group, the sorted indices of its `width` highest-scoring channels."""
    keep: dict[str, torch.Tensor] = {}
    for name in bound.graph.prunable:
        size = bound.graph.groups[name].size
        width = genome.widths.get(name, size)
        score = scores.get(name)
        if score is None:
            keep[name] = torch.arange(width)
            continue
        score = score.detach().float().cpu()
        # stable: ties go to the lower index
        order = torch.sort(-score, stable=True).indices
        keep[name] = order[:width].sort().values
    return keep


def check_nonnegative(value: float, what: str) -> float:
    value = float(value)
    if not value >= 0:
        raise ArchsearchError(f"{what} must be >= 0, but got {what}={value:g}")
    return value


def check_positive(value: float, what: str) -> float:
    value = float(value)
    if not value > 0:
        raise ArchsearchError(f"{what} must be > 0, but got {what}={value:g}")
    return value


def check_choice(value: str, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ArchsearchError(f"{what} is one of {', '.join(choices)}, but got {value!r}")
    return value


def filter_norms(model: nn.Module, bound: BoundSpace, p: int = 1) -> dict[str, torch.Tensor]:
    """Per prunable group, the Lp norm (p = 1 or 2) of each output filter over all of its
    producers' weights."""
    out: dict[str, torch.Tensor] = {}
    for name in bound.graph.prunable:
        group = bound.graph.groups[name]
        total = torch.zeros(group.size)
        for producer in group.producers:
            weight = producer_rows(model, bound.graph, producer, name).detach().float().cpu()
            total += weight.abs().pow(p).reshape(weight.shape[0], -1).sum(dim=1)
        out[name] = total if p == 1 else total.pow(1 / p)
    return out


def producer_rows(model: nn.Module, graph: Any, producer: str, group: str) -> torch.Tensor:
    """The weights that make each channel of `group` in `producer`, one row per channel: a
    conv's or linear's filters; for an attention (nn.MultiheadAttention, Swin's or MaxViT's
    window attention) its q, k and v rows of a channel of the heads' group, or its output
    projection's rows of an output channel."""
    mod = model.get_submodule(producer)
    weight = getattr(mod, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight
    from archsearch.graph import is_window_attention, projections

    if is_window_attention(mod):
        qkv, proj = (layer.weight for layer in projections(mod))
    elif isinstance(mod, nn.MultiheadAttention) or hasattr(mod, "in_proj_weight"):
        qkv, proj = mod.in_proj_weight, mod.out_proj.weight
    else:
        raise ArchsearchError(f"cannot score the channels of {producer} "
                              f"({type(mod).__name__}): it has no weight per channel")
    kind = next(c.kind for c in graph.calls if c.module == producer
                and any(seg.group == group for seg in c.outputs))
    if kind != "attn_in":
        return proj
    width = qkv.shape[0] // 3  # rows q, k, v of one inner channel side by side
    return qkv.reshape(3, width, -1).transpose(0, 1).reshape(width, -1)


def filter_l1(model: nn.Module, bound: BoundSpace) -> dict[str, torch.Tensor]:
    """Per prunable group, the L1 norm of each output filter summed over its producers."""
    return filter_norms(model, bound, 1)

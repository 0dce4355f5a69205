"""Unstructured magnitude pruning (Han et al., NIPS 2015): the smallest weights of a trained
base are removed, globally or by one density per layer; the result is a sparsity genome."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from archsearch.budget import Budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.kinds import SPARSITY
from archsearch.pruners._base import Method, as_budget
from archsearch.pruners._options import Option
from archsearch.sparsity import (
    SparsityGenome,
    check_budget,
    check_reachable,
    conv_layers,
    guided_density,
    layout,
    make_genome,
    sparse_value,
    top_masks,
    uniform_density,
)

SCOPES = ("global", "layer")
LAYERS = ("conv", "all")
LAYERS_OPTION = Option("layers", "which layers are sparsified: conv, or all (conv and linear)",
                       str, choices=LAYERS)


class MagnitudePruner(Method[SparsityGenome]):
    """A sparsity genome from the weight magnitudes of a trained base: `scope="global"` keeps
    the largest |w| over all conv/linear layers (one threshold, found on the sorted
    magnitudes so the non-zero cost meets the budget; a MACs budget weighs each weight by the
    MACs it costs), `scope="layer"` keeps the same fraction in every layer. `layers="conv"`
    (the default, as the paper's code) prunes the conv layers only, `"all"` the linear ones
    too. Its masks are each layer's largest weights at the genome's density.

    Not a width pruner (`genome_kind = "sparsity"`): it trains the base without any
    regularizer (the training hooks of `Method` keep their defaults).
    """

    name = "magnitude"
    genome_kind = "sparsity"
    OPTIONS = (
        Option("scope", "one threshold over all layers (global) or the same density in every "
               "layer (layer)", str, choices=SCOPES), LAYERS_OPTION)

    def __init__(self, bound: BoundSpace, scope: str = "global", layers: str = "conv"):
        if scope not in SCOPES:
            raise ArchsearchError(f"scope must be one of {', '.join(SCOPES)}, but got "
                                  f"scope={scope!r}")
        if layers not in LAYERS:
            raise ArchsearchError(f"layers must be one of {', '.join(LAYERS)}, but got "
                                  f"layers={layers!r}")
        super().__init__(bound)
        self.scope = scope
        self.layers = layers

    def options(self) -> dict[str, object]:
        return {"scope": self.scope, "layers": self.layers}

    def pruned_layers(self) -> list[str]:
        return (conv_layers(self.bound) if self.layers == "conv"
                else list(layout(self.bound).numel))

    def set_budget(self, budget: Budget) -> None:
        """Raise BudgetError if the budget cannot be reached by pruning these layers."""
        uniform_density(self.bound, budget, self.pruned_layers())

    def genome(self, model: nn.Module, budget: Budget | str) -> SparsityGenome:
        budget = as_budget(budget)
        density = (uniform_density(self.bound, budget, self.pruned_layers())
                   if self.scope == "layer"
                   else self._global_density(model, budget))
        genome = make_genome(self.bound, density, {"method": self.name,
                                                   "budget": str(budget), **self.options()})
        check_budget(self.bound, genome, budget)
        return genome

    def masks(self, model: nn.Module, genome: SparsityGenome) -> dict[str, torch.Tensor]:
        """Per layer, the mask of its largest-magnitude weights at the genome's density."""
        return top_masks(model, self.bound, genome.density)

    def _global_density(self, model: nn.Module, budget: Budget) -> dict[str, float]:
        lay = layout(self.bound)
        names = self.pruned_layers()
        mags = torch.cat([model.get_submodule(m).weight.detach().abs().float().cpu().flatten()
                          for m in names])
        owner = torch.cat([torch.full((lay.numel[m],), i) for i, m in enumerate(names)])
        full = sparse_value(self.bound, {}, budget)  # BudgetError: a metric sparsity can't cut
        per_weight = torch.tensor([budget.spec.per_weight(lay, m) for m in names],
                                  dtype=torch.float64)[owner]
        fixed = full - float(per_weight.sum())
        room = budget.target(self.bound) - fixed
        check_reachable(self.bound, budget, room)
        order = torch.sort(-mags, stable=True).indices
        spent = per_weight[order].cumsum(0)
        k = int(torch.searchsorted(spent, torch.tensor([room], dtype=torch.float64)))
        if k < len(spent) and abs(float(spent[k]) - room) < abs(
                (float(spent[k - 1]) if k else 0.0) - room):
            k += 1  # the next weight lands closer to the budget
        counts = torch.bincount(owner[order[:k]], minlength=len(names))
        return {m: max(1, int(counts[i])) / lay.numel[m] for i, m in enumerate(names)}


class GuidedSparsityPruner(MagnitudePruner):
    """Guided sparsification (Liu et al. 2019, section 6): the per-layer densities of found
    sparsity genomes (`guides`: files or genomes, from any space), averaged by relative
    depth and scaled onto the budget, are this space's sparsity genome; it needs no trained
    weights. Masks for fine-tuning are each layer's largest weights, as magnitude's."""

    name = "guided-sparsity"
    OPTIONS = (Option("guides", "a found sparsity genome to follow (any space; repeat for "
                      "several, averaged by relative depth)", str, metavar="SPARSITY.json",
                      repeat=True, flag="--guide"), LAYERS_OPTION)
    needs_training = False

    def __init__(self, bound: BoundSpace, guides: Sequence[str | Path | SparsityGenome] = (),
                 layers: str = "conv"):
        super().__init__(bound, scope="global", layers=layers)
        self.guides = [SPARSITY.load_guide(g) for g in guides]
        if not self.guides:
            raise ArchsearchError("guided-sparsity needs at least one sparsity genome as a "
                                  "guide (--guide runs/.../sparsity.json)")
        self._sources = [str(g) if not isinstance(g, SparsityGenome) else
                         g.provenance.get("source_run", "genome") for g in guides]

    def options(self) -> dict[str, object]:
        return {"layers": self.layers, "guides": self._sources}

    def genome(self, model: nn.Module | None, budget: Budget | str) -> SparsityGenome:
        budget = as_budget(budget)
        density = guided_density(self.guides, self.bound, budget, self.pruned_layers())
        genome = make_genome(self.bound, density, {"method": self.name,
                                                   "budget": str(budget), **self.options()})
        check_budget(self.bound, genome, budget)
        return genome

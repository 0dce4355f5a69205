"""Genome kinds: the one interface the two kinds of genome share.

A pruned architecture is written as a *width* genome (`archsearch.genome`: channels kept per
group, residual blocks kept) or a *sparsity* genome (`archsearch.sparsity`: the fraction of
weights kept per conv/linear layer). Each kind is one `GenomeKind`: its name (the one
spelling: "width", "sparsity"), its document `format`, and how a genome of it is loaded and
validated, priced, fitted to a budget and rendered (its table rows and plot). A document's
kind is read from its `format` field, never guessed from its keys.

`KINDS` lists them by name, `get_kind` finds one ("widths", an older spelling, is "width"),
`kind_of` reads a document's, `genome_from_dict`/`load_genome` read a genome of either kind,
and `load_guide` loads a guide genome of a given kind.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from archsearch import genome as width_doc
from archsearch import sparsity as sparse_doc
from archsearch.budget import Budget
from archsearch.build import BoundSpace, bind_genome
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome, read_json
from archsearch.sparsity import SparsityGenome

G = TypeVar("G", Genome, SparsityGenome)
AnyGenome = Genome | SparsityGenome
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class GenomeKind(Generic[G]):
    """One kind of genome and everything that differs between the kinds."""

    name: str  # the one spelling: "width" or "sparsity"
    format: str  # the `format` field of its documents
    label: str  # how one is named in messages ("genome", "sparsity genome")
    genome_class: type[G]
    validator: Callable[[BoundSpace, G], None]
    pricer: Callable[[BoundSpace, G], dict[str, float]]
    fitter: Callable[[BoundSpace, Budget], G]
    rower: Callable[[BoundSpace, G], Rows]
    plotter: Callable[[Rows, str | Path, str], Path]
    keyer: Callable[[Mapping[str, Any]], object]

    # -- load / validate -----------------------------------------------------------------
    def from_dict(self, doc: Any, source: str | None = None) -> G:
        """A genome of this kind from its JSON document (one line when it is not one)."""
        return self.genome_class.from_dict(doc, source or self.label)

    def load(self, path: str | Path) -> G:
        """A genome file of this kind."""
        return self.genome_class.load(path)

    def validate(self, bound: BoundSpace, genome: G) -> None:
        """Raise ArchsearchError if the genome does not fit the bound space."""
        self.validator(bound, genome)

    def load_guide(self, guide: str | Path | G) -> G:
        """A guide genome (a file, or a genome), validated against its own space and
        dataset, with its cost counted there."""
        genome = guide if isinstance(guide, self.genome_class) else self.load(guide)
        source = str(guide) if isinstance(guide, str | Path) else "the genome"
        bound = bind_genome(genome, source=source)
        self.validate(bound, genome)
        return dataclasses.replace(genome, cost=self.cost(bound, genome),
                                   input_size=bound.recorded_size)

    # -- cost ----------------------------------------------------------------------------
    def cost(self, bound: BoundSpace, genome: G) -> dict[str, float]:
        """The genome's cost on the bound space: MACs, params and their ratios to the base
        (a sparsity genome: of its non-zero weights)."""
        return self.pricer(bound, genome)

    def fit(self, bound: BoundSpace, budget: Budget) -> G:
        """The uniform genome of this kind at the budget (BudgetError when none fits)."""
        return self.fitter(bound, budget)

    # -- rendering -----------------------------------------------------------------------
    def rows(self, bound: BoundSpace, genome: G) -> Rows:
        """One row per group (width) or layer (sparsity), in network order."""
        return self.rower(bound, genome)

    def plot(self, rows: Rows, path: str | Path, title: str = "") -> Path:
        return self.plotter(rows, path, title)

    def key(self, doc: Mapping[str, Any]) -> str:
        """What makes two documents of this kind the same genome (provenance aside)."""
        return json.dumps(self.keyer(doc))


# -- the two kinds ---------------------------------------------------------------------------

def _width_cost(bound: BoundSpace, genome: Genome) -> dict[str, float]:
    return dict(bound.with_cost(dataclasses.replace(genome)).cost)


def _width_rows(bound: BoundSpace, genome: Genome) -> Rows:
    from archsearch.viz import width_rows

    return width_rows(bound, genome)


def _plot_widths(rows: Rows, path: str | Path, title: str = "") -> Path:
    from archsearch.viz import plot_widths

    return plot_widths(rows, path, title)


def _plot_densities(rows: Rows, path: str | Path, title: str = "") -> Path:
    from archsearch.viz import plot_densities

    return plot_densities(rows, path, title)


def _width_key(doc: Mapping[str, Any]) -> object:
    removed = sorted(b for b, kept in doc.get("blocks", {}).items() if not kept)
    return [sorted(doc.get("widths", {}).items()), removed]


def _sparse_cost(bound: BoundSpace, genome: SparsityGenome) -> dict[str, float]:
    return sparse_doc.sparse_cost(bound, genome.density)


def _sparse_fit(bound: BoundSpace, budget: Budget) -> SparsityGenome:
    density = sparse_doc.uniform_density(bound, budget)
    return sparse_doc.make_genome(bound, density, {"method": "uniform", "budget": str(budget)})


WIDTH: GenomeKind[Genome] = GenomeKind(
    "width", width_doc.FORMAT, "genome", Genome, BoundSpace.validate, _width_cost,
    BoundSpace.uniform, _width_rows, _plot_widths, _width_key)
SPARSITY: GenomeKind[SparsityGenome] = GenomeKind(
    "sparsity", sparse_doc.FORMAT, "sparsity genome", SparsityGenome, sparse_doc.validate,
    _sparse_cost, _sparse_fit, sparse_doc.density_rows, _plot_densities,
    lambda doc: sorted(doc["density"].items()))

KINDS: dict[str, GenomeKind[Any]] = {WIDTH.name: WIDTH, SPARSITY.name: SPARSITY}
GENOME_KINDS = tuple(KINDS)
_ALIASES = {"widths": "width"}  # the spelling pruners used before genome kinds
_BY_FORMAT: dict[str, GenomeKind[Any]] = {k.format: k for k in KINDS.values()}


def get_kind(name: str | GenomeKind[Any]) -> GenomeKind[Any]:
    """The genome kind `name` ("width" or "sparsity"; "widths" is read as "width")."""
    if isinstance(name, GenomeKind):
        return name
    kind = KINDS.get(_ALIASES.get(name, name)) if isinstance(name, str) else None
    if kind is None:
        raise ArchsearchError(f"unknown genome kind {name!r}; known: {', '.join(KINDS)}")
    return kind


def kind_of(doc: Any, source: str = "genome") -> GenomeKind[Any]:
    """The kind of a genome document, by its `format` field."""
    fmt = doc.get("format") if isinstance(doc, Mapping) else None
    kind = _BY_FORMAT.get(fmt) if isinstance(fmt, str) else None
    if kind is None:
        raise ArchsearchError(f"{source}: not an archsearch genome (format={fmt!r}, "
                              f"expected one of {', '.join(repr(f) for f in _BY_FORMAT)})")
    return kind


def kind_of_genome(genome: AnyGenome) -> GenomeKind[Any]:
    """The kind of a genome object."""
    return SPARSITY if isinstance(genome, SparsityGenome) else WIDTH


def genome_from_dict(doc: Any, source: str = "genome") -> AnyGenome:
    """A width or sparsity genome, by the document's `format` (a document of neither format
    is refused as a width genome would refuse it)."""
    fmt = doc.get("format") if isinstance(doc, Mapping) else None
    kind = _BY_FORMAT.get(fmt, WIDTH) if isinstance(fmt, str) else WIDTH
    return kind.from_dict(doc, source)


def load_genome(path: str | Path) -> AnyGenome:
    """A width or sparsity genome file, by its `format`."""
    return genome_from_dict(read_json(path, "genome"), source=str(path))


def load_guide(guide: str | Path | AnyGenome, kind: str | GenomeKind[Any] = "width"
               ) -> AnyGenome:
    """A guide genome of `kind` (a file or a genome), validated against its own space and
    dataset, its cost counted there."""
    return get_kind(kind).load_guide(guide)

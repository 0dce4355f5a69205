"""What a search asks its genome kind (`archsearch.kinds`): how trials map to genomes (the
parameterisation), how a genome is proxy-trained, and how guides are loaded. A `Search` and
its evaluators look their kind up here (`search_kind`) instead of being written per kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol

from optuna.trial import Trial

from archsearch.budget import Budget
from archsearch.build import BoundSpace
from archsearch.genome import Genome
from archsearch.kinds import SPARSITY, WIDTH, G, GenomeKind, get_kind
from archsearch.search._evaluate import ProxyEvaluator, ProxyTraining
from archsearch.search._space import Parameterisation
from archsearch.search._sparsity import SparseParameterisation, SparseProxyEvaluator
from archsearch.sparsity import SparsityGenome

if TYPE_CHECKING:
    from archsearch.search._search import SearchConfig


class SearchParameterisation(Protocol[G]):
    """How trials of one space, dataset and budget map to genomes of one kind
    (`Parameterisation`: widths; `SparseParameterisation`: densities)."""

    def suggest(self, trial: Trial, budget: Budget | None = None) -> G:
        """Sample a shape on `trial` and project it onto the budget."""

    def uniform(self) -> G:
        """The baseline genome every search should beat."""

    def enqueued(self, guides: Sequence[tuple[str, G]], uniform: G,
                 first: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The first trials, as (parameters, user attributes)."""

    def replay(self, shape: Mapping[str, float], sampled: G, budget: Budget,
               attrs: Mapping[str, Any]) -> G:
        """An enqueued trial's genome: its exact shape on the budget."""

    def centres(self, guides: Sequence[G]) -> dict[str, float]:
        """The guided sampler's centre of each parameter."""


@dataclass(frozen=True)
class SearchKind(Generic[G]):
    """A genome kind as a search uses it."""

    genome: GenomeKind[G]
    parameterisation: Callable[[BoundSpace, Budget, SearchConfig], SearchParameterisation[G]]
    proxy: type[ProxyTraining[G]]  # trains one genome of the kind from scratch

    @property
    def name(self) -> str:
        return self.genome.name


WIDTH_SEARCH: SearchKind[Genome] = SearchKind(WIDTH, Parameterisation.for_search,
                                              ProxyEvaluator)
SPARSITY_SEARCH: SearchKind[SparsityGenome] = SearchKind(
    SPARSITY, SparseParameterisation.for_search, SparseProxyEvaluator)
SEARCH_KINDS: dict[str, SearchKind[Any]] = {k.name: k for k in (WIDTH_SEARCH, SPARSITY_SEARCH)}


def search_kind(name: str) -> SearchKind[Any]:
    """The search side of the genome kind `name` (ArchsearchError for an unknown one)."""
    return SEARCH_KINDS[get_kind(name).name]

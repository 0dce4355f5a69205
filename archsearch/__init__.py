"""archsearch: network pruning as architecture search.

The concepts, importable from here (loaded on first use, so `import archsearch` stays light):

- `Space`, `load_space`, `list_spaces`: a search space (a base family and its arguments);
- `bind(space, dataset) -> BoundSpace`: the space at a dataset's shapes (graph, cost, build);
- `Genome`: the widths and kept blocks of one architecture (versioned JSON);
- `Budget`, `parse_budget`, `fit_to_budget`: cost targets and widths that meet them;
- `shrink(base, genome, keep, graph=...)`: the physically narrower model;
- `Cost`, `CostModel`, `genome_cost`: MACs and parameters of a genome;
- `Pruning(model, example_input, method, budget)`: a pruning method in your own training
  loop, on your own model (no space file, no run folder).

Orchestration (`archsearch.discover`, `archsearch.rethink`, `archsearch.pipeline`), the
pruners (`archsearch.pruners`), the trainer (`archsearch.train`) and the search
(`archsearch.search`) are their own subpackages.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Space": "archsearch.spaces", "load_space": "archsearch.spaces",
    "list_spaces": "archsearch.spaces", "bind": "archsearch.build",
    "BoundSpace": "archsearch.build", "Genome": "archsearch.genome",
    "Budget": "archsearch.budget", "parse_budget": "archsearch.budget",
    "fit_to_budget": "archsearch.budget", "shrink": "archsearch._shrink",
    "Cost": "archsearch.cost", "CostModel": "archsearch.cost",
    "genome_cost": "archsearch.build", "Pruning": "archsearch.pruning",
}
__all__ = ["Budget", "BoundSpace", "Cost", "CostModel", "Genome", "Pruning", "Space",
           "__version__", "bind", "fit_to_budget", "genome_cost", "list_spaces", "load_space",
           "parse_budget", "shrink"]

if TYPE_CHECKING:
    from archsearch._shrink import shrink
    from archsearch.budget import Budget, fit_to_budget, parse_budget
    from archsearch.build import BoundSpace, bind, genome_cost
    from archsearch.cost import Cost, CostModel
    from archsearch.genome import Genome
    from archsearch.pruning import Pruning
    from archsearch.spaces import Space, list_spaces, load_space


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'archsearch' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

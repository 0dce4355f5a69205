"""Architecture search with Optuna: parameterisation, guided sampling, workers, results."""

from __future__ import annotations

from archsearch.search._sampler import GuidedSampler
from archsearch.search._search import (
    Diverged,
    Evaluator,
    Search,
    SearchConfig,
    make_trial_pruner,
)
from archsearch.search._space import (
    GRANULARITIES,
    Parameterisation,
    group_ratios,
    map_stages,
    stage_ratios,
)
from archsearch.search._storage import open_storage, tally

__all__ = [
    "GRANULARITIES",
    "Diverged",
    "Evaluator",
    "GuidedSampler",
    "Parameterisation",
    "Search",
    "SearchConfig",
    "group_ratios",
    "make_trial_pruner",
    "map_stages",
    "open_storage",
    "stage_ratios",
    "tally",
]

"""Architecture search with Optuna: parameterisation, guided sampling, workers, results."""

from __future__ import annotations

from archsearch.search._evaluate import ProxyEvaluator, ProxySchedule, check_subset
from archsearch.search._plots import cost_points, history_points, stage_rows, write_plots
from archsearch.search._results import (
    SearchRun,
    best_trials,
    export_genomes,
    leaderboard,
    open_run,
    summary,
    trial_genome,
    trial_row,
    write_results,
)
from archsearch.search._sampler import GuidedSampler
from archsearch.search._search import (
    EARLY_STOPS,
    Diverged,
    Evaluator,
    Search,
    SearchConfig,
    check_inputs,
    load_guide,
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
    "EARLY_STOPS",
    "GRANULARITIES",
    "Diverged",
    "Evaluator",
    "GuidedSampler",
    "Parameterisation",
    "ProxyEvaluator",
    "ProxySchedule",
    "Search",
    "SearchConfig",
    "SearchRun",
    "best_trials",
    "check_inputs",
    "check_subset",
    "cost_points",
    "export_genomes",
    "group_ratios",
    "history_points",
    "leaderboard",
    "load_guide",
    "make_trial_pruner",
    "map_stages",
    "open_run",
    "open_storage",
    "stage_ratios",
    "stage_rows",
    "summary",
    "tally",
    "trial_genome",
    "trial_row",
    "write_plots",
    "write_results",
]

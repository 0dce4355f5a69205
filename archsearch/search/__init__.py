"""Architecture search with Optuna: parameterisation, guided sampling, workers, results."""

from __future__ import annotations

from archsearch.search._evaluate import ProxyEvaluator, ProxySchedule, check_subset
from archsearch.search._evaluators import (
    EVALUATORS,
    AdaptiveBNEvaluator,
    Scoring,
    load_base,
    recalibrate_bn,
)
from archsearch.search._fidelity import FIDELITIES, evaluators_for, fidelity_of
from archsearch.search._plots import (
    cost_points,
    fidelity_points,
    history_points,
    kendall_tau,
    stage_rows,
    write_plots,
)
from archsearch.search._results import (
    SearchRun,
    best_trials,
    export_genomes,
    fidelity_costs,
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
from archsearch.search._sparse_search import SparseSearch, open_search
from archsearch.search._sparsity import GENOME_KINDS, SparseParameterisation, SparseProxyEvaluator
from archsearch.search._storage import open_storage, tally
from archsearch.search._supernet import (
    Supernet,
    SupernetEvaluator,
    SupernetSchedule,
    supernet_cost,
    supernet_for,
    train_supernet,
)

__all__ = [
    "EARLY_STOPS",
    "EVALUATORS",
    "FIDELITIES",
    "GENOME_KINDS",
    "GRANULARITIES",
    "AdaptiveBNEvaluator",
    "Diverged",
    "Evaluator",
    "GuidedSampler",
    "Parameterisation",
    "ProxyEvaluator",
    "ProxySchedule",
    "Search",
    "SearchConfig",
    "Scoring",
    "SearchRun",
    "SparseParameterisation",
    "SparseProxyEvaluator",
    "SparseSearch",
    "Supernet",
    "SupernetEvaluator",
    "SupernetSchedule",
    "best_trials",
    "check_inputs",
    "check_subset",
    "cost_points",
    "evaluators_for",
    "export_genomes",
    "fidelity_costs",
    "fidelity_points",
    "fidelity_of",
    "group_ratios",
    "history_points",
    "kendall_tau",
    "leaderboard",
    "load_base",
    "load_guide",
    "make_trial_pruner",
    "map_stages",
    "open_run",
    "open_search",
    "open_storage",
    "recalibrate_bn",
    "stage_ratios",
    "stage_rows",
    "summary",
    "supernet_cost",
    "supernet_for",
    "tally",
    "trial_genome",
    "train_supernet",
    "trial_row",
    "write_plots",
    "write_results",
]

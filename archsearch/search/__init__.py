"""Architecture search with Optuna: parameterisation, guided sampling, workers, results.

The concepts: a `Search` (one Optuna study in a run folder, run by `SearchConfig`'s
workers), its `Parameterisation` and `GuidedSampler`, the evaluators (`EVALUATORS`; the
multi-fidelity plan's `FIDELITIES` and `evaluators_for`), and reading a run back
(`open_run`, `best_trials`, `leaderboard`, `summary`, `export_genomes`, `write_results`,
`write_plots`). Helpers (trial rows, storage tallies, plot data, stage ratios...) are
imported from their private modules; the four imported `as` themselves below
(check_inputs, fidelity_points, tally, trial_row) are re-exported only because
archsearch/cli still imports them from here, and are not in `__all__`.
"""

from __future__ import annotations

from archsearch.search._evaluate import ProxyEvaluator, ProxySchedule
from archsearch.search._evaluators import EVALUATORS, AdaptiveBNEvaluator
from archsearch.search._fidelity import FIDELITIES, evaluators_for
from archsearch.search._plots import fidelity_points as fidelity_points
from archsearch.search._plots import write_plots
from archsearch.search._results import (
    SearchRun,
    best_trials,
    export_genomes,
    leaderboard,
    open_run,
    summary,
    write_results,
)
from archsearch.search._results import trial_row as trial_row
from archsearch.search._sampler import GuidedSampler
from archsearch.search._search import Evaluator, Search, SearchConfig
from archsearch.search._search import check_inputs as check_inputs
from archsearch.search._space import Parameterisation
from archsearch.search._storage import tally as tally
from archsearch.search._supernet import SupernetEvaluator, SupernetSchedule

__all__ = [
    "EVALUATORS",
    "FIDELITIES",
    "AdaptiveBNEvaluator",
    "Evaluator",
    "GuidedSampler",
    "Parameterisation",
    "ProxyEvaluator",
    "ProxySchedule",
    "Search",
    "SearchConfig",
    "SearchRun",
    "SupernetEvaluator",
    "SupernetSchedule",
    "best_trials",
    "evaluators_for",
    "export_genomes",
    "leaderboard",
    "open_run",
    "summary",
    "write_plots",
    "write_results",
]

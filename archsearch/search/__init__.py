"""Architecture search with Optuna: parameterisation, guided sampling, workers, results.

The concepts: a `Search` (one Optuna study in a run folder, run by `SearchConfig`'s
workers, nested by stage: `ScreenStage`, `ProxyStage`, `FinalStage`, `StorageStage`; flat on
disk), its `Parameterisation` and `GuidedSampler`, the evaluators (the registry
`EVALUATORS` of `EvaluatorSpec`s; the multi-fidelity plan's `FIDELITIES` and
`evaluators_for`), and reading a run back
(`open_run`, `best_trials`, `leaderboard`, `summary`, `export_genomes`, `write_results`,
`write_plots`). Helpers (trial rows, storage tallies, plot data, stage ratios...) are
imported from their private modules; those imported `as` themselves below are re-exported
only because archsearch/cli, tests or benches still import them from here; they are not in
`__all__`.
"""

from __future__ import annotations

from archsearch.kinds import GENOME_KINDS
from archsearch.kinds import load_guide as load_guide
from archsearch.search._config import EARLY_STOPS as EARLY_STOPS
from archsearch.search._config import (
    FinalStage,
    ProxyStage,
    ScreenStage,
    SearchConfig,
    StorageStage,
)
from archsearch.search._evaluate import ProxyEvaluator, ProxySchedule
from archsearch.search._evaluators import AdaptiveBNEvaluator, Scoring
from archsearch.search._evaluators import load_base as load_base
from archsearch.search._fidelity import FIDELITIES, evaluators_for
from archsearch.search._fidelity import fidelity_of as fidelity_of
from archsearch.search._kinds import SEARCH_KINDS, SearchKind, search_kind
from archsearch.search._open import open_search
from archsearch.search._plots import fidelity_points as fidelity_points
from archsearch.search._plots import write_plots
from archsearch.search._registry import (
    EVALUATORS,
    EvaluatorSpec,
    register_evaluator,
    screen_setup_cost,
)
from archsearch.search._results import (
    SearchRun,
    best_trials,
    export_genomes,
    leaderboard,
    open_run,
    summary,
    write_results,
)
from archsearch.search._results import (
    fidelity_costs as fidelity_costs,
)
from archsearch.search._results import final_choice as final_choice
from archsearch.search._results import trial_genome as trial_genome
from archsearch.search._results import trial_row as trial_row
from archsearch.search._sampler import GuidedSampler
from archsearch.search._search import (
    Diverged as Diverged,
)
from archsearch.search._search import (
    Evaluator,
    Search,
)
from archsearch.search._search import (
    check_inputs as check_inputs,
)
from archsearch.search._search import (
    make_trial_pruner as make_trial_pruner,
)
from archsearch.search._space import (
    GRANULARITIES as GRANULARITIES,
)
from archsearch.search._space import (
    Parameterisation,
)
from archsearch.search._space import (
    group_ratios as group_ratios,
)
from archsearch.search._space import (
    map_stages as map_stages,
)
from archsearch.search._space import (
    stage_ratios as stage_ratios,
)
from archsearch.search._sparsity import SparseParameterisation, SparseProxyEvaluator
from archsearch.search._storage import open_storage as open_storage
from archsearch.search._storage import tally as tally
from archsearch.search._supernet import (
    Supernet as Supernet,
)
from archsearch.search._supernet import (
    SupernetEvaluator,
    SupernetSchedule,
)
from archsearch.search._supernet import (
    supernet_cost as supernet_cost,
)
from archsearch.search._supernet import (
    supernet_for as supernet_for,
)
from archsearch.search._supernet import (
    train_supernet as train_supernet,
)

__all__ = [
    "EVALUATORS",
    "FIDELITIES",
    "GENOME_KINDS",
    "AdaptiveBNEvaluator",
    "Evaluator",
    "EvaluatorSpec",
    "FinalStage",
    "GuidedSampler",
    "Parameterisation",
    "ProxyEvaluator",
    "ProxySchedule",
    "ProxyStage",
    "ScreenStage",
    "Search",
    "SEARCH_KINDS",
    "SearchConfig",
    "SearchKind",
    "Scoring",
    "SearchRun",
    "SparseParameterisation",
    "SparseProxyEvaluator",
    "StorageStage",
    "SupernetEvaluator",
    "SupernetSchedule",
    "best_trials",
    "evaluators_for",
    "export_genomes",
    "leaderboard",
    "open_run",
    "open_search",
    "register_evaluator",
    "screen_setup_cost",
    "search_kind",
    "summary",
    "write_plots",
    "write_results",
]

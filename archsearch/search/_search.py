"""A search: one Optuna study in a run folder, run by one or more worker processes.

Every worker runs `Search.work()`: under a claim lock it fails trials of dead workers,
counts the trials that count, and starts a new one only while fewer than the plan's total
do (screen + trials + final, `archsearch.search._fidelity`), and a promoted stage's trial
only once the stage before it has finished;
inside the trial it checks its own rank again (a race on RDB storage leaves a `surplus`
trial, never an extra evaluation). Killing the search and running it again resumes it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import optuna
from optuna.trial import FrozenTrial, Trial

from archsearch.budget import Budget, BudgetError, parse_budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError, DivergenceError
from archsearch.genome import Genome
from archsearch.io import atomic_write_json, remove_stale_temps
from archsearch.kinds import AnyGenome
from archsearch.metrics import get_metric
from archsearch.search import _fidelity as fd
from archsearch.search import _storage as st
from archsearch.search._config import SearchConfig
from archsearch.search._kinds import search_kind
from archsearch.search._sampler import GuidedSampler

log = logging.getLogger(__name__)

POLL_S = 1.0


class Diverged(ArchsearchError):
    """Training produced NaN/inf: the trial is recorded as failed, the search goes on."""


class Evaluator(Protocol):
    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        """A score of `genome` (validation accuracy); training ones `report(epoch, acc)`."""


def make_trial_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    """Trial early stopping (Optuna's pruners stop trials; ours remove channels)."""
    if config.multi or config.proxy.early_stop == "none":
        return optuna.pruners.NopPruner()
    if config.proxy.early_stop == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.proxy.epochs,
                                          reduction_factor=3)


class Search:
    """One worker's handle on a search; `work()` runs trials until the total is reached."""

    def __init__(self, config: SearchConfig,
                 evaluator: Evaluator | Mapping[str, Evaluator] | None,
                 worker_index: int | None = None) -> None:
        """`evaluator`: one for every fidelity, or one per fidelity (`screen`, `proxy`,
        `final`)."""
        self.config = config
        self.evaluators: Mapping[str, Evaluator | None] = (
            evaluator if isinstance(evaluator, Mapping) else
            dict.fromkeys(fd.FIDELITIES, evaluator))
        self.stages = config.stages()
        self.run_dir = Path(config.out)
        # every input is checked before anything is written
        self.bound, self.budget, self.uniform, self.guides, self._low = check_inputs(config)
        if config.cost_objective:  # every genome records its cost in the objective's metric
            self.bound.pricer(config.cost_objective, config.latency())
        self.kind = search_kind(config.genome_kind)  # what differs between genome kinds
        self.param = self.kind.parameterisation(self.bound, self.budget, config)
        self._worker_index = worker_index
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.run_dir)
        self.storage = st.open_storage(config.storage.url, self.run_dir)
        self._lock_enabled = st.is_journal(self.storage)
        self.study = self._open_study()

    # -- set-up ----------------------------------------------------------------------------
    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            first = self.stages[0][1]  # only the first stage samples
            if self.config.multi:
                size = max(4, min(20, first // 3))
                return optuna.samplers.NSGAIISampler(population_size=size, seed=seed)
            startup = max(3, min(10, first // 3))
            tpe = optuna.samplers.TPESampler(n_startup_trials=startup, multivariate=True,
                                             seed=seed)
        if not self.guides:
            return tpe
        return GuidedSampler(self.param.centres(self.guides), fallback=tpe, seed=seed,
                             handover=max(4, 2 * first // 3))

    def _open_study(self) -> optuna.Study:
        directions = ["maximize", "minimize"] if self.config.multi else ["maximize"]
        with st.claim_lock(self.run_dir, self._lock_enabled):
            study = optuna.create_study(storage=self.storage, study_name=self.config.study_name,
                                        directions=directions, load_if_exists=True)
            fresh = "archsearch" not in study.user_attrs
            index = self._worker_index if self._worker_index is not None else (
                0 if fresh else st.worker_record()["pid"])
            study.sampler = self._sampler(self.config.seed + 7919 * index)
            study.pruner = make_trial_pruner(self.config)
            if fresh:
                study.set_user_attr("archsearch", self.config.identity())
                self._enqueue_guides(study)
            elif study.user_attrs["archsearch"] != self.config.identity():
                raise ArchsearchError(
                    f"study {self.config.study_name!r} was started with "
                    f"{study.user_attrs['archsearch']}, not {self.config.identity()}: use "
                    "another --study or --out")
        atomic_write_json(self.run_dir / "search.json", self.config.flat())
        return study

    def _enqueue_guides(self, study: optuna.Study) -> None:
        """The first trials the kind's parameterisation queues: the guides (width: the
        same-space ones, evaluated exactly; sparsity: their averaged pattern), then the
        uniform genome (the baseline every search should beat), as far as the first
        stage's trials allow."""
        guides = list(zip(self.config.guides, self.guides, strict=True))
        for params, attrs in self.param.enqueued(guides, self.uniform, self.stages[0][1]):
            study.enqueue_trial(params, user_attrs=attrs)

    # -- the worker loop -------------------------------------------------------------------
    def work(self, on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> int:
        """Run trials until `trials` have finished in the study; returns how many ran here."""
        ran = 0
        while True:
            lock = st.claim_lock(self.run_dir, self._lock_enabled)
            lock.__enter__()
            self._held = lock
            try:
                st.fail_dead_trials(self.study)
                trials = self.study.get_trials(deepcopy=False)
                n = st.tally(trials)
                if n["finished"] >= self.config.total:
                    return ran
                claim = n["waiting"] > 0 or (n["counted"] < self.config.total
                                             and fd.ready(self.stages, trials))
                if claim:
                    self.study.optimize(self._objective, n_trials=1,
                                        catch=(Diverged, BudgetError, _Surplus, _Unpromoted),
                                        callbacks=[on_trial] if on_trial else None)
                    ran += 1
            finally:
                self._release()
            if not claim:
                time.sleep(POLL_S)

    def _release(self) -> None:
        held, self._held = getattr(self, "_held", None), None
        if held is not None:
            held.__exit__(None, None, None)

    def _objective(self, trial: Trial) -> float | tuple[float, float]:
        trial.set_user_attr(st.WORKER_ATTR, st.worker_record())
        self._release()
        trials = self.study.get_trials(deepcopy=False)
        if st.rank(trials, trial.number) >= self.config.total:
            trial.set_user_attr(st.OUTCOME_ATTR, st.SURPLUS)
            raise _Surplus(f"trial {trial.number} is over the total of {self.config.total}")
        where = fd.stage_at(self.stages, fd.slot(trials, trial))
        stage, index = where if where is not None else (0, 0)
        fidelity = self.stages[stage][0]
        trial.set_user_attr(fd.FIDELITY_ATTR, fidelity)
        try:
            genome = self.genome_for(trial) if stage == 0 else self._promote(trial, stage, index)
            trial.set_user_attr("genome", genome.to_dict())
            early = fidelity == fd.PROXY and not self.config.multi
            report = _reporter(trial, self.config.proxy.epochs) if early else None
            evaluator = self.evaluators[fidelity]
            if evaluator is None:
                raise ArchsearchError(f"this worker has no {fidelity} evaluator")
            accuracy = float(evaluator(genome, report))
            scored = getattr(evaluator, "val_images", None)
            if scored:  # what the final stage's margin is measured in
                trial.set_user_attr(fd.VAL_IMAGES_ATTR, int(scored))
        except _Unpromoted as exc:
            trial.set_user_attr(st.OUTCOME_ATTR, str(exc))
            raise
        except DivergenceError as exc:
            trial.set_user_attr(st.OUTCOME_ATTR, f"diverged: {exc}")
            raise Diverged(str(exc)) from None
        except (Diverged, BudgetError) as exc:
            trial.set_user_attr(st.OUTCOME_ATTR, f"{type(exc).__name__}: {exc}")
            raise
        except optuna.TrialPruned:
            trial.set_user_attr(st.OUTCOME_ATTR, "pruned")
            raise
        trial.set_user_attr(st.OUTCOME_ATTR, "complete")
        if self.config.multi:
            return accuracy, float(genome.cost[get_metric(self.config.cost_objective).cost_key])
        return accuracy

    def _promote(self, trial: Trial, stage: int, index: int) -> AnyGenome:
        """The `index`-th best distinct genome of the stage before (waiting for it to end)."""
        previous, count = self.stages[stage - 1]
        while True:
            trials = self.study.get_trials(deepcopy=False)
            if fd.stage_done(trials, previous, count):
                break
            with st.claim_lock(self.run_dir, self._lock_enabled):  # a race on RDB storage
                st.fail_dead_trials(self.study)
            time.sleep(POLL_S)
        fidelity, places = self.stages[stage]
        keep = places if fidelity == fd.FINAL and self.config.final.margin is not None else None
        source = fd.promoted(trials, previous, index, incumbent_of=keep)
        if source is None:
            raise _Unpromoted(f"nothing to promote: fewer than {index + 1} distinct "
                              f"{previous} genomes")
        trial.set_user_attr(fd.PROMOTED_ATTR, source.number)
        for key in ("guide", "baseline"):
            if key in source.user_attrs:
                trial.set_user_attr(key, source.user_attrs[key])
        genome = fd.promoted_genome(source)
        genome.provenance.update({"trial": trial.number, "promoted_from": source.number})
        return genome

    def genome_for(self, trial: Trial) -> AnyGenome:
        """The trial's genome: sampled shape (or a guide's) projected onto its budget."""
        budget = self.budget
        if self._low is not None:
            value = trial.suggest_float("budget", self._low.value, self.budget.value)
            spec = self.budget.spec
            text = f"{value:.4%}{spec.name}" if self.budget.relative else \
                f"{value:.6g}{spec.unit if spec.units else spec.name}"
            budget = Budget(self.budget.metric, value, self.budget.relative, text,
                            self.budget.latency)
        genome = self.param.suggest(trial, budget)
        shape = trial.user_attrs.get("guide_shape")
        if shape is not None:  # an enqueued guide or the uniform baseline: its exact shape
            genome = self.param.replay(shape, genome, budget, trial.user_attrs)
        genome.provenance.update({"trial": trial.number, "study": self.config.study_name,
                                  "source_run": str(self.run_dir)})
        return genome


def check_inputs(config: SearchConfig) -> tuple[BoundSpace, Budget, AnyGenome,
                                                 list[AnyGenome], Budget | None]:
    """Check a search's inputs without writing anything: space, dataset, budget (the uniform
    genome of the config's genome kind must fit), guides (genomes of that kind; sparsity
    ones from any space), budget range, storage URL. Returns (bound space, budget, uniform
    genome, guides, low end of the budget range or None)."""
    kind = search_kind(config.genome_kind)
    bound = config.bound()
    budget = parse_budget(config.budget, config.latency())
    if config.cost_objective:
        bound.pricer(config.cost_objective, config.latency())
    param = kind.parameterisation(bound, budget, config)
    uniform = param.uniform()  # BudgetError when even the narrowest genome is too big
    guides = [kind.genome.load_guide(p) for p in config.guides]
    low = _budget_low(config, budget) if config.multi else None
    st.check_storage_url(config.storage.url)
    if config.evaluator_spec().in_memory and bound.info.in_memory is False:
        raise ArchsearchError(  # its scoring reads images from memory: refuse before training
            f"--evaluator {config.screen.evaluator} needs an in-memory dataset, but "
            f"{bound.info.name} is streamed (in_memory = false): use --evaluator proxy")
    base = config.screen.base
    if base is not None:
        if "base" not in config.evaluator_spec().settings:
            raise ArchsearchError(f"--base is the checkpoint adaptive-bn inherits from, but "
                                  f"the evaluator is {config.screen.evaluator!r}")
        if not Path(base).is_file():
            raise ArchsearchError(f"--base checkpoint not found: {base}")
    return bound, budget, uniform, guides, low


def _budget_low(config: SearchConfig, budget: Budget) -> Budget:
    low = parse_budget(config.budget_low, budget.latency) if config.budget_low else Budget(
        budget.metric, budget.value / 4, budget.relative, "", budget.latency)
    if low.metric != budget.metric or low.relative != budget.relative or \
            not low.value < budget.value:
        raise ArchsearchError(f"--budget-low {config.budget_low!r} must be a smaller "
                              f"budget of the same kind as --budget {budget}")
    return low


class _Surplus(Exception):
    """A trial started past the total in a race between workers; it is not evaluated."""


class _Unpromoted(Exception):
    """A promoted stage has fewer distinct genomes to take than trials (it counts, failed)."""


def _reporter(trial: Trial, last_epoch: int) -> Callable[[int, float], None]:
    """Report each epoch's accuracy; stop the trial early only before its last epoch (a
    trial that trained its whole schedule is complete, whatever the pruner thinks)."""

    def report(epoch: int, accuracy: float) -> None:
        trial.report(accuracy, epoch)
        if epoch < last_epoch and trial.should_prune():
            raise optuna.TrialPruned(f"stopped after epoch {epoch} at accuracy {accuracy:.4f}")

    return report

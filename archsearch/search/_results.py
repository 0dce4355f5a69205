"""Reading a search back: its run folder and study, the leaderboard, the best genomes.

Everything here is plain data (dicts and genomes); printing and plotting live elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.errors import ArchsearchError
from archsearch.io import atomic_write_json
from archsearch.kinds import AnyGenome, genome_from_dict
from archsearch.search import _fidelity as fd
from archsearch.search import _storage as st
from archsearch.search._search import SearchConfig

CONFIG_FILE = "search.json"
RESULTS_FILE = "results.json"


@dataclass
class SearchRun:
    """A search's run folder, its config and its study (read from its storage)."""

    run_dir: Path
    config: SearchConfig
    study: optuna.Study

    @property
    def multi(self) -> bool:
        return self.config.multi

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)


def open_run(run_dir: str | Path) -> SearchRun:
    """The search in `run_dir` (a folder written by `archsearch search`)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ArchsearchError(f"{run_dir} is not a search run folder (no {CONFIG_FILE}): "
                              "pass the --out folder of `archsearch search`")
    try:
        flat = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(flat, dict):  # a search from before the incumbent final stage ran without
            flat.setdefault("final_margin", None)
        config = SearchConfig.from_flat(flat)
    except (ValueError, TypeError, AttributeError, RecursionError, OSError) as exc:
        raise ArchsearchError(f"{path}: not a search config ({exc})") from None
    if config.storage.url is None and not (run_dir / st.JOURNAL).is_file():
        raise ArchsearchError(f"{run_dir}: the study journal {st.JOURNAL} is missing")
    storage = st.open_storage(config.storage.url, run_dir)
    try:
        study = optuna.load_study(study_name=config.study_name, storage=storage)
    except KeyError:
        raise ArchsearchError(f"study {config.study_name!r} not found in the storage of "
                              f"{run_dir}") from None
    run = SearchRun(run_dir, config, study)
    _check_against_results(run)
    return run


def _check_against_results(run: SearchRun) -> None:
    """A journal cut at a record boundary still reads: compare it with the trials that
    results.json (written after the search) saw, and refuse one that lost some."""
    path = run.run_dir / RESULTS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        seen = {int(row["trial"]) for row in doc.get("trials", [])}
    except FileNotFoundError:
        return
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return  # results.json is derived data: a damaged one is rewritten, not trusted
    have = {t.number for t in run.trials()}
    if seen - have:
        raise ArchsearchError(
            f"{run.run_dir}: the study storage lost trials {sorted(seen - have)[:5]} that "
            f"{RESULTS_FILE} lists (a damaged or truncated journal?); restore it from a copy")


def trial_genome(trial: FrozenTrial) -> AnyGenome | None:
    """The trial's genome (a SparsityGenome in a sparsity search), None if it has none."""
    doc = trial.user_attrs.get("genome")
    return genome_from_dict(doc, source=f"trial {trial.number}") if doc else None


def trial_kind(trial: FrozenTrial) -> str:
    """'guide', 'uniform' or 'search'."""
    if "guide" in trial.user_attrs:
        return "guide"
    return "uniform" if fd.is_baseline(trial) else "search"


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat record (for the leaderboard, the live table, results.json)."""
    genome = trial.user_attrs.get("genome") or {}
    cost = genome.get("cost", {})
    steps = trial.intermediate_values
    last = max(steps) if steps else None
    values = trial.values if trial.state == TrialState.COMPLETE else None
    end = trial.datetime_complete
    wall = (end - trial.datetime_start).total_seconds() if end and trial.datetime_start else None
    return {"trial": trial.number, "state": trial.state.name.lower(),
            "accuracy": values[0] if values else None,
            "last_epoch": last, "last_accuracy": steps[last] if last is not None else None,
            "macs": cost.get("macs"), "params": cost.get("params"),
            "macs_ratio": cost.get("macs_ratio"), "params_ratio": cost.get("params_ratio"),
            **({"latency_ms": cost["latency_ms"]} if "latency_ms" in cost else {}),
            "kind": trial_kind(trial), "guide": trial.user_attrs.get("guide"),
            "fidelity": fd.fidelity_of(trial),
            "promoted_from": trial.user_attrs.get(fd.PROMOTED_ATTR),
            "outcome": trial.user_attrs.get(st.OUTCOME_ATTR),
            "worker": (trial.user_attrs.get(st.WORKER_ATTR) or {}).get("pid"),
            "wall_s": wall, "counts": st.counts(trial)}


def best_trials(run: SearchRun, k: int | None = None) -> list[FrozenTrial]:
    """Single objective: the top-k complete trials by accuracy, at the highest fidelity any
    trial completed (final > proxy > screen). Two objectives: the Pareto front (accuracy
    up, MACs down), most accurate first."""
    if k is not None and k < 1:
        raise ArchsearchError(f"--top must be >= 1, but got {k}")
    ranked, _ = _ranking(run, run.trials())
    return ranked[:k] if k else ranked


def _ranking(run: SearchRun, trials: list[FrozenTrial]
             ) -> tuple[list[FrozenTrial], dict[str, Any] | None]:
    """`best_trials`' order of `trials` and the final stage's choice that set it (None when
    the margin did not come into it), from one read of the study."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        top = max(fd.rank_of(fd.fidelity_of(t)) for t in complete)
        complete = [t for t in complete if fd.rank_of(fd.fidelity_of(t)) == top]
    if run.multi:
        front = [t for t in complete if not any(_dominates(o, t) for o in complete)]
        return sorted(front, key=lambda t: (-t.values[0], t.values[1], t.number)), None
    ranked = sorted(complete, key=lambda t: (-t.values[0], t.number))
    choice = final_choice(run, ranked)
    if choice is not None and choice["kept_baseline"]:  # uniform first: not beaten
        base = next(t for t in ranked if t.number == choice["baseline"])
        ranked = [base, *(t for t in ranked if t is not base)]
    return ranked, choice


def final_choice(run: SearchRun, ranked: list[FrozenTrial] | None = None
                 ) -> dict[str, Any] | None:
    """How the final stage chose between its best genome and the uniform incumbent
    (`_fidelity.incumbent_choice`); None when the margin did not come into it."""
    if run.multi:
        return None
    if ranked is None:
        ranked = sorted((t for t in run.trials() if t.state == TrialState.COMPLETE),
                        key=lambda t: (-t.values[0], t.number))
    final = [t for t in ranked if fd.fidelity_of(t) == fd.FINAL]
    return fd.incumbent_choice(final, run.config.final.margin) if final else None


def _dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
    (acc_a, macs_a), (acc_b, macs_b) = a.values, b.values
    return acc_a >= acc_b and macs_a <= macs_b and (acc_a > acc_b or macs_a < macs_b)


def leaderboard(run: SearchRun, trials: list[FrozenTrial] | None = None
                ) -> list[dict[str, Any]]:
    """Every counted trial, best first (complete by accuracy, then pruned, then failed);
    `trials`: the study's, already read."""
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
    rows = [trial_row(t) for t in (run.trials() if trials is None else trials)
            if st.counts(t)]
    return sorted(rows, key=lambda r: (order.get(r["state"], 5), -fd.rank_of(r["fidelity"]),
                                       -(r["accuracy"] if r["accuracy"] is not None else
                                         r["last_accuracy"] or 0.0), r["trial"]))


def export_genomes(run: SearchRun, top: int, out: Path | None = None) -> list[Path]:
    """Write the best genomes (the Pareto front for two objectives) as genome files."""
    trials = best_trials(run, top)
    if not trials:
        raise ArchsearchError(f"{run.run_dir}: no complete trial to export yet")
    out = Path(out) if out is not None else run.run_dir / "export"
    prefix = "pareto" if run.multi else "top"
    paths = []
    for rank, trial in enumerate(trials, 1):
        genome = trial_genome(trial)
        if genome is None:
            continue
        genome.provenance.update({"val_accuracy": trial.values[0], "rank": rank,
                                  "fidelity": fd.fidelity_of(trial),
                                  "trial": trial.number, "source_run": str(run.run_dir),
                                  "proxy_epochs": run.config.proxy.epochs,
                                  "proxy_subset": run.config.proxy.subset})
        paths.append(genome.save(out / f"{prefix}{rank}-trial{trial.number}.json"))
    return paths


def fidelity_costs(trials: list[FrozenTrial]) -> dict[str, dict[str, Any]]:
    """Per fidelity, in plan order: the counted trials (`candidates`), how they ended, and
    the seconds they took (start to end of each trial, summed; the one-off training of a
    cheap evaluator's supernet or base happens inside the first screen trial, so it is
    included). Read from the study, so a resumed search adds up all its sessions."""
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        if not st.counts(t):
            continue
        row = out.setdefault(fd.fidelity_of(t), {"candidates": 0, "complete": 0, "pruned": 0,
                                                 "failed": 0, "wall_s": 0.0})
        row["candidates"] += 1
        state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
                 TrialState.FAIL: "failed"}.get(t.state)
        if state is not None:
            row[state] += 1
        if t.datetime_start is not None and t.datetime_complete is not None:
            row["wall_s"] += (t.datetime_complete - t.datetime_start).total_seconds()
    return dict(sorted(out.items(), key=lambda kv: fd.rank_of(kv[0])))


def summary(run: SearchRun) -> dict[str, Any]:
    """results.json: the config, the tally, the best (or the Pareto front) and every trial."""
    trials = run.trials()
    best, choice = _ranking(run, trials)
    tally = st.tally(trials)
    per = {f: sum(1 for t in trials if st.counts(t) and fd.fidelity_of(t) == f)
           for f, _ in run.config.stages()}
    return {"study": run.config.study_name, "run_dir": str(run.run_dir),
            "config": json.loads(json.dumps(run.config.identity())), "tally": tally,
            "evaluator": run.config.screen.evaluator, "fidelities": per,
            "costs": fidelity_costs(trials),
            "best": [trial_row(t) | {"genome": t.user_attrs.get("genome")}
                     for t in best[: (len(best) if run.multi else 1)]],
            "final_choice": choice, "trials": leaderboard(run, trials)}


def write_results(run: SearchRun) -> dict[str, Any]:
    """results.json and the best genome (best_genome.json, or pareto/*.json)."""
    doc = summary(run)
    atomic_write_json(run.run_dir / RESULTS_FILE, doc)
    if doc["best"] and not run.multi:
        genome = trial_genome(best_trials(run, 1)[0])
        if genome is not None:
            genome.save(run.run_dir / "best_genome.json")
    elif doc["best"]:
        export_genomes(run, len(doc["best"]), run.run_dir / "pareto")
    return doc

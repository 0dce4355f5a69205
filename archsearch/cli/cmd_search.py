"""Search genomes at a budget (Optuna, guided by pruner genomes).

Search layer widths (and kept residual blocks) at a fixed budget: every candidate is scaled
onto the budget and scored on a validation split carved from the training set, at three
fidelities: many candidates screened by a cheap evaluator (adaptive BatchNorm on a trained
base, or a one-shot supernet), the best trained from scratch on a short proxy schedule, the
best of those trained longer (--final), beside the uniform genome: the winner is uniform
unless a genome beats it there by more than --final-margin standard errors. FLOPs means
multiply-accumulates (MACs).

One worker runs in this process; with `--workers N` this process starts N worker
processes on the same study and shows their trials in a live table. Rerunning the same
command resumes the search (trials of killed workers are failed and queued again).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.live import Live

from archsearch.cli._args import add_fields, add_shared, field_values
from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, human, print_json
from archsearch.cli._latency import LATENCY_HELP, prepare_budget
from archsearch.cli.cmd_report import choice_line, trials_table
from archsearch.errors import ArchsearchError
from archsearch.pipeline import budget_slug

REFRESH_S = 1.0
MAX_WORKERS = 256
LIVE_ROWS = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    from archsearch.search import SearchConfig

    p.add_argument("--budget", required=True, help="e.g. 25%%FLOPs, 30%%params, 120MFLOPs, "
                                                   "3ms, 40%%latency")
    add_shared(p, "dataset", "data_root", "input_size")
    p.add_argument("--guide", nargs="+", default=[], metavar="GENOME.json",
                   help="pruner-found genomes to search around (any space or dataset)")
    # a flag per flat setting (as search.json spells them; SearchConfig nests them by stage)
    from archsearch.search import EVALUATORS

    helps = {**FIELD_HELP, "evaluator": FIELD_HELP["evaluator"].format(
        names=", ".join(EVALUATORS))}  # the registry's evaluators, a registered one included
    add_fields(p, SearchConfig.flat_type(), helps, metavars={"base": "CHECKPOINT"},
               types={"objectives": _objectives, "final_margin": margin})
    add_shared(p, "out", "json", "fast")


FIELD_HELP = {
    "space": "search space",
    "genome_kind": "width: channel widths; sparsity: the fraction of weights kept per conv "
                   "layer (guides: sparsity genomes, e.g. from discover --method magnitude; "
                   "every trial trained from scratch with a random mask, no screen)",
    "evaluator": "the screen's evaluator, one of {names} (proxy: no screen, every trial "
                 "proxy-trained); default adaptive-bn, proxy for --genome-kind sparsity",
    "screen": "candidates screened by the cheap evaluator",
    "trials": "proxy-trained trials: the best screened",
    "final": "the best proxy-trained genomes trained from scratch on the final schedule",
    "proxy_epochs": "epochs per proxy trial",
    "proxy_subset": "training images per trial: a fraction (0.2) or a count (5000)",
    "proxy_val": "validation images scored per trial: a fraction or a count (default all)",
    "final_epochs": "epochs of a final trial",
    "final_subset": "training images of a final trial",
    "final_margin": "keep the uniform genome as the incumbent: it is trained in the final "
                    "stage, and a genome wins only by beating its final accuracy by more than "
                    "this many standard errors (off: the best final genome wins)",
    "base": "adaptive-bn: the trained base to inherit from (discover's sparse.pt or a train "
            "checkpoint; default: train one in the run folder)",
    "base_epochs": "epochs of the supernet (or adaptive-bn's own base)",
    "base_subset": "its training images",
    "calib_images": "training images re-estimating BatchNorm per screened genome",
    "screen_val": "validation images per screened genome",
    "batch_size": "training batch size",
    "granularity": "group or stage",
    "early_stop": "hyperband, median or none",
    "objectives": "accuracy, or accuracy,M for a cost metric M: macs, params or latency "
                  "(NSGA-II over a budget range)",
    "budget_low": "with accuracy,M: the low end of the budget range (default a quarter of "
                  "--budget)",
    "storage": "Optuna storage URL (postgresql://user:pw@host/db); default: a journal file in "
               "the run folder",
    "study": "study name (workers with the same name join one study)",
    "workers": "worker processes",
    "seed": "random seed",
    **LATENCY_HELP,
}


def margin(text: str) -> float | None:
    """--final-margin: a number, or off (SearchConfig checks the number's range)."""
    return None if text.strip().lower() in ("off", "none") else float(text)


def _objectives(text: str) -> tuple[str, ...]:
    return tuple(o.strip().lower() for o in text.split(",") if o.strip())


def make_config(args: argparse.Namespace) -> Any:
    """A validated SearchConfig from the arguments (nothing written)."""
    from archsearch.build import bind
    from archsearch.search import SearchConfig

    bound = bind(args.space, args.dataset, input_size=args.input_size)
    size = f"-{args.input_size}px" if args.input_size is not None else ""
    out = args.out or str(Path("runs") / f"search-{bound.space.name}-{budget_slug(args.budget)}"
                                          f"{size}-s{args.seed}")
    return SearchConfig.from_flat(budget=args.budget, out=out, dataset=bound.info.key,
                                  data_root=args.data_root, input_size=args.input_size,
                                  guides=list(args.guide), fast=args.fast,
                                  **field_values(args, FIELD_HELP))


def run(args: argparse.Namespace) -> int:
    import optuna

    from archsearch.search import check_inputs, evaluators_for, open_run, open_search, write_results

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = make_config(args)
    prepare_budget(config.budget, config, args.json, config.cost_objective)
    check_inputs(config)  # before the data are loaded, and before anything is written
    check_out_dir(config.out)
    workers = config.storage.workers
    if workers > MAX_WORKERS:
        raise ArchsearchError(f"--workers must be at most {MAX_WORKERS} (one process each), "
                              f"but got {workers}")
    evaluator = evaluators_for(config)
    if workers > 1:
        evaluator = None  # the workers load their own copy of the data
    # the first worker of a fresh study seeds its sampler with --seed, later joiners with
    # their pid (so that hand-started workers do not propose the same candidates)
    search = open_search(config, evaluator, worker_index=None)
    live = None if args.json or not console.is_terminal else Live(
        console=console, auto_refresh=False, transient=False)
    monitor = _Monitor(search, live)
    if workers == 1:
        _set_threads(1)
        with monitor.running():
            search.work()
    else:
        _run_workers(config, monitor)
    doc = write_results(open_run(config.out))
    if args.json:
        print_json(doc)
    else:
        _print_summary(doc, config)
    return 0


def _print_summary(doc: dict[str, Any], config: Any) -> None:
    t = doc["tally"]
    console.print(f"{doc['study']}: {t['finished']}/{config.total} trials finished "
                  f"(run folder {doc['run_dir']})")
    per = ", ".join(f"{n} {f}" for f, n in doc.get("fidelities", {}).items())
    if per:
        console.print(f"evaluator {config.screen.evaluator}: {per}")
    if doc.get("final_choice"):
        console.print(choice_line(doc["final_choice"]))
    for best in doc["best"]:
        console.print(f"{'Pareto' if config.multi else 'best'}: trial {best['trial']} val acc "
                      f"{best['accuracy']:.2%}  MACs {human(best['macs'])} "
                      f"({best['macs_ratio']:.1%})  params {human(best['params'])}"
                      + (f"  latency {best['latency_ms']:.3g} ms" if best.get("latency_ms")
                         else ""))
    if doc["best"] and not config.multi:
        console.print(f"genome: {Path(doc['run_dir']) / 'best_genome.json'}")


class _Monitor:
    """Refreshes the live table of trials from the study's storage (a background thread)."""

    def __init__(self, search: Any, live: Live | None) -> None:
        self.search, self.live = search, live
        self._stop = threading.Event()

    def render(self) -> Any:
        from archsearch.search import tally, trial_row

        trials = self.search.study.get_trials(deepcopy=False)
        t = tally(trials)
        rows = [trial_row(tr) for tr in trials[-LIVE_ROWS:]]
        done = [tr.values[0] for tr in trials if tr.values]
        best = f", best val acc {max(done):.2%}" if done else ""
        return trials_table(rows, f"{self.search.config.study_name}: {t['finished']}/"
                            f"{self.search.config.total} finished, {t['running']} running"
                            f"{best}")

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception:  # a torn read of the journal is retried on the next tick
                logging.getLogger(__name__).debug("live table refresh failed", exc_info=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Show the table while the body runs (no-op without a terminal or with --json)."""
        if self.live is None:
            yield
            return
        self.live.start()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self.refresh()
            self.live.stop()


def _set_threads(workers: int) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _run_workers(config: Any, monitor: _Monitor) -> None:
    """Start `--workers` worker processes and wait for them (showing the table)."""
    from archsearch.errors import ArchsearchError

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(config, i), daemon=False)
             for i in range(config.storage.workers)]
    for proc in procs:
        proc.start()
    try:
        with monitor.running():
            while any(p.is_alive() for p in procs):
                time.sleep(0.2)
    except BaseException:
        for proc in procs:
            proc.terminate()
        raise
    codes = [p.exitcode for p in procs]
    if any(codes):
        if 2 in codes:
            raise ArchsearchError(f"a search worker stopped on bad input (exit codes {codes})")
        raise RuntimeError(f"search workers failed (exit codes {codes})")


def _worker_main(config: Any, index: int) -> None:
    """A worker process: dies with its parent, trains with its share of the CPU threads."""
    _die_with_parent()
    from archsearch.errors import ArchsearchError
    from archsearch.search import evaluators_for, open_search

    logging.basicConfig(level=logging.WARNING)
    _set_threads(config.storage.workers)
    try:
        open_search(config, evaluators_for(config), worker_index=index).work()
    except ArchsearchError as exc:
        print(f"archsearch: error: worker {index}: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # the environment (a full disk): one line, like the parent
        from archsearch.cli._checks import os_error_line

        print(f"archsearch: error: worker {index}: {os_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (kill -9 of the search command)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

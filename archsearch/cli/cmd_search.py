"""`archsearch search --budget B`: an Optuna search over genomes, trained from scratch.

Multi-fidelity by default: `--screen` candidates scored by a cheap `--evaluator`
(supernet or adaptive-bn), the best `--trials` of them proxy-trained, the best `--final`
of those trained from scratch for longer; `--evaluator proxy` skips the screen.

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
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.live import Live

from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, human, print_json
from archsearch.cli.cmd_report import trials_table
from archsearch.errors import ArchsearchError

REFRESH_S = 1.0
MAX_WORKERS = 256
LIVE_ROWS = 15


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search genomes at a budget (Optuna, guided by pruner genomes)",
        description="Search layer widths (and kept residual blocks) at a fixed budget: every "
                    "candidate is scaled onto the budget and scored on a validation split "
                    "carved from the training set, at three fidelities: many candidates "
                    "screened by a cheap evaluator (a one-shot supernet, or adaptive "
                    "BatchNorm on a trained base), the best trained from scratch on a short "
                    "proxy schedule, the best of those trained longer (--final). "
                    "FLOPs means multiply-accumulates (MACs).")
    p.add_argument("--budget", required=True, help="e.g. 25%%FLOPs, 30%%params, 120MFLOPs")
    p.add_argument("--space", default="resnet20", help="search space (default resnet20)")
    p.add_argument("--dataset", help="dataset (default: the space's)")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--guide", nargs="+", default=[], metavar="GENOME.json",
                   help="pruner-found genomes to search around (any space or dataset)")
    p.add_argument("--genome-kind", default="width", help="width (default): channel widths; "
                   "sparsity: the fraction of weights kept per conv layer (guides: sparsity "
                   "genomes, e.g. from discover --method magnitude; every trial trained from "
                   "scratch with a random mask, no screen)")
    d = _defaults()
    p.add_argument("--evaluator", default=d.evaluator, help="the screen's evaluator: supernet "
                   "(default), adaptive-bn, or proxy (no screen: every trial proxy-trained)")
    p.add_argument("--screen", type=int, default=d.screen,
                   help=f"candidates screened by the cheap evaluator (default {d.screen})")
    p.add_argument("--trials", type=int, default=d.trials,
                   help=f"proxy-trained trials: the best screened (default {d.trials})")
    p.add_argument("--final", type=int, default=d.final, help="the best proxy-trained "
                   f"genomes trained from scratch on the final schedule (default {d.final})")
    p.add_argument("--proxy-epochs", type=int, default=d.proxy_epochs,
                   help=f"epochs per proxy trial (default {d.proxy_epochs})")
    p.add_argument("--proxy-subset", type=_subset, default=d.proxy_subset,
                   help="training images per trial: a fraction (0.2) or a count (5000)")
    p.add_argument("--proxy-val", type=_subset, default=d.proxy_val,
                   help="validation images scored per trial: a fraction or a count (default all)")
    p.add_argument("--final-epochs", type=int, default=d.final_epochs,
                   help=f"epochs of a final trial (default {d.final_epochs})")
    p.add_argument("--final-subset", type=_subset, default=d.final_subset,
                   help=f"training images of a final trial (default {d.final_subset})")
    p.add_argument("--base", metavar="CHECKPOINT", help="adaptive-bn: the trained base to "
                   "inherit from (discover's sparse.pt or a train checkpoint; default: train "
                   "one in the run folder)")
    p.add_argument("--base-epochs", type=int, default=d.base_epochs, help="epochs of the "
                   f"supernet (or adaptive-bn's own base) (default {d.base_epochs})")
    p.add_argument("--base-subset", type=_subset, default=d.base_subset,
                   help=f"its training images (default {d.base_subset})")
    p.add_argument("--calib-images", type=int, default=d.calib_images, help="training images "
                   f"re-estimating BatchNorm per screened genome (default {d.calib_images})")
    p.add_argument("--screen-val", type=int, default=d.screen_val,
                   help=f"validation images per screened genome (default {d.screen_val})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--granularity", default="group", help="group (default) or stage")
    p.add_argument("--early-stop", default="hyperband", help="hyperband (default), median, none")
    p.add_argument("--objectives", default="accuracy",
                   help="accuracy (default) or accuracy,macs (NSGA-II over a budget range)")
    p.add_argument("--budget-low", help="with accuracy,macs: the low end of the budget range "
                   "(default a quarter of --budget)")
    p.add_argument("--storage", help="Optuna storage URL (postgresql://user:pw@host/db); "
                   "default: a journal file in the run folder")
    p.add_argument("--study", help="study name (workers with the same name join one study)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default runs/search-SPACE-BUDGET-sSEED)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _defaults() -> Any:
    """The defaults of a search (the dataclass's, so they are written once)."""
    import dataclasses

    from archsearch.search import SearchConfig

    return SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(SearchConfig)
                              if f.default is not dataclasses.MISSING})


def _subset(text: str) -> float | int:
    try:
        return int(text) if re.fullmatch(r"\d+", text) else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or a count: {text!r}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "", text.replace("%", "pct"))


def make_config(args: argparse.Namespace) -> Any:
    """A validated SearchConfig from the arguments (nothing written)."""
    from archsearch.build import bind
    from archsearch.search import SearchConfig

    bound = bind(args.space, args.dataset)
    kind = "" if args.genome_kind == "width" else f"{_slug(args.genome_kind)}-"
    out = args.out or str(Path("runs") / f"search-{kind}{bound.space.name}-"
                                          f"{_slug(args.budget)}-s{args.seed}")
    objectives = tuple(o.strip().lower() for o in args.objectives.split(",") if o.strip())
    return SearchConfig(
        budget=args.budget, out=out, space=args.space, dataset=bound.info.name,
        data_root=args.data_root, guides=list(args.guide), trials=args.trials,
        proxy_epochs=args.proxy_epochs, proxy_subset=args.proxy_subset, proxy_val=args.proxy_val,
        evaluator=args.evaluator, screen=args.screen, final=args.final,
        final_epochs=args.final_epochs, final_subset=args.final_subset, base=args.base,
        base_epochs=args.base_epochs, base_subset=args.base_subset,
        calib_images=args.calib_images, screen_val=args.screen_val,
        batch_size=args.batch_size, storage=args.storage, study=args.study,
        workers=args.workers, granularity=args.granularity, early_stop=args.early_stop,
        objectives=objectives, budget_low=args.budget_low, seed=args.seed,
        genome_kind=args.genome_kind)


def run(args: argparse.Namespace) -> int:
    import optuna

    from archsearch.search import check_inputs, evaluators_for, open_run, open_search, write_results

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = make_config(args)
    check_inputs(config)  # before the data are loaded, and before anything is written
    check_out_dir(config.out)
    if config.workers > MAX_WORKERS:
        raise ArchsearchError(f"--workers must be at most {MAX_WORKERS} (one process each), "
                              f"but got {config.workers}")
    evaluator = evaluators_for(config)
    if config.workers > 1:
        evaluator = None  # the workers load their own copy of the data
    # the first worker of a fresh study seeds its sampler with --seed, later joiners with
    # their pid (so that hand-started workers do not propose the same candidates)
    search = open_search(config, evaluator, worker_index=None)
    live = None if args.json or not console.is_terminal else Live(
        console=console, auto_refresh=False, transient=False)
    monitor = _Monitor(search, live)
    if config.workers == 1:
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
        console.print(f"evaluator {config.evaluator}: {per}")
    for best in doc["best"]:
        console.print(f"{'Pareto' if config.multi else 'best'}: trial {best['trial']} val acc "
                      f"{best['accuracy']:.2%}  MACs {human(best['macs'])} "
                      f"({best['macs_ratio']:.1%})  params {human(best['params'])}")
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
    """Start `config.workers` worker processes and wait for them (showing the table)."""
    from archsearch.errors import ArchsearchError

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(config, i), daemon=False)
             for i in range(config.workers)]
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
    _set_threads(config.workers)
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

"""The latency flags (`--threads`, `--latency-batch`, `--latency-device`) and the latency
table's build, shown with a progress bar when it has to be measured."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from archsearch.build import BoundSpace

LATENCY_HELP = {
    "latency_device": "where latency budgets and objectives are measured: cpu, cuda, cuda:N",
    "threads": "CPU threads latency is measured with (a table per thread count)",
    "latency_batch": "images per forward when latency is measured",
}
DEFAULTS = {"latency_device": "cpu", "threads": 1, "latency_batch": 1}


def add_latency_flags(parser: argparse.ArgumentParser) -> None:
    """The three flags, for commands without a config dataclass that declares them."""
    group = parser.add_argument_group("latency (budgets such as 3ms or 40%latency)")
    for name, text in LATENCY_HELP.items():
        default = DEFAULTS[name]
        group.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                           help=f"{text} (default {default})".replace("%", "%%"))


def settings(args: Any) -> Any:
    """The LatencySettings of parsed flags (or a config with the same fields)."""
    from archsearch.latency import settings_of

    return settings_of(args)


def prepare(bound: BoundSpace, metric: str, latency: Any, quiet: bool) -> None:
    """Price `bound` in `metric` now: a latency table not yet cached is measured here with a
    progress bar (then every later pricing of this space reads it from memory)."""
    from archsearch.cli._common import console
    from archsearch.latency import table_path
    from archsearch.metrics import get_metric

    if not get_metric(metric).settings:
        return
    path = table_path(bound, latency)
    if quiet or path.exists():
        bound.pricer(metric, latency)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("[bold]latency table[/] {task.fields[what]}"), BarColumn(),
                  MofNCompleteColumn(), console=console, transient=True) as bar:
        task = bar.add_task("table", total=None, what="")

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, what=what)

        pricer = bound.pricer(metric, replace(latency, progress=progress))
    console.print(f"latency table of {bound.space.name} on {latency.describe()}: measured in "
                  f"{pricer.build_s:.1f} s → {path}")


def prepare_budget(text: str, config: Any, quiet: bool, objective: str | None = None) -> None:
    """Measure the latency table a budget `text` (or a cost `objective`) of the run `config`
    (space, dataset, input size, latency fields) needs, with progress; nothing if none."""
    from archsearch.budget import parse_budget
    from archsearch.build import bind
    from archsearch.metrics import get_metric

    budget = parse_budget(text, settings(config))  # a bad budget: its one line, now
    names = [m for m in (budget.metric, objective) if m and get_metric(m).settings]
    if not names:
        return
    bound = bind(config.space, config.dataset, input_size=config.input_size)
    for name in dict.fromkeys(names):
        prepare(bound, name, settings(config), quiet)
    warn_if_flat(bound, budget)


def warn_if_flat(bound: BoundSpace, budget: Any) -> None:
    """A latency budget where the table is flat: its warning line on stderr (`flat_note`)."""
    from archsearch.budget import flat_note
    from archsearch.cli._common import err_console

    line = flat_note(bound, budget)
    if line:
        err_console.print(line, style="yellow", highlight=False, soft_wrap=True)

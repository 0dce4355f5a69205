"""Leaderboard and plots of a search run.

Print the leaderboard of a search (validation accuracy after proxy training, cost, kind of
genome) and write plots into RUN/report/: optimisation history, accuracy vs MACs and params
(uniform and guide genomes marked), channels per stage and per group of the best genome.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from archsearch.cli._args import add_shared
from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, fit_columns, human, print_json

if TYPE_CHECKING:
    from rich.console import JustifyMethod


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_shared(p, "run")
    p.add_argument("--top", type=int, default=20, help="rows to print (default %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="only the table")
    add_shared(p, "out", "json", out="where to write the plots (default RUN/report)")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.2%}"


_COLUMNS: dict[str, JustifyMethod] = {
    "trial": "right", "fidelity": "left", "state": "left", "val acc": "right",
    "epoch": "right", "MACs": "right", "params": "right", "kind": "left", "worker": "right",
    "time": "right", "note": "left"}
_DROP_ORDER = ("worker", "time", "note", "epoch", "state", "kind", "params",
               "fidelity")  # narrow terminal


def _cells(r: dict[str, Any]) -> dict[str, str]:
    acc = _pct(r["accuracy"]) if r["accuracy"] is not None else (
        f"({_pct(r['last_accuracy'])})" if r["last_accuracy"] is not None else "")
    note = r["outcome"] if r["outcome"] not in (None, "complete", "pruned") else ""
    if r["guide"]:
        note = f"{Path(r['guide']).name} {note}".strip()
    if r.get("promoted_from") is not None:
        note = f"from {r['promoted_from']} {note}".strip()
    return {"trial": str(r["trial"]), "fidelity": r.get("fidelity") or "", "state": r["state"],
            "val acc": acc,
            "epoch": str(r["last_epoch"] or ""), "MACs": human(r["macs"]) if r["macs"] else "",
            "params": human(r["params"]) if r["params"] else "", "kind": r["kind"],
            "worker": str(r["worker"] or ""),
            "time": f"{r['wall_s']:.0f}s" if r["wall_s"] else "", "note": note[:40]}


def trials_table(rows: Sequence[dict[str, Any]], title: str, width: int | None = None) -> Table:
    """A rich table of trial rows (`archsearch.search.trial_row`); in a terminal narrower
    than the whole table (`width`, default the console's), the least useful columns are
    left out rather than every cell cut short."""
    cells = [_cells(r) for r in rows]
    keep = fit_columns(list(_COLUMNS), cells, width or console.width, _DROP_ORDER)
    table = Table(title=title)
    for col in keep:
        table.add_column(col, justify=_COLUMNS[col], no_wrap=True)
    for c in cells:
        table.add_row(*(c[col] for col in keep))
    return table


def _finalists_table(points: Sequence[dict[str, Any]]) -> Table:
    """The highest fidelity's trials with their score at every fidelity."""
    table = Table(title="finalists: score at every fidelity")
    for col in ("trial", "kind", "screen", "proxy", "final"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for p in sorted(points, key=lambda p: -max(v for v in (p["screen"], p["proxy"], p["final"])
                                               if v is not None)):
        table.add_row(str(p["trial"]), p["kind"], _pct(p["screen"]), _pct(p["proxy"]),
                      _pct(p["final"]))
    return table


def run(args: argparse.Namespace) -> int:
    from archsearch.search import fidelity_points, open_run, summary, write_plots

    if args.top < 1:
        from archsearch.errors import ArchsearchError

        raise ArchsearchError(f"--top must be >= 1, but got {args.top}")
    if args.out and not args.no_plots:
        check_out_dir(args.out, "--out")
    search = open_run(args.run)
    doc = summary(search)
    doc["finalists"] = fidelity_points(search)
    plots = [] if args.no_plots else write_plots(search, Path(args.out) if args.out else None)
    if args.json:
        print_json(doc | {"plots": [str(p) for p in plots]})
        return 0
    t = doc["tally"]
    console.print(trials_table(doc["trials"][: args.top],
                               f"{doc['study']}: {t['finished']}/{search.config.total} "
                               f"trials finished"))
    per = ", ".join(f"{n} {f}" for f, n in doc["fidelities"].items())
    console.print(f"evaluator {doc['evaluator']}: {per}")
    if len(doc["fidelities"]) > 1 and doc["finalists"]:
        console.print(_finalists_table(doc["finalists"]))
    if doc.get("final_choice"):
        console.print(choice_line(doc["final_choice"]))
    for best in doc["best"][: 1 if not search.multi else len(doc["best"])]:
        console.print(f"{'Pareto' if search.multi else 'best'}: trial {best['trial']} "
                      f"val acc {_pct(best['accuracy'])}  MACs {human(best['macs'])} "
                      f"({best['macs_ratio']:.1%})  params {human(best['params'])}")
    for path in plots:
        console.print(f"plot: {path}")
    return 0


def choice_line(c: dict[str, Any]) -> str:
    """How the final stage chose between its best genome and the uniform incumbent."""
    verdict = "uniform kept" if c["kept_baseline"] else f"trial {c['challenger']} wins"
    return (f"final: {verdict}: trial {c['challenger']} {c['delta']:+.2%} over uniform (trial "
            f"{c['baseline']}), margin {c['margin']:g} × {c['se']:.2%} standard error on "
            f"{c['val_images']} validation images")

"""List the search spaces.

List the search spaces (search_spaces/*.toml) with their base cost at each space's default
dataset. FLOPs = multiply-accumulates.
"""

from __future__ import annotations

import argparse

from rich.table import Table

from archsearch.build import bind
from archsearch.cli._args import add_shared
from archsearch.cli._common import console, fit_columns, human, print_json
from archsearch.spaces import list_spaces


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_shared(p, "json")


def run(args: argparse.Namespace) -> int:
    rows = []
    for space in list_spaces():
        bound = bind(space)
        rows.append({"space": space.name, "family": space.family,
                     "dataset": bound.info.name, "groups": len(bound.graph.prunable),
                     "blocks": len(bound.graph.blocks), "macs": bound.base_cost.macs,
                     "params": bound.base_cost.params, "divisor": space.divisor,
                     "min_width": space.min_width, "description": space.description,
                     "path": space.path})
    if args.json:
        print_json(rows)
        return 0
    cells = [{"space": r["space"], "family": r["family"], "dataset": r["dataset"],
              "groups": str(r["groups"]), "blocks": str(r["blocks"]), "MACs": human(r["macs"]),
              "params": human(r["params"])} for r in rows]
    keep = fit_columns(list(cells[0]) if cells else ["space"], cells, console.width,
                       ("family", "blocks", "groups"))
    table = Table(title="search spaces (FLOPs = MACs)")
    for col in keep:
        table.add_column(col, no_wrap=True, justify="left" if col in (
            "space", "family", "dataset") else "right")
    for c in cells:
        table.add_row(*(c[col] for col in keep))
    console.print(table)
    return 0

"""Write the best genomes of a search as JSON files.

Write the K best genomes of a search (by validation accuracy; with --objectives
accuracy,macs the Pareto front) as genome files, ready for `archsearch train GENOME.json
--schedule scratch-b`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from archsearch.cli._args import add_shared
from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_shared(p, "run")
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many (default %(default)s)")
    add_shared(p, "out", "json", out="where to write them (default RUN/export)")


def run(args: argparse.Namespace) -> int:
    from archsearch.errors import ArchsearchError
    from archsearch.search import export_genomes, open_run
    from archsearch.sparsity import load_any_genome

    if args.top < 1:
        raise ArchsearchError(f"--top must be >= 1, but got {args.top}")
    if args.out:
        check_out_dir(args.out, "--out")
    search = open_run(args.run)
    paths = export_genomes(search, args.top, Path(args.out) if args.out else None)
    genomes = [load_any_genome(p) for p in paths]  # width or sparsity
    if args.json:
        print_json({"run": str(search.run_dir), "genomes": [
            {"path": str(p), "trial": g.provenance["trial"],
             "val_accuracy": g.provenance["val_accuracy"], "cost": g.cost}
            for p, g in zip(paths, genomes, strict=True)]})
        return 0
    for path, genome in zip(paths, genomes, strict=True):
        console.print(f"{path}  trial {genome.provenance['trial']}  val acc "
                      f"{genome.provenance['val_accuracy']:.2%}  MACs "
                      f"{genome.cost['macs_ratio']:.1%}  params {genome.cost['params_ratio']:.1%}")
    return 0

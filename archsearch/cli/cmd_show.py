"""Show a space or a genome: widths per group (a sparsity genome: densities per layer), cost.

Show a space (its full-width genome, or the uniform genome at --budget) or a genome file: a
per-group table with MACs and params; for a sparsity genome, each layer's density and the
non-zero params and MACs. FLOPs means multiply-accumulates (MACs).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.table import Table

from archsearch.budget import parse_budget
from archsearch.cli._args import add_shared
from archsearch.cli._checks import check_out_file
from archsearch.cli._common import console, human, load_target, looks_like_file, print_json
from archsearch.cli._latency import add_latency_flags, prepare, warn_if_flat
from archsearch.cli._latency import settings as latency_settings
from archsearch.cli._render import cost_line
from archsearch.kinds import WIDTH

if TYPE_CHECKING:
    from archsearch.sparsity import SparsityGenome


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="SPACE|GENOME.json")
    add_shared(p, "dataset", "input_size")
    p.add_argument("--budget", help="with a space: the uniform genome at this budget, e.g. "
                   "50%%FLOPs, 30%%params, 120MFLOPs, 1.5Mparams, 3ms, 40%%latency")
    p.add_argument("--plot", metavar="FILE.png", help="draw base vs genome widths per group")
    add_shared(p, "json")
    add_latency_flags(p)


def run(args: argparse.Namespace) -> int:
    if args.plot:
        check_out_file(args.plot, "--plot")
    if looks_like_file(args.target):
        from archsearch.kinds import SPARSITY, kind_of_genome, load_genome

        loaded = load_genome(args.target)  # its kind by its `format`
        if kind_of_genome(loaded) is SPARSITY:
            return show_sparse(args, loaded)
    bound, genome = load_target(args.target, args.dataset, args.input_size)
    if args.budget is not None:
        budget = parse_budget(args.budget, latency_settings(args))
        if genome is not None:
            from archsearch.errors import ArchsearchError

            raise ArchsearchError("--budget applies to a space, not to a genome file")
        prepare(bound, budget.metric, budget.latency, args.json)
        genome = bound.uniform(budget)
        warn_if_flat(bound, budget)
    genome = genome or bound.base_genome()
    rows = WIDTH.rows(bound, genome)
    if args.plot:
        WIDTH.plot(rows, args.plot, f"{bound.space.name} on {bound.info.name}: "
                    f"{genome.cost['macs_ratio']:.1%} MACs")
    base = bound.base_cost
    if args.json:
        print_json({"space": bound.space.name, "dataset": bound.info.name,
                    "input_size": bound.info.size, "macs": genome.cost["macs"],
                    "params": genome.cost["params"],
                    "macs_ratio": genome.cost["macs_ratio"],
                    "params_ratio": genome.cost["params_ratio"], "base_macs": base.macs,
                    "base_params": base.params, "widths": {r["group"]: r["width"] for r in rows},
                    "blocks": genome.blocks, "genome": genome.to_dict(),
                    **{k: v for k, v in genome.cost.items() if k.startswith("latency_")}})
        return 0
    table = Table(title=f"{bound.space.name} on {bound.info.name} at "
                        f"{bound.info.size}×{bound.info.size}")
    for col in ("group", "stage", "base", "width", "kept"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for r in rows:
        kept = "removed" if r["removed"] else f"{r['kept']:.0%}"
        table.add_row(r["group"], str(r["stage"]), str(r["base"]), str(r["width"]), kept)
    console.print(table)
    removed = sorted(genome.removed_blocks())
    if bound.graph.blocks:
        console.print(f"blocks kept: {len(bound.graph.blocks) - len(removed)}/"
                      f"{len(bound.graph.blocks)}" + (f"  removed: {', '.join(removed)}"
                                                      if removed else ""))
    console.print(cost_line(genome.cost, base.macs, base.params, WIDTH))
    if "latency_ms" in genome.cost:
        c = genome.cost
        console.print(f"latency {c['latency_ms']:.3g} ms ({c['latency_ratio']:.1%} of the base; "
                      f"predicted from the table of {c['latency_device']}, "
                      f"{c['latency_threads']} thread(s), batch {c['latency_batch']})")
    if args.plot:
        console.print(f"plot: {args.plot}")
    return 0


def show_sparse(args: argparse.Namespace, genome: SparsityGenome) -> int:
    """A sparsity genome: per conv/linear layer its weights, kept weights, density and MACs;
    the non-zero params and MACs of the whole model."""
    from archsearch.build import bind_genome
    from archsearch.errors import ArchsearchError
    from archsearch.kinds import SPARSITY

    if args.budget is not None:
        raise ArchsearchError("--budget applies to a space, not to a genome file")
    bound = bind_genome(genome, args.dataset, args.input_size, source=args.target)
    SPARSITY.validate(bound, genome)
    rows = SPARSITY.rows(bound, genome)
    cost, base = SPARSITY.cost(bound, genome), bound.base_cost
    if args.plot:
        SPARSITY.plot(rows, args.plot, f"{bound.space.name} on {bound.info.name}: "
                       f"{cost['params_ratio']:.1%} params kept")
    if args.json:
        print_json({"space": bound.space.name, "dataset": bound.info.name,
                    "input_size": bound.info.size, "genome_kind": SPARSITY.name, **cost,
                    "base_macs": base.macs,
                    "base_params": base.params, "layers": rows,
                    "genome": genome.to_dict()})
        return 0
    table = Table(title=f"{bound.space.name} on {bound.info.name}: sparsity genome")
    for col in ("layer", "weights", "kept", "density", "MACs"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in rows:
        table.add_row(r["layer"], str(r["weights"]), str(r["kept"]), f"{r['density']:.1%}",
                      human(r["macs"]))
    console.print(table)
    console.print(cost_line(cost, base.macs, base.params, SPARSITY))
    if args.plot:
        console.print(f"plot: {args.plot}")
    return 0

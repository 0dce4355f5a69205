"""`archsearch discover --method M --budget B`: a pruner finds a genome at a budget."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from rich.table import Table

from archsearch.cli._common import console, human, print_json
from archsearch.discover import DEFAULT_EPOCHS, DEFAULT_SPACE, DEFAULT_SUBSET
from archsearch.errors import ArchsearchError
from archsearch.pruners import METHODS, PRUNERS


def add_common(p: argparse.ArgumentParser, epochs: int = DEFAULT_EPOCHS,
               subset: int | None = DEFAULT_SUBSET) -> None:
    """The options `discover` and `rethink` share."""
    p.add_argument("--method", required=True, metavar="M",
                   help=f"pruning method: {', '.join(METHODS)}")
    p.add_argument("--budget", required=True, metavar="B",
                   help="e.g. 50%%FLOPs, 30%%params, 120MFLOPs, 1.5Mparams (FLOPs = MACs)")
    p.add_argument("--space", default=DEFAULT_SPACE,
                   help=f"search space (default {DEFAULT_SPACE}; see `archsearch spaces`)")
    p.add_argument("--dataset", help="default: the space's (fashion-mnist)")
    p.add_argument("--data-root", help="where the dataset files are (else $ARCHSEARCH_DATA, "
                   "then /usr/share/datasets)")
    p.add_argument("--epochs", type=int, default=epochs,
                   help=f"base training epochs (default {epochs}: a short CPU schedule)")
    p.add_argument("--subset", type=float, default=subset,
                   help=f"train on a subset: a number of images or a fraction <= 1 (default "
                        f"{subset or 'all'}; 1 = all)")
    p.add_argument("--sparsity", type=float,
                   help="strength of the sparsity term (slimming: L1 on BN scales, default "
                        "1e-4; sss: L1 on block factors, default 1e-2)")
    p.add_argument("--stage-ratios", metavar="R1,R2,...",
                   help="l1norm, thinet, sfp: relative keep ratio per stage (e.g. "
                        "0.5,0.75,1), scaled together onto the budget (default: uniform)")
    p.add_argument("--scope", choices=("global", "layer"),
                   help="magnitude: one threshold over all layers (global, the default) or "
                        "the same density in every layer")
    p.add_argument("--guide", action="append", metavar="SPARSITY.json",
                   help="guided-sparsity: a found sparsity genome to follow (any space; "
                        "repeat for several, averaged by relative depth)")
    p.add_argument("--batch-size", type=int, help="default: the trainer's (64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default runs/<command>-<method>-<space>-...)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"method": args.method, "budget": args.budget, "space": args.space,
            "dataset": args.dataset, "data_root": args.data_root, "epochs": args.epochs,
            "subset": subset(args.subset), "sparsity": args.sparsity,
            "batch_size": args.batch_size, "seed": args.seed, "out": args.out,
            "resume": args.resume, "pruner_options": pruner_options(args)}


def pruner_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.scope is not None:
        if args.method != "magnitude":
            raise ArchsearchError(f"--scope applies to magnitude, not {args.method!r}")
        opts["scope"] = args.scope
    if args.guide:
        if args.method != "guided-sparsity":
            raise ArchsearchError(f"--guide applies to guided-sparsity, not {args.method!r}")
        opts["guides"] = list(args.guide)
    if args.stage_ratios is None:
        return opts
    takes = [m for m, cls in PRUNERS.items()
             if "stage_ratios" in inspect.signature(cls.__init__).parameters]
    if args.method not in takes:
        raise ArchsearchError(f"--stage-ratios applies to {', '.join(takes)}, not "
                              f"{args.method!r}")
    try:
        ratios = [float(r) for r in args.stage_ratios.split(",")]
    except ValueError:
        raise ArchsearchError(f"--stage-ratios takes numbers separated by commas, but got "
                              f"{args.stage_ratios!r}") from None
    return {**opts, "stage_ratios": ratios}


def subset(value: float | None) -> int | float | None:
    """A fraction (<= 1; 1 = all) or a count of training images."""
    if value is None:
        return None
    if not value > 0:
        raise ArchsearchError(f"--subset must be > 0, but got {value:g}")
    if value <= 1:
        return None if value == 1 else float(value)
    if value != int(value):
        raise ArchsearchError(f"--subset above 1 is a number of images, but got {value:g}")
    return int(value)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "discover", help="find a genome at a budget with a pruner (slimming, sss, ...)",
        description="Train the base with the pruner's sparsity term (slimming, sss; uniform "
                    "and l1norm need no training), derive a genome meeting the budget within "
                    "1%, and write genome.json, the sparse checkpoint (sparse.pt), widths.png "
                    "and scales.png, and result.json to the run folder. FLOPs means "
                    "multiply-accumulates (MACs).")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from archsearch.discover import DiscoverConfig, discover, is_sparse, plan

    the_plan = plan(DiscoverConfig(**common_options(args)))  # every check, nothing written
    if not args.json:
        cfg = the_plan.config
        what = (f"{cfg.epochs} epoch(s) on {cfg.subset or 'all'} images"
                if the_plan.pruner.needs_training else "no training needed")
        console.print(f"[bold]{the_plan.pruner.name}[/] on {the_plan.bound.space.name} / "
                      f"{the_plan.bound.info.name} at {the_plan.budget}: {what} → "
                      f"{the_plan.run_dir}")
    if is_sparse(the_plan.pruner):  # magnitude: a sparsity genome, not widths
        from archsearch.unstructured import discover_sparse as discover
    result = discover(the_plan, progress=not args.json)
    if args.json:
        print_json(result)
    else:
        print_result(result)
    return 0


def print_result(result: dict[str, Any]) -> None:
    if result.get("genome_kind") == "sparsity":
        print_sparse_result(result)
        return
    table = Table(title=f"{result['method']} genome: {result['space']} on {result['dataset']} "
                        f"at {result['budget']}")
    for col in ("group", "stage", "base", "width", "kept"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for r in result["widths"]:
        kept = "removed" if r["removed"] else f"{r['kept']:.0%}"
        table.add_row(r["group"], str(r["stage"]), str(r["base"]), str(r["width"]), kept)
    console.print(table)
    if result["removed_blocks"]:
        console.print(f"removed blocks: {', '.join(result['removed_blocks'])}")
    cost, base = result["cost"], result["base_cost"]
    console.print(f"MACs {human(cost['macs'])} ({cost['macs_ratio']:.1%} of "
                  f"{human(base['macs'])})   params {human(cost['params'])} "
                  f"({cost['params_ratio']:.1%} of {human(base['params'])})")
    train = result.get("train") or {}
    if train.get("val_acc") is not None:
        console.print(f"base after sparsity training: val acc {train['val_acc']:.2%} "
                      f"({train['epochs']} epochs, {train['wall_s']:.0f} s)")
    console.print(f"wall time {result['wall_s']:.0f} s; files: "
                  + ", ".join(result["files"].values()))


def print_sparse_result(result: dict[str, Any]) -> None:
    """A sparsity genome: the density of every conv/linear layer."""
    table = Table(title=f"{result['method']} sparsity genome: {result['space']} on "
                        f"{result['dataset']} at {result['budget']}")
    for col in ("layer", "weights", "kept", "density"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in result["layers"]:
        table.add_row(r["layer"], str(r["weights"]), str(r["kept"]), f"{r['density']:.1%}")
    console.print(table)
    cost, base = result["cost"], result["base_cost"]
    console.print(f"non-zero MACs {human(cost['macs'])} ({cost['macs_ratio']:.1%} of "
                  f"{human(base['macs'])})   non-zero params {human(cost['params'])} "
                  f"({cost['params_ratio']:.1%} of {human(base['params'])})")
    console.print(f"wall time {result['wall_s']:.0f} s; files: "
                  + ", ".join(result["files"].values()))

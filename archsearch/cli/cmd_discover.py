"""`archsearch discover --method M --budget B`: a pruner finds a genome at a budget."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from rich.table import Table

from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, err_console, human, print_json
from archsearch.cli._progress import progress_bar
from archsearch.discover import DEFAULT_SPACE
from archsearch.errors import ArchsearchError, SeparationError
from archsearch.presets import DEFAULT_PRESET, PRESETS
from archsearch.pruners import METHODS, PRUNERS
from archsearch.rethink import images_label
from archsearch.viz import FLAG_BELOW


def add_common(p: argparse.ArgumentParser) -> None:
    """The options `discover` and `rethink` share; unset ones come from the preset."""
    p.add_argument("--method", required=True, metavar="M",
                   help=f"pruning method: {', '.join(METHODS)}")
    p.add_argument("--budget", required=True, metavar="B",
                   help="e.g. 50%%FLOPs, 30%%params, 120MFLOPs, 1.5Mparams (FLOPs = MACs)")
    p.add_argument("--space", default=DEFAULT_SPACE,
                   help=f"search space (default {DEFAULT_SPACE}; see `archsearch spaces`)")
    p.add_argument("--dataset", help="default: the space's (fashion-mnist)")
    p.add_argument("--data-root", help="where the dataset files are (else $ARCHSEARCH_DATA, "
                   "then /usr/share/datasets)")
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help="; ".join(f"{n}: {r.summary}" for n, r in PRESETS.items())
                   + f" (default {DEFAULT_PRESET}); the flags below override it")
    p.add_argument("--epochs", type=int, help="base training epochs (default: the preset's)")
    p.add_argument("--subset", type=float,
                   help="train on a subset: a number of images or a fraction <= 1 (1 = all; "
                        "default: the preset's)")
    p.add_argument("--sparsity", type=sparsity_arg, metavar="auto|paper|X",
                   help="strength of the sparsity term (slimming: L1 on BN scales; sss: L1 "
                        "on block factors): auto sizes the paper's λ to the schedule that "
                        "runs (the quick preset's default), paper is the paper's λ per family "
                        "(the paper preset's), or a number")
    p.add_argument("--min-keep", type=float, metavar="SHARE",
                   help="slimming, taylor: no group below this share of its base width unless its "
                        "scores are zeros (default 0.1)")
    p.add_argument("--require-separation", action="store_true",
                   help="exit 2 (and write no genome) when the pruner's scores did not "
                        "separate at the budget")
    p.add_argument("--stage-ratios", metavar="R1,R2,...",
                   help="l1norm, thinet, lasso, sfp: relative keep ratio per stage (e.g. "
                        "0.5,0.75,1), scaled together onto the budget (default: uniform)")
    p.add_argument("--scope", choices=("global", "layer"),
                   help="magnitude: one threshold over all layers (global, the default) or "
                        "the same density in every layer")
    p.add_argument("--guide", action="append", metavar="SPARSITY.json",
                   help="guided-sparsity: a found sparsity genome to follow (any space; "
                        "repeat for several, averaged by relative depth)")
    p.add_argument("--batch-size", type=int, help="default: the preset's (64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default runs/<command>-<method>-<space>-...)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")


def sparsity_arg(text: str) -> float | str:
    if text in ("auto", "paper"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, paper or a number, got {text!r}"
                                         ) from None


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the user gave (None: the preset's)."""
    return {"method": args.method, "budget": args.budget, "space": args.space,
            "dataset": args.dataset, "data_root": args.data_root, "epochs": args.epochs,
            "subset": subset(args.subset), "sparsity": args.sparsity,
            "batch_size": args.batch_size, "seed": args.seed, "out": args.out,
            "resume": args.resume, "require_separation": args.require_separation,
            "pruner_options": pruner_options(args)}


def preset_line(cfg: Any, needs_training: bool = True) -> str:
    """Which preset runs, and how to choose the other."""
    other = [n for n in PRESETS if n != cfg.preset]
    what = (f"{cfg.epochs} epoch(s) on {images_label(cfg.subset)} images, batch {cfg.batch_size}, "
            f"sparsity {cfg.sparsity}" if needs_training else "no training needed")
    return (f"preset {cfg.preset} ({what}); --preset {' | '.join(other)} for the other "
            "recipe, or override single flags")


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
    if args.min_keep is not None:
        takes = _taking("min_keep")
        if args.method not in takes:
            raise ArchsearchError(f"--min-keep applies to {', '.join(takes)}, not "
                                  f"{args.method!r}")
        opts["min_keep"] = args.min_keep
    if args.stage_ratios is None:
        return opts
    takes = _taking("stage_ratios")
    if args.method not in takes:
        raise ArchsearchError(f"--stage-ratios applies to {', '.join(takes)}, not "
                              f"{args.method!r}")
    try:
        ratios = [float(r) for r in args.stage_ratios.split(",")]
    except ValueError:
        raise ArchsearchError(f"--stage-ratios takes numbers separated by commas, but got "
                              f"{args.stage_ratios!r}") from None
    return {**opts, "stage_ratios": ratios}


def _taking(option: str) -> list[str]:
    """The width pruners whose constructor takes `option`."""
    return [m for m, cls in PRUNERS.items()
            if option in inspect.signature(cls.__init__).parameters]


def subset(value: float | None) -> int | float | None:
    """A fraction (<= 1; 1.0 = all) or a count of training images (None: not given)."""
    if value is None:
        return None
    if not value > 0:
        raise ArchsearchError(f"--subset must be > 0, but got {value:g}")
    if value <= 1:
        return float(value)
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

    cfg = DiscoverConfig.from_preset(args.preset, **common_options(args))
    the_plan = plan(cfg)  # every check, nothing written
    check_out_dir(the_plan.run_dir)  # writable before anything is trained
    if not args.json:
        console.print(f"[bold]{the_plan.pruner.name}[/] on {the_plan.bound.space.name} / "
                      f"{the_plan.bound.info.name} at {the_plan.budget} → {the_plan.run_dir}")
        console.print(preset_line(cfg, the_plan.pruner.needs_training))
    if is_sparse(the_plan.pruner):  # magnitude: a sparsity genome, not widths
        from archsearch.unstructured import discover_sparse as discover
    try:
        result = discover(the_plan, progress=progress_bar(not args.json))
    except SeparationError as exc:
        err_console.print(f"[yellow]{exc}[/]", highlight=False, soft_wrap=True)
        return 2
    if args.json:
        print_json(result)
    else:
        print_result(result)
    for line in result.get("warnings", []):
        err_console.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)
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
        style = "red" if r["flagged"] else None
        table.add_row(r["group"], str(r["stage"]), str(r["base"]), str(r["width"]),
                      kept + (" !" if r["flagged"] else ""), style=style)
    console.print(table)
    if result["flagged_groups"]:
        console.print(f"! cut below {FLAG_BELOW:.0%} of the base width: "
                      + ", ".join(result["flagged_groups"]))
    sep = result.get("separation")
    if sep is not None and sep.get("statistic") is not None:
        console.print(f"separation {sep['statistic']:.2f} (separated at >= "
                      f"{sep['min_separation']}): {'yes' if sep['separated'] else 'NO'}; "
                      f"sparsity {result['provenance'].get('sparsity')} "
                      f"({result['provenance'].get('sparsity_rule')})")
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

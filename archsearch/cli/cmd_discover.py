"""Find a genome at a budget with a pruner (slimming, sss, ...).

Train the base with the pruner's sparsity term (slimming, sss; uniform and l1norm need no
training), derive a genome meeting the budget within 1%, and write genome.json, the sparse
checkpoint (sparse.pt), widths.png and scales.png, and result.json to the run folder. FLOPs
means multiply-accumulates (MACs).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from archsearch.cli._args import (
    add_fields,
    add_pruner_options,
    add_shared,
    field_values,
    pruner_options,
)
from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, data_lines, err_console, print_json
from archsearch.cli._latency import LATENCY_HELP, prepare_budget
from archsearch.cli._progress import progress_bar
from archsearch.cli._render import cost_line
from archsearch.errors import ArchsearchError, SeparationError
from archsearch.kinds import SPARSITY, WIDTH, get_kind
from archsearch.presets import PRESETS
from archsearch.pruners import METHOD_CLASSES, METHODS
from archsearch.rethink import images_label
from archsearch.viz import FLAG_BELOW


def add_common(p: argparse.ArgumentParser, config: type) -> None:
    """The options `discover` and `rethink` share, and every pruner's declared options;
    unset ones come from the preset (or the pruner)."""
    p.add_argument("--method", required=True, metavar="M",
                   help=f"pruning method: {', '.join(METHODS)}")
    p.add_argument("--budget", required=True, metavar="B",
                   help="e.g. 50%%FLOPs, 30%%params, 120MFLOPs, 1.5Mparams (FLOPs = MACs), "
                        "3ms or 40%%latency (measured: see --threads, --latency-batch)")
    add_shared(p, "dataset", "data_root", "input_size")
    add_fields(p, config, LATENCY_HELP)
    add_fields(p, config, COMMON_HELP, choices={"preset": PRESETS},
               types={"subset": float, "sparsity": sparsity_arg},
               metavars={"sparsity": "auto|paper|X"}, unset=PRESET_FIELDS)
    add_shared(p, "out", "resume", "json", "fast")
    add_pruner_options(p.add_argument_group(
        "pruner options", "each applies to the methods it names; unset: the method's default"),
        METHOD_CLASSES)


PRESET_FIELDS = ("epochs", "subset", "sparsity", "batch_size")  # unset: the preset's
COMMON_HELP = {
    "space": "search space (see `archsearch spaces`)",
    "preset": "; ".join(f"{n}: {r.summary}" for n, r in PRESETS.items())
              + "; the flags below override it",
    "epochs": "base training epochs (default: the preset's)",
    "subset": "train on a subset: a number of images or a fraction <= 1 (1 = all; default: the "
              "preset's)",
    "sparsity": "strength of the sparsity term (slimming: L1 on BN scales; sss: L1 on block "
                "factors): auto sizes the paper's λ to the schedule that runs (the quick "
                "preset's default), paper is the paper's λ per family (the paper preset's), or "
                "a number",
    "batch_size": "training batch size (default: the preset's)",
    "seed": "random seed",
    "require_separation": "exit 2 (and write no genome) when the pruner's scores did not "
                          "separate at the budget",
}



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
    return {"method": args.method, "budget": args.budget, "dataset": args.dataset,
            "data_root": args.data_root, "input_size": args.input_size, "out": args.out,
            "resume": args.resume, "fast": args.fast,
            **field_values(args, (n for n in COMMON_HELP if n != "preset")),
            **field_values(args, LATENCY_HELP),
            "subset": subset(args.subset),
            "pruner_options": pruner_options(args, args.method, METHOD_CLASSES)}


def preset_line(cfg: Any, needs_training: bool = True) -> str:
    """Which preset runs, and how to choose the other."""
    other = [n for n in PRESETS if n != cfg.preset]
    what = (f"{cfg.epochs} epoch(s) on {images_label(cfg.subset)} images, batch {cfg.batch_size}, "
            f"sparsity {cfg.sparsity}" if needs_training else "no training needed")
    return (f"preset {cfg.preset} ({what}); --preset {' | '.join(other)} for the other "
            "recipe, or override single flags")


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    from archsearch.pipeline import DiscoverConfig

    add_common(p, DiscoverConfig)


def run(args: argparse.Namespace) -> int:
    from archsearch.discover import DiscoverConfig, discover, is_sparse, plan

    cfg = DiscoverConfig.from_preset(args.preset, **common_options(args))
    prepare_budget(cfg.budget, cfg, args.json)
    the_plan = plan(cfg)  # every check, nothing written
    if the_plan.splits is not None and not args.json:
        for line in data_lines(the_plan.splits):
            err_console.print(line, style="yellow", highlight=False, soft_wrap=True)
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
    """A discover result: the genome of its kind (the result's `genome_kind`; a width
    genome's result has none), its cost, the wall time and the files written."""
    if get_kind(result.get("genome_kind", WIDTH.name)) is SPARSITY:
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
    base = result["base_cost"]
    console.print(cost_line(result["cost"], base["macs"], base["params"], WIDTH))
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
    base = result["base_cost"]
    console.print(cost_line(result["cost"], base["macs"], base["params"], SPARSITY))
    console.print(f"wall time {result['wall_s']:.0f} s; files: "
                  + ", ".join(result["files"].values()))

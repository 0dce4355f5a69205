"""The paper's experiment: fine-tune vs Scratch-E/B vs uniform.

Liu et al. 2019 in one command. Per seed: train the base (with the pruner's sparsity term),
prune it to the budget, then (a) fine-tune with the inherited weights, (b) Scratch-E (the
base epochs), (c) Scratch-B (epochs x base MACs / pruned MACs), (d) the uniform genome at
the same budget, Scratch-B. Prints test accuracy mean ± std over seeds, MACs, params and
wall time; writes rethink.md and rethink.json to the run folder. Finished legs are recorded
and not re-run with --resume. FLOPs means multiply-accumulates (MACs).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from archsearch.cli._args import add_fields, field_values
from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, data_lines, emit, err_console, human
from archsearch.cli._progress import progress_bar
from archsearch.cli.cmd_discover import add_common, common_options, preset_line

FIELD_HELP = {
    "seeds": "number of seeds: --seed, --seed+1, ...",
    "finetune_epochs": "fine-tune epochs at lr 1e-3 (default: the preset's)",
    "max_scale": "Scratch-B: cap the epoch scale factor",
    "test_subset": "evaluate on this many test images (default: the whole test split)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from archsearch.pipeline import RethinkConfig

    add_common(p, RethinkConfig)
    add_fields(p, RethinkConfig, FIELD_HELP, unset=("finetune_epochs",))


def run(args: argparse.Namespace) -> int:
    from archsearch.discover import RethinkConfig, is_sparse, plan
    from archsearch.rethink import LEG_TITLES, Rethink

    cfg = RethinkConfig.from_preset(args.preset, **common_options(args),
                                    **field_values(args, FIELD_HELP))
    the_plan = plan(cfg)
    if the_plan.splits is not None and not args.json:
        for line in data_lines(the_plan.splits):
            err_console.print(line, style="yellow", highlight=False, soft_wrap=True)
    check_out_dir(the_plan.run_dir)  # writable before anything is trained

    def on_leg(rec: dict[str, Any]) -> None:
        if args.json:
            return
        title = f"seed {rec['seed']} · {LEG_TITLES[rec['leg']]}"
        if rec["status"] == "start":
            console.rule(title)
        else:
            note = " (recorded earlier, not re-run)" if rec["status"] == "done" else ""
            console.print(f"{title}: test acc {rec['test_acc']:.2%}, {rec['epochs']} epochs, "
                          f"{rec['wall_s']:.0f} s{note}")

    if not args.json:
        cfg = the_plan.config
        console.print(f"[bold]rethink[/] {the_plan.pruner.name} on {the_plan.bound.space.name}"
                      f" / {the_plan.bound.info.name} at {the_plan.budget}: {cfg.seeds} seed(s)"
                      f" → {the_plan.run_dir}")
        console.print(preset_line(cfg))
    runner = Rethink
    if is_sparse(the_plan.pruner):  # magnitude: masks instead of narrower models
        from archsearch.unstructured import SparseRethink as runner
    doc = runner(the_plan, on_leg=on_leg, progress=progress_bar(not args.json)).run()
    return emit(doc, args.json, print_table)


def print_table(doc: dict[str, Any]) -> None:
    table = Table(title=f"rethink: {doc['method']} at {doc['budget']} on {doc['space']} / "
                        f"{doc['dataset']}, seeds {doc['seeds']}")
    for col in ("model", "test acc", "MACs", "params", "epochs", "wall (s)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in doc["rows"]:
        table.add_row(r["title"], f"{100 * r['test_acc']:.2f}±{100 * r['test_acc_std']:.2f}%",
                      f"{human(r['macs'])} ({r['macs_ratio']:.0%})",
                      f"{human(r['params'])} ({r['params_ratio']:.0%})", f"{r['epochs']:g}",
                      f"{r['wall_s']:.0f} ± {r['wall_s_std']:.0f}")
    console.print(table)
    console.print("test accuracy: mean ± std over seeds; FLOPs = MACs")
    console.print(f"files: {doc['files']['markdown']}, {doc['files']['json']}")

"""Train a genome from scratch (scratch-e, scratch-b) or fine-tune it.

Train the architecture of GENOME.json on its dataset. scratch-e: the base epochs; scratch-b:
epochs × base MACs / genome MACs (the same compute as the base; FLOPs means multiply-
accumulates); finetune: inherited weights from --from at a small constant lr; base: the
paper's base recipe. Writes config.json, genome.json, metrics.jsonl, checkpoint.pt (every
epoch) and result.json to --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from archsearch.cli._args import add_fields, add_shared, field_values
from archsearch.cli._checks import check_out_dir
from archsearch.cli._common import console, data_lines, emit, err_console, human
from archsearch.cli._latency import add_latency_flags
from archsearch.cli._latency import settings as latency_settings
from archsearch.cli._progress import progress_bar
from archsearch.cli.cmd_discover import subset
from archsearch.errors import ArchsearchError
from archsearch.presets import PRESETS
from archsearch.train import AMP_MODES, LR_SCHEDULES, SCHEDULES, TrainConfig

FIELD_HELP = {
    "schedule": "the training recipe (see above)",
    "epochs": "base epochs (scratch-b scales them; default: --preset's, else 160)",
    "max_scale": "scratch-b: cap the epoch scale factor",
    "batch_size": "training batch size (default: --preset's, else 64)",
    "lr": "initial lr (default: the schedule's)",
    "lr_schedule": "lr shape: step (×0.1 at 50%, 75%: the paper's) or onecycle (linear up "
                   "over 15%, then down to 0) (default: --preset's, else step)",
    "label_smoothing": "label smoothing of the loss (default: --preset's, else 0)",
    "weight_decay": "SGD weight decay (default: --preset's, else 1e-4)",
    "seed": "random seed",
    "device": "auto, cpu, cuda, cuda:N",
    "amp": "mixed precision",
    "compile": "torch.compile the model",
}


RECIPE_FIELDS = ("epochs", "batch_size", "lr_schedule", "label_smoothing", "weight_decay",
                 "nesterov", "test_flip")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("genome", metavar="GENOME.json")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help=("take the training fields of a named recipe ("
                         + "; ".join(f"{n}: {r.summary}" for n, r in PRESETS.items())
                         + "); flags given explicitly win").replace("%", "%%"))
    add_fields(p, TrainConfig, FIELD_HELP, choices={"schedule": SCHEDULES, "amp": AMP_MODES,
                                                    "lr_schedule": LR_SCHEDULES},
               unset=RECIPE_FIELDS)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum (default: --preset's, else off)")
    p.add_argument("--test-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time flip: average the logits of each image and its mirror "
                        "(default: --preset's, else off)")
    add_shared(p, "dataset", "data_root", "input_size")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="the engine's fast path on CPU: glibc keeps freed memory, narrow "
                        "BatchNorm layers run a folded kernel, SGD runs multi-tensor; same "
                        "training in distribution, not bit for bit (--no-fast: the plain "
                        "path; default --fast)")
    p.add_argument("--subset", type=float,
                   help="train on a subset: a fraction (<= 1) or a number of images")
    p.add_argument("--from", dest="source", metavar="CKPT",
                   help="finetune: checkpoint of the trained base (discover's sparse.pt, or a "
                        "checkpoint.pt of a base run) whose surviving weights are inherited")
    add_shared(p, "out", "resume", "json")
    p.add_argument("--latency", action="store_true",
                   help="after training, measure the trained network's latency (the fastest "
                        "of 30 forwards, at --threads and --latency-batch below)")
    add_latency_flags(p)


def recipe_values(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig's fields: the flags given, else --preset's, else TrainConfig's defaults."""
    values = field_values(args, [*FIELD_HELP, "nesterov", "test_flip"])
    if args.preset is not None:
        preset = PRESETS[args.preset]
        given = {"epochs": preset.epochs, "batch_size": preset.batch_size, **preset.train}
        for name, value in given.items():
            if values.get(name) is None:
                values[name] = value
    return {k: v for k, v in values.items() if not (k in RECIPE_FIELDS and v is None)}


def _restartable(out: Path) -> bool:
    """Empty, missing, or holding only what a run writes before its first checkpoint (a run
    stopped in its first epoch starts over)."""
    if not out.is_dir():
        return True
    names = {p.name for p in out.iterdir() if not p.name.endswith(".tmp")}
    if not names:
        return True
    try:  # ours: train's config.json names the epochs it ran
        ours = "epochs_run" in json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False
    return ours and names <= {"config.json", "genome.json", "metrics.jsonl"}


def run(args: argparse.Namespace) -> int:
    import os

    from archsearch.build import bind_genome
    from archsearch.data import load_data
    from archsearch.genome import Genome
    from archsearch.train import resolve_epochs, seed_everything, train

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 talks
        args.json = False
        console.quiet = True
    # every input is checked before anything is written
    genome = Genome.load(args.genome)
    bound = bind_genome(genome, args.dataset, args.input_size, source=args.genome)
    bound.validate(genome)
    genome = bound.with_cost(genome)
    config = TrainConfig(train_subset=subset(args.subset), fast=args.fast,
                         **recipe_values(args))
    latency = latency_settings(args)  # --threads, --latency-batch checked before training
    if (args.schedule == "finetune") != (args.source is not None):
        raise ArchsearchError("--from CKPT is what finetune inherits from: pass it with "
                              "--schedule finetune, and only then")
    epochs = resolve_epochs(config, bound.base_cost.macs, genome.cost["macs"])
    out = Path(args.out) if args.out else Path("runs") / (
        f"train-{genome.space}-{args.schedule}-s{args.seed}-{Path(args.genome).stem}")
    check_out_dir(out)
    if not args.resume and not _restartable(out):
        raise ArchsearchError(f"run folder {out} exists: pass --resume to continue it, or "
                              "--out for a new one")
    splits = load_data(bound.info, args.data_root, val_fraction=0.0)
    for line in data_lines(splits, genome, args.genome):
        err_console.print(line, style="yellow", highlight=False, soft_wrap=True)
    seed_everything(args.seed)
    if args.source:
        from archsearch.pipeline import inherit

        model = inherit(bound, genome, args.source)
    else:
        model = bound.build(genome)

    if not args.json:
        console.print(f"[bold]{genome.space}[/] on {bound.info.name}: {args.schedule}, "
                      f"{epochs} epochs, MACs {human(genome.cost['macs'])} "
                      f"({genome.cost['macs_ratio']:.1%}) → {out}")
    result = train(model, splits, config, epochs=epochs, genome=genome, run_dir=out,
                   resume=args.resume, progress=progress_bar(not args.json))
    doc = {**result.summary(), "schedule": args.schedule, "space": genome.space,
           "dataset": bound.info.key, "dataset_fingerprint": splits.fingerprint,
           "input_size": bound.info.size,
           "macs": genome.cost["macs"],
           "params": genome.cost["params"], "macs_ratio": genome.cost["macs_ratio"],
           "run_dir": str(out)}
    if args.latency:
        from archsearch.latency import measure_model

        doc["latency_ms"] = measure_model(model, bound.info.input_shape, latency)
        doc["latency_on"] = latency.describe()
    return emit(doc, args.json, _table)


def _table(doc: dict[str, Any]) -> None:
    table = Table(title=f"{doc['space']} on {Path(doc['dataset']).name}: {doc['schedule']}")
    for col in ("test acc", "epochs", "MACs", "params", "wall", "img/s", "precision"):
        table.add_column(col, justify="right")
    acc = doc["test_acc"]
    table.add_row("—" if acc is None else f"{acc:.2%}", str(doc["epochs"]),
                  f"{human(doc['macs'])} ({doc['macs_ratio']:.0%})", human(doc["params"]),
                  f"{doc['wall_s']:.0f} s", f"{doc['images_per_s'] or 0:.0f}",
                  f"{doc['precision']} on {doc['device']}")
    console.print(table)
    if "latency_ms" in doc:
        console.print(f"latency {doc['latency_ms']:.3g} ms measured on {doc['latency_on']}")
    console.print(f"run folder: {doc['run_dir']}")

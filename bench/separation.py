"""Separation: do the pruner's scores separate on a schedule, and what does the floor do?

    python bench/separation.py [--spaces resnet20,vgg11-half] [--sparsities auto,1e-4,0.02]
                               [--preset quick] [--epochs N --subset N] [--budget 25%FLOPs]
    python bench/separation.py --rescore --runs runs/separation

For each space and sparsity strength: `archsearch discover --method slimming` on the preset
(Fashion-MNIST), then the evidence of the genome at the budget (`archsearch.pruners.
_evidence`): the separation statistic, which cut made the genome (the survivors' shape or a
threshold at the budget), the share of scales at ~0, the travel Σ lr·λ/(1−momentum), the
sparsity-trained model's validation accuracy, and the groups the `--min-keep` floor lifted
(genome with the default floor vs without). Every run is a run folder under `--runs`
(resumable). Writes bench/results/separation.{json,md}. `--rescore` trains nothing: it
recomputes the genome and its evidence of every run recorded in `--runs` from the run's
saved sparse checkpoint with the current code (after a change to the cut), keeping what
the training measured (travel, validation accuracy, wall time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from archsearch.discover import DiscoverConfig, discover, load_sparse_checkpoint, plan
from archsearch.presets import get_preset, travel
from archsearch.pruners import SlimmingPruner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genome_quality import (  # noqa: E402
    SHARED_CIFAR,
    log,
    machine,
    open_bench,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="resnet20,vgg11-half")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root", default=None, help="default for cifar10: the shared copy")
    p.add_argument("--sparsities", default="auto")
    p.add_argument("--preset", default="quick")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int)
    p.add_argument("--budget", default="25%FLOPs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default="runs/separation")
    p.add_argument("--out", default=str(RESULTS / "separation"))
    p.add_argument("--rescore", action="store_true",
                   help="recompute every recorded run's genome evidence from its sparse.pt")
    return p.parse_args(argv)


def _config(space: str, sparsity: str, args, root: Path) -> tuple[DiscoverConfig, str]:
    value: float | str = sparsity if sparsity in ("auto", "paper") else float(sparsity)
    data = "" if args.dataset == "fashion-mnist" else f"{args.dataset}-"
    tag = f"{data}{space}-{args.preset}-e{args.epochs}-n{args.subset}-{sparsity}"
    return DiscoverConfig.from_preset(args.preset, method="slimming", budget=args.budget,
                                      space=space, epochs=args.epochs, subset=args.subset,
                                      dataset=args.dataset, data_root=args.data_root,
                                      sparsity=value, out=str(root / tag), resume=True), tag


def one(space: str, sparsity: str, args, root: Path) -> dict[str, Any]:
    cfg, tag = _config(space, sparsity, args, root)
    the_plan = plan(cfg)
    start = time.perf_counter()
    result = discover(the_plan, progress=False)
    wall = time.perf_counter() - start
    pruner = the_plan.pruner
    images = len(the_plan.splits.train.subset(cfg.subset, cfg.seed))
    recipe = get_preset(cfg.preset)
    return {"space": space, "dataset": args.dataset, "preset": args.preset,
            "epochs": cfg.epochs,
            "images": images, "steps": images // cfg.batch_size * cfg.epochs,
            "sparsity": pruner.sparsity, "rule": result["provenance"].get("sparsity_rule"),
            "travel": travel(pruner.sparsity, images, cfg.epochs, cfg.batch_size,
                             lr=recipe.lr, shape=recipe.lr_schedule),
            "val_acc": (result.get("train") or {}).get("val_acc"),
            "flagged": result["flagged_groups"], "wall_s": wall,
            **scored(the_plan, root / tag, args.budget)}


def scored(the_plan: Any, run_dir: Path, budget: str) -> dict[str, Any]:
    """The genome's evidence from the run's sparse checkpoint (the current code's cut), and
    what the floor did (genome with the default --min-keep vs without)."""
    pruner = the_plan.pruner
    model = load_sparse_checkpoint(run_dir / "sparse.pt", pruner)
    bare = SlimmingPruner(the_plan.bound, sparsity=pruner.sparsity, min_keep=0.0)
    floored, unfloored = pruner.genome(model, budget), bare.genome(model, budget)
    lifted = {g: [unfloored.widths[g], floored.widths[g]] for g in floored.widths
              if floored.widths[g] > unfloored.widths[g]}
    sizes = the_plan.bound.graph.base_widths()
    ev = floored.provenance["separation"]
    return {"statistic": ev["statistic"], "separated": ev["separated"], "cut": ev.get("cut"),
            "near_zero_share": ev.get("near_zero_share"), "floor_lifted": lifted,
            "min_kept_unfloored": min(unfloored.widths[g] / sizes[g] for g in sizes)}


def rescore(args, root: Path, ledger: Any) -> list[dict[str, Any]]:
    """Every recorded run of `root`, its evidence recomputed from its sparse checkpoint."""
    rows = []
    for key, rec in list(ledger.legs.items()):
        space, preset, epochs, subset, sparsity, budget = key.split("/")
        run_args = argparse.Namespace(**{**vars(args), "preset": preset, "budget": budget,
                                         "epochs": None if epochs == "None" else int(epochs),
                                         "subset": None if subset == "None" else int(subset)})
        cfg, tag = _config(space, sparsity, run_args, root)
        if not (root / tag / "sparse.pt").is_file():
            log(f"{key}: no sparse checkpoint, kept as recorded")
            rows.append(rec)
            continue
        new = scored(plan(cfg), root / tag, budget)
        log(f"{key}: separation {rec['statistic']} ({rec['cut']}) -> {new['statistic']} "
            f"({new['cut']})")
        rows.append(ledger.put(key, {**rec, **new}))
    return rows


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = ["# Separation of slimming's scores by schedule and sparsity", "",
             f"`archsearch discover --method slimming` on "
             f"{doc['args'].get('dataset', 'fashion-mnist')}, genome at "
             f"{doc['args']['budget']}; separation = (q10(log K) − q90(log D)) / "
             "(q90(log K) − q10(log D)) at the cut that made the genome, separated at ≥ 0.2. "
             "travel = Σ lr·λ/(1−momentum) (in units of a scale's initial value). "
             "`floor lifted`: groups the default --min-keep 0.1 raised (width without → with).",
             "", f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}.", "",
             "| space | preset | steps | λ (rule) | travel | separation | cut | scales ~0 | "
             "val acc | min kept w/o floor | floor lifted | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        sep = "n/a" if r["statistic"] is None else (
            f"{r['statistic']:.2f} ({'yes' if r['separated'] else 'NO'})")
        lifted = ", ".join(f"{g} {a}→{b}" for g, (a, b) in r["floor_lifted"].items()) or "—"
        lines.append(
            f"| {r['space']} | {r['preset']} ({r['epochs']}×{r['images']:,}) | {r['steps']} | "
            f"{r['sparsity']:.3g} ({r['rule']}) | {r['travel']:.2f} | {sep} | {r['cut']} | "
            f"{r['near_zero_share']:.0%} | {100 * (r['val_acc'] or 0):.1f}% | "
            f"{r['min_kept_unfloored']:.0%} | {lifted} | {r['wall_s']:.0f} |")
    lines += ["", "Commands:", ""] + [f"- `{c}`" for c in doc["commands"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dataset != "fashion-mnist":  # CIFAR-10: the shared copy, results named after it
        tag = args.dataset.replace("-", "_")
        if args.data_root is None and args.dataset == "cifar10":
            args.data_root = str(SHARED_CIFAR)
        if args.out == str(RESULTS / "separation"):
            args.out = str(RESULTS / f"separation_{tag}")
    root, ledger = open_bench(args)
    rows = rescore(args, root, ledger) if args.rescore else []
    for space in args.spaces.split(",") if not args.rescore else []:
        for sparsity in args.sparsities.split(","):
            data = "" if args.dataset == "fashion-mnist" else f"{args.dataset}/"
            key = (f"{data}{space}/{args.preset}/{args.epochs}/{args.subset}/{sparsity}/"
                   f"{args.budget}")
            rec = ledger.get(key) or ledger.put(key, one(space, sparsity, args, root))
            log(f"{space} {sparsity}: separation {rec['statistic']} ({rec['cut']}), "
                f"travel {rec['travel']:.2f}, {rec['wall_s']:.0f}s")
            rows.append(rec)
    out = Path(args.out)
    old, commands = {}, []
    if out.with_suffix(".json").exists():  # keep rows of other invocations (other spaces)
        prev = json.loads(out.with_suffix(".json").read_text())
        old = {_row_key(r): r for r in prev["rows"]}
        commands = prev["commands"]
    old.update({_row_key(r): r for r in rows})
    command = "python bench/separation.py " + " ".join(argv or sys.argv[1:])
    if args.rescore:  # the rows' own commands stay the record of how they were trained
        command = ""
    doc = {"args": vars(args), "machine": machine(), "rows": list(old.values()),
           "commands": commands + [command] * (bool(command) and command not in commands)}
    write_results(out, doc, markdown)
    return 0


def _row_key(r: dict[str, Any]) -> str:
    return f"{r['space']}/{r['preset']}/{r['epochs']}/{r['images']}/{r['sparsity']}"


if __name__ == "__main__":
    raise SystemExit(main())

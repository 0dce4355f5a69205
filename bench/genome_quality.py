"""Genome quality: does a pruner's genome, trained from scratch, beat uniform scaling?

    python bench/genome_quality.py [--spaces vgg11-half,resnet20] [--budgets 25%FLOPs,12.5%FLOPs]
                                   [--seeds 3] [--epochs 4] [--methods slimming,sss,l1norm,...]

On Fashion-MNIST (the full training split less a 1% validation split that monitors
training), for each space:
1. the base (full width) trained from scratch, `--base-seeds` seeds: the regime's ceiling;
2. each generator's sparsity training on the same schedule (seed 0; `archsearch discover`'s
   pipeline with the auto sparsity rule), one genome per budget from the same trained model,
   with the separation evidence of each cut;
3. the uniform genome per budget (every group scaled by one ratio);
4. every distinct genome trained from scratch `--seeds` times. Genomes at one budget cost
   the same MACs (within 1%), so they train the same epochs: equal compute (Scratch-E =
   Scratch-B here). Test accuracy on the full test set (10,000 images).
Predefined methods whose widths equal uniform's (l1norm without stage ratios) are reported
as that genome, not trained twice. Every leg is a run folder under `--runs` and recorded in
its `legs.json`: a killed bench resumes where it stopped. Writes
bench/results/genome_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.discover import DiscoverConfig, discover, load_sparse_checkpoint, plan
from archsearch.genome import Genome
from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.pruners import PRUNERS
from archsearch.train import TrainConfig, evaluate, seed_everything, train
from archsearch.train._device import cpu_has_fast_bf16

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = "fashion-mnist"
# The schedule every genome trains on (and the generators' sparsity training): the longest
# that fits the 90-minute budget on a 2-core CPU with bf16 (see the results file).
EPOCHS = 3
BATCH = 128
VAL_FRACTION = 0.01
GENERATORS = ("slimming", "sss", "l1norm", "taylor", "pfa")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="vgg11-half,resnet20")
    p.add_argument("--budgets", default="25%FLOPs,12.5%FLOPs")
    p.add_argument("--methods", default=",".join(GENERATORS),
                   help="generators (those not registered or not applicable are skipped)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--base-seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--subset", type=int, default=None, help="training images (default all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default="runs/genome_quality", help="run folders (resumable)")
    p.add_argument("--out", default=str(RESULTS / "genome_quality"))
    p.add_argument("--recorded-only", action="store_true",
                   help="train nothing: report the legs the ledger holds (methods without "
                        "a recorded generator are left out)")
    p.add_argument("--reuse", action="append", default=[], metavar="RUNS",
                   help="take finished legs from another runs folder's legs.json (e.g. a "
                        "second invocation that ran only new generators, in parallel)")
    p.add_argument("--seed-from", metavar="RESULTS.json",
                   help="take the base and uniform legs recorded in a results file (runs/ "
                        "does not outlive a session; the committed results do) instead of "
                        "training them again; its other rows are kept in the output")
    return p.parse_args(argv)


class Ledger:
    """legs.json in the runs folder: every finished leg's record, written atomically."""

    def __init__(self, root: Path):
        self.path = root / "legs.json"
        root.mkdir(parents=True, exist_ok=True)
        self.legs: dict[str, Any] = (json.loads(self.path.read_text()) if self.path.exists()
                                     else {})

    def get(self, key: str) -> Any:
        return self.legs.get(key)

    def put(self, key: str, record: Any) -> Any:
        self.legs[key] = record
        atomic_write_json(self.path, self.legs)
        return record


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def scratch(genome: Genome, splits, seed: int, run_dir: Path, args) -> dict[str, Any]:
    """Train the genome from scratch on the bench schedule; test accuracy at the end. The
    seed sets the initial weights too (legs recorded before 2026-11-26 drew them from the
    process's RNG state: valid random draws, not reproducible per seed)."""
    seed_everything(seed)
    model = bind(genome.space, DATASET).build(genome)
    cfg = TrainConfig(schedule="scratch-e", epochs=args.epochs, batch_size=BATCH, seed=seed,
                      train_subset=args.subset, eval_split="val")
    start = time.perf_counter()
    result = train(model, splits, cfg, genome=genome, run_dir=run_dir, resume=True,
                   progress=False)
    test = evaluate(result.model, splits.test, splits)
    return {"seed": seed, "test_acc": test, "val_acc": result.val_acc,
            "epochs": args.epochs, "wall_s": time.perf_counter() - start}


def generate(method: str, space: str, budgets: list[str], root: Path, args
             ) -> dict[str, Any]:
    """The method's genomes at every budget from one sparsity training (seed 0)."""
    cfg = DiscoverConfig(method=method, budget=budgets[0], space=space, dataset=DATASET,
                         epochs=args.epochs, subset=args.subset, batch_size=BATCH,
                         sparsity="auto", out=str(root), resume=True)
    the_plan = plan(cfg)
    the_plan.splits = _shared_splits(the_plan.splits)
    start = time.perf_counter()
    result = discover(the_plan, progress=False)
    model = None
    if the_plan.pruner.needs_training:
        model = load_sparse_checkpoint(root / "sparse.pt", the_plan.pruner)
    genomes = {}
    for budget in budgets:
        the_plan.budget = parse_budget(budget)
        genome = the_plan.pruner.genome(model, the_plan.budget)
        genomes[budget] = genome.to_dict()
    train_info = result.get("train") or {}
    return {"method": method, "genomes": genomes, "wall_s": time.perf_counter() - start,
            "sparsity": result["provenance"].get("sparsity"),
            "sparse_val_acc": train_info.get("val_acc")}


_SPLITS: dict[str, Any] = {}


def _shared_splits(splits):
    """One copy of the data for every leg (plan() loads its own with the same split)."""
    return _SPLITS.setdefault("fmnist", splits)


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _key(genome: Genome) -> str:
    return json.dumps([sorted(genome.widths.items()), sorted(genome.blocks.items())])


def run_space(space: str, args, ledger: Ledger, root: Path) -> dict[str, Any]:
    bound = bind(space, DATASET)
    splits = _shared_splits(load_data(bound.info, None, val_fraction=VAL_FRACTION))
    budgets = args.budgets.split(",")
    base = bound.base_genome()
    base_runs = []
    for seed in range(args.base_seeds):
        key = f"{space}/base/s{seed}"
        rec = ledger.get(key) or ledger.put(key, scratch(base, splits, seed,
                                                         root / space / "base" / f"s{seed}",
                                                         args))
        base_runs.append(rec)
        log(f"[{space}] base seed {seed}: test {rec['test_acc']:.4f} ({rec['wall_s']:.0f}s)")
    gens: dict[str, Any] = {}
    for method in args.methods.split(","):
        if method not in PRUNERS or (method == "sss" and not bound.graph.blocks):
            continue
        key = f"{space}/generate/{method}"
        rec = ledger.get(key)
        if rec is None and args.recorded_only:
            continue
        if rec is None:
            log(f"[{space}] {method}: sparsity training + genomes")
            rec = ledger.put(key, generate(method, space, budgets,
                                           root / space / f"gen-{method}", args))
        gens[method] = rec
    rows = []
    for budget in budgets:
        candidates = {"uniform": bound.uniform(parse_budget(budget))}
        for method, rec in gens.items():
            candidates[method] = bound.with_cost(Genome.from_dict(rec["genomes"][budget]))
        trained: dict[str, str] = {}  # genome key -> first method trained with it
        for method, genome in candidates.items():
            same = trained.get(_key(genome))
            trained.setdefault(_key(genome), method)
            runs = []
            for seed in range(args.seeds):
                owner = same or method
                key = f"{space}/{budget}/{owner}/s{seed}"
                rec = ledger.get(key)
                if rec is None:
                    rec = ledger.put(key, scratch(genome, splits, seed,
                                                  root / space / budget / owner / f"s{seed}",
                                                  args))
                    log(f"[{space}] {budget} {method} seed {seed}: test "
                        f"{rec['test_acc']:.4f} ({rec['wall_s']:.0f}s)")
                runs.append(rec)
            mean, std = mean_std([r["test_acc"] for r in runs])
            prov = genome.provenance
            rows.append({"space": space, "budget": budget, "method": method,
                         "same_as": same, "test_acc_mean": mean, "test_acc_std": std,
                         "per_seed": [r["test_acc"] for r in runs],
                         "wall_s": [r["wall_s"] for r in runs],
                         "macs_ratio": genome.cost["macs_ratio"],
                         "params_ratio": genome.cost["params_ratio"],
                         "separation": (prov.get("separation") or {}).get("statistic"),
                         "separated": (prov.get("separation") or {}).get("separated"),
                         "sparsity": prov.get("sparsity"),
                         "widths": [genome.widths[g] for g in bound.graph.prunable],
                         "removed_blocks": sorted(genome.removed_blocks())})
    bm, bs = mean_std([r["test_acc"] for r in base_runs])
    return {"space": space, "base": {"test_acc_mean": bm, "test_acc_std": bs,
                                     "per_seed": [r["test_acc"] for r in base_runs],
                                     "wall_s": [r["wall_s"] for r in base_runs]},
            "groups": list(bound.graph.prunable),
            "base_widths": [bound.graph.groups[g].size for g in bound.graph.prunable],
            "generators": {m: {k: v for k, v in r.items() if k != "genomes"}
                           for m, r in gens.items()},
            "rows": rows}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(),
            "precision": "bf16 autocast (native avx512_bf16)" if cpu_has_fast_bf16()
            else "fp32 (no native bf16)", "torch": torch.__version__,
            "python": sys.version.split()[0]}


def markdown(doc: dict[str, Any]) -> str:
    a = doc["args"]
    lines = ["# Genome quality: pruner genomes vs uniform, trained from scratch", "",
             f"Fashion-MNIST, {a['epochs']} epochs on {a['subset'] or 'all'} training images "
             f"(the 60,000-image split less a 1% validation split), batch {BATCH}, lr 0.1 "
             f"(x0.1 at 50%/75%), SGD momentum 0.9, wd 1e-4, standard pad-crop/flip. "
             f"Genomes at one budget cost the same MACs, so they train the same epochs. "
             f"Test accuracy on the full test set (10,000 images), {a['seeds']} seeds, "
             f"mean ± std. Generators: sparsity training on the same schedule (seed 0), "
             "λ from the auto rule (`archsearch.presets.sparsity_for`). FLOPs = MACs.", ""]
    m = doc["machine"]
    lines += [f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}, torch "
              f"{m['torch']}. Wall time {doc['wall_s'] / 60:.1f} min for this invocation "
              f"(legs recorded earlier are not re-run); the recorded legs took "
              f"{doc['legs_wall_s'] / 60:.1f} min of training in all.", ""]
    for sp in doc["spaces"]:
        b = sp["base"]
        lines += [f"## {sp['space']}", "",
                  f"Base (full width): **{100 * b['test_acc_mean']:.2f} ± "
                  f"{100 * b['test_acc_std']:.2f}%** ({len(b['per_seed'])} seeds: "
                  + ", ".join(f"{100 * x:.2f}" for x in b["per_seed"]) + ")", ""]
        for name, g in sp["generators"].items():
            lam = "no sparsity term" if g["sparsity"] is None else f"λ = {g['sparsity']:.3g}"
            lines.append(f"- {name}: {lam}, base training for the generator "
                         f"{g['wall_s']:.0f} s, its val acc "
                         + (f"{100 * g['sparse_val_acc']:.2f}%" if g.get("sparse_val_acc")
                            else "n/a"))
        lines += ["", "| budget | genome | test acc (%) | Δ vs uniform | per seed | MACs | "
                  "params | separation |", "|---|---|---|---|---|---|---|---|"]
        uni = {r["budget"]: r for r in sp["rows"] if r["method"] == "uniform"}
        for r in sp["rows"]:
            u = uni[r["budget"]]
            delta = 100 * (r["test_acc_mean"] - u["test_acc_mean"])
            name = r["method"] + (f" (= {r['same_as']})" if r["same_as"] else "")
            sep = "" if r["separation"] is None else (
                f"{r['separation']:.2f} ({'yes' if r['separated'] else 'NO'})")
            lines.append(f"| {r['budget']} | {name} | {100 * r['test_acc_mean']:.2f} ± "
                         f"{100 * r['test_acc_std']:.2f} | "
                         + ("—" if r["method"] == "uniform" else f"{delta:+.2f}")
                         + " | " + ", ".join(f"{100 * x:.2f}" for x in r["per_seed"])
                         + f" | {r['macs_ratio']:.1%} | {r['params_ratio']:.1%} | {sep} |")
        lines += ["", "Widths per group (" + ", ".join(sp["groups"]) + "); base "
                  + str(sp["base_widths"]) + ":", ""]
        for r in sp["rows"]:
            extra = f", removed {r['removed_blocks']}" if r["removed_blocks"] else ""
            lines.append(f"- {r['budget']} {r['method']}: {r['widths']}{extra}")
        lines.append("")
    lines += ["Commands:", ""] + [f"- `{c}`" for c in doc.get("commands") or [doc["command"]]]
    lines.append("")
    return "\n".join(lines)


NOTES_MARK = "<!-- notes: written by hand, kept when the tables are regenerated -->"


def write_results(out: Path, doc: dict[str, Any], render) -> None:
    """OUT.json (the data) and OUT.md (`render(doc)`), each written atomically. The reading
    of the numbers, below NOTES_MARK in an existing OUT.md, is kept."""
    md = out.with_suffix(".md")
    notes = md.read_text().partition(NOTES_MARK)[1:] if md.exists() else ("", "")
    atomic_write_json(out.with_suffix(".json"), doc)
    atomic_write_text(md, render(doc).rstrip("\n") + ("\n\n" + "".join(notes) if notes[0]
                                                     else "\n"))


def open_bench(args: argparse.Namespace) -> tuple[Path, Ledger]:
    """Threads as asked, the runs folder and its ledger of finished legs."""
    torch.set_num_threads(args.threads)
    ledger = Ledger(Path(args.runs))
    for other in getattr(args, "reuse", []):
        for key, record in Ledger(Path(other)).legs.items():
            if ledger.get(key) is None:
                ledger.put(key, record)
    return Path(args.runs), ledger


def seed_ledger(ledger: Ledger, doc: dict[str, Any]) -> None:
    """Ledger records for the base and uniform legs of a results file (same schedule only)."""
    if (doc["args"]["epochs"], doc["args"]["subset"]) != (EPOCHS, None):
        raise SystemExit("--seed-from: that results file ran another schedule "
                         f"({doc['args']['epochs']} epochs, subset {doc['args']['subset']})")
    for sp in doc["spaces"]:
        b = sp["base"]
        for seed, (acc, wall) in enumerate(zip(b["per_seed"], b["wall_s"], strict=True)):
            ledger.get(f"{sp['space']}/base/s{seed}") or ledger.put(
                f"{sp['space']}/base/s{seed}",
                {"seed": seed, "test_acc": acc, "epochs": EPOCHS, "wall_s": wall,
                 "seeded": True})
        for r in sp["rows"]:
            if r["method"] != "uniform":
                continue
            for seed, (acc, wall) in enumerate(zip(r["per_seed"], r["wall_s"], strict=True)):
                key = f"{sp['space']}/{r['budget']}/uniform/s{seed}"
                ledger.get(key) or ledger.put(key, {"seed": seed, "test_acc": acc,
                                                    "epochs": EPOCHS, "wall_s": wall,
                                                    "seeded": True})


def merge_results(prev: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with the spaces, rows and generators of `prev` that it did not produce itself."""
    new = {sp["space"]: sp for sp in doc["spaces"]}
    spaces = []
    for old in prev["spaces"]:
        sp = new.pop(old["space"], None)
        if sp is None:
            spaces.append(old)
            continue
        have = {(r["budget"], r["method"]) for r in sp["rows"]}
        rows = sp["rows"] + [r for r in old["rows"] if (r["budget"], r["method"]) not in have]
        order = list(dict.fromkeys(r["budget"] for r in old["rows"] + sp["rows"]))
        rows.sort(key=lambda r: order.index(r["budget"]))  # stable: methods keep their order
        spaces.append({**sp, "rows": rows,
                       "generators": {**old["generators"], **sp["generators"]}})
    spaces += new.values()
    commands = prev.get("commands") or [prev["command"]]
    return {**doc, "spaces": spaces, "commands": commands + [doc["command"]],
            "legs_wall_s": prev["legs_wall_s"] + doc["legs_wall_s"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root, ledger = open_bench(args)
    prev = json.loads(Path(args.seed_from).read_text()) if args.seed_from else None
    if prev is not None:
        seed_ledger(ledger, prev)
    start = time.perf_counter()
    spaces = []
    for space in args.spaces.split(","):
        spaces.append(run_space(space, args, ledger, root))
        doc = {"args": vars(args), "machine": machine(), "spaces": spaces,
               "wall_s": time.perf_counter() - start,
               "legs_wall_s": sum(r.get("wall_s", 0) for r in ledger.legs.values()
                                  if not r.get("seeded")),
               "command": "python bench/genome_quality.py " + " ".join(argv or sys.argv[1:])}
        write_results(Path(args.out), merge_results(prev, doc) if prev else doc, markdown)
    log(f"wrote {args.out}.md ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluator fidelity: does a search's cheap score rank genomes as training from scratch does?

    python bench/evaluator_fidelity.py [--spaces vgg11-half,resnet20] [--budget 25%FLOPs]
        [--genomes 16] [--seeds 1] [--work runs/evaluator_fidelity]

For each space (Fashion-MNIST), at one budget, a fixed set of genomes that all cost the
budget: the uniform genome, the generators' genomes (slimming's from `archsearch
discover`, l1norm at a decreasing stage profile), guided samples around the slimming
genome, random shapes (some with blocks removed) and extreme shapes (one stage starved,
early-heavy, late-heavy). Each genome is

- trained from scratch on the schedule of bench/genome_quality.py (`SCRATCH`: the ground
  truth; top-1 on the full test set, mean over `--seeds`), and
- scored by every evaluator of `archsearch search`: `proxy` (short training, the settings
  of bench/search_quality.py), `adaptive-bn` (channels inherited from discover's slimming
  base, sparse.pt, by its importance; BatchNorm re-estimated) and `supernet` (a
  sandwich-rule slimmable base trained with about the same compute as that base, sliced),
  both cheap ones scored on validation images carved from the training set.

Reported per evaluator: Kendall τ and Spearman ρ against the from-scratch accuracy with
95% bootstrap intervals (genomes resampled), the top-1 hit (its best genome is the truly
best), top-3 overlap, and the cost per genome (and the one-off cost of its base). Every leg
is a file in `--work` (resumable: rerun the same command). Writes
bench/results/evaluator_fidelity.{json,md}. `--smoke` runs everything at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.genome import Genome
from archsearch.io import atomic_write_json
from archsearch.pruners import get_pruner
from archsearch.search import (
    AdaptiveBNEvaluator,
    Parameterisation,
    ProxyEvaluator,
    ProxySchedule,
    SupernetEvaluator,
    SupernetSchedule,
)
from archsearch.search._evaluators import Scoring, load_base
from archsearch.search._space import stage_ratios
from archsearch.search._supernet import train_supernet
from archsearch.train import TrainConfig, evaluate, seed_everything, train

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
# the genome-quality bench's from-scratch schedule, machine facts and results writer
from genome_quality import BATCH, EPOCHS, machine, write_results  # noqa: E402

# The ground truth: every genome trained from scratch on genome_quality's schedule (the
# whole training split less the validation split the cheap evaluators score on).
SCRATCH = {"epochs": EPOCHS, "subset": None, "batch_size": BATCH}
# today's search proxy (bench/search_quality.py): 2 epochs on 2000 images, 500 val images
PROXY = {"epochs": 2, "subset": 2000, "val": 500}
# adaptive-bn's base: discover's slimming run (auto sparsity) on the same schedule
BASE = {"epochs": EPOCHS, "subset": None}
# the supernet: 4 passes per step (widest, narrowest, 2 random) on a quarter of the images,
# about the compute of the slimming base
SUPERNET = {"epochs": EPOCHS, "subset": 12000, "random_widths": 2}
SCORING = {"calib_images": 256, "val_images": 1000}
SMOKE = {"scratch": {"epochs": 1, "subset": 256, "batch_size": BATCH},
         "proxy": {"epochs": 1, "subset": 128, "val": 128},
         "base": {"epochs": 1, "subset": 256},
         "supernet": {"epochs": 1, "subset": 256, "random_widths": 1},
         "scoring": {"calib_images": 64, "val_images": 128}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="vgg11-half,resnet20")
    p.add_argument("--budget", default="25%FLOPs")
    p.add_argument("--genomes", type=int, default=16, help="genomes per space (>= 8)")
    p.add_argument("--seeds", type=int, default=1, help="from-scratch seeds per genome")
    p.add_argument("--evaluators", default="proxy,adaptive-bn,supernet")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/evaluator_fidelity", help="resumable leg files")
    p.add_argument("--out", default=str(RESULTS / "evaluator_fidelity"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a minute or two)")
    args = p.parse_args(argv)
    if args.genomes < 8:
        p.error(f"--genomes must be >= 8, but got {args.genomes}")
    sizes = SMOKE if args.smoke else {"scratch": SCRATCH, "proxy": PROXY, "base": BASE,
                                      "supernet": SUPERNET, "scoring": SCORING}
    args.sizes = sizes
    if args.smoke:  # never mixed with (or written over) the real results
        args.work = str(Path(args.work).with_name(Path(args.work).name + "-smoke"))
        if args.out == str(RESULTS / "evaluator_fidelity"):
            args.out = str(Path(args.work) / "evaluator_fidelity")
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cached(path: Path, make: Any) -> Any:
    """The JSON at `path`, or `make()` written there (the resumable unit of this bench)."""
    if path.is_file():
        return json.loads(path.read_text())
    value = make()
    atomic_write_json(path, value)
    return value


# -- the bases the cheap evaluators inherit from ---------------------------------------------
def slimming_base(space: str, budget: str, splits: Any, sizes: dict, work: Path
                  ) -> tuple[Path, Genome, float]:
    """discover's slimming run (resumable): its sparse.pt, its genome, its seconds."""
    from archsearch.discover import DiscoverConfig, discover, plan

    root = work / "slimming"

    def make() -> dict:
        cfg = DiscoverConfig(method="slimming", budget=budget, space=space,
                             dataset="fashion-mnist", epochs=sizes["base"]["epochs"],
                             subset=sizes["base"]["subset"], batch_size=BATCH,
                             sparsity="auto", out=str(root), resume=True)
        the_plan = plan(cfg)
        the_plan.splits = splits
        start = time.perf_counter()
        discover(the_plan, progress=False)
        return {"wall_s": time.perf_counter() - start}

    doc = cached(work / "slimming.json", make)
    return root / "sparse.pt", Genome.load(root / "genome.json"), doc["wall_s"]


def supernet(space: str, splits: Any, sizes: dict, work: Path) -> tuple[Any, float]:
    bound = bind(space, "fashion-mnist")
    s = sizes["supernet"]
    schedule = SupernetSchedule(epochs=s["epochs"], subset=s["subset"],
                                random_widths=s["random_widths"], seed=0)
    start = time.perf_counter()
    net = train_supernet(bound, splits, schedule, work / "supernet.pt")
    took = time.perf_counter() - start
    doc = cached(work / "supernet.json", lambda: {"wall_s": took})
    return net, doc["wall_s"]


# -- the genomes ---------------------------------------------------------------------------
def genomes(space: str, budget: str, slim: Genome, n: int) -> list[Genome]:
    """n genomes at the budget: uniform, generators', guided, random and extreme shapes."""
    bound = bind(space, "fashion-mnist")
    param = Parameterisation(bound, parse_budget(budget))
    stages = bound.graph.stages()
    last = max(stages.values())
    rng = random.Random(0)
    out: list[Genome] = [bound.uniform(param.budget)]
    out[0].provenance["label"] = "uniform"
    slim.provenance["label"] = "slimming"
    l1 = get_pruner("l1norm", bound, stage_ratios=[1.0 - 0.5 * s / max(last, 1)
                                                   for s in range(last + 1)])
    decreasing = l1.genome(None, budget)
    decreasing.provenance["label"] = "l1norm-decreasing"
    out += [slim, decreasing]
    extremes = {"starved-first": {g: (0.1 if s == 0 else 1.0) for g, s in stages.items()},
                "starved-last": {g: (0.1 if s == last else 1.0) for g, s in stages.items()},
                "early-heavy": {g: 1.0 / (1 + 2 * s) for g, s in stages.items()},
                "late-heavy": {g: (1 + 2 * s) / (1 + 2 * last) for g, s in stages.items()}}
    for label, shape in extremes.items():
        out.append(_labelled(param.project(shape), label))
    centre = stage_ratios(slim)
    blocks = list(bound.graph.blocks)
    n_guided = (n - len(out)) // 2
    for i in range(n_guided):
        shape = {g: min(1.0, max(0.1, centre[s] + rng.gauss(0.0, 0.15)))
                 for g, s in stages.items()}
        out.append(_labelled(param.project(shape), f"guided-{i}"))
    i = 0
    while len(out) < n:
        shape = {g: rng.uniform(0.1, 1.0) for g in bound.graph.prunable}
        kept = {b: rng.random() > 0.25 for b in blocks}
        out.append(_labelled(param.project(shape, kept), f"random-{i}"))
        i += 1
    return out


def _labelled(genome: Genome, label: str) -> Genome:
    genome.provenance["label"] = label
    return genome


# -- the legs ------------------------------------------------------------------------------
def scratch(genome: Genome, splits: Any, seed: int, sizes: dict) -> dict:
    s = sizes["scratch"]
    seed_everything(seed)
    model = bind(genome.space, genome.dataset).build(genome)
    cfg = TrainConfig(schedule="scratch-e", epochs=s["epochs"], train_subset=s["subset"],
                      batch_size=s["batch_size"], eval_split="val", seed=seed)
    start = time.perf_counter()
    result = train(model, splits, cfg, progress=False)
    return {"test_acc": evaluate(result.model, splits.test, splits), "val_acc": result.val_acc,
            "wall_s": time.perf_counter() - start}


def score_all(name: str, evaluator: Any, gs: list[Genome]) -> list[dict]:
    out = []
    for genome in gs:
        start = time.perf_counter()
        seed_everything(0)
        score = float(evaluator(genome, None))
        out.append({"score": score, "wall_s": time.perf_counter() - start})
    log(f"    {name}: {statistics.fmean(r['wall_s'] for r in out):.2f}s per genome")
    return out


def evaluator_for(name: str, space: str, budget: str, splits: Any, sizes: dict, work: Path
                  ) -> tuple[Any, float]:
    """(evaluator, one-off seconds of its base)."""
    bound = bind(space, "fashion-mnist")
    scoring = Scoring(calib_images=sizes["scoring"]["calib_images"],
                      val_images=sizes["scoring"]["val_images"], seed=0)
    if name == "proxy":
        p = sizes["proxy"]
        schedule = ProxySchedule(epochs=p["epochs"], subset=p["subset"], val_subset=p["val"])
        return ProxyEvaluator("fashion-mnist", schedule, splits=splits), 0.0
    if name == "adaptive-bn":
        path, _, took = slimming_base(space, budget, splits, sizes, work)
        base, pruner = load_base(path, bound)
        return AdaptiveBNEvaluator(bound, base, pruner, splits, scoring), took
    if name == "supernet":
        net, took = supernet(space, splits, sizes, work)
        return SupernetEvaluator(net, splits, scoring), took
    raise SystemExit(f"unknown evaluator {name!r}")


# -- statistics ----------------------------------------------------------------------------
def fidelity(scores: list[float], truth: list[float], reps: int) -> dict:
    """Kendall τ, Spearman ρ (95% bootstrap intervals), top-1 hit, top-3 overlap."""
    x, y = np.asarray(scores), np.asarray(truth)
    tau = float(stats.kendalltau(x, y).statistic)
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(0)
    taus, rhos = [], []
    for _ in range(reps):
        idx = rng.integers(0, len(x), len(x))
        if len(set(idx.tolist())) < 3:
            continue
        taus.append(stats.kendalltau(x[idx], y[idx]).statistic)
        rhos.append(stats.spearmanr(x[idx], y[idx]).statistic)
    ci = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
    best = set(np.argsort(-y, kind="stable")[:3].tolist())
    picked = np.argsort(-x, kind="stable")[:3].tolist()
    return {"kendall_tau": tau, "tau_ci": ci(taus), "spearman_rho": rho, "rho_ci": ci(rhos),
            "top1_hit": bool(int(np.argmax(x)) == int(np.argmax(y))),
            "top3_overlap": len(best & set(picked)) / 3}


def run_space(space: str, args: argparse.Namespace, splits: Any) -> dict:
    work = Path(args.work) / space
    work.mkdir(parents=True, exist_ok=True)
    sizes = args.sizes
    _, slim_genome, _ = slimming_base(space, args.budget, splits, sizes, work)
    gs = [Genome.from_dict(d) for d in cached(work / "genomes.json", lambda: [
        g.to_dict() for g in genomes(space, args.budget, slim_genome, args.genomes)])]
    truth = []
    for i, genome in enumerate(gs):
        runs = [cached(work / f"scratch-{i}-s{seed}.json",
                       lambda g=genome, s=seed: scratch(g, splits, s, sizes))
                for seed in range(args.seeds)]
        truth.append(runs)
        log(f"[{space}] genome {i} {genome.provenance['label']}: "
            f"{statistics.fmean(r['test_acc'] for r in runs):.2%}")
    acc = [statistics.fmean(r["test_acc"] for r in runs) for runs in truth]
    scratch_s = statistics.fmean(r["wall_s"] for runs in truth for r in runs)
    results = {}
    for name in args.evaluators.split(","):
        log(f"[{space}] evaluator {name}")
        evaluator, once = evaluator_for(name, space, args.budget, splits, sizes, work)
        rows = cached(work / f"eval-{name}.json", lambda e=evaluator, n=name: score_all(n, e, gs))
        per = statistics.fmean(r["wall_s"] for r in rows)
        results[name] = {**fidelity([r["score"] for r in rows], acc, args.bootstrap),
                         "scores": [r["score"] for r in rows], "per_genome_s": per,
                         "base_s": once, "per_genome_vs_scratch": per / scratch_s}
    return {"space": space, "genomes": [{"label": g.provenance["label"], "widths": g.widths,
                                         "blocks": g.blocks, "macs_ratio": g.cost["macs_ratio"],
                                         "test_acc": a} for g, a in zip(gs, acc, strict=True)],
            "scratch_per_genome_s": scratch_s, "evaluators": results}


def markdown(doc: dict) -> str:
    s = doc["sizes"]
    lines = [f"# Evaluator fidelity (Fashion-MNIST, {doc['budget']})", "",
             f"Ground truth: each genome trained from scratch {s['scratch']['epochs']} epochs "
             f"on {s['scratch']['subset'] or 'all'} training images (genome_quality's "
             f"schedule), {doc['seeds']} seed(s), top-1 on the full "
             "test set. Proxy: "
             f"{s['proxy']['epochs']} epochs on {s['proxy']['subset']} images, "
             f"{s['proxy']['val']} val images. adaptive-bn: discover's slimming base "
             f"({s['base']['epochs']} epochs on {s['base']['subset'] or 'all'} images, auto "
             f"sparsity); supernet: {s['supernet']['epochs']} epochs on "
             f"{s['supernet']['subset']} images, sandwich rule with "
             f"{s['supernet']['random_widths']} random widths; both re-estimate BatchNorm on "
             f"{s['scoring']['calib_images']} images and score {s['scoring']['val_images']} "
             "val images. Intervals: 95% bootstrap over genomes.", "",
             "| space | evaluator | Kendall τ [95% CI] | Spearman ρ [95% CI] | top-1 hit | "
             "top-3 overlap | s/genome | vs scratch | one-off base s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for sp in doc["spaces"]:
        for name, r in sp["evaluators"].items():
            lines.append(
                f"| {sp['space']} | {name} | {r['kendall_tau']:.2f} [{r['tau_ci'][0]:.2f}, "
                f"{r['tau_ci'][1]:.2f}] | {r['spearman_rho']:.2f} [{r['rho_ci'][0]:.2f}, "
                f"{r['rho_ci'][1]:.2f}] | {'yes' if r['top1_hit'] else 'no'} | "
                f"{r['top3_overlap']:.2f} | {r['per_genome_s']:.2f} | "
                f"{r['per_genome_vs_scratch']:.4f} | {r['base_s']:.0f} |")
    for sp in doc["spaces"]:
        names = list(sp["evaluators"])
        lines += ["", f"## {sp['space']}: genomes (from-scratch test acc, scores)", "",
                  "| genome | MACs | scratch acc | " + " | ".join(names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for i, g in enumerate(sp["genomes"]):
            scores = " | ".join(f"{sp['evaluators'][n]['scores'][i]:.4f}" for n in names)
            lines.append(f"| {g['label']} | {g['macs_ratio']:.1%} | {g['test_acc']:.2%} | "
                         f"{scores} |")
        lines.append(f"\nFrom-scratch training: {sp['scratch_per_genome_s']:.0f}s per genome "
                     "and seed.")
    m = doc["machine"]
    lines += ["", f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}, torch "
              f"{m['torch']}. Recorded legs (bases, from-scratch training, scoring): "
              f"{doc['legs_min']:.1f} min of wall time (on a shared machine); this "
              f"invocation {doc['wall_min']:.1f} min (legs recorded earlier are read back, "
              "not rerun).", "",
              f"Command: `{doc['command']}`", ""]
    return "\n".join(lines)


def _legs_s(sp: dict[str, Any]) -> float:
    """Seconds of compute the space's recorded legs took."""
    n = len(sp["genomes"])
    return (sp["scratch_per_genome_s"] * n * sp.get("seeds", 1)
            + sum(e["per_genome_s"] * n + e["base_s"] for e in sp["evaluators"].values()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    splits = load_data("fashion-mnist", val_fraction=0.1, split_seed=0)
    spaces = [run_space(space, args, splits) for space in args.spaces.split(",")]
    doc = {"budget": args.budget, "seeds": args.seeds, "sizes": args.sizes, "spaces": spaces,
           "machine": machine(),
           "legs_min": sum(_legs_s(sp) for sp in spaces) / 60,
           "wall_min": (time.perf_counter() - start) / 60,
           "command": "python bench/evaluator_fidelity.py " + " ".join(
               argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    write_results(out, doc, markdown)
    log(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

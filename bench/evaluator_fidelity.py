"""Evaluator fidelity: does a search's cheap score rank genomes as training from scratch does?

    python bench/evaluator_fidelity.py [--spaces vgg11-half,resnet20] [--budget 25%FLOPs]
        [--genomes 16] [--seeds 1] [--work runs/evaluator_fidelity]
    python bench/evaluator_fidelity.py --dataset cifar10 --preset cifar --spaces resnet20 \
        --budget-minutes 55      # one link of the CIFAR-10 chain (see below)

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

CIFAR-10 (`--dataset cifar10`, the shared JPEG copy, `--data-root`) with `--preset cifar`:
the from-scratch legs, discover's slimming base and the supernet train on the preset's
recipe (its epochs, batch and training fields, the same for every genome; the supernet on a
quarter of the images, about the base's compute); test accuracy with the preset's test-time
flip. The proxy keeps the search's settings. Every finished leg is recorded in the committed
ledger bench/results/evaluator_fidelity_cifar10.legs.json (`--ledger`): a study longer than
one invocation is a chain of invocations of the same command, each resuming from the ledger
the last one committed and stopping cleanly after `--budget-minutes` (a leg is never cut;
the slimming base and the supernet, full width on 20 epochs, are the longest legs, about 35
min each at the ~440 images/s issue 21 measured for vgg11-half, so 55 keeps an invocation within
90 min); results go to bench/results/evaluator_fidelity_cifar10.{json,md}, the spaces not
yet complete named there. (The checkpoints the cheap evaluators inherit live in `--work`; a
new machine trains them again only for an evaluator whose scores are not yet recorded.)
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
from archsearch.presets import get_preset
from archsearch.pruners import get_pruner
from archsearch.search import (
    EVALUATORS,
    Parameterisation,
    SearchConfig,
    SupernetSchedule,
    stage_ratios,
)
from archsearch.train import TrainConfig, evaluate, seed_everything, train

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
# the genome-quality bench's from-scratch schedule, machine facts, results writer, ledger
from genome_quality import (  # noqa: E402
    BATCH,
    DATASET,
    EPOCHS,
    Ledger,
    OutOfTime,
    add_chain_args,
    check_time,
    command_line,
    defaults_for_dataset,
    machine,
    publish,
    schedule,
)

# The ground truth: every genome trained from scratch on genome_quality's schedule (the
# whole training split less the validation split the cheap evaluators score on).
SCRATCH = {"epochs": EPOCHS, "subset": None, "batch_size": BATCH}
# today's search proxy (bench/search_quality.py): 2 epochs on 2000 images, 500 val images
PROXY = {"epochs": 2, "subset": 2000, "val": 500}
# adaptive-bn's base: discover's slimming run (auto sparsity) on the same schedule
BASE = {"epochs": EPOCHS, "subset": None}
# the supernet: 4 passes per step (widest, narrowest, 2 random: the search's, as the
# registry builds it) on a quarter of the images, about the compute of the slimming base
RANDOM_WIDTHS = SupernetSchedule().random_widths
SUPERNET = {"epochs": EPOCHS, "subset": 12000, "random_widths": RANDOM_WIDTHS}
SCORING = {"calib_images": 256, "val_images": 1000}
ENGINE = {"fast": True}  # --no-fast: the from-scratch legs through the trainer's plain path
SMOKE = {"scratch": {"epochs": 1, "subset": 256, "batch_size": BATCH},
         "proxy": {"epochs": 1, "subset": 128, "val": 128},
         "base": {"epochs": 1, "subset": 256},
         "supernet": {"epochs": 1, "subset": 256, "random_widths": RANDOM_WIDTHS},
         "scoring": {"calib_images": 64, "val_images": 128}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_chain_args(p, "legs.json to resume from and write "
                   "(default: a file per leg in --work; for cifar10 the committed one)")
    p.add_argument("--spaces", default="vgg11-half,resnet20")
    p.add_argument("--budget", default="25%FLOPs")
    p.add_argument("--genomes", type=int, default=16, help="genomes per space (>= 8)")
    p.add_argument("--seeds", type=int, default=1, help="from-scratch seeds per genome")
    p.add_argument("--evaluators", default=",".join(EVALUATORS),
                   help="the search's evaluators to measure (its registry's names)")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/evaluator_fidelity", help="resumable leg files")
    p.add_argument("--out", default=str(RESULTS / "evaluator_fidelity"))
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a minute or two)")
    args = p.parse_args(argv)
    if args.genomes < 8:
        p.error(f"--genomes must be >= 8, but got {args.genomes}")
    args.sizes = sizes_for(args)
    ENGINE["fast"] = args.fast
    if args.smoke:  # never mixed with (or written over) the real results
        args.work = str(Path(args.work).with_name(Path(args.work).name + "-smoke"))
        if args.out == str(RESULTS / "evaluator_fidelity"):
            args.out = str(Path(args.work) / "evaluator_fidelity")
        if args.ledger is None and args.dataset != DATASET:
            args.ledger = str(Path(args.work) / "legs.json")
    return defaults_for_dataset(args, "evaluator_fidelity", folder="work")


def sizes_for(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every leg's size: the Fashion-MNIST ones above, or the preset's recipe (its epochs,
    batch and training fields) for the from-scratch legs, the slimming base and the
    supernet (a quarter of the images: 4 passes a step, about the base's compute)."""
    if args.preset is None:
        return SMOKE if args.smoke else {"scratch": SCRATCH, "proxy": PROXY, "base": BASE,
                                         "supernet": SUPERNET, "scoring": SCORING}
    legs = schedule(argparse.Namespace(preset=args.preset, epochs=EPOCHS))
    if args.smoke:
        return {**SMOKE, "scratch": {**legs, "epochs": 1, "subset": 256},
                "base": {**SMOKE["base"], "batch_size": legs["batch_size"]}}
    return {"scratch": {**legs, "subset": None}, "proxy": PROXY,
            "base": {"epochs": legs["epochs"], "subset": None, "batch_size": legs["batch_size"]},
            "supernet": {"epochs": legs["epochs"], "subset": 0.25,
                         "random_widths": RANDOM_WIDTHS},
            "scoring": SCORING}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Legs:
    """The bench's resumable units by key (SPACE/NAME): one JSON file per leg in --work
    (WORK/SPACE/NAME.json), or the records of a ledger (`--ledger`) that a chain of
    invocations resumes from. A leg not yet recorded is made only while --budget-minutes
    last (else OutOfTime)."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.work = args, Path(args.work)
        self.ledger = Ledger(self.work, Path(args.ledger)) if args.ledger else None

    def get(self, key: str) -> Any:
        if self.ledger is not None:
            return self.ledger.get(key)
        path = self.work / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def cached(self, key: str, make: Any) -> Any:
        """The record at `key`, or `make()` recorded there."""
        value = self.get(key)
        if value is not None:
            return value
        check_time(self.args)
        value = make()
        if self.ledger is not None:
            return self.ledger.put(key, value)
        atomic_write_json(self.work / f"{key}.json", value)
        return value


# -- the bases the cheap evaluators inherit from ---------------------------------------------
def _discover(space: str, budget: str, splits: Any, args: argparse.Namespace, root: Path
              ) -> float:
    """discover's slimming run into `root` (resumable); its seconds."""
    from archsearch.discover import DiscoverConfig, discover, plan

    b = args.sizes["base"]
    cfg = DiscoverConfig(method="slimming", budget=budget, space=space, dataset=args.dataset,
                         data_root=args.data_root, preset=args.preset or "quick",
                         epochs=b["epochs"], subset=b["subset"],
                         batch_size=b.get("batch_size", BATCH), sparsity="auto",
                         out=str(root), resume=True)
    the_plan = plan(cfg)
    the_plan.splits = splits
    start = time.perf_counter()
    discover(the_plan, progress=False)
    return time.perf_counter() - start


def slimming_base(space: str, budget: str, splits: Any, args: argparse.Namespace, legs: Legs,
                  checkpoint: bool = False) -> tuple[Path, Genome, float]:
    """discover's slimming run (resumable): its sparse.pt (trained again when `checkpoint`
    asks for it and --work lacks it), its genome, its recorded seconds."""
    root = Path(args.work) / space / "slimming"

    def make() -> dict:
        took = _discover(space, budget, splits, args, root)
        return {"wall_s": took, "genome": Genome.load(root / "genome.json").to_dict()}

    doc = legs.cached(f"{space}/slimming", make)
    if checkpoint and not (root / "sparse.pt").is_file():
        check_time(args)
        _discover(space, budget, splits, args, root)
    genome = Genome.from_dict(doc["genome"]) if "genome" in doc else \
        Genome.load(root / "genome.json")  # leg files written before the field
    return root / "sparse.pt", genome, doc["wall_s"]


# -- the genomes ---------------------------------------------------------------------------
def genomes(space: str, budget: str, slim: Genome, n: int, dataset: str = DATASET
            ) -> list[Genome]:
    """n genomes at the budget: uniform, generators', guided, random and extreme shapes."""
    bound = bind(space, dataset)
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
    """From scratch on `sizes["scratch"]` (a schedule's TrainConfig fields and the subset);
    test accuracy with the schedule's test-time flip where it sets one."""
    fields = dict(sizes["scratch"])
    subset = fields.pop("subset")
    seed_everything(seed)
    model = bind(genome.space, genome.dataset).build(genome)
    cfg = TrainConfig(schedule="scratch-e", train_subset=subset, eval_split="val", seed=seed,
                      fast=ENGINE["fast"], **fields)
    start = time.perf_counter()
    result = train(model, splits, cfg, progress=False)
    return {"test_acc": evaluate(result.model, splits.test, splits, test_flip=cfg.test_flip),
            "val_acc": result.val_acc, "wall_s": time.perf_counter() - start}


def score_all(name: str, evaluator: Any, gs: list[Genome]) -> list[dict]:
    out = []
    for genome in gs:
        start = time.perf_counter()
        seed_everything(0)
        score = float(evaluator(genome, None))
        out.append({"score": score, "wall_s": time.perf_counter() - start})
    log(f"    {name}: {statistics.fmean(r['wall_s'] for r in out):.2f}s per genome")
    return out


def search_config(name: str, space: str, args: argparse.Namespace,
                  base: Path | None = None) -> SearchConfig:
    """The search settings under which the search's registry builds the evaluator `name` as
    this bench measures it: the proxy's, the supernet's and the scoring's sizes, the run
    folder --work/SPACE (where the supernet is trained once), `base` to inherit from. (The
    supernet's random widths are the search's: `RANDOM_WIDTHS`.)"""
    p, net, sc = (args.sizes[k] for k in ("proxy", "supernet", "scoring"))
    return SearchConfig.from_flat(
        budget=args.budget, out=str(Path(args.work) / space), space=space,
        dataset=args.dataset, data_root=args.data_root, evaluator=name,
        proxy_epochs=p["epochs"], proxy_subset=p["subset"], proxy_val=p["val"],
        base=None if base is None else str(base), base_epochs=net["epochs"],
        base_subset=net["subset"], calib_images=sc["calib_images"],
        screen_val=sc["val_images"], seed=0)


def evaluator_for(name: str, space: str, splits: Any, args: argparse.Namespace, legs: Legs
                  ) -> Any:
    """The evaluator `name`, built by the search's registry: one that inherits from a base
    gets discover's slimming base (trained or resumed); one that trains its own (the
    supernet) trains it once in --work/SPACE, its seconds recorded once."""
    if name not in EVALUATORS:
        raise SystemExit(f"unknown evaluator {name!r}: one of {', '.join(EVALUATORS)}")
    base = None
    if _inherits(name):
        base, _, _ = slimming_base(space, args.budget, splits, args, legs, checkpoint=True)
    config = search_config(name, space, args, base)
    if _trains_its_own(name):
        check_time(args)
    start = time.perf_counter()
    evaluator = EVALUATORS[name].build(config, splits)
    took = time.perf_counter() - start
    if _trains_its_own(name):
        legs.cached(f"{space}/{name}", lambda: {"wall_s": took})
    return evaluator


def _inherits(name: str) -> bool:
    return "base" in EVALUATORS[name].settings  # adaptive-bn


def _trains_its_own(name: str) -> bool:
    return name != "proxy" and not _inherits(name)  # the supernet


def base_seconds(name: str, space: str, legs: Legs) -> float:
    """The one-off training of the evaluator's base, as recorded."""
    key = "slimming" if _inherits(name) else name if _trains_its_own(name) else None
    return legs.get(f"{space}/{key}")["wall_s"] if key else 0.0


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


def run_space(space: str, args: argparse.Namespace, splits: Any, legs: Legs) -> dict:
    (Path(args.work) / space).mkdir(parents=True, exist_ok=True)
    sizes = args.sizes
    _, slim_genome, _ = slimming_base(space, args.budget, splits, args, legs)
    gs = [Genome.from_dict(d) for d in legs.cached(f"{space}/genomes", lambda: [
        g.to_dict() for g in genomes(space, args.budget, slim_genome, args.genomes,
                                     args.dataset)])]
    truth = []
    for i, genome in enumerate(gs):
        runs = [legs.cached(f"{space}/scratch-{i}-s{seed}",
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
        key = f"{space}/eval-{name}"
        rows = legs.get(key) or legs.cached(key, lambda n=name: score_all(
            n, evaluator_for(n, space, splits, args, legs), gs))
        per = statistics.fmean(r["wall_s"] for r in rows)
        results[name] = {**fidelity([r["score"] for r in rows], acc, args.bootstrap),
                         "scores": [r["score"] for r in rows], "per_genome_s": per,
                         "base_s": base_seconds(name, space, legs),
                         "per_genome_vs_scratch": per / scratch_s}
    return {"space": space, "genomes": [{"label": g.provenance["label"], "widths": g.widths,
                                         "blocks": g.blocks, "macs_ratio": g.cost["macs_ratio"],
                                         "test_acc": a} for g, a in zip(gs, acc, strict=True)],
            "scratch_per_genome_s": scratch_s, "seeds": args.seeds, "evaluators": results}


def _images(subset: float | int | None) -> str:
    return "all" if subset is None else f"{subset:.0%} of the" if isinstance(subset, float) \
        else str(subset)


def _recipe(doc: dict) -> str:
    """The from-scratch schedule in words: genome_quality's, or the preset's recipe."""
    if not doc.get("preset"):
        return "genome_quality's schedule"
    p = get_preset(doc["preset"])
    return (f"the `{p.name}` preset's recipe, the same for every genome: {p.summary}"
            + ("; test accuracy with the test-time flip" if p.train.get("test_flip") else ""))


def markdown(doc: dict) -> str:
    s = doc["sizes"]
    name = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}.get(
        doc.get("dataset", DATASET), doc.get("dataset"))
    lines = [f"# Evaluator fidelity ({name}, {doc['budget']})", "",
             f"Ground truth: each genome trained from scratch {s['scratch']['epochs']} epochs "
             f"on {_images(s['scratch']['subset'])} training images ({_recipe(doc)}), "
             f"{doc['seeds']} seed(s), top-1 on the full "
             "test set. Proxy: "
             f"{s['proxy']['epochs']} epochs on {s['proxy']['subset']} images, "
             f"{s['proxy']['val']} val images. adaptive-bn: discover's slimming base "
             f"({s['base']['epochs']} epochs on {_images(s['base']['subset'])} images, auto "
             f"sparsity); supernet: {s['supernet']['epochs']} epochs on "
             f"{_images(s['supernet']['subset'])} images, sandwich rule with "
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
    if doc.get("incomplete"):
        lines += [f"Not yet complete: {', '.join(doc['incomplete'])} (--budget-minutes "
                  "spent). Run the same command again: it resumes from the ledger "
                  f"`{doc['ledger'] or doc['work']}`.", ""]
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
    splits = load_data(args.dataset, root=args.data_root, val_fraction=0.1, split_seed=0)
    legs, spaces, incomplete = Legs(args), [], []
    for space in args.spaces.split(","):
        try:
            spaces.append(run_space(space, args, splits, legs))
        except OutOfTime:  # the next link of the chain goes on from the recorded legs
            log(f"[{space}] --budget-minutes {args.budget_minutes} spent: not complete")
            incomplete.append(space)
    doc = {"budget": args.budget, "seeds": args.seeds, "sizes": args.sizes, "spaces": spaces,
           "dataset": args.dataset, "preset": args.preset, "data_root": args.data_root,
           "ledger": args.ledger, "work": args.work, "incomplete": incomplete, "machine": machine(),
           "legs_min": sum(_legs_s(sp) for sp in spaces) / 60,
           "wall_min": (time.perf_counter() - start) / 60,
           "command": command_line("evaluator_fidelity.py", argv)}
    return publish(Path(args.out), doc, markdown)


if __name__ == "__main__":
    sys.exit(main())

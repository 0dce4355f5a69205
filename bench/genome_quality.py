"""Genome quality: does a pruner's genome, trained from scratch, beat uniform scaling?

    python bench/genome_quality.py [--spaces vgg11-half,resnet20] [--budgets 25%FLOPs,12.5%FLOPs]
                                   [--seeds 3] [--epochs 4] [--methods slimming,sss,l1norm,...]
    python bench/genome_quality.py --dataset cifar10 --preset cifar --equal-params \
        --budgets 25%FLOPs,12.5%FLOPs,6.25%FLOPs --spaces resnet20 --methods slimming \
        --budget-minutes 85      # one link of the CIFAR-10 chain (see below)

CIFAR-10 (`--dataset cifar10`, read from the shared JPEG copy, `--data-root`) trains on the
`cifar` preset's recipe (`--preset cifar`: its epochs, batch and training fields, the same
for every genome) and keeps one ledger per space, bench/results/genome_quality_cifar10_
SPACE.legs.json, which is committed: a study longer than one invocation is a chain of
invocations of the same command, each resuming from the ledgers the last one committed, each
stopping cleanly after `--budget-minutes` (a leg is never cut: the ledger holds finished
legs only). Spaces may run in parallel, one invocation per space and core (`--spaces
resnet20` on one, `--spaces vgg11-half` on the other): each writes its own ledger, and the
results file keeps the rows of the spaces the invocation did not run. One budget's genomes
may be split the same way (`--train-only uniform` on one core, `--train-only slimming` on
the other, each with its own `--ledger`, merged after by `--reuse`): an invocation runs a
generator's sparsity training only if a leg it trains needs that generator's genome.
Within a budget the seeds go round every genome (seed 0 of each, then seed 1), so a chain
cut short holds comparable seeds. A budget added to a later link (a latency one, say) is cut
from the generator's saved scores (its run folder's sparse.pt) without training it again.
A generator may be named with options of its cut (`--methods slimming,slimming:cut=cost`,
options `key=value` after colons; only options that act on the cut, not on the training):
it is cut from the plain method's trained scores (the same run folder, so the sparsity
training runs once for both) and reported as its own row. The one training setting a spec
may carry is `sparsity=λ` (`--methods slimming:sparsity=0.0015,slimming:sparsity=0.0015:
cut=base-cost`): a sparsity training of its own (its own run folder, gen-slimming-sparsity=
0.0015), which that spec's cuts share, instead of the auto rule's λ.
`--equal-params` adds, for each generator's genome, the uniform genome re-fitted to that
genome's params (same epochs): the paper's Section-5 comparison of parameter efficiency.

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
import math
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
from archsearch.presets import get_preset
from archsearch.pruners import PRUNERS
from archsearch.train import TrainConfig, cpu_has_fast_bf16, evaluate, seed_everything, train

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
START = time.perf_counter()
DATASET = "fashion-mnist"
# The schedule every genome trains on (and the generators' sparsity training): the longest
# that fits the 90-minute budget on a 2-core CPU with bf16 (see the results file).
EPOCHS = 3
BATCH = 128
VAL_FRACTION = 0.01
GENERATORS = ("slimming", "sss", "l1norm", "taylor", "pfa")


def add_chain_args(p: argparse.ArgumentParser, ledger_help: str) -> None:
    """The options every from-scratch bench shares: the dataset and its recipe, the ledger a
    chain of invocations resumes from, the time of one link, the trainer's path."""
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--data-root", default=None, help="default for cifar10: the shared copy")
    p.add_argument("--preset", default=None, help="train every leg on this preset's recipe "
                   "(epochs, batch, training fields); default: the Fashion-MNIST schedule")
    p.add_argument("--ledger", default=None, help=ledger_help)
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no new leg after this many minutes (a link of a chain)")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="every leg through the trainer's fast path (--no-fast: the plain one)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_chain_args(p, "legs.json to resume from and write (default: in --runs; for cifar10 "
                   "the committed one in bench/results)")
    p.add_argument("--equal-params", action="store_true",
                   help="also train uniform re-fitted to each generator genome's params")
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
    p.add_argument("--train-only", default=None, metavar="ROWS",
                   help="train the legs of these rows only (comma-separated: uniform, a "
                        "method, uniform@params(METHOD)); the others are reported when the "
                        "ledger holds them: two invocations on two cores split one budget's "
                        "genomes, merged after by --reuse")
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

    def __init__(self, root: Path, path: Path | None = None):
        self.path = path or root / "legs.json"
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


class OutOfTime(Exception):
    """This invocation's --budget-minutes are spent: the next link of the chain goes on."""


def schedule(args) -> dict[str, Any]:
    """The TrainConfig fields every leg shares: the preset's recipe, or the FMNIST one."""
    if args.preset is None:
        return {"epochs": args.epochs, "batch_size": BATCH}
    recipe = get_preset(args.preset)
    return {"epochs": args.epochs if args.epochs != EPOCHS else recipe.epochs,
            "batch_size": recipe.batch_size, **recipe.train}


def check_time(args) -> None:
    if args.budget_minutes is not None and time.perf_counter() - START > 60 * args.budget_minutes:
        raise OutOfTime


def scratch(genome: Genome, splits, seed: int, run_dir: Path, args) -> dict[str, Any]:
    """Train the genome from scratch on the bench schedule; test accuracy at the end. The
    seed sets the initial weights too (legs recorded before 2026-11-26 drew them from the
    process's RNG state: valid random draws, not reproducible per seed)."""
    check_time(args)
    seed_everything(seed)
    model = bind(genome.space, args.dataset).build(genome)
    cfg = TrainConfig(schedule="scratch-e", seed=seed, train_subset=args.subset,
                      eval_split="val", fast=getattr(args, "fast", True), **schedule(args))
    start = time.perf_counter()
    result = train(model, splits, cfg, genome=genome, run_dir=run_dir, resume=True,
                   progress=False)
    test = evaluate(result.model, splits.test, splits, test_flip=cfg.test_flip)
    m = machine()  # a ledger may hold legs of several machines: wall times are per CPU
    return {"seed": seed, "test_acc": test, "val_acc": result.val_acc,
            "epochs": cfg.epochs, "wall_s": time.perf_counter() - start, "cpu": m["cpu"],
            "threads": m["threads"]}


SPARSITY_KEY = "sparsity"  # the one training setting a spec may carry (its own training)


def method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`slimming:cut=cost:min_keep=0.05` → ("slimming", {"cut": "cost", "min_keep": 0.05}),
    each value read by the pruner's own option; an option that changes the training (or one
    the method does not take) is refused, but for `sparsity=λ` (`spec_sparsity`), which
    gives the spec its own sparsity training and is not a cut option."""
    name, *pairs = spec.split(":")
    if name not in PRUNERS:
        return name, {}
    spec_sparsity(spec)  # a `sparsity=λ` the method cannot take is refused here
    declared = {o.name: o for o in getattr(PRUNERS[name], "OPTIONS", ())}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key == SPARSITY_KEY:
            continue
        option = declared.get(key)
        if option is None or option.training:
            cut_time = sorted(k for k, o in declared.items() if not o.training)
            raise SystemExit(f"--methods {spec}: {key!r} is not an option of {name}'s cut "
                             f"(those are: {', '.join(cut_time) or 'none'}; "
                             f"{SPARSITY_KEY}=λ trains it again)")
        if option.choices and text not in option.choices:
            raise SystemExit(f"--methods {spec}: {key} is one of {', '.join(option.choices)}")
        try:
            options[key] = option.parse(text)
        except ValueError as exc:
            raise SystemExit(f"--methods {spec}: {key}: {exc}") from None
    return name, options


def spec_sparsity(spec: str) -> float | str:
    """The sparsity strength a spec trains with: `sparsity=λ` (a positive number, for a
    method with a sparsity term: `sparsity_rule`), else "auto" (the method's rule)."""
    name, *pairs = spec.split(":")
    given = [text for key, _, text in (p.partition("=") for p in pairs) if key == SPARSITY_KEY]
    if not given:
        return "auto"
    if name not in PRUNERS or PRUNERS[name].sparsity_rule is None:
        raise SystemExit(f"--methods {spec}: {name} has no sparsity term to set")
    try:
        value = float(given[-1])
    except ValueError:
        value = math.nan
    if len(given) > 1 or not math.isfinite(value) or value <= 0:
        raise SystemExit(f"--methods {spec}: {SPARSITY_KEY} is one positive number")
    return value


def training_spec(spec: str) -> str:
    """The spec of the training a spec is cut from: its method, with its `sparsity=λ`."""
    sparsity = spec_sparsity(spec)
    return method_spec(spec)[0] + ("" if sparsity == "auto" else f":{SPARSITY_KEY}={sparsity:g}")


def gen_root(root: Path, space: str, spec: str) -> Path:
    """A generator's run folder: a spec shares its plain method's (one sparsity training);
    one with its own `sparsity=λ` has its own, shared by the cuts of that training."""
    return root / space / f"gen-{training_spec(spec).replace(':', '-')}"


def discover_config(method: str, space: str, budget: str, root: Path, args,
                    sparsity: float | str) -> DiscoverConfig:
    """The generator's `discover` settings in its run folder `root`: the bench's schedule,
    resumed, the spec's cut options (`method_spec`)."""
    sched = schedule(args)
    name, options = method_spec(method)
    return DiscoverConfig(method=name, budget=budget, space=space, dataset=args.dataset,
                          data_root=args.data_root, preset=args.preset or "quick",
                          epochs=sched["epochs"], subset=args.subset,
                          batch_size=sched["batch_size"], sparsity=sparsity, out=str(root),
                          resume=True, fast=getattr(args, "fast", True),
                          pruner_options=options)


def generate(method: str, space: str, budgets: list[str], root: Path, args
             ) -> dict[str, Any]:
    """The method's genomes at every budget from one sparsity training (seed 0); `method`
    may be a spec with cut options (`method_spec`)."""
    check_time(args)
    name, options = method_spec(method)
    the_plan = plan(discover_config(method, space, budgets[0], root, args,
                                    spec_sparsity(method)))
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
            "sparse_val_acc": train_info.get("val_acc"),
            **({"cut_from": training_spec(method)} if options else {})}


def add_budgets(rec: dict[str, Any], method: str, space: str, budgets: list[str], root: Path,
                args) -> dict[str, Any]:
    """The generator's genomes at `budgets` too, cut from its run's saved sparse checkpoint
    (no training): a chain may add a budget (a latency one, say) after the generator ran."""
    the_plan = plan(discover_config(method, space, budgets[0], root, args, rec["sparsity"]))
    model = None
    if the_plan.pruner.needs_training:
        if not (root / "sparse.pt").is_file():
            raise SystemExit(f"{space}/{method}: budgets {budgets} are not in the ledger and "
                             f"{root / 'sparse.pt'} is gone (run folders do not outlive a "
                             "session): run the generator again in a new ledger")
        model = load_sparse_checkpoint(root / "sparse.pt", the_plan.pruner)
    genomes = dict(rec["genomes"])
    for budget in budgets:
        genomes[budget] = the_plan.pruner.genome(model, parse_budget(budget)).to_dict()
        log(f"[{space}] {method}: genome at {budget} from the saved scores")
    return {**rec, "genomes": genomes}


LATENCY_CLOCK = time.thread_time  # one thread: CPU time, the time others held the core out


def measured_latency(bound, genomes: dict[str, Genome]) -> dict[str, dict[str, float]]:
    """Each genome's measured CPU latency (1 thread, batch 1, fp32, the fastest of 50
    forwards) and its share of the base's, the base timed in the same round-robin (the share
    cancels a change of the machine's speed; bench/latency_model.py's measurement)."""
    from latency_model import measure_all

    from archsearch.latency import LatencySettings

    settings = LatencySettings(threads=1, batch=1, clock=LATENCY_CLOCK)
    times = measure_all(bound, [bound.base_genome(), *genomes.values()], settings, passes=5)
    base = times[0][0]
    return {m: {"latency_ms": round(t[0], 4), "latency_share": round(t[0] / base, 4)}
            for m, t in zip(genomes, times[1:], strict=True)}


_SPLITS: dict[str, Any] = {}


def _shared_splits(splits):
    """One copy of the data for every leg (plan() loads its own with the same split)."""
    return _SPLITS.setdefault(splits.info.name, splits)


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _key(genome: Genome) -> str:
    return json.dumps([sorted(genome.widths.items()), sorted(genome.blocks.items())])


def trains(row: str, args) -> bool:
    """Whether this invocation trains the legs of `row` (`--train-only`)."""
    only = getattr(args, "train_only", None)
    return only is None or row in only.split(",")


def run_space(space: str, args, ledger: Ledger, root: Path) -> dict[str, Any]:
    bound = bind(space, args.dataset)
    splits = _shared_splits(load_data(bound.info, args.data_root, val_fraction=VAL_FRACTION))
    budgets = args.budgets.split(",")
    base = bound.base_genome()
    base_runs = []
    for seed in range(args.base_seeds):
        key = f"{space}/base/s{seed}"
        rec = ledger.get(key)
        if rec is None and args.recorded_only:
            continue
        rec = rec or ledger.put(key, scratch(base, splits, seed,
                                             root / space / "base" / f"s{seed}", args))
        base_runs.append(rec)
        log(f"[{space}] base seed {seed}: test {rec['test_acc']:.4f} ({rec['wall_s']:.0f}s)")
    gens: dict[str, Any] = {}
    for method in args.methods.split(","):
        name = method_spec(method)[0]
        if name not in PRUNERS or (name == "sss" and not bound.graph.blocks):
            continue
        key = f"{space}/generate/{method}"
        rec = ledger.get(key)
        if rec is None and (args.recorded_only or not (
                trains(method, args) or trains(f"uniform@params({method})", args))):
            continue  # no leg of this invocation needs the generator's genomes
        if rec is None:
            log(f"[{space}] {method}: sparsity training + genomes")
            rec = ledger.put(key, generate(method, space, budgets,
                                           gen_root(root, space, method), args))
        missing = [b for b in budgets if b not in rec["genomes"]]
        if missing:  # a budget added to the chain after the generator ran
            rec = ledger.put(key, add_budgets(rec, method, space, missing,
                                              gen_root(root, space, method), args))
        gens[method] = rec
    rows = []
    for budget in budgets:
        candidates = {"uniform": bound.uniform(parse_budget(budget))}
        for method, rec in gens.items():
            candidates[method] = bound.with_cost(Genome.from_dict(rec["genomes"][budget]))
        if args.equal_params:
            for method in list(gens):
                params = candidates[method].cost["params"]
                candidates[f"uniform@params({method})"] = bound.uniform(
                    parse_budget(f"{int(params)}params"))
        trained: dict[str, str] = {}  # genome key -> first method trained with it
        owners = {}
        for method, genome in candidates.items():
            owners[method] = trained.setdefault(_key(genome), method)
        # Seeds outer, genomes inner: a chain cut short holds comparable seeds of every
        # genome, not three seeds of the first and none of the last.
        for seed in range(args.seeds):
            for method, genome in candidates.items():
                key = f"{space}/{budget}/{method}/s{seed}"
                if owners[method] != method or ledger.get(key) is not None \
                        or args.recorded_only or not trains(method, args):
                    continue
                rec = ledger.put(key, scratch(genome, splits, seed,
                                              root / space / budget / method / f"s{seed}", args))
                log(f"[{space}] {budget} {method} seed {seed}: test "
                    f"{rec['test_acc']:.4f} ({rec['wall_s']:.0f}s)")
        latency = measured_latency(bound, {m: g for m, g in candidates.items()
                                           if owners[m] == m})
        for method, genome in candidates.items():
            owner = owners[method]
            same = owner if owner != method else None
            runs = [rec for seed in range(args.seeds)
                    if (rec := ledger.get(f"{space}/{budget}/{owner}/s{seed}")) is not None]
            if not runs:
                continue
            mean, std = mean_std([r["test_acc"] for r in runs])
            prov = genome.provenance
            rows.append({"space": space, "budget": budget, "method": method,
                         "same_as": same, "test_acc_mean": mean, "test_acc_std": std,
                         "per_seed": [r["test_acc"] for r in runs],
                         "wall_s": [r["wall_s"] for r in runs],
                         "macs": genome.cost["macs"], "params": genome.cost["params"],
                         "macs_ratio": genome.cost["macs_ratio"],
                         "params_ratio": genome.cost["params_ratio"],
                         **latency[owner],
                         "separation": (prov.get("separation") or {}).get("statistic"),
                         "separated": (prov.get("separation") or {}).get("separated"),
                         "sparsity": prov.get("sparsity"),
                         **genome_row(genome, bound)})
    bm, bs = mean_std([r["test_acc"] for r in base_runs]) if base_runs else (0.0, 0.0)
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


def recipe_line(a: dict[str, Any]) -> str:
    """The schedule the legs ran, in words."""
    if a.get("preset"):
        p = get_preset(a["preset"])
        return (f"{a.get('dataset', DATASET)}, the `{p.name}` preset ({p.summary}); "
                f"{a['epochs'] if a['epochs'] != EPOCHS else p.epochs} epochs on "
                f"{a['subset'] or 'all'} training images (less a 1% validation split)")
    return (f"Fashion-MNIST, {a['epochs']} epochs on {a['subset'] or 'all'} training images "
            f"(the 60,000-image split less a 1% validation split), batch {BATCH}, lr 0.1 "
            f"(x0.1 at 50%/75%), SGD momentum 0.9, wd 1e-4, standard pad-crop/flip")


def _short(x: float, _pos: object = None) -> str:
    """5,200,000 → 5.2M, 33,000 → 33k: a tick label that fits."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def markdown(doc: dict[str, Any]) -> str:
    a = doc["args"]
    lines = ["# Genome quality: pruner genomes vs uniform, trained from scratch", "",
             f"{recipe_line(a)}. "
             f"Genomes at one budget cost the same MACs, so they train the same epochs. "
             f"Test accuracy on the full test set (10,000 images), {a['seeds']} seeds, "
             f"mean ± std. Generators: sparsity training on the same schedule (seed 0), "
             "λ from the auto rule (`archsearch.presets.sparsity_for`). FLOPs = MACs."
             + (" `uniform@params(M)`: uniform re-fitted to M's params, same epochs; "
                "'Δ eq. params' compares M with it." if a.get("equal_params") else ""), ""]
    m = doc["machine"]
    lines += [f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}, torch "
              f"{m['torch']}. Wall time {doc['wall_s'] / 60:.1f} min for this invocation "
              f"(legs recorded earlier are not re-run); the recorded legs took "
              f"{doc['legs_wall_s'] / 60:.1f} min of training in all.", ""]
    for sp in doc["spaces"]:
        b = sp["base"]
        lines += [f"## {sp['space']}", "", (
            f"Base (full width): **{100 * b['test_acc_mean']:.2f} ± "
            f"{100 * b['test_acc_std']:.2f}%** ({len(b['per_seed'])} seeds: "
            + ", ".join(f"{100 * x:.2f}" for x in b["per_seed"]) + ")" if b["per_seed"] else
            "Base (full width): not trained in this study (`--base-seeds 0`); the "
            "generators' sparse bases are below"), ""]
        for name, g in sp["generators"].items():
            lam = "no sparsity term" if g["sparsity"] is None else f"λ = {g['sparsity']:.3g}"
            how = (f"cut from {g['cut_from']}'s trained scores ({g['wall_s']:.0f} s)"
                   if g.get("cut_from") else
                   f"base training for the generator {g['wall_s']:.0f} s")
            lines.append(f"- {name}: {lam}, {how}, its val acc "
                         + (f"{100 * g['sparse_val_acc']:.2f}%" if g.get("sparse_val_acc")
                            else "n/a"))
        lines += ["", "| budget | genome | test acc (%) | Δ vs uniform | Δ eq. params | "
                  "per seed | MACs | params | latency (× base) | separation |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        uni = {r["budget"]: r for r in sp["rows"] if r["method"] == "uniform"}
        by = {(r["budget"], r["method"]): r for r in sp["rows"]}
        for r in sp["rows"]:
            u = uni.get(r["budget"], r)
            delta = 100 * (r["test_acc_mean"] - u["test_acc_mean"])
            twin = by.get((r["budget"], f"uniform@params({r['method']})"))
            eq = "" if twin is None else \
                f"{100 * (r['test_acc_mean'] - twin['test_acc_mean']):+.2f}"
            name = r["method"] + (f" (= {r['same_as']})" if r["same_as"] else "")
            sep = "" if r["separation"] is None else (
                f"{r['separation']:.2f} ({'yes' if r['separated'] else 'NO'})")
            lines.append(f"| {r['budget']} | {name} | {100 * r['test_acc_mean']:.2f} ± "
                         f"{100 * r['test_acc_std']:.2f} | "
                         + ("—" if r["method"] == "uniform" else f"{delta:+.2f}")
                         + f" | {eq} | " + ", ".join(f"{100 * x:.2f}" for x in r["per_seed"])
                         + f" | {r['macs_ratio']:.1%} | {r['params_ratio']:.1%} | "
                         + (f"{r['latency_share']:.1%}" if "latency_share" in r else "")
                         + f" | {sep} |")
        lines += ["", "Latency: each genome's forward on this CPU (1 thread, batch 1, fp32, "
                  "the fastest of 50 timed in a round-robin with the base) as a share of the "
                  "base's: genomes of equal MACs need not run equally fast.", ""]
        lines += ["", "Widths per group (" + ", ".join(sp["groups"]) + "); base "
                  + str(sp["base_widths"]) + ":", ""]
        for r in sp["rows"]:
            extra = f", removed {r['removed_blocks']}" if r["removed_blocks"] else ""
            lines.append(f"- {r['budget']} {r['method']}: {r['widths']}{extra}")
        lines.append("")
    lines += ["Commands:", ""] + [f"- `{c}`" for c in doc.get("commands") or [doc["command"]]]
    lines.append("")
    return "\n".join(lines)


def plot_pareto(doc: dict[str, Any], path: Path) -> None:
    """Test accuracy against MACs, params and measured latency, every genome (mean ± std
    over seeds), one row of panels per space, the base marked when it was trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    spaces = [sp for sp in doc["spaces"] if sp["rows"]]
    if not spaces:
        return
    fig, axes = plt.subplots(len(spaces), 3, figsize=(15, 3.8 * len(spaces)), dpi=110,
                             squeeze=False)
    # one colour per method across every space's panels (tab20 past ten methods: no two
    # methods share a colour)
    every = list(dict.fromkeys(r["method"] for sp in spaces for r in sp["rows"]))
    palette = plt.get_cmap("tab10" if len(every) <= 10 else "tab20")
    for (ax_m, ax_p, ax_l), sp in zip(axes, spaces, strict=True):
        methods = list(dict.fromkeys(r["method"] for r in sp["rows"]))
        for method in methods:
            i = every.index(method)
            rows = [r for r in sp["rows"] if r["method"] == method and "macs" in r]
            timed = [r for r in rows if "latency_share" in r]
            for ax, key, these in ((ax_m, "macs", rows), (ax_p, "params", rows),
                                   (ax_l, "latency_share", timed)):
                these = sorted(these, key=lambda r, k=key: r[k])
                ax.errorbar([r[key] for r in these], [100 * r["test_acc_mean"] for r in these],
                            yerr=[100 * r["test_acc_std"] for r in these], fmt="o-" if
                            method.startswith("uniform") and "@" not in method else "o",
                            color=palette(i % palette.N), label=method, capsize=3,
                            markersize=4)
        base = sp["base"]
        if base["per_seed"]:
            for ax in (ax_m, ax_p, ax_l):
                ax.axhline(100 * base["test_acc_mean"], color="grey", linestyle=":",
                           label="base (full width)")
        for ax, key in ((ax_m, "MACs"), (ax_p, "params"),
                        (ax_l, "measured latency (share of the base's, 1 thread, batch 1)")):
            if ax is not ax_l:
                ax.set_xscale("log")
                lo, hi = ax.get_xlim()
                if math.floor(math.log10(lo)) == math.floor(math.log10(hi)):
                    # inside one decade: no power of ten to label, so short numbers
                    ax.xaxis.set_major_formatter(FuncFormatter(_short))
                    ax.xaxis.set_minor_formatter(FuncFormatter(_short))
                else:  # minor labels would overlap the powers of ten
                    ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(key)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{sp['space']}: accuracy vs {key.split(' (')[0]}")
            ax.grid(alpha=0.3)
        # beside the row's last panel, where it hides no point
        ax_l.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


NOTES_MARK = "<!-- notes: written by hand, kept when the tables are regenerated -->"


def genome_row(genome: Genome, bound) -> dict[str, Any]:
    """A genome as a results row spells it: widths in the space's group order, removed blocks."""
    return {"widths": [genome.widths[g] for g in bound.graph.prunable],
            "removed_blocks": sorted(genome.removed_blocks())}


def row_genome(row: dict[str, Any], bound, provenance: dict[str, Any]) -> Genome:
    """The genome of a results row (`genome_row`'s inverse), priced."""
    return bound.genome(dict(zip(bound.graph.prunable, row["widths"], strict=True)),
                        {b: False for b in row.get("removed_blocks") or []}, provenance)


def command_line(script: str, argv: list[str] | None) -> str:
    """The command a bench was run with (for its results: how to run it again)."""
    return f"python bench/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


def publish(out: Path, doc: dict[str, Any], render) -> int:
    """`write_results`, said in the log; 0, a bench's exit status."""
    write_results(out, doc, render)
    log(f"wrote {out.with_suffix('.md')}")
    return 0


def write_results(out: Path, doc: dict[str, Any], render) -> None:
    """OUT.json (the data) and OUT.md (`render(doc)`), each written atomically. The reading
    of the numbers, below NOTES_MARK in an existing OUT.md, is kept."""
    md = out.with_suffix(".md")
    notes = md.read_text().partition(NOTES_MARK)[1:] if md.exists() else ("", "")
    atomic_write_json(out.with_suffix(".json"), doc)
    atomic_write_text(md, render(doc).rstrip("\n") + ("\n\n" + "".join(notes) if notes[0]
                                                     else "\n"))


def open_bench(args: argparse.Namespace, space: str | None = None) -> tuple[Path, Ledger]:
    """Threads as asked, the runs folder and its ledger of finished legs (`space`'s, where
    the ledger path is a template with `{space}` in it)."""
    torch.set_num_threads(args.threads)
    path = getattr(args, "ledger", None)
    own = None  # the space whose legs alone this ledger holds
    if path and "{space}" in path:
        if space is None:
            raise ValueError("a per-space ledger needs the space")
        path, own = path.format(space=space), space
    ledger = Ledger(Path(args.runs), Path(path) if path else None)
    for other in getattr(args, "reuse", []):
        for key, record in Ledger(Path(other)).legs.items():
            if own is not None and not key.startswith(f"{own}/"):
                continue  # a per-space ledger takes its own space's legs only
            mine = ledger.get(key)
            if mine is None:
                ledger.put(key, record)
            elif "/generate/" in key and more_budgets(mine, record):
                ledger.put(key, {**mine, "genomes": {**record["genomes"], **mine["genomes"]}})
    return Path(args.runs), ledger


def more_budgets(mine: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether `other`, a generator record of the same sparsity training (same λ and the
    same genome at every budget both hold), holds budgets `mine` lacks: they are added, so a
    budget cut in another runs folder (while its sparse.pt existed) outlives that folder.
    A genome already recorded is never replaced: its legs were trained on it."""
    from archsearch.kinds import WIDTH  # what makes two genome documents the same genome

    shared = set(mine["genomes"]) & set(other["genomes"])
    if not shared or other.get("sparsity") != mine.get("sparsity"):
        return False
    if any(WIDTH.key(mine["genomes"][b]) != WIDTH.key(other["genomes"][b]) for b in shared):
        return False
    return bool(set(other["genomes"]) - set(mine["genomes"]))


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
    return {**doc, "spaces": spaces,
            "commands": list(dict.fromkeys(commands + [doc["command"]])),
            "legs_wall_s": prev["legs_wall_s"] + doc["legs_wall_s"]}


def defaults_for_dataset(args: argparse.Namespace, bench: str = "genome_quality",
                         folder: str = "runs", ledger: str = ".legs.json"
                         ) -> argparse.Namespace:
    """CIFAR-10: the shared copy, the committed ledger, results named after it. `bench` names
    the results and run folder (`args.<folder>`, default runs/BENCH); the ledger is
    bench/results/BENCH_TAG`ledger` (e.g. "_{space}.legs.json": a template per space)."""
    if args.dataset != DATASET:
        tag = args.dataset.replace("-", "_")
        if args.data_root is None and args.dataset == "cifar10":
            args.data_root = str(SHARED_CIFAR)
        if args.ledger is None:
            args.ledger = str(RESULTS / f"{bench}_{tag}{ledger}")
        if args.out == str(RESULTS / bench):
            args.out = str(RESULTS / f"{bench}_{tag}")
        if getattr(args, folder) == f"runs/{bench}":
            setattr(args, folder, f"runs/{bench}_{tag}")
    return args


def resolve_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with a dataset's defaults: on CIFAR-10 one committed ledger per space."""
    return defaults_for_dataset(parse_args(argv), ledger="_{space}.legs.json")


def same_study(old: dict[str, Any], args: argparse.Namespace) -> bool:
    """Whether results already written at --out are this chain's (dataset, recipe, seeds)."""
    a = old.get("args", {})
    return all(a.get(k) == getattr(args, k) for k in ("dataset", "preset", "epochs", "subset",
                                                        "seeds"))


def main(argv: list[str] | None = None) -> int:
    args = resolve_args(argv)
    names = args.spaces.split(",")
    ledgers = {}
    for space in names:  # one ledger, or one per space (a template: spaces run in parallel)
        root, ledgers[space] = open_bench(args, space)
        if "{space}" not in (args.ledger or ""):
            ledgers = dict.fromkeys(names, ledgers[space])
            break
    prev = json.loads(Path(args.seed_from).read_text()) if args.seed_from else None
    if prev is not None:
        for ledger in {id(x): x for x in ledgers.values()}.values():
            seed_ledger(ledger, prev)
    start = time.perf_counter()
    spaces = []
    try:
        for space in names:
            spaces.append(run_space(space, args, ledgers[space], root))
    except OutOfTime:  # report what the ledger holds; the next link goes on from it
        log(f"--budget-minutes {args.budget_minutes} spent: writing what is recorded")
        args.recorded_only = True
        spaces = [run_space(space, args, ledgers[space], root) for space in names]
    out = Path(args.out).with_suffix(".json")
    if prev is None and args.dataset != DATASET and out.exists():
        # a chain's invocations may run one space each: keep the others' rows
        old = json.loads(out.read_text())
        prev = old if same_study(old, args) else None
    for _ in (0,):
        legs = [r for x in {id(x): x for x in ledgers.values()}.values()
                for r in x.legs.values()]
        doc = {"args": vars(args), "machine": machine(), "spaces": spaces,
               "wall_s": time.perf_counter() - start,
               "legs_wall_s": sum(r.get("wall_s", 0) for r in legs if not r.get("seeded")),
               "command": "python bench/genome_quality.py " + " ".join(argv or sys.argv[1:])}
        doc = merge_results(prev, doc) if prev else doc
        write_results(Path(args.out), doc, markdown)
        plot_pareto(doc, Path(args.out).with_name(Path(args.out).name + "_pareto.png"))
    log(f"wrote {args.out}.md ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Search quality: does the searched genome, trained from scratch, beat uniform and slimming?

    python bench/search_quality.py [--spaces vgg11-half,resnet20]
                                   [--budgets 25%FLOPs,12.5%FLOPs] [--seeds 3] [--threads 1]
    python bench/search_quality.py --smoke     # tiny sizes, writes under runs/ only
    python bench/search_quality.py --dataset cifar10 --preset cifar --spaces resnet20 \
        --budgets 12.5%FLOPs --budget-minutes 55      # one link of the CIFAR-10 chain

On Fashion-MNIST, for each space and budget:
1. searched genome: `archsearch search --space S --budget B --guide SLIMMING.json` (the
   slimming genome of step 2 as its guide) with the defaults as shipped
   (multi-fidelity: adaptive BatchNorm on a base trained in the search's run folder screens
   `screen` candidates, the best are proxy-trained,
   the best of those trained from scratch for longer beside the uniform genome, which stays
   the winner unless one beats it there by more than `--final-margin` standard errors;
   `SearchConfig`'s defaults), run
   in-process with the same library calls as the command (one worker), so that the bench
   sets the CPU threads; its winner is the search's best genome (`best_genome.json`);
2. uniform and slimming genomes: taken from bench/results/genome_quality.json when that
   file's schedule is exactly this one (same epochs, all training images, at least as many
   seeds, seeds 0..n-1), else trained here the same way (`genome_quality.generate` and
   `genome_quality.scratch`);
3. the searched genome trained from scratch on the schedule of bench/genome_quality.py
   (its `EPOCHS` and `BATCH`, the full training split less its 1% validation split, test
   accuracy on the full test set), `--seeds` seeds.
Reported: mean ± std and per-seed test accuracy, the differences searched − uniform and
searched − slimming with whether each exceeds one standard deviation (the larger of the two
rows' std), the search's time and candidates per fidelity. Every leg is a run folder under
`--runs/SPACE` with its record in that folder's legs.json (resumable: rerun the same
command). Runs of different `--spaces` may run in parallel (each space has its own ledger);
every run merges its spaces into bench/results/search_quality.{json,md}.

CIFAR-10 (`--dataset cifar10`, the shared JPEG copy, `--data-root`) with `--preset cifar`:
uniform, slimming and the searched genome train from scratch on the preset's recipe (its
epochs, batch and training fields: genome_quality's CIFAR legs; test accuracy with its
test-time flip), their rows reused from bench/results/genome_quality_cifar10.json when it
ran exactly that schedule; the search reads the same data and keeps its own proxy schedule.
Each space's finished legs are recorded in a committed ledger,
bench/results/search_quality_cifar10_SPACE.legs.json (`--ledger`, `{space}` in it is the
space): a study longer than one invocation is a chain of invocations of the same command,
each resuming from the ledger the last one committed and stopping cleanly after
`--budget-minutes` (a leg, the search included, is never cut; slimming's sparsity training,
full width on 20 epochs, is the longest leg, about 35 min at the ~440 images/s issue 21
measured for vgg11-half, so 55 keeps an invocation within 90 min); results go to
bench/results/search_quality_cifar10.{json,md}, the budgets not yet complete named there.
A recorded search is reused only under the settings it ran with (`check_recorded_search`):
the searches recorded before `--final-margin` existed are the variant
`--search-option final_margin=off` (bench/results/search_quality_cifar10_margin-off.*).
When the search returns a baseline's genome (uniform, or the slimming genome that guided it),
its from-scratch rows are that baseline's legs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from genome_quality import (
    BATCH,
    DATASET,
    EPOCHS,
    RESULTS,
    VAL_FRACTION,
    Ledger,
    OutOfTime,
    _shared_splits,
    add_chain_args,
    check_time,
    defaults_for_dataset,
    generate,
    genome_row,
    log,
    machine,
    mean_std,
    recipe_line,
    row_genome,
    scratch,
    write_results,
)
from genome_quality import schedule as leg_schedule

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.genome import Genome
from archsearch.io import file_lock
from archsearch.search import (
    Search,
    SearchConfig,
    best_trials,
    evaluators_for,
    fidelity_costs,
    fidelity_of,
    final_choice,
    open_run,
    screen_setup_cost,
    trial_genome,
)
from archsearch.search import write_results as write_search_results

BASELINES = ("uniform", "slimming")
# the search as shipped: no override of SearchConfig's defaults
SEARCH: dict[str, Any] = {}
SMOKE_SEARCH = {"screen": 8, "trials": 3, "final": 1, "proxy_epochs": 1, "proxy_subset": 256,
                "proxy_val": 256, "final_epochs": 1, "final_subset": 256, "base_epochs": 1,
                "base_subset": 512, "calib_images": 64, "screen_val": 200}
SMOKE = {"epochs": 1, "subset": 512, "seeds": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_chain_args(p, "each space's legs.json ({space} in it: the "
                   "space; default: in --runs/SPACE; for cifar10 the committed ones)")
    p.add_argument("--spaces", default="vgg11-half,resnet20")
    p.add_argument("--budgets", default="25%FLOPs,12.5%FLOPs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/search_quality", help="run folders (resumable)")
    p.add_argument("--out", default=str(RESULTS / "search_quality"))
    p.add_argument("--recorded", default=None,
                   help="genome_quality results whose uniform/slimming rows are reused when "
                        "their schedule matches (default: genome_quality.json, or "
                        "genome_quality_cifar10.json for cifar10)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a few minutes)")
    p.add_argument("--search-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a search setting other than its shipped default (a flat SearchConfig "
                        "key: base=PATH, base_epochs=20, evaluator=proxy, ...; repeatable): a "
                        "variant of the search, named in the results; give it its own --out "
                        "and --ledger (the shipped search's results are not merged with it)")
    args = p.parse_args(argv)
    args.epochs, args.subset = EPOCHS, None
    args.search = {**SEARCH, **search_options(args.search_option, p)}
    if args.search_option and not args.smoke and (
            args.ledger is None or args.out == str(RESULTS / "search_quality")):
        p.error("--search-option: a variant of the search needs its own --ledger and --out "
                "(the shipped search's ledger holds its own search record)")
    if args.smoke:  # never mixed with (or written over) the real results
        args.epochs, args.subset, args.seeds = SMOKE["epochs"], SMOKE["subset"], SMOKE["seeds"]
        args.search = {**SMOKE_SEARCH, **args.search}
        args.runs = str(Path(args.runs).with_name(Path(args.runs).name + "-smoke"))
        if args.out == str(RESULTS / "search_quality"):
            args.out = str(Path(args.runs) / "search_quality")
        if args.ledger is None and args.dataset != DATASET:
            args.ledger = str(Path(args.runs) / "{space}" / "legs.json")
    if args.recorded is None:
        tag = "" if args.dataset == DATASET else "_" + args.dataset.replace("-", "_")
        args.recorded = str(RESULTS / f"genome_quality{tag}.json")
    return defaults_for_dataset(args, "search_quality", ledger="_{space}.legs.json")


def search_options(pairs: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """`KEY=VALUE` pairs as SearchConfig's flat settings, each value read by `archsearch
    search`'s own flag for it (its type and choices); a key without a flag there, or one the
    bench sets itself, is refused."""
    from archsearch.cli.cmd_search import add_arguments

    own = {"budget", "out", "space", "dataset", "data_root", "guides"}
    flags = argparse.ArgumentParser(prog="archsearch search", add_help=False)
    add_arguments(flags)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key in own or key not in SearchConfig.flat_type().__dataclass_fields__:
            parser.error(f"--search-option {pair}: not KEY=VALUE with a search setting the "
                         f"bench does not set itself ({', '.join(sorted(own))} are its own)")
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                read = flags.parse_args(["--budget", "1%FLOPs", f"--{key.replace('_', '-')}",
                                         text])
        except SystemExit:
            why = errors.getvalue().strip().splitlines()[-1:] or ["refused"]
            parser.error(f"--search-option {pair}: {why[0]}")
        out[key] = getattr(read, key)
    return out


def schedule(args: argparse.Namespace) -> dict[str, Any]:
    """The from-scratch schedule every genome here trains on (compared before merging); on
    another dataset or a preset, with them and the preset's training fields."""
    out = {"epochs": args.epochs, "subset": args.subset, "batch_size": BATCH,
           "val_fraction": VAL_FRACTION, "seeds": args.seeds, "search": args.search}
    if args.dataset != DATASET or args.preset is not None:
        out.update({"dataset": args.dataset, "preset": args.preset, **leg_schedule(args)})
    return out


def legs_schedule(a: dict[str, Any]) -> dict[str, Any]:
    """What a from-scratch leg of a bench with these args trains on: dataset, subset and
    genome_quality's schedule (a preset's epochs, batch and training fields)."""
    ns = argparse.Namespace(preset=a.get("preset"), epochs=a.get("epochs"))
    return {"dataset": a.get("dataset", DATASET), "subset": a.get("subset"),
            **leg_schedule(ns)}


def cli_command(space: str, budget: str, overrides: dict[str, Any], out: Path) -> str:
    flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in overrides.items())
    return f"archsearch search --space {space} --budget {budget}{flags} --out {out}"


def run_search(space: str, budget: str, args: argparse.Namespace, root: Path,
               ledger: Ledger, guide: Genome) -> dict[str, Any]:
    """The search guided by `guide` (the slimming genome at this budget; resumed if its run
    folder has one) and its winner."""
    key = f"{budget}/search"
    run_dir = root / budget / "search"
    guide_path = root / budget / "guide-slimming.json"
    config = SearchConfig.from_flat(budget=budget, out=str(run_dir), space=space,
                                    dataset=args.dataset, data_root=args.data_root,
                                    guides=[str(guide_path)], **args.search)
    if ledger.get(key) is not None:
        rec = ledger.get(key)
        check_recorded_search(rec, config, ledger)
        if "one_off" not in rec:  # records older than the field
            rec["one_off"] = screen_setup_cost(run_dir)
        return rec
    check_time(args)
    if not guide_path.is_file():
        guide.save(guide_path)
    data = {"dataset": args.dataset, "data_root": args.data_root} \
        if args.dataset != DATASET else {}
    flags = {"guide": guide_path, **data, **args.search}
    log(f"[{space}] {budget}: {cli_command(space, budget, flags, run_dir)}")
    start = time.perf_counter()
    Search(config, evaluators_for(config), worker_index=0).work()
    wall = time.perf_counter() - start
    run = open_run(run_dir)
    write_search_results(run)
    best = best_trials(run, 1)[0]
    choice = final_choice(run)
    costs = fidelity_costs(run.trials())
    log(f"[{space}] {budget}: search done in {wall:.0f}s, winner trial {best.number} "
        f"({fidelity_of(best)}) val acc {best.value:.4f}")
    return ledger.put(key, {
        "genome": trial_genome(best).to_dict(), "val_acc": best.value, "trial": best.number,
        "fidelity": fidelity_of(best), "costs": costs,
        "trials_s": sum(c["wall_s"] for c in costs.values()), "wall_s": wall,
        "one_off": screen_setup_cost(run_dir), "evaluator": config.screen.evaluator,
        "final_choice": choice, "config": searched_settings(config),
        "command": cli_command(space, budget, flags, run_dir)})


def searched_settings(config: SearchConfig) -> dict[str, Any]:
    """What a recorded search ran with (its flat settings less the paths), as the ledger's
    JSON reads it back (tuples as lists)."""
    return json.loads(json.dumps({k: v for k, v in config.flat().items()
                                  if k not in ("out", "guides", "data_root", "base")}))


def check_recorded_search(rec: dict[str, Any], config: SearchConfig, ledger: Ledger) -> None:
    """A recorded search is reused only if it ran with these settings: a record from before
    the settings were kept ran with the defaults of its day, whose final stage had no margin
    (`final_margin` off); any other difference is refused, not silently mixed."""
    have = rec.get("config") or {**searched_settings(config), "final_margin": None}
    want = searched_settings(config)
    diff = sorted(k for k in want if have.get(k, want[k]) != want[k])
    if diff:
        raise SystemExit(
            f"{ledger.path}: its {config.budget} search ran with "
            + ", ".join(f"{k}={have.get(k)!r}" for k in diff) + ", not "
            + ", ".join(f"{k}={want[k]!r}" for k in diff)
            + ": give this search its own --ledger and --out (or --search-option "
            + " ".join(f"{k}={'off' if have.get(k) is None else have.get(k)}" for k in diff)
            + " to go on with that one)")


def recorded_rows(doc: dict[str, Any] | None, space: str, budget: str,
                  args: argparse.Namespace) -> dict[str, dict[str, Any]] | None:
    """The uniform and slimming rows (those it has, with `args.seeds` seeds at least) of a
    genome_quality results doc at (space, budget), cut to `args.seeds` seeds, when its
    schedule is exactly this bench's; else None."""
    if not doc:
        return None
    a = doc.get("args", {})
    if legs_schedule(a) != legs_schedule(vars(args)) or (a.get("seeds") or 0) < args.seeds:
        return None
    rows = {r["method"]: r for sp in doc.get("spaces", []) if sp["space"] == space
            for r in sp["rows"] if r["budget"] == budget and r["method"] in BASELINES
            and len(r["per_seed"]) >= args.seeds}
    return {m: {"per_seed": r["per_seed"][:args.seeds], "wall_s": r["wall_s"][:args.seeds],
                "widths": r["widths"], "removed_blocks": r.get("removed_blocks") or [],
                "macs_ratio": r["macs_ratio"],
                "params_ratio": r["params_ratio"],
                "source": Path(args.recorded).name}
            for m, r in rows.items()}


def trained_rows(genomes: dict[str, Genome], budget: str, args: argparse.Namespace,
                 splits: Any, root: Path, ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Each genome trained from scratch `args.seeds` times (one leg per seed)."""
    out = {}
    for method, genome in genomes.items():
        bound = bind(genome.space, genome.dataset)
        runs = []
        for seed in range(args.seeds):
            key = f"{budget}/{method}/s{seed}"
            rec = ledger.get(key)
            if rec is None:
                rec = ledger.put(key, scratch(genome, splits, seed,
                                              root / budget / method / f"s{seed}", args))
                log(f"[{genome.space}] {budget} {method} seed {seed}: test "
                    f"{rec['test_acc']:.4f} ({rec['wall_s']:.0f}s)")
            runs.append(rec)
        out[method] = {"per_seed": [r["test_acc"] for r in runs],
                       "wall_s": [r["wall_s"] for r in runs],
                       **genome_row(genome, bound), "macs_ratio": genome.cost["macs_ratio"],
                       "params_ratio": genome.cost["params_ratio"], "source": "trained"}
    return out


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """mean(a) − mean(b), and whether it exceeds one std (the larger of the two)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    delta = ma - mb
    return {"delta": delta, "std": max(sa, sb), "exceeds_one_std": abs(delta) > max(sa, sb)}


def baseline_genomes(space: str, budgets: list[str], args: argparse.Namespace, root: Path,
                     ledger: Ledger, budget: str) -> dict[str, Genome]:
    bound = bind(space, args.dataset)
    gen = ledger.get("generate/slimming")
    if gen is None or budget not in gen["genomes"]:  # a budget added since: same base run
        have = gen["genomes"] if gen else {}
        first = list(have)[:1]  # the run's own budget first: the same discover config
        made = generate("slimming", space, first + [b for b in budgets if b not in have],
                        root / "gen-slimming", args)
        gen = ledger.put("generate/slimming", {**made, **(gen or {}),
                                               "genomes": {**made["genomes"], **have}})
    return {"uniform": bound.uniform(parse_budget(budget)),
            "slimming": bound.with_cost(Genome.from_dict(gen["genomes"][budget]))}


def run_space(space: str, args: argparse.Namespace, recorded: dict[str, Any] | None
              ) -> dict[str, Any]:
    root = Path(args.runs) / space
    ledger = Ledger(root, Path(args.ledger.format(space=space)) if args.ledger else None)
    bound = bind(space, args.dataset)
    splits = _shared_splits(load_data(bound.info, args.data_root, val_fraction=VAL_FRACTION))
    budgets = args.budgets.split(",")
    out: list[dict[str, Any]] = []
    incomplete: list[str] = []
    for budget in budgets:
        try:
            out.append(run_budget(space, budget, args, recorded, ledger, splits))
        except OutOfTime:  # the next link of the chain goes on from the ledger
            log(f"[{space}] {budget}: --budget-minutes {args.budget_minutes} spent")
            incomplete.append(budget)
    return {"space": space, "groups": list(bound.graph.prunable),
            "base_widths": [bound.graph.groups[g].size for g in bound.graph.prunable],
            "budgets": out, "incomplete": incomplete}


def run_budget(space: str, budget: str, args: argparse.Namespace,
               recorded: dict[str, Any] | None, ledger: Ledger, splits: Any
               ) -> dict[str, Any]:
    """One budget's rows: the search first (guided by slimming's genome, recorded or
    generated), the searched genome from scratch, then uniform and slimming, each recorded
    where genome_quality has it on this schedule, else trained here (OutOfTime before any
    leg past --budget-minutes)."""
    root, bound, budgets = Path(args.runs) / space, bind(space, args.dataset), \
        args.budgets.split(",")
    base = recorded_rows(recorded, space, budget, args) or {}
    missing = [m for m in BASELINES if m not in base]
    if missing:
        log(f"[{space}] {budget}: {' and '.join(missing)} trained here (not recorded on this "
            "schedule)")
    if "slimming" in base:
        slim = base["slimming"]
        guide = row_genome(slim, bound, {"method": "slimming", "source": slim["source"]})
        genomes = {"uniform": bound.uniform(parse_budget(budget)), "slimming": guide}
    else:
        genomes = baseline_genomes(space, budgets, args, root, ledger, budget)
        guide = genomes["slimming"]
    search = run_search(space, budget, args, root, ledger, guide)
    searched = bound.with_cost(Genome.from_dict(search["genome"]))
    if "uniform" not in base and is_row_genome(searched, genome_row(genomes["uniform"], bound),
                                               bound):
        base.update(trained_rows({"uniform": genomes["uniform"]}, budget, args, splits, root,
                                 ledger))  # trained once, as uniform
    same = next((m for m in BASELINES if m in base and is_row_genome(searched, base[m], bound)),
                None)
    if same is not None:
        # the search returned a baseline's genome (uniform, or its slimming guide): its legs
        # are that baseline's (same genome, same schedule, same seeds), not trained twice
        log(f"[{space}] {budget}: the search returned the {same} genome; its rows are "
            f"{same}'s")
        rows = {"searched": {**base[same], "per_seed": list(base[same]["per_seed"]),
                             "source": f"{same}'s legs ({base[same]['source']})"}}
    else:
        rows = trained_rows({"searched": searched}, budget, args, splits, root, ledger)
    base.update(trained_rows({m: genomes[m] for m in BASELINES if m not in base}, budget,
                             args, splits, root, ledger))
    rows.update({m: base[m] for m in BASELINES})
    for row in rows.values():
        row["mean"], row["std"] = mean_std(row["per_seed"])
    return {"budget": budget, "rows": rows, "search": search,
            "vs": {m: compare(rows["searched"]["per_seed"], rows[m]["per_seed"])
                   for m in BASELINES}}


def is_row_genome(genome: Genome, row: dict[str, Any], bound: Any) -> bool:
    """Whether `genome` is the genome of a results row (its widths and removed blocks)."""
    return genome_row(genome, bound) == {"widths": list(row["widths"]), "removed_blocks":
                                         sorted(row.get("removed_blocks") or [])}


def merged(out: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with the other spaces of the results already at `out` (same schedule)."""
    path = out.with_suffix(".json")
    if not path.is_file():
        return doc
    old = json.loads(path.read_text())
    if old.get("schedule") != doc["schedule"]:
        log(f"{path}: another schedule, not merged (overwritten)")
        return doc
    mine = {s["space"] for s in doc["spaces"]}
    doc["spaces"] = [s for s in old["spaces"] if s["space"] not in mine] + doc["spaces"]
    doc["commands"] = [c for c in old.get("commands", []) if c != doc["command"]] + \
        [doc["command"]]
    return doc


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _verdict(c: dict[str, Any]) -> str:
    if not c["exceeds_one_std"]:
        return "within one std"
    return "**better** by more than one std" if c["delta"] > 0 else \
        "**worse** by more than one std"


def _search_line(s: dict[str, Any]) -> str:
    parts = [f"{c['candidates']} {f} ({c['wall_s']:.0f} s)" for f, c in s["costs"].items()]
    net = s.get("one_off") or s.get("supernet") or {}
    what = "adaptive-bn's base" if net.get("kind") == "base" else "supernet"
    once = f"; {what} training {net['train_s']:.0f} s of the screen's time" \
        if net.get("train_s") is not None else ""
    return (f"Search ({s['evaluator']} screen): " + ", ".join(parts) + once
            + f"; {s['trials_s'] / 60:.1f} min of trials in all. Winner: trial {s['trial']} "
            f"({s['fidelity']}), val acc {_pct(s['val_acc'])}%." + _choice(s.get("final_choice"))
            + f" `{s['command']}`")


def _choice(c: dict[str, Any] | None) -> str:
    """How the final stage chose between its best genome and uniform, in words."""
    if not c:
        return ""
    verdict = "kept uniform" if c["kept_baseline"] else f"took trial {c['challenger']}"
    return (f" The final stage {verdict}: its best genome other than uniform "
            f"(trial {c['challenger']}) was {100 * c['delta']:+.2f} points over uniform "
            f"(trial {c['baseline']}), against a "
            f"margin of {c['margin']:g} × {100 * c['se']:.2f} (the standard error on "
            f"{c['val_images']} validation images).")


def _intro(doc: dict[str, Any]) -> str:
    """The from-scratch schedule in words."""
    sch = doc["schedule"]
    if "preset" not in sch:  # the Fashion-MNIST schedule, as before the option
        return (f"Fashion-MNIST. Every genome trained from scratch {sch['epochs']} epochs on "
                f"{sch['subset'] or 'all'} training images (bench/genome_quality.py's "
                f"schedule: the 60,000-image split less a {sch['val_fraction']:.0%} "
                f"validation split, batch {sch['batch_size']}), {sch['seeds']} seeds, top-1 "
                "on the full test set (10,000 images), mean ± std.")
    flip = ", with the test-time flip" if sch.get("test_flip") else ""
    return (f"Every genome trained from scratch on genome_quality's schedule: "
            f"{recipe_line(doc['args'])}; {sch['seeds']} seeds, top-1 on the full test set"
            f"{flip}, mean ± std.")


def markdown(doc: dict[str, Any]) -> str:
    sch, m = doc["schedule"], doc["machine"]
    lines = ["# Search quality: searched vs uniform vs slimming, trained from scratch", "",
             _intro(doc) + " The search: `archsearch search --guide` (the "
             "slimming genome of the same space and budget) with its shipped defaults"
             + (f" overridden by {sch['search']}" if sch["search"] else "")
             + " (its own 10% validation split of the training set). Uniform and slimming "
             f"rows come from {Path(doc['args']['recorded']).name} where marked (same "
             "schedule and seeds). "
             "Δ = searched − baseline; it *exceeds one std* when |Δ| is larger than the "
             "larger std of the two rows. FLOPs = MACs.", "",
             f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}, torch "
             f"{m['torch']}.", "",
             "| space | budget | searched | uniform | slimming | Δ vs uniform | "
             "Δ vs slimming | search min |", "|---|---|---|---|---|---|---|---|"]
    for sp in doc["spaces"]:
        for b in sp["budgets"]:
            r = b["rows"]
            cells = [f"{_pct(r[k]['mean'])} ± {_pct(r[k]['std'])}"
                     for k in ("searched", *BASELINES)]
            vs = [f"{100 * b['vs'][k]['delta']:+.2f} ({_verdict(b['vs'][k])})"
                  for k in BASELINES]
            lines.append(f"| {sp['space']} | {b['budget']} | " + " | ".join(cells + vs)
                         + f" | {b['search']['trials_s'] / 60:.1f} |")
    for sp in doc["spaces"]:
        lines += ["", f"## {sp['space']}", "", "Widths per group (" + ", ".join(sp["groups"])
                  + f"); base {sp['base_widths']}."]
        for b in sp["budgets"]:
            lines += ["", f"### {b['budget']}", "", _search_line(b["search"]), "",
                      "| genome | test acc (%) | per seed | MACs | params | source | widths |",
                      "|---|---|---|---|---|---|---|"]
            for name, r in b["rows"].items():
                removed = f", removed {r['removed_blocks']}" if r.get("removed_blocks") else ""
                lines.append(f"| {name} | {_pct(r['mean'])} ± {_pct(r['std'])} | "
                             + ", ".join(_pct(x) for x in r["per_seed"])
                             + f" | {r['macs_ratio']:.1%} | {r['params_ratio']:.1%} | "
                             f"{r['source']} | {r['widths']}{removed} |")
    left = [sp for sp in doc["spaces"] if sp.get("incomplete")]
    if left:
        where = doc["args"].get("ledger") or str(Path(doc["args"]["runs"]) / "{space}" /
                                                 "legs.json")
        lines += ["", "Not yet complete (--budget-minutes spent): " + "; ".join(
            f"{sp['space']} {', '.join(sp['incomplete'])}" for sp in left) + ". Run the same "
            "command again: it resumes from the ledger" + ("s " if len(left) > 1 else " ")
            + ", ".join(f"`{where.format(space=sp['space'])}`" for sp in left) + "."]
    lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in doc["commands"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recorded = json.loads(Path(args.recorded).read_text()) if \
        Path(args.recorded).is_file() else None
    start = time.perf_counter()
    spaces = [run_space(space, args, recorded) for space in args.spaces.split(",")]
    command = "python bench/search_quality.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    doc = {"args": {k: v for k, v in vars(args).items() if k != "search"},
           "schedule": schedule(args), "machine": machine(), "spaces": spaces,
           "wall_s": time.perf_counter() - start, "command": command, "commands": [command]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    with file_lock(Path(args.runs) / "results.lock"):  # parallel runs merge in turn
        write_results(out, merged(out, doc), markdown)
    log(f"wrote {out.with_suffix('.md')} ({doc['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

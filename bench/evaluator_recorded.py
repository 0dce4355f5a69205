"""Evaluator fidelity on the genomes the benches already trained from scratch (CIFAR-10).

    python bench/evaluator_recorded.py [--spaces vgg11-half] [--evaluators \
        adaptive-bn,supernet,proxy,final] [--budget-minutes 80]

An entry `NAME:KEY=VALUE[:KEY=VALUE...]` in `--evaluators` is a variant of that evaluator
with search settings other than the shipped defaults (read as `archsearch search` reads the
flags), e.g. `supernet:base_epochs=12`: its own column, its own base in its own folder.

bench/evaluator_fidelity.py trains its own genome set from scratch (16 genomes per space,
20 epochs each on CIFAR-10: about 3 h of legs per space on one core, before its bases). The
CIFAR-10 benches have already trained, 3 seeds each on the `cifar` preset's recipe, the
genomes a search on CIFAR-10 must actually choose between: uniform, every generator's
(slimming with its cuts and sparsities, taylor) and the searches' winners, at 25%, 12.5% and
6.25%FLOPs. This bench takes those as the ground truth (mean test accuracy over the recorded
seeds, read from the results files `--recorded`) and scores every one of them with the
search's evaluators exactly as the shipped `archsearch search` builds them (SearchConfig's
defaults, on the search's own 10% validation split):

- `adaptive-bn`: channels inherited from the search's own base (trained once here, the
  shipped `--base-epochs` on `--base-subset`), BatchNorm re-estimated, `--screen-val` images;
- `supernet`: sliced out of a supernet trained once here on the same settings;
- `proxy`: trained from scratch on the proxy stage's schedule (no early stopping here);
- `final`: trained from scratch on the final stage's schedule (the stage whose choice between
  a genome and uniform `--final-margin` judges).

A score is comparable only between genomes of one budget (MACs differ between budgets and
every score rises with them), so the statistic is a **stratified Kendall τ**: concordant
minus discordant pairs over all pairs within a budget (tau-a), with a 95% bootstrap interval
(genomes resampled within each budget). Its **ceiling** is the same statistic between two
halves of the ground truth itself (seed 0's accuracy against the mean of the other seeds):
how well the from-scratch accuracy ranks these genomes at all, given seed noise. Also per
budget: whether the evaluator's best genome is the truly best one.

Genomes are those rows of the results at their budget's MACs (within 2% of it: uniform
re-fitted to another genome's params is at another cost and left out), with at least two
seeds, one per distinct genome. Every score is a leg in the ledger
bench/results/evaluator_recorded_cifar10.legs.json (resumable; stops cleanly after
`--budget-minutes`, a leg never cut). Results: bench/results/evaluator_recorded_cifar10.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genome_quality import (  # noqa: E402
    RESULTS,
    SHARED_CIFAR,
    Ledger,
    OutOfTime,
    check_time,
    command_line,
    log,
    machine,
    publish,
    row_genome,
)

from archsearch.budget import parse_budget  # noqa: E402
from archsearch.build import bind  # noqa: E402
from archsearch.data import load_data  # noqa: E402
from archsearch.search import EVALUATORS, SearchConfig, evaluators_for  # noqa: E402
from archsearch.search._evaluate import VAL_FRACTION  # noqa: E402
from archsearch.search._fidelity import SCREEN  # noqa: E402
from archsearch.train import seed_everything  # noqa: E402

RECORDED = ("genome_quality_cifar10.json", "search_quality_cifar10.json",
            "search_quality_cifar10_margin-off.json", "search_quality_cifar10_screen-base.json")
# the registry's screens, then the proxy and final stages (trained from scratch)
EVALUATOR_NAMES = (*(n for n in EVALUATORS if n != "proxy"), "proxy", "final")
AT_BUDGET = 0.02  # a row is at its budget when its MACs are within 2% of the budget's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="vgg11-half")
    p.add_argument("--evaluators", default=",".join(EVALUATOR_NAMES))
    p.add_argument("--recorded", default=",".join(str(RESULTS / f) for f in RECORDED),
                   help="results files whose rows are the ground truth (comma-separated; a "
                        "missing one is skipped)")
    p.add_argument("--data-root", default=str(SHARED_CIFAR))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--budget-minutes", type=float, default=None)
    p.add_argument("--work", default="runs/evaluator_recorded", help="the evaluators' bases")
    p.add_argument("--ledger", default=str(RESULTS / "evaluator_recorded_cifar10.legs.json"))
    p.add_argument("--out", default=str(RESULTS / "evaluator_recorded_cifar10"))
    args = p.parse_args(argv)
    bad = [e for e in args.evaluators.split(",") if e.split(":")[0] not in EVALUATOR_NAMES]
    if bad:
        p.error(f"--evaluators: unknown {', '.join(bad)} (one of {', '.join(EVALUATOR_NAMES)})")
    args.variants = {e: variant(e, p) for e in args.evaluators.split(",")}
    return args


def variant(entry: str, parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
    """`NAME` or `NAME:KEY=VALUE[:KEY=VALUE...]` (an evaluator with search settings other than
    the shipped defaults, e.g. `supernet:base_epochs=12`): the evaluator and its settings,
    each value read as `archsearch search` reads its flag."""
    from search_quality import search_options

    name, *pairs = entry.split(":")
    return name, search_options(pairs, parser)


def work_dir(entry: str, space: str, args: argparse.Namespace) -> Path:
    """Where an evaluator's base or supernet is trained once: --work/SPACE, or for a variant
    its own folder below it (it trains its own)."""
    root = Path(args.work) / space
    return root if ":" not in entry else root / entry.replace(":", "_").replace("=", "-")


# -- the ground truth ----------------------------------------------------------------------
def recorded_genomes(paths: list[Path], space: str) -> list[dict[str, Any]]:
    """Every distinct genome of `space` the results files trained from scratch at its
    budget's MACs with at least two seeds: budget, label, widths, removed blocks, per-seed
    test accuracy (the first file that has a genome wins; labels of later ones are added)."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        if (doc.get("args") or {}).get("dataset") != "cifar10":
            continue
        for row in _rows(doc, space, path.stem):
            budget = parse_budget(row["budget"])
            off = abs(row["macs_ratio"] / budget.value - 1) if budget.relative else 1.0
            if budget.metric != "macs" or off > AT_BUDGET or len(row["per_seed"]) < 2:
                continue
            key = json.dumps([row["budget"], list(row["widths"]),
                              sorted(row.get("removed_blocks") or [])])
            if key in out:
                if row["label"] not in out[key]["labels"]:
                    out[key]["labels"].append(row["label"])
                continue
            out[key] = {"budget": row["budget"], "labels": [row["label"]],
                        "widths": list(row["widths"]),
                        "removed_blocks": sorted(row.get("removed_blocks") or []),
                        "per_seed": list(row["per_seed"]), "macs_ratio": row["macs_ratio"],
                        "params_ratio": row["params_ratio"]}
    return sorted(out.values(), key=lambda g: (-parse_budget(g["budget"]).value, g["labels"][0]))


def _rows(doc: dict[str, Any], space: str, source: str) -> list[dict[str, Any]]:
    """A results doc's rows of `space` as (budget, label, widths, ...): genome_quality's
    flat rows, or search_quality's rows per budget (the searched genome labelled by file)."""
    out = []
    for sp in doc.get("spaces", []):
        if sp.get("space") != space:
            continue
        for row in sp.get("rows", []):  # genome_quality
            out.append({**row, "label": row["method"]})
        for b in sp.get("budgets", []):  # search_quality
            for name, row in b["rows"].items():
                variant = source.removeprefix("search_quality_cifar10").lstrip("_")
                label = f"searched ({variant or 'shipped'})" if name == "searched" else name
                out.append({**row, "budget": b["budget"], "label": label})
    return out


# -- the scores ----------------------------------------------------------------------------
def build(entry: str, space: str, budget: str, args: argparse.Namespace, splits: Any) -> Any:
    """The evaluator `entry` as the shipped search builds it (`evaluators_for` on
    SearchConfig's defaults, or a variant's settings: the screen's for a registry evaluator,
    else that stage's), its base or supernet trained once in `work_dir`."""
    name, options = args.variants[entry]
    screen = name in EVALUATORS and name != "proxy"
    config = SearchConfig.from_flat(budget=budget, out=str(work_dir(entry, space, args)),
                                    space=space, dataset="cifar10", data_root=args.data_root,
                                    evaluator=name if screen else "proxy", seed=0, **options)
    return evaluators_for(config, splits)[SCREEN if screen else name]


def score(name: str, space: str, genomes: list[dict[str, Any]], args: argparse.Namespace,
          splits: Any, ledger: Ledger) -> list[dict[str, Any]]:
    """Each genome's score by `name` (a leg each, recorded)."""
    bound = bind(space, "cifar10")
    built: dict[str, Any] = {}
    out = []
    for g in genomes:
        key = f"{space}/{name}/{g['budget']}/{g['widths']}/{g['removed_blocks']}"
        rec = ledger.get(key)
        if rec is None:
            check_time(args)
            if g["budget"] not in built:
                built[g["budget"]] = build(name, space, g["budget"], args, splits)
            genome = row_genome(g, bound, {"label": g["labels"][0]})
            seed_everything(0)
            start = time.perf_counter()
            value = float(built[g["budget"]](genome, None))
            rec = ledger.put(key, {"score": value, "wall_s": time.perf_counter() - start,
                                   "cpu": machine()["cpu"]})
            log(f"[{space}] {name} {g['budget']} {g['labels'][0]}: {value:.4f} "
                f"({rec['wall_s']:.1f}s)")
        out.append(rec)
    return out


# -- statistics ----------------------------------------------------------------------------
def stratified_tau(x: list[float], y: list[float], strata: list[str]) -> float | None:
    """Kendall tau-a over the pairs within each stratum: (concordant − discordant) / pairs."""
    s = n = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if strata[i] != strata[j]:
                continue
            n += 1
            s += int(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]))
    return s / n if n else None


def tau_ci(x: list[float], y: list[float], strata: list[str], reps: int
           ) -> list[float | None]:
    """95% bootstrap interval of the stratified τ, genomes resampled within each stratum."""
    rng = np.random.default_rng(0)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    taus = []
    for _ in range(reps):
        idx = [int(i) for g in groups.values() for i in rng.choice(g, len(g))]
        t = stratified_tau([x[i] for i in idx], [y[i] for i in idx], [strata[i] for i in idx])
        if t is not None:
            taus.append(t)
    if not taus:
        return [None, None]
    return [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))]


def ceiling(genomes: list[dict[str, Any]]) -> float | None:
    """How well the ground truth ranks itself: seed 0 against the mean of the other seeds."""
    have = [g for g in genomes if len(g["per_seed"]) >= 2]
    return stratified_tau([g["per_seed"][0] for g in have],
                          [statistics.fmean(g["per_seed"][1:]) for g in have],
                          [g["budget"] for g in have])


def fidelity(scores: list[float], genomes: list[dict[str, Any]], reps: int) -> dict[str, Any]:
    truth = [statistics.fmean(g["per_seed"]) for g in genomes]
    strata = [g["budget"] for g in genomes]
    per_budget = {}
    for b in dict.fromkeys(strata):
        idx = [i for i, s in enumerate(strata) if s == b]
        best_score = max(idx, key=lambda i: scores[i])
        best_truth = max(idx, key=lambda i: truth[i])
        per_budget[b] = {
            "genomes": len(idx),
            "kendall_tau": stratified_tau([scores[i] for i in idx], [truth[i] for i in idx],
                                          [b] * len(idx)),
            "top1_hit": best_score == best_truth,
            "picked": genomes[best_score]["labels"][0],
            "picked_acc": truth[best_score], "best": genomes[best_truth]["labels"][0],
            "best_acc": truth[best_truth]}
    return {"kendall_tau": stratified_tau(scores, truth, strata),
            "tau_ci": tau_ci(scores, truth, strata, reps), "per_budget": per_budget}


# -- the run -------------------------------------------------------------------------------
def one_off(name: str, space: str, args: argparse.Namespace, ledger: Ledger
            ) -> dict[str, Any] | None:
    """The evaluator's one-off training (its base's or supernet's), read in --work and kept in
    the ledger: the work folder does not outlive a session, the committed ledger does."""
    key, base = f"{space}/{name}/setup", args.variants[name][0]
    if ledger.get(key) is None and base in EVALUATORS:
        setup = EVALUATORS[base].setup_cost(work_dir(name, space, args))
        if setup is not None:  # None: nothing trained once (proxy, naswot)
            ledger.put(key, {**setup, "cpu": machine()["cpu"]})
    return ledger.get(key)


def run_space(space: str, args: argparse.Namespace, splits: Any, ledger: Ledger
              ) -> dict[str, Any]:
    genomes = recorded_genomes([Path(p) for p in args.recorded.split(",")], space)
    if len(genomes) < 2:
        raise SystemExit(f"{space}: fewer than two recorded CIFAR-10 genomes in {args.recorded}")
    log(f"[{space}] {len(genomes)} recorded genomes: " + ", ".join(
        f"{g['budget']} {g['labels'][0]}" for g in genomes))
    results, incomplete = {}, []
    for name in args.evaluators.split(","):
        try:
            rows = score(name, space, genomes, args, splits, ledger)
        except OutOfTime:
            incomplete.append(name)
            continue
        setup = one_off(name, space, args, ledger)
        results[name] = {**fidelity([r["score"] for r in rows], genomes, args.bootstrap),
                         "scores": [r["score"] for r in rows],
                         "per_genome_s": statistics.fmean(r["wall_s"] for r in rows),
                         "setup": setup}
    return {"space": space, "genomes": genomes, "ceiling": ceiling(genomes),
            "evaluators": results, "incomplete": incomplete}


def _cell(t: float | None) -> str:
    return "–" if t is None else f"{t:.2f}"


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = ["# Evaluator fidelity on the recorded CIFAR-10 genomes", "",
             "Ground truth: every genome the CIFAR-10 benches trained from scratch at its "
             "budget's MACs (the `cifar` preset: 20 epochs, the full training split, test-time "
             "flip; mean test accuracy over its recorded seeds, from "
             + ", ".join(f"`{Path(p).name}`" for p in doc["recorded"]) + "). Scores: the "
             "search's evaluators as the shipped `archsearch search` builds them (its "
             "defaults, its 10% validation split). τ: Kendall tau-a over the pairs within a "
             "budget, 95% bootstrap interval (genomes resampled within each budget). "
             "Ceiling: the same τ between seed 0 and the mean of the other seeds of the "
             "ground truth itself.", "",
             f"Machine: {m['cpu']}, {m['threads']} threads, {m['precision']}, torch "
             f"{m['torch']}.", ""]
    for sp in doc["spaces"]:
        budgets = list(dict.fromkeys(g["budget"] for g in sp["genomes"]))
        lines += [f"## {sp['space']}: {len(sp['genomes'])} genomes ("
                  + ", ".join(f"{sum(g['budget'] == b for g in sp['genomes'])} at {b}"
                              for b in budgets)
                  + f"); ceiling τ {_cell(sp['ceiling'])}", "",
                  "| evaluator | τ [95% CI] | " + " | ".join(f"τ at {b}" for b in budgets)
                  + " | top-1 hits | s/genome | one-off s |",
                  "|---|---|" + "---|" * len(budgets) + "---|---|---|"]
        for name, r in sp["evaluators"].items():
            lo, hi = r["tau_ci"]
            hits = sum(pb["top1_hit"] for pb in r["per_budget"].values())
            setup = (r.get("setup") or {}).get("train_s")
            lines.append(f"| {name} | {_cell(r['kendall_tau'])} [{_cell(lo)}, {_cell(hi)}] | "
                         + " | ".join(_cell(r["per_budget"][b]["kendall_tau"])
                                      for b in budgets)
                         + f" | {hits}/{len(budgets)} | {r['per_genome_s']:.1f} | "
                         + (f"{setup:.0f}" if setup else "–") + " |")
        names = list(sp["evaluators"])
        lines += ["", "| budget | genome | test acc (%) | per seed | params | "
                  + " | ".join(names) + " | widths |",
                  "|---|---|---|---|---|" + "---|" * len(names) + "---|"]
        for i, g in enumerate(sp["genomes"]):
            mean = statistics.fmean(g["per_seed"])
            std = statistics.stdev(g["per_seed"])
            lines.append(f"| {g['budget']} | {' = '.join(g['labels'])} | {100 * mean:.2f} ± "
                         f"{100 * std:.2f} | " + ", ".join(f"{100 * x:.2f}" for x in g["per_seed"])
                         + f" | {g['params_ratio']:.1%} | "
                         + " | ".join(f"{sp['evaluators'][n]['scores'][i]:.4f}" for n in names)
                         + f" | {g['widths']} |")
        if sp["incomplete"]:
            lines += ["", f"Not yet scored (--budget-minutes spent): {', '.join(sp['incomplete'])}"
                      f". Run the same command again: it resumes from `{doc['ledger']}`."]
    lines += ["", f"Command: `{doc['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = bind(args.spaces.split(",")[0], "cifar10").info
    splits = load_data(info, root=args.data_root, val_fraction=VAL_FRACTION, split_seed=0)
    ledger = Ledger(Path(args.work), Path(args.ledger))
    spaces = [run_space(space, args, splits, ledger) for space in args.spaces.split(",")]
    doc = {"recorded": [p for p in args.recorded.split(",") if Path(p).is_file()],
           "machine": machine(), "spaces": spaces, "ledger": args.ledger,
           "command": command_line("evaluator_recorded.py", argv)}
    return publish(Path(args.out), doc, markdown)


if __name__ == "__main__":
    sys.exit(main())

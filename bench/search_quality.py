"""Search quality: is the best searched genome better than the uniform and slimming genomes?

    python bench/search_quality.py [--spaces vgg11,resnet20] [--budget 25%FLOPs] [--seeds 3]

On Fashion-MNIST, for each space, at one budget:
1. uniform genome: every group scaled by one ratio (`BoundSpace.uniform`);
2. slimming genome: a base trained with network slimming's L1 on BatchNorm scales, pruned
   by a global threshold at the budget (`archsearch.pruners`, as `archsearch discover`);
3. searched genome: `archsearch.search` guided by the slimming genome (short proxies,
   validation split carved from the training set), the best trial by validation accuracy;
then each genome is trained from scratch with the same final schedule on `--seeds` seeds
and scored on the test set. All three cost the budget (within 1%), so scratch-E and
scratch-B coincide. Writes bench/results/search_quality.{json,md}: mean ± std per row.
Sizes are CPU-sized (18 minutes on a quiet 2-core CPU, about 25 with other work on it);
the defaults are the ones reported. `--merge` reruns some spaces and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.pruners import get_pruner
from archsearch.search import ProxyEvaluator, Search, SearchConfig, best_trials, open_run
from archsearch.search._results import trial_genome as _trial_genome
from archsearch.train import TrainConfig, evaluate, train

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="vgg11,resnet20")
    p.add_argument("--budget", default="25%FLOPs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--slim-epochs", type=int, default=3, help="sparsity training epochs")
    p.add_argument("--slim-subset", type=int, default=3000, help="its training images")
    p.add_argument("--sparsity", type=float, default=1e-4, help="slimming's L1 strength")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--proxy-epochs", type=int, default=2)
    p.add_argument("--proxy-subset", type=int, default=2000)
    p.add_argument("--proxy-val", type=int, default=500)
    p.add_argument("--final-epochs", type=int, default=6)
    p.add_argument("--final-subset", type=int, default=5000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "search_quality"))
    p.add_argument("--merge", action="store_true",
                   help="keep the other spaces' results already in OUT.json")
    return p.parse_args(argv)


def slimming_genome(space: str, budget: str, splits, args) -> tuple:
    """Sparsity-train the base (L1 on BN scales), derive the genome at the budget."""
    bound = bind(space, "fashion-mnist")
    pruner = get_pruner("slimming", bound, sparsity=args.sparsity)
    model = pruner.prepare(bound.base_model())
    cfg = TrainConfig(schedule="base", epochs=args.slim_epochs, train_subset=args.slim_subset,
                      eval_split="val", batch_size=128, seed=0)
    start = time.perf_counter()
    train(model, splits, cfg, regularizer=pruner.regularize, progress=False)
    genome = pruner.genome(pruner.restore(model), budget)
    return genome, time.perf_counter() - start


def searched_genome(space: str, args, guide_path: Path, splits, run_dir: Path) -> tuple:
    """The best genome of a guided search (validation accuracy after proxy training)."""
    config = SearchConfig(budget=args.budget, out=str(run_dir), space=space,
                          dataset="fashion-mnist", guides=[str(guide_path)],
                          trials=args.trials, proxy_epochs=args.proxy_epochs,
                          proxy_subset=args.proxy_subset, proxy_val=args.proxy_val, seed=0,
                          evaluator="proxy", final=0)
    evaluator = ProxyEvaluator("fashion-mnist", config.schedule(), splits=splits)
    start = time.perf_counter()
    Search(config, evaluator, worker_index=0).work()
    run = open_run(run_dir)
    best = best_trials(run, 1)[0]
    trials = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value,
               "kind": t.user_attrs.get("baseline") or ("guide" if "guide" in t.user_attrs
                                                        else "search")}
              for t in run.trials()]
    return _trial_genome(best), best.value, trials, time.perf_counter() - start


def retrain(genome, splits, seed: int, args) -> dict:
    """Train from scratch with the final schedule; test accuracy at the end."""
    model = bind(genome.space, genome.dataset).build(genome)
    cfg = TrainConfig(schedule="scratch-e", epochs=args.final_epochs,
                      train_subset=args.final_subset, eval_split="val", batch_size=128,
                      seed=seed)
    start = time.perf_counter()
    result = train(model, splits, cfg, progress=False)
    test = evaluate(result.model, splits.test, splits)
    return {"seed": seed, "test_acc": test, "val_acc": result.val_acc,
            "wall_s": time.perf_counter() - start}


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def run_space(space: str, args, splits, small_val, work: Path) -> dict:
    bound = bind(space, "fashion-mnist")
    budget = parse_budget(args.budget)
    log(f"[{space}] slimming genome: sparsity training {args.slim_epochs} epochs")
    slim, slim_s = slimming_genome(space, args.budget, small_val, args)
    slim_path = slim.save(work / f"{space}-slimming.json")
    log(f"[{space}] guided search: {args.trials} trials")
    searched, val, trials, search_s = searched_genome(space, args, slim_path, splits,
                                                      work / f"{space}-search")
    genomes = {"uniform": bound.uniform(budget), "slimming": slim, "searched": searched}
    rows = []
    for method, genome in genomes.items():
        runs = []
        for seed in range(args.seeds):
            runs.append(retrain(genome, small_val, seed, args))
            log(f"[{space}] {method} seed {seed}: test {runs[-1]['test_acc']:.4f} "
                f"({runs[-1]['wall_s']:.0f}s)")
        m, s = mean_std([r["test_acc"] for r in runs])
        rows.append({"space": space, "method": method, "test_acc_mean": m, "test_acc_std": s,
                     "runs": runs, "macs_ratio": genome.cost["macs_ratio"],
                     "params_ratio": genome.cost["params_ratio"], "macs": genome.cost["macs"],
                     "params": genome.cost["params"], "genome": genome.to_dict()})
    return {"space": space, "rows": rows, "slimming_s": slim_s, "search_s": search_s,
            "search_best_val": val, "search_trials": trials}


def markdown(doc: dict) -> str:
    a = doc["args"]
    lines = [
        "# Search quality: searched vs uniform vs slimming genome (Fashion-MNIST)", "",
        f"Budget {a['budget']} (FLOPs = multiply-accumulates). Each genome trained from "
        f"scratch {a['final_epochs']} epochs on {a['final_subset']} training images, "
        f"{a['seeds']} seeds; top-1 on the full test set (10,000 images), mean ± std.",
        f"Search: {a['trials']} trials guided by the slimming genome, proxies of "
        f"{a['proxy_epochs']} epochs on {a['proxy_subset']} images, scored on {a['proxy_val']} "
        f"validation images (carved from the training set), Hyperband early stopping. "
        f"Slimming: {a['slim_epochs']} epochs on {a['slim_subset']} images, L1 "
        f"{a['sparsity']:g}.", "",
        "| space | genome | test acc (mean ± std) | MACs | params | per seed |",
        "|---|---|---|---|---|---|"]
    for space in doc["spaces"]:
        for r in space["rows"]:
            seeds = ", ".join(f"{x['test_acc']:.4f}" for x in r["runs"])
            lines.append(f"| {r['space']} | {r['method']} | {r['test_acc_mean']:.2%} ± "
                         f"{r['test_acc_std']:.2%} | {r['macs_ratio']:.1%} | "
                         f"{r['params_ratio']:.1%} | {seeds} |")
    lines += ["", "Time: " + "; ".join(
        f"{s['space']}: slimming {s['slimming_s']:.0f}s, search {s['search_s']:.0f}s "
        f"(best proxy val acc {s['search_best_val']:.2%})" for s in doc["spaces"]) +
        f"; total {doc['wall_s'] / 60:.1f} min on {doc['machine']}.",
        "", f"Command: `{doc['command']}`" + (
            f" (after `{doc['merged_from']['command']}`, whose other spaces are kept)"
            if doc.get("merged_from") else ""), ""]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    splits = load_data("fashion-mnist", val_fraction=0.1, split_seed=0)
    # final and slimming runs report on a small validation subset (the test set is scored
    # once at the end); the search scores its own --proxy-val subset
    small_val = replace(splits, val=splits.val.subset(1000, seed=0))
    doc = {"args": vars(args), "spaces": [], "command": "python " + " ".join(sys.argv),
           "machine": f"{platform.processor() or platform.machine()}, torch "
                      f"{torch.__version__}, {args.threads} threads"}
    spaces = [s.strip() for s in args.spaces.split(",")]
    if args.merge and Path(args.out + ".json").is_file():
        old = json.loads(Path(args.out + ".json").read_text())
        doc["spaces"] = [s for s in old["spaces"] if s["space"] not in spaces]
        doc["merged_from"] = {"command": old["command"], "wall_s": old.get("wall_s")}
        start -= old.get("wall_s") or 0.0
    with tempfile.TemporaryDirectory(prefix="search_quality-") as tmp:
        for space in spaces:
            doc["spaces"].append(run_space(space, args, splits, small_val, Path(tmp)))
            doc["wall_s"] = time.perf_counter() - start
            atomic_write_json(Path(args.out + ".json"), doc)  # partial results survive
    doc["wall_s"] = time.perf_counter() - start
    atomic_write_json(Path(args.out + ".json"), doc)
    atomic_write_text(Path(args.out + ".md"), markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

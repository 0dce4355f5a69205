"""Accuracy parity of the engine's fast path: one genome, 3 seeds, fast vs plain, a short
real run on Fashion-MNIST (the fast path must train the same networks: mean test accuracy
within one standard deviation). Every run is a fresh process (the fast path tunes the
process's allocator); seeds alternate between the paths.

    python bench/throughput_parity.py                     # resnet20 12.5%FLOPs, ~10 min
    python bench/throughput_parity.py --subset 3000 --epochs 2
    python bench/throughput_parity.py --dataset cifar10 --data-root ../shared/data/cifar10-jpeg \
        --subset 5000 --epochs 4 --out bench/results/throughput_parity_cifar10
Writes bench/results/throughput_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.train import TrainConfig, seed_everything, train

RESULTS = Path(__file__).parent / "results"
PATHS = ("plain", "fast")


def run_leg(spec: dict) -> dict:
    torch.set_num_threads(1)
    bound = bind(spec["space"], spec["dataset"])
    genome = bound.uniform(parse_budget(spec["budget"]))
    splits = load_data(bound.info, spec.get("data_root"), val_fraction=0.0)
    cfg = TrainConfig(schedule="scratch-e", epochs=spec["epochs"], batch_size=128, lr=0.1,
                      seed=spec["seed"], train_subset=spec["subset"],
                      fast=spec["path"] == "fast")
    seed_everything(spec["seed"])
    start = time.process_time()
    result = train(bound.build(genome), splits, cfg, progress=False)
    return {"test_acc": result.test_acc, "cpu_s": time.process_time() - start,
            "wall_s": result.wall_s, "precision": result.precision,
            "images_per_s": [r["images_per_s"] for r in result.history]}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--leg"]:
        print(json.dumps(run_leg(json.loads(argv[1]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="resnet20")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-root", help="the dataset's folder (CIFAR-10: the JPEG copy)")
    ap.add_argument("--budget", default="12.5%FLOPs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--subset", type=int, default=6000)
    ap.add_argument("--out", default=str(RESULTS / "throughput_parity"))
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {p: [] for p in PATHS}
    for seed in range(args.seeds):
        for path in (PATHS if seed % 2 == 0 else PATHS[::-1]):
            spec = {**{k: v for k, v in vars(args).items() if k != "out"}, "seed": seed,
                    "path": path}
            out = subprocess.run([sys.executable, __file__, "--leg", json.dumps(spec)],
                                 check=True, capture_output=True, text=True)
            runs[path].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"seed {seed} {path}: test {runs[path][-1]['test_acc']:.4f} "
                  f"({runs[path][-1]['cpu_s']:.0f} CPU s)", flush=True)
    stats = {p: {"mean": statistics.mean(r["test_acc"] for r in runs[p]),
                 "std": statistics.stdev(r["test_acc"] for r in runs[p]),
                 "cpu_s": statistics.median(r["cpu_s"] for r in runs[p])} for p in PATHS}
    gap = abs(stats["fast"]["mean"] - stats["plain"]["mean"])
    within = gap <= max(stats["plain"]["std"], stats["fast"]["std"])
    doc = {"command": "python bench/throughput_parity.py " + " ".join(argv),
           "args": vars(args), "runs": runs, "stats": stats, "gap": gap,
           "within_one_std": within, "torch": torch.__version__}
    atomic_write_json(Path(args.out + ".json"), doc)
    lines = [f"# Fast path accuracy parity: {args.space} {args.budget} (uniform), "
             f"{args.dataset}", "",
             f"Command: `{doc['command']}`. {args.epochs} epochs scratch-e (lr 0.1, step "
             f"x0.1 at 50%/75%) on {args.subset} training images, batch 128, 1 thread, "
             f"{runs['fast'][0]['precision']}, evaluated on the full test split; every run a "
             "fresh process, seeds alternating which path goes first; the machine is shared "
             "with other jobs.", "",
             "| path | test acc per seed | mean ± std | CPU s per run (median) |",
             "|---|---|---|---|"]
    for p in PATHS:
        accs = ", ".join(f"{r['test_acc']:.4f}" for r in runs[p])
        lines.append(f"| {p} | {accs} | {stats[p]['mean']:.4f} ± {stats[p]['std']:.4f} | "
                     f"{stats[p]['cpu_s']:.1f} |")
    lines += ["", f"|mean difference| = {gap:.4f}: "
              f"{'within' if within else 'NOT within'} one standard deviation."]
    atomic_write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

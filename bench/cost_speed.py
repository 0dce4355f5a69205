"""Analytic cost counter vs thop: genomes costed per second, measured side by side.

    python bench/cost_speed.py [--space resnet110] [--genomes 2000] [--thop-genomes 10]

Writes bench/results/cost_speed.json and .md. Both counters cost the same random genomes
(random widths, ~30% of blocks removed), and the analytic result is checked equal to thop's.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from archsearch.build import bind
from archsearch.cost import thop_cost
from archsearch.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def random_genomes(bound, n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        widths = {g: rng.randint(1, bound.graph.groups[g].size) for g in bound.graph.prunable}
        blocks = {b: rng.random() > 0.3 for b in bound.graph.blocks}
        out.append((widths, blocks))
    return out


def time_analytic(bound, genomes) -> float:
    start = time.perf_counter()
    for widths, blocks in genomes:
        bound.costs.cost(widths, blocks)
    return len(genomes) / (time.perf_counter() - start)


def time_thop(bound, genomes) -> tuple[float, float]:
    """Build each genome and profile it with thop (what the analytic counter replaces).

    Returns genomes/s for build + profile, and for the thop profile alone."""
    start, profiling = time.perf_counter(), 0.0
    for widths, blocks in genomes:
        genome = bound.genome(widths, blocks)
        model = bound.build(genome)
        t0 = time.perf_counter()
        ref = thop_cost(model, bound.info.input_shape)
        profiling += time.perf_counter() - t0
        assert (ref.macs, ref.params) == (genome.cost["macs"], genome.cost["params"])
    return len(genomes) / (time.perf_counter() - start), len(genomes) / profiling


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="resnet110")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--genomes", type=int, default=2000)
    p.add_argument("--thop-genomes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    bound = bind(args.space, args.dataset)
    bound.costs.cost({})  # build graph and cost model before timing
    genomes = random_genomes(bound, args.genomes, seed=0)
    analytic, thop_rates, profile_rates = [], [], []
    for r in range(args.repeats):  # interleaved, so machine noise hits both alike
        analytic.append(time_analytic(bound, genomes))
        both, alone = time_thop(bound, genomes[r * args.thop_genomes:
                                               (r + 1) * args.thop_genomes])
        thop_rates.append(both)
        profile_rates.append(alone)
    ratios = [a / t for a, t in zip(analytic, thop_rates, strict=True)]
    result = {
        "space": args.space, "dataset": args.dataset,
        "analytic_genomes_per_s": {"mean": statistics.mean(analytic),
                                   "std": statistics.pstdev(analytic)},
        "thop_genomes_per_s": {"mean": statistics.mean(thop_rates),
                               "std": statistics.pstdev(thop_rates)},
        "thop_profile_only_genomes_per_s": {"mean": statistics.mean(profile_rates),
                                            "std": statistics.pstdev(profile_rates)},
        "speedup": {"mean": statistics.mean(ratios), "std": statistics.pstdev(ratios)},
        "repeats": args.repeats, "genomes": args.genomes, "thop_genomes": args.thop_genomes,
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine(), "threads": 1},
        "command": "python bench/cost_speed.py " + " ".join(argv or sys.argv[1:]),
    }
    atomic_write_json(RESULTS / "cost_speed.json", result)
    a, t, s = result["analytic_genomes_per_s"], result["thop_genomes_per_s"], result["speedup"]
    po = result["thop_profile_only_genomes_per_s"]
    atomic_write_text(RESULTS / "cost_speed.md", (
        f"# Cost counter speed ({args.space}, {args.dataset} shapes)\n\n"
        f"| counter | genomes/s (mean ± std over {args.repeats} interleaved runs) |\n"
        f"|---|---|\n| analytic (CostModel) | {a['mean']:.0f} ± {a['std']:.0f} |\n"
        f"| thop (build + profile) | {t['mean']:.2f} ± {t['std']:.2f} |\n"
        f"| thop (profile only, model pre-built) | {po['mean']:.2f} ± {po['std']:.2f} |\n\n"
        f"Speed-up over build + thop: **{s['mean']:.0f}× ± {s['std']:.0f}**. "
        "Analytic results were checked equal to thop on every thop-timed genome.\n\n"
        f"Command: `{result['command']}`\n"))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

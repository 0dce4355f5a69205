"""Fidelity of the latency model: predicted (the per-layer table) vs measured latency.

For every shipped CIFAR-style space at cifar10's shapes: the latency table is measured
(its build time recorded), then random genomes (random per-stage width ratios, random
removed blocks, fitted by `fit_to_budget` to a random latency budget of 15-70% of the
base's) and the uniform genomes at 50/25/12.5% of the MACs and of the latency are built
and timed: 30 single forwards after a warm-up, the same thread count as the table. Reported
per space: the median and worst absolute error of the prediction against the measured
latency (the fastest forward, the statistic the table is built from, and the median
forward), and how often a genome fitted to a latency budget measures within 10% of it.
Pricing speed is measured side by side: genomes priced per second in MACs and in latency,
and `fit_to_budget` fits per second in both.

    PYTHONPATH=. python3 bench/latency_model.py [--genomes 50] [--spaces resnet20,vgg11]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

from archsearch.budget import BudgetError, fit_to_budget, parse_budget
from archsearch.build import bind
from archsearch.latency import (
    LatencyModel,
    LatencySettings,
    calibration_genomes,
    on_device,
    time_samples,
)

SPACES = ("resnet20", "resnet56", "resnet110", "preresnet164", "vgg11", "vgg11-half", "vgg16",
          "vgg19")
FEWER = {"preresnet164": 25, "resnet110": 30}  # the slowest to build and time, stated
OUT = Path(__file__).parent / "results"
CLOCKS = {"thread": time.thread_time, "wall": time.perf_counter}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def measure_all(bound, genomes, settings: LatencySettings, passes: int = 3,
                repeats: int = 10) -> list[tuple[float, float]]:
    """(fastest, median) milliseconds of single forwards of each genome's model: `passes`
    round-robin passes over all genomes (a busy spell of the machine hits every genome
    alike), `repeats` forwards after a warm-up each."""
    models = [bound.build(g).eval() for g in genomes]
    x = torch.randn(settings.batch, *bound.info.input_shape)
    samples: list[list[float]] = [[] for _ in models]
    with on_device(settings) as sync, torch.inference_mode():
        for _ in range(passes):
            for model, out in zip(models, samples, strict=True):
                out += time_samples(lambda m=model: m(x), settings.clock, sync, repeats, 0.0)
    return [(min(s), median(s)) for s in samples]


def random_genomes(bound, settings, count: int, rng: random.Random):
    """Random stage ratios and removed blocks, fitted to random latency budgets."""
    stages = bound.graph.stages()
    low = floor_share(bound, settings)
    out = []
    while len(out) < count:
        ratio = {s: rng.uniform(0.25, 1.0) for s in set(stages.values())}
        shape = {g: ratio[s] for g, s in stages.items()}
        blocks = {b: rng.random() > 0.2 for b in bound.graph.blocks}
        share = rng.uniform(max(0.15, 1.15 * low), 0.7)
        budget = parse_budget(f"{100 * share:.2f}%latency", settings)
        try:
            widths = fit_to_budget(shape, budget, bound, blocks)
        except BudgetError:
            continue  # too few blocks kept for this budget
        out.append(("random", budget, bound.genome(widths, blocks)))
    return out


def floor_share(bound, settings) -> float:
    """The narrowest genome's predicted latency as a share of the base's."""
    from archsearch.latency import narrowest

    return bound.cost_at(narrowest(bound), None, "latency", settings) / bound.base_in(
        "latency", settings)


def uniform_genomes(bound, settings):
    """Uniform at 50/25/12.5% of the MACs, and of the latency where it can be met."""
    out = []
    for share in ("50", "25", "12.5"):
        for metric in ("FLOPs", "latency"):
            budget = parse_budget(f"{share}%{metric}", settings)
            try:
                out.append((f"uniform {share}%{metric}", budget, bound.uniform(budget)))
            except BudgetError:
                continue  # below the narrowest genome's latency (stated in floor_share)
    return out


def pricing_speed(bound, settings) -> dict[str, float]:
    """Genomes priced per second (random widths) and fits per second, MACs vs latency."""
    rng = np.random.default_rng(0)
    costs = bound.costs
    base = costs.widths_vector({})
    vectors = [np.maximum(1, np.round(base * rng.uniform(0.2, 1.0, base.shape))) for _ in
               range(2000)]
    active = costs.active({})
    speeds = {}
    for metric in ("macs", "latency"):
        pricer = bound.pricer(metric, settings)
        start = time.perf_counter()
        for v in vectors:
            pricer.vector(v, active)
        speeds[f"{metric}_priced_per_s"] = round(len(vectors) / (time.perf_counter() - start))
    shapes = [{g: float(rng.uniform(0.3, 1.0)) for g in bound.graph.prunable} for _ in range(20)]
    share = max(40.0, 120 * floor_share(bound, settings))  # a latency budget it can meet
    for text in (f"{share:.1f}%FLOPs", f"{share:.1f}%latency"):
        budget = parse_budget(text, settings)
        start = time.perf_counter()
        for shape in shapes:
            fit_to_budget(shape, budget, bound)
        speeds[f"{budget.metric}_fits_per_s"] = round(len(shapes) / (time.perf_counter() - start),
                                                      1)
    return speeds


def unweighted_residual(bound, table):
    """The table's residual as the version-1 tables fitted it (least squares of the absolute
    gap, milliseconds), from the same calibration measurements: the side-by-side of the
    relative fit the table now uses. Returns genome -> predicted milliseconds."""
    model = LatencyModel(bound, table)
    costs = bound.costs
    measured = {r["genome"]: r["measured_ms"] for r in table["calibration"]}
    feats, gaps = [], []
    for label, genome in calibration_genomes(bound):
        w, active = costs.widths_vector(genome.widths), costs.active(genome.blocks)
        feats.append(model.features(w, active))
        gaps.append(measured[label] - float(active @ model.layers(w)))
    coef = np.linalg.lstsq(np.array(feats), np.array(gaps), rcond=None)[0]

    def predict(genome) -> float:
        w, active = costs.widths_vector(genome.widths), costs.active(genome.blocks)
        return float(active @ model.layers(w)) + max(0.0, float(coef @ model.features(w, active)))
    return predict


def bench_space(name: str, count: int, settings: LatencySettings) -> dict:
    bound = bind(name, "cifar10")
    start = time.perf_counter()
    pricer = bound.pricer("latency", settings)
    build = time.perf_counter() - start
    rng = random.Random(len(name))
    rows = []
    cases = uniform_genomes(bound, settings) + random_genomes(bound, settings, count, rng)
    # the base is timed in the same round-robin: a ratio to it cancels what changed on the
    # machine between the table's build and these measurements (a table-wide bias)
    times = measure_all(bound, [bound.base_genome()] + [g for _, _, g in cases], settings)
    base_ms, times = times[0], times[1:]
    base_pred = bound.base_in("latency", settings)
    absolute = unweighted_residual(bound, pricer.table)
    for (kind, budget, genome), (fastest, mid) in zip(cases, times, strict=True):
        predicted = genome.cost["latency_ms"]
        target = budget.target(bound) if budget.metric == "latency" else None
        rows.append({"kind": kind, "budget": str(budget), "predicted_ms": predicted,
                     "measured_min_ms": round(fastest, 4), "measured_median_ms": round(mid, 4),
                     "target_ms": target, "macs_ratio": genome.cost["macs_ratio"],
                     "predicted_unweighted_ms": round(absolute(genome), 5),
                     "predicted_share": predicted / base_pred,
                     "measured_min_share": fastest / base_ms[0],
                     "measured_median_share": mid / base_ms[1]})
    return {"space": name, "table_build_s": round(build, 1), "table_s_recorded":
            pricer.build_s, "base_predicted_ms": round(bound.base_in("latency", settings), 4),
            "base_measured_min_ms": round(base_ms[0], 4),
            "entries": len(pricer.table["entries"]), "genomes": len(rows),
            "narrowest_share": round(floor_share(bound, settings), 3),
            "random_genomes": count, **summary(rows), **pricing_speed(bound, settings),
            "rows": rows}


def summary(rows: list[dict]) -> dict:
    out = {}
    for stat in ("min", "median"):
        err = [abs(r["predicted_ms"] - r[f"measured_{stat}_ms"]) / r[f"measured_{stat}_ms"]
               for r in rows]
        fitted = [r for r in rows if r["target_ms"]]
        within = [abs(r[f"measured_{stat}_ms"] - r["target_ms"]) <= 0.1 * r["target_ms"]
                  for r in fitted]
        signed = [(r["predicted_ms"] - r[f"measured_{stat}_ms"]) / r[f"measured_{stat}_ms"]
                  for r in rows]
        shares = [abs(r["predicted_share"] - r[f"measured_{stat}_share"])
                  / r[f"measured_{stat}_share"] for r in rows]
        out[f"{stat}_share_err_median"] = round(median(shares), 4)
        out[f"{stat}_unweighted_err_median"] = round(median(
            abs(r["predicted_unweighted_ms"] - r[f"measured_{stat}_ms"])
            / r[f"measured_{stat}_ms"] for r in rows), 4)
        out[f"{stat}_signed_err_median"] = round(median(signed), 4)
        out[f"{stat}_abs_err_median"] = round(median(err), 4)
        out[f"{stat}_abs_err_worst"] = round(max(err), 4)
        out[f"{stat}_within_10pct_of_budget"] = round(sum(within) / len(within), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--genomes", type=int, default=50)
    parser.add_argument("--spaces", default=",".join(SPACES))
    parser.add_argument("--out", default=str(OUT / "latency_model"))
    parser.add_argument("--clock", choices=CLOCKS, default="thread",
                        help="thread: the thread's CPU time (one thread: the wall time less "
                             "the time other processes held the core); wall: perf_counter")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = tempfile.mkdtemp(prefix="latency-bench-")  # every table measured in this run
    settings = LatencySettings(threads=1, batch=1, cache=cache, clock=CLOCKS[args.clock])
    start, load = time.time(), os.getloadavg()
    results = []
    for name in args.spaces.split(","):
        count = min(args.genomes, FEWER.get(name, args.genomes))
        results.append(bench_space(name, count, settings))
        write(args, results, start, load)
        r = results[-1]
        print(f"{name}: table {r['table_build_s']} s, err median {r['min_abs_err_median']:.1%} "
              f"worst {r['min_abs_err_worst']:.1%} (median-forward {r['median_abs_err_median']:.1%}"
              f"), within 10% {r['min_within_10pct_of_budget']:.0%}, share err "
              f"{r['min_share_err_median']:.1%}, bias "
              f"{r['min_signed_err_median']:+.1%}", file=sys.stderr, flush=True)


def write(args, results: list[dict], start: float, load: tuple[float, ...]) -> None:
    """The results so far (after every space: a long run keeps what it measured)."""
    doc = {"cpu": cpu_model(), "threads": 1, "batch": 1, "precision": "float32",
           "clock": args.clock,
           "torch": torch.__version__, "load_before": load, "load_after": os.getloadavg(),
           "wall_s": round(time.time() - start), "spaces": results}
    Path(args.out + ".json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(doc))


CLOCK_NOTE = {
    "thread": "every time here (table and measurements) is the timing thread's CPU time "
              "(`time.thread_time`): with one thread it is the forward's wall time less the "
              "time other processes held the core, so the numbers describe this CPU unloaded. "
              "Err: against the fastest of 30 forwards (the statistic the table is built "
              "from) and against their median.",
    "wall": "wall-clock times (`perf_counter`): the median forward measures the other "
            "processes as much as the network, so the fastest of 30 forwards (the statistic "
            "the table is built from) is the reference; both are given.",
}


def markdown(doc: dict) -> str:
    lines = [
        "# Latency model: predicted vs measured", "",
        f"CPU {doc['cpu']}, {doc['threads']} thread, batch {doc['batch']}, {doc['precision']}, "
        f"torch {doc['torch']}; `PYTHONPATH=. python3 bench/latency_model.py` "
        f"--clock {doc['clock']} ({doc['wall_s']} s). The machine was shared (load average "
        f"{doc['load_before'][0]:.1f} before, {doc['load_after'][0]:.1f} after, on 2 cores): "
        + CLOCK_NOTE[doc["clock"]], "",
        "| space | genomes | table build (s) | base (ms) | narrowest | err median | bias | "
        "err worst | within 10% "
        "of budget | err median (median fwd) | within 10% (median fwd) | share err median | "
        "err median (absolute fit) | "
        "priced/s MACs | priced/s latency | fits/s MACs | fits/s latency |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["spaces"]:
        lines.append(
            f"| {r['space']} | {r['genomes']} | {r['table_build_s']} | "
            f"{r['base_predicted_ms']:.2f} | {r['narrowest_share']:.0%} | "
            f"{r['min_abs_err_median']:.1%} | {r['min_signed_err_median']:+.1%} | "
            f"{r['min_abs_err_worst']:.1%} | {r['min_within_10pct_of_budget']:.0%} | "
            f"{r['median_abs_err_median']:.1%} | {r['median_within_10pct_of_budget']:.0%} | "
            f"{r['min_share_err_median']:.1%} | {r['min_unweighted_err_median']:.1%} | "
            f"{r['macs_priced_per_s']} | "
            f"{r['latency_priced_per_s']} | {r['macs_fits_per_s']} | {r['latency_fits_per_s']} |")
    lines += ["", "Genomes per space: the 6 uniform ones (50/25/12.5% of the MACs and of the "
              "latency, where the narrowest genome is below them) and the random ones (50, "
              "fewer where the table says so: "
              + ", ".join(f"{k} {v}" for k, v in FEWER.items())
              + "). Narrowest: the narrowest genome's predicted latency as a share of the "
              "base's (no latency budget below it can be met). Error: |predicted - measured| "
              "/ measured; bias: the median of the signed error (negative: the table predicts "
              "faster than measured). Share err: the same error of the genome's latency as a "
              "share of the base's, the base timed in the same round-robin as the genomes, so "
              "a change of the machine's speed between the table's build and the measurements "
              "cancels (a small share error beside a large error says the misses are the "
              "machine's drift, not the model's sum). Err median (absolute fit): the same table "
              "and measurements, the residual fitted as version-1 tables did (least squares "
              "of the gap in milliseconds, not as a share of each network's time). Within "
              "10%: a genome fitted to a latency budget whose measured latency is within 10% "
              "of the budget. Every row is in "
              "latency_model.json.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

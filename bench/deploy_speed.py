"""Deployed speed of pruned networks: the measured speed-up against the MACs ratio.

    python bench/deploy_speed.py [--spaces resnet20,vgg11] [--repeats 7] [--warmup 1]

For each shipped CIFAR-style space at 50%, 25% and 12.5%FLOPs: the uniform genome, and the
slimming genome of a cheap sparse training (one epoch on 2000 Fashion-MNIST images; its
widths carried to CIFAR-10's 3×32×32 shapes, where every network is timed). Per space the
base and its six pruned networks are timed in turns (a, b, c, ..., a, b, c, ...: a change
in the machine's load falls on all alike), at batch 1 and 64, in eager torch and in
onnxruntime (CPU provider), one thread, fp32, median of --repeats runs after --warmup
rounds. Writes bench/results/deploy_speed.json and .md (after each space).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from archsearch.budget import parse_budget
from archsearch.build import BoundSpace, bind
from archsearch.deploy import time_models
from archsearch.genome import Genome
from archsearch.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
SPACES = ("resnet20", "resnet56", "resnet110", "preresnet164", "vgg11", "vgg11-half", "vgg16",
          "vgg19")
BUDGETS = ("50%FLOPs", "25%FLOPs", "12.5%FLOPs")
BATCHES = (1, 64)
RUNTIMES = ("torch", "onnxruntime")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def slimming_genomes(space: str, workdir: Path, epochs: int, subset: int) -> dict[str, Genome]:
    """One sparse training of the space on Fashion-MNIST, then slimming's genome at each
    budget (the global BN-γ threshold that meets it)."""
    from archsearch.pipeline import DiscoverConfig, derive, plan, train_base

    cfg = DiscoverConfig.from_preset("quick", method="slimming", budget=BUDGETS[0],
                                     space=space, dataset="fashion-mnist", epochs=epochs,
                                     subset=subset, out=str(workdir / space))
    p = plan(cfg)
    model, _ = train_base(p, p.run_dir, progress=False)
    return {b: derive(replace(p, budget=parse_budget(b)), model) for b in BUDGETS}


def at_cifar(bound: BoundSpace, genome: Genome) -> Genome:
    """The same widths and blocks, costed at CIFAR-10's shapes."""
    moved = Genome(genome.space, dict(genome.widths), dict(genome.blocks), bound.info.name,
                   {**genome.provenance, "carried_from": genome.dataset})
    bound.validate(moved)
    return bound.with_cost(moved)


def bench_space(space: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    bound = bind(space, "cifar10")
    start = time.perf_counter()
    genomes = {f"uniform {b}": bound.uniform(parse_budget(b)) for b in BUDGETS}
    slim = slimming_genomes(space, workdir, args.slim_epochs, args.slim_subset)
    genomes.update({f"slimming {b}": at_cifar(bound, g) for b, g in slim.items()})
    trained_s = time.perf_counter() - start
    models = {"base": bound.base_model(), **{n: bound.build(g) for n, g in genomes.items()}}
    start = time.perf_counter()
    timed = time_models(models, bound.info.input_shape, batches=BATCHES, threads=1,
                        runtimes=RUNTIMES, repeats=args.repeats, warmup=args.warmup)
    rows = []
    for name, genome in genomes.items():
        method, budget = name.split(" ")
        row: dict[str, Any] = {"genome": name, "method": method, "budget": budget,
                               "macs": genome.cost["macs"],
                               "macs_ratio": genome.cost["macs_ratio"],
                               "params_ratio": genome.cost["params_ratio"],
                               "removed_blocks": sorted(genome.removed_blocks())}
        for (runtime, batch), lat in timed.items():
            key = f"{runtime}_b{batch}"
            row[f"{key}_ms"] = lat[name].median_ms
            row[f"{key}_min_ms"] = lat[name].min_ms
            row[f"{key}_speedup"] = lat["base"].median_ms / lat[name].median_ms
            row[f"{key}_min_speedup"] = lat["base"].min_ms / lat[name].min_ms
        rows.append(row)
    base = {f"{rt}_b{b}_ms": lat["base"].median_ms for (rt, b), lat in timed.items()}
    return {"space": space, "dataset_shapes": "cifar10", "input_shape":
            list(bound.info.input_shape), "base_macs": bound.base_cost.macs, "base": base,
            "rows": rows, "slimming_train_s": trained_s,
            "timing_s": time.perf_counter() - start}


def summary(doc: dict[str, Any]) -> list[str]:
    """Median measured speed-up over the spaces, per method and budget, beside the ideal."""
    import statistics

    rows = [r for space in doc["spaces"] for r in space["rows"]]
    lines = [f"## Summary: median speed-up over {len(doc['spaces'])} space(s)", "",
             "| genome | ideal (median) | torch b1 | torch b64 | ort b1 | ort b64 |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["genome"] for r in rows):
        mine = [r for r in rows if r["genome"] == name]
        cells = [f"{statistics.median(r[f'{rt}_b{bs}_speedup'] for r in mine):.2f}×"
                 for rt in RUNTIMES for bs in BATCHES]
        ideal = statistics.median(1 / r["macs_ratio"] for r in mine)
        lines.append(f"| {name} | {ideal:.2f}× | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# Deployed speed: measured speed-up vs the MACs ratio",
        "",
        f"CPU: {m['cpu']}, **{m['threads']} thread** (torch.set_num_threads(1), onnxruntime "
        f"intra-op 1), fp32, batch 1 and 64, CIFAR-10 shapes (3×32×32). torch "
        f"{m['torch']}, onnxruntime {m['onnxruntime']}. Median of {doc['repeats']} runs after "
        f"{doc['warmup']} warm-up rounds, the base and the six pruned networks of a space "
        "timed in turns. Speed-up = base median / pruned median (in brackets: base fastest run / "
        "pruned fastest run); ideal = 1 / MACs ratio.",
        "",
        f"Slimming genomes: {doc['slimming']}. Load average (1 min) at start "
        f"{doc['load_start']:.1f}, at end {doc['load_end']:.1f} on {m['cores']} cores shared "
        "with other work: absolute times are noisy, ratios are taken side by side.",
        "",
    ]
    lines += summary(doc)
    for space in doc["spaces"]:
        b = space["base"]
        lines += [f"## {space['space']} (base {space['base_macs'] / 1e6:.1f} MMACs; base ms: "
                  + ", ".join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in b.items()) + ")",
                  "",
                  "| genome | MACs | ideal | torch b1 | torch b64 | ort b1 | ort b64 |",
                  "|---|---|---|---|---|---|---|"]
        for r in space["rows"]:
            cells = [f"{r[f'{rt}_b{bs}_speedup']:.2f}× ({r[f'{rt}_b{bs}_min_speedup']:.2f}×)"
                     for rt in RUNTIMES for bs in BATCHES]
            lines.append(f"| {r['genome']} | {r['macs_ratio']:.1%} | {1 / r['macs_ratio']:.2f}× "
                         f"| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"Command: `{doc['command']}` ({doc['wall_s'] / 60:.1f} min wall)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default=",".join(SPACES))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--slim-epochs", type=int, default=1)
    p.add_argument("--slim-subset", type=int, default=2000)
    p.add_argument("--out", default=str(RESULTS / "deploy_speed"))
    p.add_argument("--render", action="store_true",
                   help="only rewrite the .md from the .json of an earlier run")
    args = p.parse_args(argv)
    if args.render:
        doc = json.loads(Path(args.out + ".json").read_text(encoding="utf-8"))
        atomic_write_text(args.out + ".md", markdown(doc))
        return 0
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    import onnxruntime

    doc: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": 1,
                    "precision": "fp32", "python": sys.version.split()[0],
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "repeats": args.repeats, "warmup": args.warmup, "batches": list(BATCHES),
        "slimming": f"slimming (L1 on BN γ, quick preset's sparsity) trained "
                    f"{args.slim_epochs} epoch on {args.slim_subset} Fashion-MNIST images, "
                    "one genome per budget from that one model, widths carried to CIFAR-10 "
                    "shapes",
        "load_start": os.getloadavg()[0], "spaces": [],
        "command": "python bench/deploy_speed.py " + " ".join(argv or sys.argv[1:])}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for space in args.spaces.split(","):
            doc["spaces"].append(bench_space(space, args, Path(tmp)))
            doc["wall_s"], doc["load_end"] = time.perf_counter() - start, os.getloadavg()[0]
            atomic_write_json(args.out + ".json", doc)
            atomic_write_text(args.out + ".md", markdown(doc))
            print(f"{space}: done at {doc['wall_s']:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

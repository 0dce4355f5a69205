"""Which part of the fast path pays: plain, the fast path without its allocator setting
(folded BatchNorm + foreach SGD only), and the whole fast path, on small resnet20 genomes,
side by side (every leg a fresh process, the variants rotating their order per round;
images per CPU second, as throughput_cifar10.py measures them).

    python bench/throughput_ablation.py --rounds 2      # ~8 minutes
Writes bench/results/throughput_ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from throughput_cifar10 import cifar_genomes, leg_in_subprocess, machine

from archsearch.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results"
VARIANTS = {"plain": {"path": "plain"},
            "fast, no allocator": {"path": "fast", "allocator": False},
            "fast": {"path": "fast"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="resnet20")
    ap.add_argument("--budgets", default="12.5%FLOPs,6.25%FLOPs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=512)
    args = ap.parse_args()
    legs = [(b, g) for b, m, g in cifar_genomes(args.space)
            if m == "uniform" and b in args.budgets.split(",")]
    got: dict[str, dict[str, list[float]]] = {b: {v: [] for v in VARIANTS} for b, _ in legs}
    names = list(VARIANTS)
    for r in range(args.rounds):
        for i, (budget, genome) in enumerate(legs):
            shift = (r + i) % len(names)
            for name in names[shift:] + names[:shift]:
                spec = {"space": args.space, "genome": genome, "images": args.images,
                        "epochs": 1, "batch_size": 128, **VARIANTS[name]}
                rate = max(leg_in_subprocess(spec)["images_per_s"])
                got[budget][name].append(rate)
                print(f"round {r + 1} {budget} {name}: {rate:.0f} img/CPU-s", flush=True)
    doc = {"command": "python bench/throughput_ablation.py --rounds "
           f"{args.rounds} --images {args.images}", "args": vars(args), "samples": got,
           "machine": machine()}
    atomic_write_json(RESULTS / "throughput_ablation.json", doc)
    lines = [f"# Fast path ablation: {args.space}, uniform genomes", "",
             f"Command: `{doc['command']}`. 1 thread, batch 128, bf16, channels_last, random "
             "CIFAR-10-shaped uint8 images; images per CPU second (median over rounds), "
             "each leg a fresh process; the machine is shared (load average "
             f"{' '.join(doc['machine']['loadavg_at_end'])} at the end).", "",
             "| budget | " + " | ".join(names) + " | no-allocator / plain | fast / plain |",
             "|---|" + "---|" * (len(names) + 2)]
    for budget, rates in got.items():
        med = {n: statistics.median(v) for n, v in rates.items()}
        lines.append(f"| {budget} | " + " | ".join(f"{med[n]:.0f}" for n in names) +
                     f" | {med['fast, no allocator'] / med['plain']:.2f}× | "
                     f"{med['fast'] / med['plain']:.2f}× |")
    atomic_write_text(RESULTS / "throughput_ablation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

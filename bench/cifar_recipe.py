"""The CIFAR preset measured: does the full-width base reach its ceiling on this CPU?

    python bench/cifar_recipe.py [--spaces resnet20,vgg11-half] [--variants cifar]
                                 [--seeds 1] [--data-root ../shared/data/cifar10-jpeg]

Trains each space's full-width base from scratch on CIFAR-10 (the shared JPEG copy: the
full training split, tested on the full 10,000-image test set every epoch) with the `cifar`
preset of `archsearch.presets`, or a variant of it that drops one trick (`plain`: the
paper's step schedule and none of the tricks; `no-smoothing`, `no-flip`, `no-nesterov`,
`step-lr`), so each trick is measured against the preset. One process, one thread; every
leg is a resumable run folder under --runs, recorded in its ledger (legs.json), so a killed
invocation resumes where it stopped. Writes bench/results/cifar_recipe.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genome_quality import Ledger, log, machine  # noqa: E402

from archsearch.build import bind  # noqa: E402
from archsearch.data import load_data  # noqa: E402
from archsearch.io import atomic_write_json, atomic_write_text  # noqa: E402
from archsearch.presets import get_preset  # noqa: E402
from archsearch.train import TrainConfig, seed_everything, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
VARIANTS: dict[str, dict[str, Any]] = {
    "cifar": {},
    "plain": {"lr_schedule": "step", "nesterov": False, "label_smoothing": 0.0,
              "test_flip": False, "weight_decay": 1e-4},
    "no-smoothing": {"label_smoothing": 0.0},
    "no-flip": {"test_flip": False},
    "no-nesterov": {"nesterov": False},
    "step-lr": {"lr_schedule": "step"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", default="resnet20,vgg11-half")
    p.add_argument("--variants", default="cifar", help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    p.add_argument("--data-root", default=str(DEFAULT_ROOT))
    p.add_argument("--runs", default="runs/bench-cifar-recipe")
    p.add_argument("--out", default=str(RESULTS / "cifar_recipe"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--subset", type=int, default=None, help="training images (smoke runs)")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="the trainer's fast path (--no-fast: the plain one)")
    return p.parse_args(argv)


def leg(space: str, variant: str, seed: int, epochs: int, splits, args, root: Path
        ) -> dict[str, Any]:
    preset = get_preset("cifar")
    recipe = {**preset.train, **VARIANTS[variant]}
    bound = bind(space, "cifar10")
    seed_everything(seed)
    model = bound.build(bound.base_genome())
    cfg = TrainConfig(schedule="base", epochs=epochs, batch_size=preset.batch_size, seed=seed,
                      eval_split="test", train_subset=args.subset, fast=args.fast, **recipe)
    start = time.perf_counter()
    result = train(model, splits, cfg, genome=bound.base_genome(),
                   run_dir=root / f"{space}-{variant}-e{epochs}-s{seed}", resume=True,
                   progress=False)
    return {"space": space, "variant": variant, "seed": seed, "epochs": epochs,
            "recipe": recipe, "batch_size": preset.batch_size,
            "test_acc": result.history[-1]["eval_acc"],
            "curve": [round(r["eval_acc"], 4) for r in result.history],
            "images_per_s": statistics.median(r["images_per_s"] for r in result.history),
            "wall_s": time.perf_counter() - start}


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = ["# The CIFAR preset: full-width bases on CIFAR-10 (the shared JPEG copy)", "",
             f"Machine: {m['cpu']}, {m['threads']} thread(s), {m['precision']}, torch "
             f"{m['torch']}. The machine was shared with other work (wall times inflated).",
             "", "Command: `python bench/cifar_recipe.py " + " ".join(doc["argv"]) + "`", "",
             "| space | variant | seed | epochs | test acc | img/s | wall |",
             "|---|---|---|---|---|---|---|"]
    for r in doc["legs"]:
        lines.append(f"| {r['space']} | {r['variant']} | {r['seed']} | {r['epochs']} | "
                     f"{r['test_acc']:.2%} | {r['images_per_s']:.0f} | "
                     f"{r['wall_s'] / 60:.0f} min |")
    lines += ["", "Test accuracy per epoch:", ""]
    lines += [f"- {r['space']} {r['variant']} s{r['seed']}: "
              + ", ".join(f"{a:.3f}" for a in r["curve"]) for r in doc["legs"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.runs)
    ledger = Ledger(root)
    splits = load_data("cifar10", root=args.data_root, val_fraction=0.0)
    epochs = args.epochs or get_preset("cifar").epochs
    for space in args.spaces.split(","):
        for variant in args.variants.split(","):
            for seed in range(args.seeds):
                key = f"{space}/{variant}/e{epochs}/s{seed}"
                if ledger.get(key) is None:
                    log(f"{key}: training")
                    ledger.put(key, leg(space, variant, seed, epochs, splits, args, root))
                log(f"{key}: {ledger.get(key)['test_acc']:.4f}")
    out = Path(args.out)
    prev = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(
        ".json").exists() else {"legs": []}
    legs = {f"{r['space']}/{r['variant']}/e{r['epochs']}/s{r['seed']}": r for r in prev["legs"]}
    legs.update(ledger.legs)
    doc = {"argv": argv if argv is not None else sys.argv[1:], "machine": machine(),
           "legs": list(legs.values())}
    atomic_write_json(out.with_suffix(".json"), doc)
    atomic_write_text(out.with_suffix(".md"), markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

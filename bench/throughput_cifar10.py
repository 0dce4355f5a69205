"""Training throughput on CIFAR-10's shapes: small genomes, the engine's fast path against
its plain path (`TrainConfig.fast`), side by side; the CIFAR-10 section of throughput.py.

resnet20 and vgg11-half at 100%, 25%, 12.5% and 6.25% FLOPs (the uniform genome and
l1norm's stage-ratio genome at each budget). Every leg runs in a fresh process (the fast
path tunes the process's allocator, which would also speed a plain leg run after it),
1 thread, batch 128, a warm-up epoch, then `--epochs` epochs of `--images` images; the best
epoch's images/s is the leg's. Rounds alternate the order of the two paths; the speed-up is
the per-round ratio. Training work is 3 × forward MACs per image, set against the measured
1-thread matmul rate in the leg's precision.

Data: uint8 random images of CIFAR-10's shape and statistics in `ImageSet`/`Splits` (speed
does not depend on pixel values).

    python bench/throughput.py --section cifar10          # ~20 min of one core
    python bench/throughput_cifar10.py --rounds 1 --images 512
    python bench/throughput_cifar10.py --profile          # where a 12.5% step's time goes
Writes bench/results/throughput_cifar10.{json,md} and throughput_cifar10_profile.{json,md}.
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

from archsearch.build import bind
from archsearch.data import ImageSet, Splits
from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.train import TrainConfig, seed_everything, train

RESULTS = Path(__file__).parent / "results"
SPACES = ("resnet20", "vgg11-half")
BUDGETS = ("100%", "25%FLOPs", "12.5%FLOPs", "6.25%FLOPs")
PATHS = ("plain", "fast")
def stage_ratios(bound) -> list[float]:
    """The non-uniform genome's shape: stage widths falling linearly from 1 to 0.5 (wide
    early layers, narrow late ones), scaled together onto the budget (l1norm's
    `stage_ratios`; its genome does not depend on weights)."""
    n = len(set(bound.graph.stages().values()))
    return [1.0 - 0.5 * i / max(n - 1, 1) for i in range(n)]


def cifar_genomes(space: str) -> list[tuple[str, str, dict]]:
    """(budget, method, genome dict) for one space: the base, then uniform and l1norm with
    `stage_ratios` at each smaller budget."""
    from archsearch.budget import parse_budget
    from archsearch.pruners import get_pruner

    bound = bind(space, "cifar10")
    rows = [("100%", "base", bound.base_genome().to_dict())]
    pruner = get_pruner("l1norm", bound, stage_ratios=stage_ratios(bound))
    for budget in BUDGETS[1:]:
        rows.append((budget, "uniform", bound.uniform(parse_budget(budget)).to_dict()))
        rows.append((budget, "l1norm", pruner.genome(None, budget).to_dict()))
    return rows


def random_splits(bound, images: int) -> Splits:
    """uint8 random images of CIFAR-10's shape, CIFAR-10's statistics and augmentation:
    speed does not depend on pixel values."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, *bound.info.input_shape), dtype=torch.uint8,
                      generator=gen)
    y = torch.randint(0, bound.info.num_classes, (images,), generator=gen)
    train_set, tiny = ImageSet(x, y, "train"), ImageSet(x[:64], y[:64], "test")
    info = bound.info
    return Splits(info, train_set, tiny, tiny, info.mean, info.std, info.pad, info.flip)


def run_leg(spec: dict) -> dict:
    """One leg in this process: a warm-up epoch, then `epochs` epochs of `images` images;
    per measured epoch, images per second of this process's CPU time (the epoch's training
    and its 64-image evaluation: per core, and unmoved by other processes' time slices)
    and of wall time (the engine's own figure), and the page faults per step."""
    import resource

    from archsearch.genome import Genome

    torch.set_num_threads(1)
    if spec.get("allocator") is False:  # an ablation (throughput_ablation.py): the fast
        from archsearch.train import _fast  # path without its allocator setting

        _fast.tune_cpu_allocator = lambda: False
    bound = bind(spec["space"], "cifar10")
    genome = Genome.from_dict(spec["genome"])
    splits = random_splits(bound, spec["images"])
    cfg = TrainConfig(schedule="scratch-e", epochs=spec["epochs"], lr=0.1,
                      batch_size=spec["batch_size"], fast=spec["path"] == "fast",
                      train_subset=min(256, spec["images"]))
    seed_everything(0)
    train(bound.build(genome), splits, cfg, epochs=1, progress=False)  # warm-up
    cfg = TrainConfig(**{**cfg.to_dict(), "train_subset": None})
    seed_everything(0)
    model = bound.build(genome)
    marks = [time.process_time()]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    result = train(model, splits, cfg, progress=False,
                   on_epoch=lambda _: marks.append(time.process_time()))
    steps = spec["epochs"] * (spec["images"] // spec["batch_size"])
    return {"wall_images_per_s": [r["images_per_s"] for r in result.history],
            "images_per_s": [spec["images"] / (b - a)
                             for a, b in zip(marks, marks[1:], strict=False)],
            "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            / steps, "precision": result.precision}


def leg_in_subprocess(spec: dict, mode: str = "--leg") -> dict:
    """A leg in a fresh process: the fast path tunes the process's allocator, so the plain
    path is only measured as it runs when each runs alone."""
    out = subprocess.run([sys.executable, __file__, mode, json.dumps(spec)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rates(n: int = 512, reps: int = 20, rounds: int = 3) -> dict[str, float]:
    """Measured matmul multiply-accumulates per CPU second, 1 thread, fp32 and bf16
    (interleaved; median of `rounds`)."""
    torch.set_num_threads(1)
    got: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for key, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            a @ b
            start = time.process_time()
            for _ in range(reps):
                a @ b
            got[key].append(reps * n ** 3 / (time.process_time() - start))
    return {k: statistics.median(v) for k, v in got.items()}


def cifar_section(args: argparse.Namespace, write) -> dict:
    """Every leg, `args.rounds` times; `write(section)` after each round (a partial result
    survives a stopped run)."""
    spaces = args.models.split(",")
    legs = [(space, budget, method, genome) for space in spaces
            for budget, method, genome in cifar_genomes(space)]
    peaks = peak_rates()
    samples: dict[tuple[str, str, str], dict[str, list]] = {}
    section: dict = {}
    for r in range(args.rounds):
        for i, (space, budget, method, genome) in enumerate(legs):
            order = PATHS if (r + i) % 2 == 0 else PATHS[::-1]  # alternate who goes first
            for path in order:
                got = leg_in_subprocess({"space": space, "genome": genome, "path": path,
                                         "images": args.images, "epochs": args.epochs,
                                         "batch_size": args.batch_size})
                row = samples.setdefault((space, budget, method), {p: [] for p in PATHS})
                row[path].append(got)
                print(f"round {r + 1} {space} {budget} {method} {path}: "
                      f"{max(got['images_per_s']):.0f} img/s", flush=True)
        section = {"peaks_macs_per_s": peaks, "rounds_done": r + 1,
                   "rows": [summarise(leg, samples[leg[:3]], peaks) for leg in legs]}
        write(section)
    return section


def summarise(leg: tuple, got: dict[str, list], peaks: dict[str, float]) -> dict:
    space, budget, method, genome = leg
    macs = genome["cost"]["macs"]
    best = {p: [max(g["images_per_s"]) for g in got[p]] for p in PATHS}
    ratios = [f / p for f, p in zip(best["fast"], best["plain"], strict=True)]
    rate = {p: statistics.median(best[p]) for p in PATHS}
    precision = got["fast"][0]["precision"]
    peak = peaks["bf16" if precision == "bf16" else "fp32"]
    return {
        "space": space, "budget": budget, "method": method, "forward_macs": macs,
        "macs_ratio": genome["cost"]["macs_ratio"], "widths": genome["widths"],
        "precision": precision, "images_per_s": rate,
        "wall_images_per_s": {p: statistics.median(max(g["wall_images_per_s"])
                                                   for g in got[p]) for p in PATHS},
        "gmac_per_s": {p: rate[p] * 3 * macs / 1e9 for p in PATHS},
        "fraction_of_peak": {p: rate[p] * 3 * macs / peak for p in PATHS},
        "faults_per_step": {p: statistics.median(g["faults_per_step"] for g in got[p])
                            for p in PATHS},
        "speedup_median": statistics.median(ratios), "speedup_min": min(ratios),
        "speedup_max": max(ratios), "samples": best}


# ---- where the time goes ------------------------------------------------------------------

CATEGORIES = {  # the first match of an event's name, outermost event first
    "augmentation + batch gather": ("bench::augment",),
    "evaluation (64 images per epoch)": ("bench::evaluate",),
    "epoch bookkeeping (loss/accuracy tally)": ("bench::tally",),
    "convolution": ("aten::conv2d", "ConvolutionBackward"),
    "batchnorm": ("aten::batch_norm", "NativeBatchNormBackward", "_FoldedBatchNorm"),
    "activation (relu)": ("aten::relu", "ReluBackward", "aten::threshold_backward"),
    "optimizer (step, zero_grad)": ("Optimizer.",),
    "loss (cross-entropy)": ("aten::cross_entropy", "NllLoss", "LogSoftmax"),
    "other layers (residual add, pool, linear)": (
        "aten::add", "AddBackward", "aten::linear", "AddmmBackward", "aten::max_pool",
        "MaxPool", "aten::adaptive_avg_pool", "MeanBackward", "aten::mean",
        "AdaptiveAvgPool", "aten::flatten", "ViewBackward", "aten::view", "aten::pad",
        "ConstantPadNdBackward", "aten::cat", "CatBackward", "aten::mul", "MulBackward"),
}


def category(name: str) -> str | None:
    return next((c for c, keys in CATEGORIES.items() if any(name.startswith(k)
                                                              for k in keys)), None)


def attribute(events) -> dict[str, float]:
    """Seconds per category: an event of a category counts whole (its children included),
    the self time of events of none is framework overhead (dispatch, autograd engine,
    allocation, casts)."""
    totals: dict[str, float] = {}

    def walk(event) -> None:
        cat = category(event.name)
        if cat is not None:
            totals[cat] = totals.get(cat, 0.0) + event.cpu_time_total / 1e6
            return
        key = "framework overhead (dispatch, autograd, casts, other ops)"
        totals[key] = totals.get(key, 0.0) + event.self_cpu_time_total / 1e6
        for child in event.cpu_children:
            walk(child)

    for event in events:
        if event.cpu_parent is None:
            walk(event)
    return totals


def _labelled(fn, label: str):
    def wrapped(*a, **k):
        with torch.profiler.record_function(label):
            return fn(*a, **k)
    return wrapped


def profile_leg(spec: dict) -> dict:
    """One profiled epoch of `spec`'s genome (after a warm-up epoch), per category."""
    from archsearch.genome import Genome
    from archsearch.train import _device, _loop, _step

    torch.set_num_threads(1)
    _device.Augment.__call__ = _labelled(_device.Augment.__call__, "bench::augment")
    _loop._correct = _labelled(_loop._correct, "bench::evaluate")
    _step.Tally.add = _labelled(_step.Tally.add, "bench::tally")
    bound = bind(spec["space"], "cifar10")
    genome = Genome.from_dict(spec["genome"])
    splits = random_splits(bound, spec["images"])
    cfg = TrainConfig(schedule="scratch-e", epochs=1, lr=0.1, batch_size=spec["batch_size"],
                      fast=spec["path"] == "fast")
    seed_everything(0)
    train(bound.build(genome), splits, cfg, progress=False)
    model = bound.build(genome)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        result = train(model, splits, cfg, progress=False)
        wall = time.perf_counter() - start
    totals = attribute(prof.events())
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6, e.count)
                  for e in prof.key_averages()), key=lambda t: -t[1])[:15]
    return {"wall_s": wall, "images_per_s": result.history[-1]["images_per_s"],
            "categories_s": totals, "top_self_ops": ops}


def profile_section(args: argparse.Namespace) -> dict:
    from archsearch.budget import parse_budget

    bound = bind("resnet20", "cifar10")
    genome = bound.uniform(parse_budget("12.5%FLOPs")).to_dict()
    spec = {"space": "resnet20", "genome": genome, "images": args.images,
            "batch_size": args.batch_size}
    got = {p: leg_in_subprocess({**spec, "path": p}, "--profile-leg") for p in PATHS}
    return {"space": "resnet20", "budget": "12.5%FLOPs", "method": "uniform",
            "widths": genome["widths"], "images": args.images, "paths": got}


# ---- results ------------------------------------------------------------------------------

def machine() -> dict:
    from archsearch.train import cpu_has_fast_bf16

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"cpu": cpu, "cores": len(__import__("os").sched_getaffinity(0)), "threads": 1,
            "native_bf16": cpu_has_fast_bf16(), "torch": torch.__version__,
            "loadavg_at_end": load}


def speed_markdown(doc: dict) -> str:
    a, m, peaks = doc["args"], doc["machine"], doc["section"]["peaks_macs_per_s"]
    lines = ["# Training throughput on CIFAR-10 shapes: fast path vs plain path", "",
             f"Rounds done: {doc['section']['rounds_done']} of {a['rounds']}.", "",
             f"Command: `{doc['command']}`. {m['cpu']} ({m['cores']} cores, shared with other "
             f"jobs: load average {' '.join(m['loadavg_at_end'])} at the end), 1 thread per "
             f"leg, torch {m['torch']}, batch {a['batch_size']}, precision: the engine's "
             "`amp=auto` (bf16 autocast where the CPU has native bf16), channels_last. "
             "Every leg a fresh process; the two paths alternate within each round; a leg's "
             f"rate is its best of {a['epochs']} epochs of {a['images']} images after a warm-up "
             "epoch, in images per second of the process's CPU time (one core's work; the "
             "machine is contended, and wall time counts other jobs' time slices: the wall "
             "rates are in the JSON). Data: uint8 random images of CIFAR-10's shape "
             "(speed does not depend on pixel values). Non-uniform genome: l1norm with "
             "stage ratios falling linearly 1 → 0.5 (wide early stages), fitted to the budget.", "",
             "Measured 1-thread matmul rate (512², per CPU second): fp32 "
             f"{peaks['fp32'] / 1e9:.1f} GMAC/s, bf16 {peaks['bf16'] / 1e9:.1f} GMAC/s. "
             "GMAC/s = images/s × 3 × forward MACs (one core). Where the time goes: "
             "throughput_cifar10_profile.md; per-layer candidates: throughput_kernels.md; "
             "which piece pays: throughput_ablation.md.", "",
             "| space | budget | genome | plain img/CPU-s | fast img/CPU-s | speed-up median "
             "[min, max] | plain GMAC/s | fast GMAC/s | fast, of peak | page faults/step plain → "
             "fast |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["section"]["rows"]:
        ips, g, f = r["images_per_s"], r["gmac_per_s"], r["faults_per_step"]
        lines.append(
            f"| {r['space']} | {r['budget']} | {r['method']} | {ips['plain']:.0f} | "
            f"{ips['fast']:.0f} | {r['speedup_median']:.2f}× [{r['speedup_min']:.2f}, "
            f"{r['speedup_max']:.2f}] | {g['plain']:.1f} | {g['fast']:.1f} | "
            f"{r['fraction_of_peak']['fast']:.0%} | {f['plain']:.0f} → {f['fast']:.0f} |")
    return "\n".join(lines) + "\n"


def profile_markdown(doc: dict) -> str:
    prof = doc["profile"]
    paths = prof["paths"]
    cats = sorted({c for p in PATHS for c in paths[p]["categories_s"]},
                  key=lambda c: -paths["plain"]["categories_s"].get(c, 0.0))
    lines = [f"# Where a small genome's training step spends its time ({prof['space']} "
             f"{prof['budget']}, {prof['method']})", "",
             f"Command: `{doc['command']}`. One profiled epoch of {prof['images']} random "
             f"CIFAR-10-shaped images (after a warm-up epoch), batch {doc['args']['batch_size']}, "
             "1 thread, bf16 autocast, channels_last, torch.profiler (CPU); each path in its "
             "own process. An op of a category counts with everything it calls; framework "
             "overhead is the self time of everything else. Profiling adds overhead of its "
             "own. Seconds are wall time on a contended machine (load average "
             f"{' '.join(doc['machine']['loadavg_at_end'])} on {doc['machine']['cores']} cores "
             "at the end), and the two paths ran one after the other: compare shares within "
             "a path, and take the speed-up from throughput_cifar10.md, not from these "
             f"seconds. Widths: {prof['widths']}.", "",
             "| where | plain s | plain share | fast s | fast share |", "|---|---|---|---|---|"]
    tot = {p: sum(paths[p]["categories_s"].values()) for p in PATHS}
    for c in cats:
        v = {p: paths[p]["categories_s"].get(c, 0.0) for p in PATHS}
        lines.append(f"| {c} | {v['plain']:.3f} | {v['plain'] / tot['plain']:.0%} | "
                     f"{v['fast']:.3f} | {v['fast'] / tot['fast']:.0%} |")
    lines.append(f"| **total attributed** | {tot['plain']:.3f} | | {tot['fast']:.3f} | |")
    lines += ["", "images/s under the profiler: plain "
              f"{paths['plain']['images_per_s']:.0f}, fast {paths['fast']['images_per_s']:.0f}.",
              "", "Top self-time ops, plain path: " + ", ".join(
                  f"{k} {s:.3f}s ×{n}" for k, s, n in paths["plain"]["top_self_ops"][:10]),
              "", "Top self-time ops, fast path: " + ", ".join(
                  f"{k} {s:.3f}s ×{n}" for k, s, n in paths["fast"]["top_self_ops"][:10])]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(SPACES))
    ap.add_argument("--images", type=int, default=1024, help="images per measured epoch")
    ap.add_argument("--epochs", type=int, default=2, help="measured epochs per leg")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--profile", action="store_true",
                    help="profile resnet20 12.5%%FLOPs instead of the speed table")
    ap.add_argument("--out", default=str(RESULTS / "throughput_cifar10"))
    return ap


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--leg"], ["--profile-leg"]):  # a leg, in its own process
        leg = run_leg if argv[0] == "--leg" else profile_leg
        print(json.dumps(leg(json.loads(argv[1]))))
        return
    args = parser().parse_args(argv)
    doc = {"command": "python bench/throughput_cifar10.py " + " ".join(argv),
           "args": vars(args)}
    if args.profile:
        doc["profile"] = profile_section(args)
        write(doc, args.out + "_profile", profile_markdown)
        return

    def round_done(section: dict) -> None:
        doc["section"] = section
        write(doc, args.out, speed_markdown)

    cifar_section(args, round_done)


def write(doc: dict, out: str, markdown) -> None:
    doc["machine"] = machine()
    text = markdown(doc)
    atomic_write_json(Path(out + ".json"), doc)
    atomic_write_text(Path(out + ".md"), text)
    print(text, flush=True)

if __name__ == "__main__":
    main()

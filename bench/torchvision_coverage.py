"""Every torchvision classification builder through archsearch: trace, prune, build, cost.

    python bench/torchvision_coverage.py [--models resnet18,vit_b_16] [--resume]
                                         [--redo swin_t,maxvit_t] [--threads 1]

For each builder of `torchvision.models.list_models(module=torchvision.models)` (random
init, 10 classes, at a small input size): trace the channel graph, fit a 50%FLOPs genome
and draw a random one, shrink both, run forward + backward (train mode) and forward (eval
mode), and check the analytic cost against thop for the base and both genomes. Writes
bench/results/torchvision_coverage.json and .md (the coverage table in docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from archsearch.budget import parse_budget
from archsearch.build import BoundSpace
from archsearch.cost import thop_cost
from archsearch.data import DatasetInfo
from archsearch.spaces import Space

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZE = 32
# the smallest input each builder accepts (or, for maxvit, the one its partitions need)
SIZES = {"alexnet": 64, "inception_v3": 75, "squeezenet1_0": 48, "squeezenet1_1": 48,
         "maxvit_t": 224, "vit_h_14": 28}


def input_size(name: str) -> int:
    return SIZES.get(name, DEFAULT_SIZE)


def bound_space(name: str, size: int | None = None, family: str = "torchvision") -> BoundSpace:
    size = size or input_size(name)
    space = Space(name, family, {"name": name}, divisor=1, min_width=1,
                  default_dataset="synthetic")
    return BoundSpace(space, DatasetInfo(f"synthetic{size}", 3, size, 10))


def random_genome(bound: BoundSpace, seed: int):
    rng = random.Random(seed)
    widths = {}
    for g in bound.graph.prunable:
        unit, size = bound.graph.groups[g].unit, bound.graph.groups[g].size
        widths[g] = unit * rng.randint(max(1, size // unit // 4), size // unit)
    blocks = {b: rng.random() > 0.3 for b in bound.graph.blocks}
    return bound.genome(widths, blocks)


def coverage(bound: BoundSpace) -> tuple[float, int]:
    """(share of the output channels of convs, linears and attention that lie in prunable
    groups, removable blocks). Counted in features: a channel the shuffle widened counts as
    the features it covers."""
    graph = bound.graph
    seen, total, prunable = set(), 0, 0
    for call in graph.calls:
        if call.kind not in ("conv", "linear", "attn_in", "attn_out") or call.depthwise or (
                call.module, call.kind) in seen:
            continue
        seen.add((call.module, call.kind))
        for seg in call.outputs:
            total += seg.size * seg.repeat
            prunable += seg.size * seg.repeat * graph.groups[seg.group].prunable
    return (prunable / total if total else 0.0), len(graph.blocks)


def heads(bound: BoundSpace, genome) -> tuple[int, int]:
    """Attention heads of the base, and those the genome keeps."""
    graph, total, kept = bound.graph, 0, 0
    for call in graph.calls:
        group = graph.groups[call.outputs[0].group] if call.kind == "attn_in" else None
        if group is not None and group.prunable:
            total += group.size // group.unit
            kept += genome.widths.get(group.name, group.size) // group.unit
    return total, kept


def exercise(bound: BoundSpace, genome) -> None:
    """Build, forward + backward in train mode, forward in eval mode, cost == thop."""
    model = bound.build(genome)
    x = torch.randn(2, *bound.info.input_shape)
    model.train()
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    if hasattr(out, "logits"):
        out = out.logits
    out.float().sum().backward()
    model.eval()
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor) or out.shape != (2, bound.info.num_classes):
        raise AssertionError(f"eval output is {type(out).__name__}, not logits")
    ref = thop_cost(model, bound.info.input_shape)
    got = (genome.cost["macs"], genome.cost["params"])
    if got != (ref.macs, ref.params):
        raise AssertionError(f"cost {got} != thop {(ref.macs, ref.params)}")


def check(name: str, family: str = "torchvision", size: int | None = None) -> dict:
    """One builder end to end; the stage it reached and the first line of what failed."""
    row: dict = {"model": name, "size": size or input_size(name), "ok": False}
    stage, start = "build", time.perf_counter()
    try:
        bound = bound_space(name, row["size"], family)
        stage = "trace"
        row["share"], row["blocks"] = coverage(bound)
        row["groups"] = len(bound.graph.prunable)
        stage = "base cost"
        ref = thop_cost(bound.base_model(), bound.info.input_shape)
        base = bound.base_cost
        row["macs"], row["params"] = base.macs, base.params
        if (base.macs, base.params) != (ref.macs, ref.params):
            raise AssertionError(f"base cost {(base.macs, base.params)} != thop "
                                 f"{(ref.macs, ref.params)}")
        stage = "50% genome"
        half = bound.uniform(parse_budget("50%FLOPs"))
        row["heads"], row["heads_50"] = heads(bound, half)
        exercise(bound, half)
        stage = "random genome"
        exercise(bound, random_genome(bound, seed=len(name)))
        row["ok"] = True
    except Exception as exc:  # a survey: record every failure and go on
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        row["error"] = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:200]
        row["where"] = traceback.extract_tb(exc.__traceback__)[-1].name
    row["stage"] = "done" if row["ok"] else stage
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def release_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the OS (glibc's
    `malloc_trim`): what stays resident after it is memory something still holds."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the resident size keeps the free pages
        pass


def rss_mb() -> tuple[float, float]:
    """This process's resident memory now and its peak so far, in MB (a survey runs every
    builder in one process: what one builder leaves alive shows as growth here)."""
    import os
    import resource

    with open("/proc/self/statm") as fh:
        now = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return round(now), round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def markdown(rows: list[dict], what: str = "torchvision builders") -> str:
    ok = [r for r in rows if r["ok"]]
    half = [r for r in ok if r.get("share", 0) >= 0.5]
    lines = [f"{len(ok)} of {len(rows)} {what} work end to end; "
             f"{len(half)} of {len(rows)} have at least 50% of their channels prunable.", ""]
    peaks = [r["peak_rss_mb"] for r in rows if "peak_rss_mb" in r]
    if peaks:
        held = max(r["rss_mb"] for r in rows if "rss_mb" in r)
        lines += [f"Memory: every builder is checked in one process; its peak resident "
                  f"memory was {max(peaks) / 1024:.1f} GB (the largest over the invocations "
                  f"that checked these rows: the largest builder's own check), and after a "
                  f"builder, garbage collected and free pages returned, at most "
                  f"{held / 1024:.1f} GB stayed resident (per builder in the JSON's "
                  f"`rss_mb`).", ""]
    lines += [
             "| model | input | prunable channels | removable blocks | status |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        share = f"{r['share']:.0%}" if "share" in r else "-"
        status = "ok" if r["ok"] else f"fails at {r['stage']}: {r.get('error', '')}"
        lines.append(f"| {r['model']} | {r['size']} | {share} | {r.get('blocks', '-')} | "
                     f"{status.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def survey_args(description: str, default_out: Path, argv: list[str] | None
                ) -> argparse.Namespace:
    """The flags every coverage survey takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", help="comma-separated builders (default: all)")
    p.add_argument("--out", default=str(default_out), help="output path without extension")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in OUT.json and check only the other builders")
    p.add_argument("--redo", default="",
                   help="with --resume: builders checked again even if OUT.json has them")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def survey(names: list[str], args: argparse.Namespace, check_one: Callable[[str], dict],
           what: str, header: str = "") -> list[dict]:
    """`check_one` over `names` (rows kept from OUT.json with --resume), written as OUT.json
    after every builder (a cut-short run keeps its rows) and OUT.md at the end."""
    from archsearch.io import atomic_write_json, atomic_write_text

    torch.set_num_threads(args.threads)
    out = Path(args.out + ".json")
    done = {r["model"]: r for r in json.loads(out.read_text())} if args.resume and \
        out.exists() else {}
    for name in filter(None, args.redo.split(",")):
        done.pop(name, None)
    by_model = dict(done)  # rows kept from OUT.json stay in it, checked here or not
    for name in names:
        if name in by_model:
            continue
        torch.manual_seed(0)
        row = by_model[name] = check_one(name)
        release_memory()
        row["rss_mb"], row["peak_rss_mb"] = rss_mb()
        print(f"{name:22s} {row['stage']:14s} {row.get('share', 0):5.0%} "
              f"{row['seconds']:6.1f}s {row.get('error', '')}", flush=True)
        atomic_write_json(out, list(by_model.values()))
    rows = sorted(by_model.values(), key=lambda r: r["model"])
    atomic_write_json(out, rows)
    atomic_write_text(Path(args.out + ".md"), header + markdown(rows, what))
    print(markdown(rows, what).splitlines()[0])
    return rows


def main(argv: list[str] | None = None) -> int:
    import torchvision

    args = survey_args(__doc__.splitlines()[0], RESULTS / "torchvision_coverage", argv)
    names = args.models.split(",") if args.models else torchvision.models.list_models(
        module=torchvision.models)
    survey(names, args, check, "torchvision builders")
    return 0


if __name__ == "__main__":
    sys.exit(main())

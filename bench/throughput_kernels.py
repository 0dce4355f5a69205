"""The fast path's candidates per layer, measured side by side: BatchNorm (torch's kernel
vs the folded one) and convolution (bf16 vs fp32, channels_last vs NCHW) at the widths and
sizes of small CIFAR genomes; forward + backward, batch 128, 1 thread, CPU time,
interleaved rounds, median. The allocator is tuned as the fast path tunes it (for both).

    python bench/throughput_kernels.py        # ~3 minutes
Writes bench/results/throughput_kernels.{json,md}.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.train import tune_cpu_allocator
from archsearch.train._fastbn import NARROW, folded_batch_norm

RESULTS = Path(__file__).parent / "results"
SHAPES = [(6, 32), (11, 16), (14, 16), (16, 32), (22, 8), (32, 16), (64, 8)]


def cpu_ms(fn, reps: int = 4) -> float:
    start = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - start) / reps * 1e3


def interleaved(fns: dict, rounds: int = 5) -> dict[str, float]:
    for fn in fns.values():
        fn()
    got: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            got[key].append(cpu_ms(fn))
    return {k: statistics.median(v) for k, v in got.items()}


def batchnorm_row(c: int, h: int) -> dict[str, float]:
    x = torch.randn(128, c, h, h).to(torch.bfloat16).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    bn, g = nn.BatchNorm2d(c), torch.randn_like(x)
    return interleaved({"torch": lambda: bn(x).backward(g),
                        "folded": lambda: folded_batch_norm(bn, x).backward(g)})


def conv_row(c: int, h: int) -> dict[str, float]:
    fns = {}
    for dtype in (torch.bfloat16, torch.float32):
        for layout in ("channels_last", "nchw"):
            conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            x = torch.randn(128, c, h, h, dtype=dtype)
            if layout == "channels_last":
                conv = conv.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()

            def run(conv=conv, x=x, bf16=dtype is torch.bfloat16):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = conv(x)
                y.backward(torch.ones_like(y))
            fns[f"{'bf16' if dtype is torch.bfloat16 else 'fp32'} {layout}"] = run
    return interleaved(fns)


def optimizer_row() -> dict[str, float]:
    """One SGD step (momentum, weight decay) over a 12.5% resnet20's parameters: the
    per-tensor loop against the multi-tensor (foreach) form."""
    from archsearch.budget import parse_budget
    from archsearch.build import bind

    bound = bind("resnet20", "cifar10")
    fns = {}
    for foreach in (False, True):
        model = bound.build(bound.uniform(parse_budget("12.5%FLOPs")))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4,
                              foreach=foreach)
        fns["foreach" if foreach else "loop"] = opt.step
    return interleaved(fns, rounds=9)


def main() -> None:
    torch.set_num_threads(1)
    tune_cpu_allocator()
    rows = [{"channels": c, "size": h, "batchnorm_ms": batchnorm_row(c, h),
             "conv3x3_ms": conv_row(c, h)} for c, h in SHAPES]
    load = Path("/proc/loadavg").read_text().split()[:3]
    sgd = optimizer_row()
    doc = {"command": "python bench/throughput_kernels.py", "torch": torch.__version__,
           "loadavg_at_end": load, "narrow": NARROW, "rows": rows, "sgd_step_ms": sgd}
    atomic_write_json(RESULTS / "throughput_kernels.json", doc)
    conv_keys = list(rows[0]["conv3x3_ms"])
    lines = ["# Per-layer candidates of the fast path: BatchNorm and conv at small widths", "",
             "Command: `python bench/throughput_kernels.py`. Forward + backward of one layer, "
             f"batch 128, 1 thread, torch {torch.__version__}, ms of CPU time (median of 5 "
             "interleaved rounds); the machine is shared (load average "
             f"{' '.join(load)} at the end). BatchNorm input bf16 channels_last (what the "
             "engine's conv hands it under autocast). The engine folds BatchNorm below "
             f"{NARROW} channels and keeps bf16 channels_last convs throughout.", "",
             "| channels | size | BN torch | BN folded | " + " | ".join(
                 f"conv {k}" for k in conv_keys) + " |",
             "|---|---|---|---|" + "---|" * len(conv_keys)]
    for r in rows:
        bn, cv = r["batchnorm_ms"], r["conv3x3_ms"]
        lines.append(f"| {r['channels']} | {r['size']}² | {bn['torch']:.2f} | "
                     f"{bn['folded']:.2f} | " + " | ".join(f"{cv[k]:.2f}" for k in conv_keys)
                     + " |")
    lines += ["", "One SGD step (momentum, weight decay) over a 12.5%FLOPs resnet20's "
              f"parameters: per-tensor loop {sgd['loop']:.3f} ms, foreach "
              f"{sgd['foreach']:.3f} ms of CPU time."]
    atomic_write_text(RESULTS / "throughput_kernels.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Wall-clock latency of a network on this machine's CPU, in torch and in onnxruntime: the
median of repeated runs after warm-up runs, at a stated number of threads.

Nothing here prints; the CLI and bench/deploy_speed.py lay the numbers out.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from archsearch.errors import ArchsearchError

RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class Latency:
    """One network at one batch size: median, min and max of `runs` timed calls (ms)."""

    runtime: str
    batch: int
    threads: int
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int


@dataclass(frozen=True)
class SpeedRow:
    """The pruned network against the base at one runtime and batch size."""

    runtime: str
    batch: int
    base: Latency
    pruned: Latency

    @property
    def speedup(self) -> float:
        return self.base.median_ms / self.pruned.median_ms

    def to_dict(self) -> dict[str, object]:
        return {"runtime": self.runtime, "batch": self.batch, "threads": self.base.threads,
                "base_ms": self.base.median_ms, "pruned_ms": self.pruned.median_ms,
                "speedup": self.speedup, "base": asdict(self.base),
                "pruned": asdict(self.pruned)}


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to `threads` for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_calls(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ArchsearchError(f"timing needs repeats >= 1 and warmup >= 0, but got "
                              f"repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: Sequence[Callable[[], object]], repeats: int, warmup: int
                     ) -> list[list[float]]:
    """Seconds of `repeats` calls of each of `fns`, taken in turns (a, b, a, b, ...) so that a
    change in the machine's load falls on all of them alike, after `warmup` rounds."""
    if repeats < 1 or warmup < 0:
        raise ArchsearchError(f"timing needs repeats >= 1 and warmup >= 0, but got "
                              f"repeats={repeats}, warmup={warmup}")
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(warmup + repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                bucket.append(time.perf_counter() - start)
    return times


def _latency(runtime: str, batch: int, threads: int, times: list[float], warmup: int
             ) -> Latency:
    ms = [t * 1e3 for t in times]
    return Latency(runtime, batch, threads, statistics.median(ms), min(ms), max(ms), len(ms),
                   warmup)


def _inputs(input_shape: Sequence[int], batch: int) -> torch.Tensor:
    return torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))


def torch_caller(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One eager forward pass of `model` (eval mode, inference_mode, fp32) on `x`."""
    model = model.eval()

    def call() -> object:
        with torch.inference_mode():
            return model(x)
    return call


def onnx_caller(onnx_model: bytes, x: torch.Tensor, threads: int) -> Callable[[], object]:
    """One onnxruntime run (CPU provider, `threads` intra-op threads, sequential) on `x`."""
    from archsearch.deploy._export import INPUT_NAME, OUTPUT_NAME, onnx_session

    session = onnx_session(onnx_model, threads)
    feed = {INPUT_NAME: x.numpy()}
    return lambda: session.run([OUTPUT_NAME], feed)


def torch_latency(model: nn.Module, input_shape: Sequence[int], batch: int, *, threads: int,
                  repeats: int = 10, warmup: int = 3) -> Latency:
    """Eager torch on the CPU, eval mode, under inference_mode, fp32."""
    call = torch_caller(model, _inputs(input_shape, batch))
    with torch_threads(threads):
        times = time_calls(call, repeats, warmup)
    return _latency("torch", batch, threads, times, warmup)


def onnx_latency(onnx_model: bytes, input_shape: Sequence[int], batch: int, *, threads: int,
                 repeats: int = 10, warmup: int = 3) -> Latency:
    """onnxruntime's CPU provider, `threads` intra-op threads, sequential execution."""
    call = onnx_caller(onnx_model, _inputs(input_shape, batch), threads)
    return _latency("onnxruntime", batch, threads, time_calls(call, repeats, warmup), warmup)


def onnx_available() -> bool:
    """Whether onnxruntime timing can run (onnx, onnxscript and onnxruntime import)."""
    from archsearch.deploy._export import FORMATS, _importable

    return all(_importable(name) for name in FORMATS["onnx"][1])


def time_models(models: Mapping[str, nn.Module], input_shape: Sequence[int], *,
                batches: Sequence[int] = (1, 64), threads: int | None = None,
                runtimes: Sequence[str] = RUNTIMES, repeats: int = 10, warmup: int = 3
                ) -> dict[tuple[str, int], dict[str, Latency]]:
    """The latency of every model per (runtime, batch size), the models timed in turns
    (`threads`: torch's current setting when None; onnxruntime gets as many)."""
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        raise ArchsearchError(f"unknown runtime(s) {sorted(unknown)}: {', '.join(RUNTIMES)}")
    if any(b < 1 for b in batches):
        raise ArchsearchError(f"batch sizes must be >= 1, but got {list(batches)}")
    threads = threads if threads is not None else torch.get_num_threads()
    if threads < 1:
        raise ArchsearchError(f"threads must be >= 1, but got {threads}")
    shape, names = tuple(input_shape), list(models)
    out: dict[tuple[str, int], dict[str, Latency]] = {}
    with torch_threads(threads):
        for runtime in runtimes:
            callers = _callers(runtime, [models[n] for n in names], shape, batches, threads)
            for b, calls in zip(batches, callers, strict=True):
                times = time_interleaved(calls, repeats, warmup)
                out[runtime, b] = {n: _latency(runtime, b, threads, t, warmup)
                                   for n, t in zip(names, times, strict=True)}
    return out


def compare_speed(pruned: nn.Module, base: nn.Module, input_shape: Sequence[int], *,
                  batches: Sequence[int] = (1, 64), threads: int | None = None,
                  runtimes: Sequence[str] = RUNTIMES, repeats: int = 10, warmup: int = 3
                  ) -> list[SpeedRow]:
    """`pruned` against `base` per runtime and batch size, timed in turns in this process."""
    timed = time_models({"base": base, "pruned": pruned}, input_shape, batches=batches,
                        threads=threads, runtimes=runtimes, repeats=repeats, warmup=warmup)
    return [SpeedRow(runtime, b, pair["base"], pair["pruned"])
            for (runtime, b), pair in timed.items()]


def _callers(runtime: str, models: Sequence[nn.Module], shape: tuple[int, ...],
             batches: Sequence[int], threads: int) -> list[list[Callable[[], object]]]:
    """Per batch size, one caller per model in `runtime`."""
    if runtime == "torch":
        return [[torch_caller(m, _inputs(shape, b)) for m in models] for b in batches]
    from archsearch.deploy._export import exported_program, onnx_bytes

    exported = [onnx_bytes(exported_program(m, shape)) for m in models]
    return [[onnx_caller(e, _inputs(shape, b), threads) for e in exported] for b in batches]

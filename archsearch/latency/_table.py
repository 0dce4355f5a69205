"""Latency on a device, priced as fast as MACs: a per-layer table measured once.

Every costed call of a bound space (conv, linear, BatchNorm, average pools) is timed alone
on the device, at batch `batch` with `threads` CPU threads, over a grid of the input and
output widths it can take (`grid` points per width, from the narrowest genome's to the
base's); a genome's latency is the sum over its active calls of the bilinear interpolation
in those grids, at the widths the cost counter computes for them (`CostModel`: the same
per-call in/out width vectors MACs are counted from), plus what the table does not time
alone (activations, residual adds, max-pools, per-module overhead): a linear term in the
active convs' output size and count, fitted on whole networks measured at a few uniform
widths (and with every other block removed). The table is built once per space × input
shape × device × threads × batch, written to the cache folder (`cache_dir`) and checked
when read: one measured on another device, CPU, thread count or batch is refused, a
damaged one is refused, a stale one (another torch, another table format) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from archsearch.errors import ArchsearchError
from archsearch.latency._fit import fit_residual
from archsearch.latency._layers import call_specs

if TYPE_CHECKING:
    from archsearch.build import BoundSpace
    from archsearch.genome import Genome

_log = logging.getLogger(__name__)
# version 2: the residual is fitted to relative gaps (version-1 tables are rebuilt)
FORMAT, VERSION = "archsearch.latency", 2
Progress = Callable[[int, int, str], None]  # (done, total, what is being timed)
# Before a table is timed the device runs the base network this long (wall seconds): without
# it the first space a process times is predicted fast (a cold device); the fidelity with
# it is bench/results/latency_model.md.
WARMUP_S = 1.0
PASSES, PASS_REPEATS = 3, 5  # each point timed in 3 passes apart in time, the fastest kept
_ENVIRONMENT = ("device", "device_name", "threads", "batch")  # refused when they differ
_SOFTWARE = ("format", "version", "torch", "space", "fingerprint", "input_shape", "grid")


class LatencyTableError(ArchsearchError):
    """A latency table that cannot be used here (another device, damaged)."""


@dataclass(frozen=True)
class LatencySettings:
    """Where latency is measured: `device` (cpu, cuda, cuda:N), CPU `threads`, `batch`
    images per forward, `grid` widths timed per layer dimension. `progress` sees a table
    build; `clock` is the timer (seconds); `cache` overrides `cache_dir()`."""

    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    grid: int = 6
    progress: Progress | None = field(default=None, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.perf_counter, compare=False, repr=False)
    cache: str | None = field(default=None, compare=False)
    warmup_s: float = field(default=WARMUP_S, compare=False)

    def __post_init__(self) -> None:
        for name, low in (("threads", 1), ("batch", 1), ("grid", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = {"batch": "--latency-batch", "threads": "--threads"}.get(name, name)
                raise ArchsearchError(f"{flag} must be an integer >= {low}, but got {value!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ArchsearchError(f"latency device must be cpu, cuda or cuda:N, but got "
                                  f"{self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ArchsearchError(f"latency device {self.device!r}: no CUDA device here")

    def describe(self) -> str:
        threads = f", {self.threads} thread(s)" if self.device == "cpu" else ""
        return f"{device_name(self.device)}{threads}, batch {self.batch}"


LATENCY_FIELDS = ("latency_device", "threads", "latency_batch")  # of run configs


class LatencyFields(Protocol):
    """A run config with `LATENCY_FIELDS` (a search's, a discover's)."""

    @property
    def latency_device(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def latency_batch(self) -> int: ...


def settings_of(config: LatencyFields, progress: Progress | None = None) -> LatencySettings:
    """The LatencySettings of a run config with `LATENCY_FIELDS` (a search's, a discover's)."""
    return LatencySettings(device=config.latency_device, threads=config.threads,
                           batch=config.latency_batch, progress=progress)


def cache_dir() -> Path:
    """$ARCHSEARCH_CACHE, else $XDG_CACHE_HOME/archsearch, else ~/.cache/archsearch."""
    if os.environ.get("ARCHSEARCH_CACHE"):
        return Path(os.environ["ARCHSEARCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "archsearch"


def device_name(device: str) -> str:
    """The CPU model (from /proc/cpuinfo) or the CUDA device's name."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@contextmanager
def on_device(settings: LatencySettings) -> Iterator[Callable[[], None]]:
    """torch at the settings' thread count (restored after); yields the device's sync."""
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        if settings.device.startswith("cuda"):
            yield lambda: torch.cuda.synchronize(settings.device)
        else:
            yield lambda: None
    finally:
        torch.set_num_threads(before)


STATS = {"min": min, "median": median}


def time_call(run: Callable[[], object], clock: Callable[[], float],
              sync: Callable[[], None], repeats: int = 15, chunk_s: float = 1e-3,
              stat: str = "min") -> float:
    """Milliseconds per `run()`: the `stat` (min or median) over `repeats` timed chunks of
    as many calls as fill `chunk_s`, after one warm-up call (not timed) and one sizing call.
    The table takes the fastest chunk: on a loaded machine the slower ones time the other
    processes' share of the CPU, not the layer."""
    return STATS[stat](time_samples(run, clock, sync, repeats, chunk_s))


def time_samples(run: Callable[[], object], clock: Callable[[], float],
                 sync: Callable[[], None], repeats: int, chunk_s: float) -> list[float]:
    """Milliseconds per `run()` of each of `repeats` timed chunks (see `time_call`)."""
    run()
    sync()
    start = clock()
    run()
    sync()
    number = max(1, min(1000, int(chunk_s / max(clock() - start, 1e-9))))
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            run()
        sync()
        samples.append(1e3 * (clock() - start) / number)
    return samples


def measure_model(model: torch.nn.Module, input_shape: tuple[int, ...],
                  settings: LatencySettings, repeats: int = 30, stat: str = "min") -> float:
    """Measured milliseconds of one forward of `model` (eval, no grad) at the settings."""
    model = model.to(settings.device).eval()
    x = torch.randn(settings.batch, *input_shape, device=settings.device)
    with on_device(settings) as sync, torch.inference_mode():
        return time_call(lambda: model(x), settings.clock, sync, repeats=repeats, stat=stat)


def measure_genome(bound: BoundSpace, genome: Genome, settings: LatencySettings,
                   repeats: int = 30, stat: str = "min") -> float:
    """Measured milliseconds of the genome's model (fresh weights) at the settings."""
    return measure_model(bound.build(genome), bound.info.input_shape, settings, repeats, stat)


# -- the table -----------------------------------------------------------------------------

def table_key(bound: BoundSpace, settings: LatencySettings) -> dict[str, Any]:
    """What a table was measured for: the environment (must match) and the software."""
    return {"format": FORMAT, "version": VERSION, "torch": torch.__version__,
            "space": bound.space.name, "fingerprint": fingerprint(bound),
            "input_shape": list(bound.info.input_shape), "grid": settings.grid,
            "device": settings.device.split(":")[0], "device_name": device_name(settings.device),
            "threads": settings.threads if settings.device == "cpu" else 0,
            "batch": settings.batch}


def fingerprint(bound: BoundSpace) -> str:
    """A short hash of the graph's costed calls and groups (another model: another hash)."""
    calls = [(c.module, c.kind, c.spatial, c.kernel, c.groups, c.bias,
              [(s.group, s.size, s.repeat) for s in (*c.inputs, *c.outputs)])
             for c in bound.graph.calls]
    groups = sorted((n, g.size) for n, g in bound.graph.groups.items())
    return hashlib.sha256(repr((calls, groups)).encode()).hexdigest()[:12]


def table_path(bound: BoundSpace, settings: LatencySettings) -> Path:
    key = table_key(bound, settings)
    threads = f"-{key['threads']}t" if key["device"] == "cpu" else ""
    shape = "x".join(map(str, key["input_shape"]))
    name = (f"{bound.space.name}-{shape}-{key['fingerprint']}-{key['device']}{threads}"
            f"-b{settings.batch}-g{settings.grid}.json")
    return Path(settings.cache or cache_dir()) / "latency" / name


def build_table(bound: BoundSpace, settings: LatencySettings) -> dict[str, Any]:
    """Time every distinct layer over its width grid, then fit the residual on whole
    networks; returns the table document (with `build_s`, its wall time)."""
    start = time.perf_counter()
    specs = call_specs(bound, settings.grid)
    entries = list(dict.fromkeys(s.key for s in specs.values()))
    by_key = {s.key: s for s in specs.values()}
    points = [(k, i, j) for k in entries for i in range(len(by_key[k].grid_in))
              for j in range(len(by_key[k].grid_out))]
    best = {p: float("inf") for p in points}
    with on_device(settings) as sync, torch.inference_mode():
        warm_up(bound, settings, sync)
        for n, (p, key_i_j) in enumerate(
                (p, q) for p in range(PASSES) for q in points):  # passes apart in time
            spec = by_key[key_i_j[0]]
            run = spec.runner(spec.grid_in[key_i_j[1]], spec.grid_out[key_i_j[2]],
                              settings.batch, settings.device)
            best[key_i_j] = min(best[key_i_j], time_call(run, settings.clock, sync,
                                                         repeats=PASS_REPEATS))
            if settings.progress is not None:
                settings.progress(n + 1, PASSES * len(points), f"{spec.label} (pass {p + 1})")
    timed = [{"label": by_key[k].label, "grid_in": list(by_key[k].grid_in),
              "grid_out": list(by_key[k].grid_out),
              "ms": [[round(best[(k, i, j)], 6) for j in range(len(by_key[k].grid_out))]
                     for i in range(len(by_key[k].grid_in))]} for k in entries]
    index = {k: i for i, k in enumerate(entries)}
    calls = [index[specs[i].key] if i in specs else -1 for i in range(len(bound.graph.calls))]
    doc = {**table_key(bound, settings), "entries": timed, "calls": calls,
           "residual": [0.0, 0.0, 0.0]}
    doc["residual"], doc["calibration"] = fit_residual(bound, LatencyModel(bound, doc), settings,
                                                       measure_genome, PASSES)
    doc["build_s"] = round(time.perf_counter() - start, 3)
    doc["clock"] = getattr(settings.clock, "__name__", type(settings.clock).__name__)
    return doc


def warm_up(bound: BoundSpace, settings: LatencySettings, sync: Callable[[], None]) -> None:
    """Run the base network for `settings.warmup_s` wall seconds (nothing is timed)."""
    if settings.warmup_s <= 0:
        return
    model = bound.base_model().to(settings.device).eval()
    x = torch.randn(settings.batch, *bound.info.input_shape, device=settings.device)
    end = time.perf_counter() + settings.warmup_s
    while time.perf_counter() < end:
        model(x)
        sync()


def read_table(path: Path, bound: BoundSpace, settings: LatencySettings
               ) -> dict[str, Any] | None:
    """The table at `path` if it is this measurement's; None if it is stale (rebuild);
    LatencyTableError if it is damaged or was measured elsewhere."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LatencyTableError(f"latency table {path} is damaged ({type(exc).__name__}): "
                                "delete it to measure again") from None
    want = table_key(bound, settings)
    if not isinstance(doc, dict) or any(k not in doc for k in want):
        raise LatencyTableError(f"latency table {path} is damaged (not an archsearch latency "
                                "table): delete it to measure again")
    for name in _ENVIRONMENT:
        if doc[name] != want[name]:
            raise LatencyTableError(
                f"latency table {path} was measured with {name} {doc[name]!r}, not "
                f"{want[name]!r} as here: delete it, or set $ARCHSEARCH_CACHE to a folder of "
                "this machine's own")
    if any(doc[name] != want[name] for name in _SOFTWARE):
        _log.info("latency table %s is stale (another torch or format): measuring again", path)
        return None
    _check_shape(doc, path, len(bound.graph.calls))
    return doc


def _check_shape(doc: Mapping[str, Any], path: Path, n_calls: int) -> None:
    """Every array the model reads has the length and values it needs."""
    try:
        entries, calls = doc["entries"], doc["calls"]
        ok = len(calls) == n_calls and all(-1 <= c < len(entries) for c in calls)
        for e in entries:
            values = np.asarray(e["ms"], dtype=float)
            ok = ok and values.shape == (len(e["grid_in"]), len(e["grid_out"]))
            ok = ok and bool(np.isfinite(values).all() and (values >= 0).all())
        ok = ok and len(doc["residual"]) == 3 and np.isfinite(doc["residual"]).all()
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise LatencyTableError(f"latency table {path} is damaged (truncated or edited): "
                                "delete it to measure again")


class LatencyModel:
    """A genome's predicted milliseconds from a table: vectorised over calls like MACs."""

    def __init__(self, bound: BoundSpace, table: Mapping[str, Any]):
        costs, calls = bound.costs, bound.graph.calls
        self.table, self.a_in, self.a_out = table, costs.a_in, costs.a_out
        size = max([2] + [max(len(e["grid_in"]), len(e["grid_out"])) for e in table["entries"]])
        n = len(calls)
        self.gi, self.go = np.tile(np.arange(size, dtype=float), (n, 1)), np.zeros((n, size))
        self.go[:] = self.gi
        self.values = np.zeros((n, size, size))
        for i, e in enumerate(table["calls"]):
            if e >= 0:
                entry = table["entries"][e]
                self.gi[i], self.go[i] = _padded(entry["grid_in"], size), _padded(
                    entry["grid_out"], size)
                self.values[i] = _padded_values(np.asarray(entry["ms"], float), size)
        self.rows = np.arange(n)
        self.conv = np.array([c.kind == "conv" for c in calls], dtype=float)
        self.conv_out = self.conv * np.array([float(c.spatial) for c in calls])
        self.residual = np.asarray(table["residual"], dtype=float)

    def layers(self, w: np.ndarray) -> np.ndarray:
        """Per call, the interpolated milliseconds at widths `w`."""
        cin, cout = self.a_in @ w, self.a_out @ w
        ix, tx = _locate(self.gi, cin)
        iy, ty = _locate(self.go, cout)
        v, r = self.values, self.rows
        return ((v[r, ix, iy] * (1 - ty) + v[r, ix, iy + 1] * ty) * (1 - tx)
                + (v[r, ix + 1, iy] * (1 - ty) + v[r, ix + 1, iy + 1] * ty) * tx)

    def features(self, w: np.ndarray, active: np.ndarray) -> np.ndarray:
        """What the residual is linear in: 1, active convs' output elements, their count."""
        cout = self.a_out @ w
        return np.array([1.0, float(active @ (self.conv_out * cout)) / 1e6,
                         float(active @ self.conv)])

    def vector(self, w: np.ndarray, active: np.ndarray) -> float:
        between = float(self.residual @ self.features(w, active))  # never below 0
        return float(active @ self.layers(w)) + max(0.0, between)


def _locate(grid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the left grid index and the fraction towards the next (clamped to [0, 1])."""
    index = np.clip((grid[:, 1:-1] <= x[:, None]).sum(axis=1), 0, grid.shape[1] - 2)
    left = grid[np.arange(len(x)), index]
    right = grid[np.arange(len(x)), index + 1]
    return index, np.clip((x - left) / (right - left), 0.0, 1.0)


def _padded(grid: list[float], size: int) -> np.ndarray:
    """A grid padded to `size` points by steps of 1 past its end (a one-point grid becomes
    constant: its padding repeats its value)."""
    out = np.asarray(grid, dtype=float)
    return np.concatenate([out, out[-1] + np.arange(1, size - len(out) + 1)])


def _padded_values(values: np.ndarray, size: int) -> np.ndarray:
    rows = np.concatenate([values, np.repeat(values[-1:], size - values.shape[0], 0)])
    return np.concatenate([rows, np.repeat(rows[:, -1:], size - rows.shape[1], 1)], axis=1)

"""The part of a network's latency a per-layer table does not time alone (activations,
residual adds, max-pools, per-module overhead): linear in the active convs' output size and
count, fitted by least squares of the gap relative to each network's time on whole networks
measured at a few uniform widths, and never below zero (a genome is never priced below its
layers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.genome import Genome
from archsearch.latency._layers import narrowest

if TYPE_CHECKING:
    from archsearch.build import BoundSpace
    from archsearch.latency._table import LatencyModel, LatencySettings

MULTIPLIERS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.125)


def calibration_genomes(bound: BoundSpace) -> list[tuple[str, Genome]]:
    """Uniform widths at each multiplier (at least the narrowest genome's), and, in a space
    with removable blocks, the full and half widths with every other block removed."""
    from archsearch.widths import group_steps, round_to_step

    base, steps, low = bound.graph.base_widths(), group_steps(bound), narrowest(bound)
    blocks = list(bound.graph.blocks)
    every_other = {b: i % 2 == 0 for i, b in enumerate(blocks)}
    out = []
    for m in MULTIPLIERS:
        widths = {g: max(low[g], round_to_step(bound, m * base[g], base[g], steps[g]))
                  for g in base}
        out.append((f"uniform x{m:g}", widths, {}))
        if blocks and m in (1.0, 0.5):
            out.append((f"uniform x{m:g}, every other block", widths, every_other))
    return [(label, Genome(bound.space.name, w, b, bound.info.name, {}))
            for label, w, b in out]


def fit_residual(bound: BoundSpace, model: LatencyModel, settings: LatencySettings,
                 measure: Callable[..., float], passes: int
                 ) -> tuple[list[float], list[dict[str, Any]]]:
    """Residual coefficients (of `LatencyModel.features`) and the calibration rows:
    measured and table-summed milliseconds per calibration genome. `measure(bound, genome,
    settings, repeats)` times a whole network; each is timed in `passes` passes."""

    costs, rows, feats, gaps = bound.costs, [], [], []
    genomes = calibration_genomes(bound)
    fastest = {label: float("inf") for label, _ in genomes}
    for p in range(passes):  # passes apart in time: a busy spell of the machine passes
        for k, (label, genome) in enumerate(genomes):
            if settings.progress is not None:
                settings.progress(p * len(genomes) + k + 1, passes * len(genomes),
                                  f"whole network, {label} (pass {p + 1})")
            fastest[label] = min(fastest[label], measure(bound, genome, settings, 10))
    for label, genome in genomes:
        measured = fastest[label]
        w, active = costs.widths_vector(genome.widths), costs.active(genome.blocks)
        summed = float(active @ model.layers(w))
        feats.append(model.features(w, active))
        gaps.append(measured - summed)
        rows.append({"genome": label, "measured_ms": round(measured, 5),
                     "layers_ms": round(summed, 5)})
    # Least squares on the gap as a share of each network's measured time: unweighted,
    # the base's milliseconds outvote the narrow genomes', whose time the residual
    # (per-call overhead) is most of, and narrow genomes were mispriced by 15-30%.
    scale = 1.0 / np.maximum([fastest[label] for label, _ in genomes], 1e-9)
    coef = np.linalg.lstsq(np.array(feats) * scale[:, None], np.array(gaps) * scale,
                           rcond=None)[0]
    for row, f in zip(rows, feats, strict=True):
        row["predicted_ms"] = round(row["layers_ms"] + max(0.0, float(coef @ f)), 5)
    return [float(c) for c in coef], rows

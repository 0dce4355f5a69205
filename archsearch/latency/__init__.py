"""Latency budgets: a per-layer latency table measured on the device, priced like MACs.

`latency_pricer(bound, settings)` is the `latency` metric's pricer (`archsearch.metrics`):
it reads the table of the bound space at `settings` from the cache folder, or measures and
writes it, and prices a genome in predicted milliseconds; `measure_genome` times a built
genome for real.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.io import atomic_write_json
from archsearch.latency._fit import calibration_genomes as calibration_genomes
from archsearch.latency._layers import narrowest as narrowest
from archsearch.latency._table import (
    LATENCY_FIELDS,
    LatencyModel,
    LatencySettings,
    LatencyTableError,
    build_table,
    cache_dir,
    device_name,
    measure_genome,
    measure_model,
    on_device,
    read_table,
    settings_of,
    table_path,
    time_call,
    time_samples,
)

if TYPE_CHECKING:
    from pathlib import Path

    from archsearch.build import BoundSpace

__all__ = ["LATENCY_FIELDS", "LatencyModel", "LatencyPricer", "LatencySettings",
           "LatencyTableError", "build_table", "cache_dir", "device_name", "latency_pricer",
           "measure_genome", "measure_model", "on_device", "read_table", "settings_of",
           "table_path", "time_call", "time_samples"]

_log = logging.getLogger(__name__)


class LatencyPricer:
    """The latency metric on one bound space at one setting: predicted milliseconds."""

    def __init__(self, model: LatencyModel, settings: LatencySettings, path: Path | None):
        self.model, self.settings, self.path = model, settings, path
        self.table = model.table

    @property
    def build_s(self) -> float:
        return float(self.table.get("build_s", 0.0))

    def vector(self, w: np.ndarray, active: np.ndarray) -> float:
        return self.model.vector(w, active)

    def record(self, value: float, base: float) -> dict[str, Any]:
        """The genome cost entries: predicted ms, ratio to the base, and where."""
        return {"latency_ms": round(value, 5), "latency_ratio": value / base,
                "latency_device": f"{self.settings.device}: {self.table['device_name']}",
                "latency_threads": self.table["threads"], "latency_batch": self.table["batch"]}


def latency_pricer(bound: BoundSpace, settings: LatencySettings | None = None) -> LatencyPricer:
    """The table of `bound` at `settings` (default: cpu, 1 thread, batch 1), read from the
    cache folder or measured now (and written there)."""
    settings = settings or LatencySettings()
    path = table_path(bound, settings)
    doc = read_table(path, bound, settings) if path.exists() else None
    if doc is None:
        _log.info("measuring the latency table of %s on %s", bound.space.name,
                  settings.describe())
        doc = build_table(bound, settings)
        try:
            atomic_write_json(path, doc)
        except OSError as exc:
            _log.warning("latency table not cached (%s): it is measured again next time", exc)
    return LatencyPricer(LatencyModel(bound, doc), settings, path)

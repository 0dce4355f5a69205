"""Plain data about what a pruner saw (scale factors, thresholds), then its rendering."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.io import atomic_write_bytes
from archsearch.pruners._base import Pruner
from archsearch.pruners._evidence import LOG_FLOOR, natural_cut, upper_natural_cut
from archsearch.pruners._sss import SSSPruner


def scale_distribution(pruner: Pruner, model: nn.Module) -> dict[str, Any]:
    """The scores the pruner ranks by: block factors for sss, channel scores otherwise
    (BN |gamma| for slimming, filter L1 norms for l1norm/uniform), grouped by stage."""
    if isinstance(pruner, SSSPruner):
        gates = pruner.gates(model)
        return {"kind": "block factor", "values": {"blocks": list(gates.values())},
                "labels": list(gates)}
    stages = pruner.bound.graph.stages()
    values: dict[str, list[float]] = {}
    for group, score in pruner.importance(model).items():
        values.setdefault(f"stage {stages[group]}", []).extend(score.tolist())
    kind = getattr(pruner, "score_kind", None) or (
        "BN |gamma|" if pruner.name == "slimming" else "filter L1 norm")
    return {"kind": kind, "values": values, "labels": []}


def scale_cuts(dist: dict[str, Any], threshold: float | None) -> dict[str, float]:
    """The cuts to mark on the scores: the budget's threshold (the cut the genome made),
    and where the scores split by themselves: two-class Otsu and the upper cut of three
    classes (dead, dying, alive), both on the log scale the separation statistic uses."""
    cuts: dict[str, float] = {}
    if threshold is not None:
        cuts["cut at the budget"] = float(threshold)
    scores = {k: torch.tensor(v, dtype=torch.float64) for k, v in dist["values"].items() if v}
    if scores and not dist["labels"]:
        cuts["natural cut (2-class Otsu)"] = natural_cut(scores)
        cuts["upper cut (3-class Otsu)"] = upper_natural_cut(scores)
    return cuts


def plot_scales(dist: dict[str, Any], path: str | Path, cuts: Mapping[str, float] | None = None,
                title: str = "") -> Path:
    """A histogram of the log10 scores (stacked by stage; exact zeros at the log floor) with
    the `cuts` marked, or bars per block for sss."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    if dist["labels"]:
        vals = dist["values"]["blocks"]
        ax.bar(range(len(vals)), vals, color="#2f6db5")
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(dist["labels"], rotation=90, fontsize=7)
        ax.set_ylabel(dist["kind"])
    else:
        names = list(dist["values"])
        logs = [[math.log10(max(abs(v), LOG_FLOOR)) for v in dist["values"][n]] for n in names]
        ax.hist(logs, bins=60, stacked=True, label=names)
        ax.set_xlabel(f"log10 {dist['kind']}")
        ax.set_ylabel("channels")
        styles = ("#c0392b", "#27ae60", "#8e44ad")
        for (name, value), color in zip((cuts or {}).items(), styles, strict=False):
            ax.axvline(math.log10(max(abs(value), LOG_FLOOR)), color=color, linestyle="--",
                       label=f"{name}: {value:.3g}")
        ax.legend(fontsize=7)
    ax.set_title(title or f"distribution of {dist['kind']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())

"""Plain data about what a pruner saw (scale factors, thresholds), then its rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from archsearch.io import atomic_write_bytes
from archsearch.pruners._base import Pruner
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


def plot_scales(dist: dict[str, Any], path: str | Path, threshold: float | None = None,
                title: str = "") -> Path:
    """A histogram of the scores (stacked by stage), or bars per block for sss."""
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
        ax.hist([dist["values"][n] for n in names], bins=50, stacked=True, label=names)
        ax.set_xlabel(dist["kind"])
        ax.set_ylabel("channels")
        if threshold is not None:
            ax.axvline(threshold, color="#c0392b", linestyle="--", label="threshold")
        ax.legend(fontsize=7)
    ax.set_title(title or f"distribution of {dist['kind']}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())

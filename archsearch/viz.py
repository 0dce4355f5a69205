"""Plot data as plain rows first (testable), then matplotlib rendering (Agg, files only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from archsearch.io import atomic_write_bytes

FLAG_BELOW = 0.25  # groups cut below this share of their base width are flagged

if TYPE_CHECKING:
    from archsearch.build import BoundSpace
    from archsearch.genome import Genome


def width_rows(bound: BoundSpace, genome: Genome) -> list[dict[str, Any]]:
    """One row per prunable group in network order: base width, genome width, kept ratio."""
    stages = bound.graph.stages()
    removed = genome.removed_blocks()
    rows = []
    for name in bound.graph.prunable:
        group = bound.graph.groups[name]
        width = genome.widths.get(name, group.size)
        inside_removed = bool(removed) and all(
            any(m in bound.graph.blocks[b].modules for b in removed) for m in group.producers)
        kept = width / group.size
        rows.append({"group": name, "stage": stages[name], "base": group.size, "width": width,
                     "kept": kept, "removed": inside_removed,
                     "flagged": not inside_removed and kept < FLAG_BELOW})
    return rows


def plot_widths(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bars of base vs genome width per group (removed blocks' groups hatched; groups cut
    below FLAG_BELOW of their base width in red, with a dashed line at that share)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows) + 2), 3.6), dpi=120)
    xs = range(len(rows))
    ax.bar(xs, [r["base"] for r in rows], color="#d0d7e2", label="base")
    bars = ax.bar(xs, [0 if r["removed"] else r["width"] for r in rows], color="#2f6db5",
                  width=0.6, label="genome")
    for x, bar, row in zip(xs, bars, rows, strict=True):
        if row["removed"]:
            bar.set_hatch("//")
        if row.get("flagged"):
            bar.set_color("#c0392b")
            ax.plot([x - 0.4, x + 0.4], [FLAG_BELOW * row["base"]] * 2, "k--", lw=0.8)
    if any(r.get("flagged") for r in rows):
        bars[0].figure.text(0.99, 0.01, f"red: below {FLAG_BELOW:.0%} of base width",
                            ha="right", fontsize=7, color="#c0392b")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["group"] for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("channels")
    ax.set_title(title or "widths per channel group")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_densities(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bars of the fraction of weights kept per conv/linear layer (`sparsity.density_rows`)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows) + 2), 3.6), dpi=120)
    xs = range(len(rows))
    ax.bar(xs, [1.0] * len(rows), color="#d0d7e2", label="base")
    ax.bar(xs, [r["density"] for r in rows], color="#2f6db5", width=0.6, label="kept")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["layer"] for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("fraction of weights kept")
    ax.set_ylim(0, 1.25)
    ax.set_title(title or "density per layer")
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())

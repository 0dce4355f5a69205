"""Report plots of a search: plain data first (testable), then matplotlib files (Agg).

- history: accuracy per trial with the best so far;
- accuracy vs MACs and vs params, the uniform and guide genomes marked;
- per-stage widths of the best genome against the base and the uniform genome.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from archsearch.build import BoundSpace, bind
from archsearch.genome import Genome
from archsearch.io import atomic_write_bytes
from archsearch.search._results import SearchRun, best_trials, trial_genome, trial_kind
from archsearch.viz import plot_widths, width_rows

_MARKERS = {"search": ("o", "#2f6db5"), "uniform": ("s", "#d1495b"), "guide": ("D", "#edae49")}


def history_points(run: SearchRun) -> list[dict[str, Any]]:
    """Finished trials in order: accuracy (last reported one for pruned), best so far."""
    points, best = [], None
    for t in run.trials():
        if t.state == TrialState.COMPLETE:
            acc = t.values[0]
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            acc = t.intermediate_values[max(t.intermediate_values)]
        else:
            continue
        if t.state == TrialState.COMPLETE:
            best = acc if best is None else max(best, acc)
        points.append({"trial": t.number, "accuracy": acc, "state": t.state.name.lower(),
                       "best": best})
    return points


def cost_points(run: SearchRun) -> list[dict[str, Any]]:
    """Complete trials: accuracy with MACs and params, and what kind of genome each is."""
    out = []
    for t in run.trials():
        genome = t.user_attrs.get("genome")
        if t.state != TrialState.COMPLETE or not genome:
            continue
        out.append({"trial": t.number, "accuracy": t.values[0], "kind": trial_kind(t),
                    "macs": genome["cost"]["macs"], "params": genome["cost"]["params"]})
    return out


def stage_rows(bound: BoundSpace, genome: Genome) -> list[dict[str, Any]]:
    """Per stage: channels of the base and of the genome (removed blocks' groups count 0)."""
    stages: dict[int, dict[str, Any]] = {}
    for r in width_rows(bound, genome):
        row = stages.setdefault(r["stage"], {"stage": r["stage"], "base": 0, "width": 0})
        row["base"] += r["base"]
        row["width"] += 0 if r["removed"] else r["width"]
    rows = [stages[s] for s in sorted(stages)]
    for row in rows:
        row["kept"] = row["width"] / row["base"]
    return rows


def _figure_bytes(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(points: list[dict[str, Any]], path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for state, style in (("complete", "o"), ("pruned", "x")):
        pts = [p for p in points if p["state"] == state]
        ax.plot([p["trial"] for p in pts], [p["accuracy"] for p in pts], style,
                label=state, alpha=0.8)
    best = [p for p in points if p["best"] is not None]
    ax.step([p["trial"] for p in best], [p["best"] for p in best], where="post",
            color="k", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return atomic_write_bytes(path, _figure_bytes(fig))


def plot_cost(points: list[dict[str, Any]], path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120, sharey=True)
    for ax, metric in zip(axes, ("macs", "params"), strict=True):
        for kind, (marker, colour) in _MARKERS.items():
            pts = [p for p in points if p["kind"] == kind]
            if pts:
                ax.scatter([p[metric] for p in pts], [p["accuracy"] for p in pts],
                           marker=marker, color=colour, label=kind,
                           s=28 if kind == "search" else 70, zorder=3 if kind != "search" else 2)
        ax.set_xlabel("MACs" if metric == "macs" else "params")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return atomic_write_bytes(path, _figure_bytes(fig))


def plot_stages(best: list[dict[str, Any]], uniform: list[dict[str, Any]] | None, path: Path,
                title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    xs = [r["stage"] for r in best]
    ax.bar(xs, [r["base"] for r in best], color="#d0d7e2", label="base", width=0.8)
    if uniform:
        ax.bar([x - 0.17 for x in xs], [r["width"] for r in uniform], width=0.34,
               color="#d1495b", label="uniform")
    ax.bar([x + (0.17 if uniform else 0) for x in xs], [r["width"] for r in best],
           width=0.34 if uniform else 0.6, color="#2f6db5", label="best")
    ax.set_xticks(xs)
    ax.set_xlabel("stage (one per resolution, head last)")
    ax.set_ylabel("channels (sum over groups)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return atomic_write_bytes(path, _figure_bytes(fig))


def write_plots(run: SearchRun, out: Path | None = None) -> list[Path]:
    """history.png, accuracy_vs_cost.png, best_stages.png, best_widths.png."""
    out = Path(out) if out is not None else run.run_dir / "report"
    name = run.config.study_name
    paths = []
    points = history_points(run)
    if points:
        paths.append(plot_history(points, out / "history.png", f"{name}: history"))
    costs = cost_points(run)
    if costs:
        paths.append(plot_cost(costs, out / "accuracy_vs_cost.png", f"{name}: accuracy vs cost"))
    best = best_trials(run, 1)
    genome = trial_genome(best[0]) if best else None
    if genome is not None:
        bound = bind(genome.space, genome.dataset)
        uniform = next((trial_genome(t) for t in run.trials() if trial_kind(t) == "uniform"
                        and t.user_attrs.get("genome")), None)
        paths.append(plot_stages(stage_rows(bound, genome),
                                 stage_rows(bound, uniform) if uniform else None,
                                 out / "best_stages.png",
                                 f"best trial {best[0].number}: channels per stage"))
        paths.append(plot_widths(width_rows(bound, genome), out / "best_widths.png",
                                 f"best trial {best[0].number}: widths per group"))
    return paths

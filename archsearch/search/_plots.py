"""Report plots of a search: plain data first (testable), then matplotlib files (Agg).

- history: accuracy per trial with the best so far;
- accuracy vs MACs and vs params, the uniform and guide genomes marked;
- per-stage widths of the best genome against the base and the uniform genome;
- fidelity: for the trials of the highest fidelity (the finalists), their cheap screen
  score and proxy accuracy against their final accuracy.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from archsearch.build import BoundSpace, bind_genome
from archsearch.genome import Genome
from archsearch.io import atomic_write_bytes
from archsearch.search import _fidelity as fd
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


def _score(t: Any) -> float | None:
    if t.state == TrialState.COMPLETE:
        return t.values[0]
    steps = t.intermediate_values
    return steps[max(steps)] if t.state == TrialState.PRUNED and steps else None


def fidelity_points(run: SearchRun) -> list[dict[str, Any]]:
    """Per complete trial of the highest fidelity: its score at every fidelity it was
    promoted through (`screen`, `proxy`, `final`; None where it was not scored)."""
    trials = run.trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    top = max(fd.rank_of(fd.fidelity_of(t)) for t in complete)
    out = []
    for t in complete:
        if fd.rank_of(fd.fidelity_of(t)) != top:
            continue
        chain = fd.lineage(trials, t)
        out.append({"trial": t.number, "kind": trial_kind(t),
                    **{f: _score(chain[f]) if f in chain else None for f in fd.FIDELITIES}})
    return out


def kendall_tau(xs: list[float], ys: list[float]) -> float | None:
    """Kendall's tau-a of two equally long lists (None for fewer than two pairs)."""
    n = len(xs)
    if n < 2:
        return None
    s = sum((1 if (xs[i] - xs[j]) * (ys[i] - ys[j]) > 0 else
             -1 if (xs[i] - xs[j]) * (ys[i] - ys[j]) < 0 else 0)
            for i in range(n) for j in range(i + 1, n))
    return s / (n * (n - 1) / 2)


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


def plot_fidelity(points: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Lower-fidelity scores (x) against the top fidelity's accuracy (y), one panel each."""
    top = next(f for f in reversed(fd.FIDELITIES) if any(p[f] is not None for p in points))
    lower = [f for f in fd.FIDELITIES[:fd.rank_of(top)]
             if any(p[f] is not None for p in points)]
    if not lower:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(lower), figsize=(4.6 * len(lower), 3.8), dpi=120,
                             squeeze=False)
    for ax, f in zip(axes[0], lower, strict=True):
        pts = [p for p in points if p[f] is not None and p[top] is not None]
        for kind, (marker, colour) in _MARKERS.items():
            sel = [p for p in pts if p["kind"] == kind]
            if sel:
                ax.scatter([p[f] for p in sel], [p[top] for p in sel], marker=marker,
                           color=colour, label=kind)
        for p in pts:
            ax.annotate(str(p["trial"]), (p[f], p[top]), fontsize=7, alpha=0.7)
        tau = kendall_tau([p[f] for p in pts], [p[top] for p in pts])
        ax.set_xlabel(f"{f} score" + (f"  (Kendall τ {tau:.2f}, n={len(pts)})"
                                      if tau is not None else ""))
        ax.set_ylabel(f"{top} validation accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return atomic_write_bytes(path, _figure_bytes(fig))


def write_plots(run: SearchRun, out: Path | None = None) -> list[Path]:
    """history.png, accuracy_vs_cost.png, best_stages.png, best_widths.png, fidelity.png
    (the last for multi-fidelity searches)."""
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
    if isinstance(genome, Genome):  # widths to draw (a sparsity search has none)
        bound = bind_genome(genome)
        uniform = next((trial_genome(t) for t in run.trials() if trial_kind(t) == "uniform"
                        and t.user_attrs.get("genome")), None)
        paths.append(plot_stages(stage_rows(bound, genome),
                                 stage_rows(bound, uniform) if uniform else None,
                                 out / "best_stages.png",
                                 f"best trial {best[0].number}: channels per stage"))
        paths.append(plot_widths(width_rows(bound, genome), out / "best_widths.png",
                                 f"best trial {best[0].number}: widths per group"))
    fidelity = fidelity_points(run)
    if fidelity:
        path = plot_fidelity(fidelity, out / "fidelity.png",
                             f"{name}: evaluator {run.config.screen.evaluator} vs training")
        paths += [path] if path is not None else []
    return paths

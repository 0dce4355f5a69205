"""`discover`: train a base with a pruner's sparsity term, derive the genome at a budget,
write the run folder (genome.json, sparse checkpoint, plots, result.json). No printing.
The shared steps (plan, train the base, derive, checkpoints) live in archsearch.pipeline;
its names are re-exported here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from torch import nn

from archsearch.errors import SeparationError
from archsearch.genome import Genome
from archsearch.io import atomic_write_json
from archsearch.pipeline import (
    CHECKPOINT_VERSION,
    DEFAULT_SPACE,
    SPARSITY_RULES,
    VAL_FRACTION,
    DiscoverConfig,
    Plan,
    RethinkConfig,
    budget_slug,
    default_run_dir,
    derive,
    is_sparse,
    load_base,
    plain,
    plan,
    resolve_sparsity,
    save_sparse_checkpoint,
    train_base,
)
from archsearch.pruners import plot_scales, scale_cuts, scale_distribution, warning_line

if TYPE_CHECKING:
    from archsearch.train import TrainProgress

__all__ = ["CHECKPOINT_VERSION", "DEFAULT_SPACE", "SPARSITY_RULES", "VAL_FRACTION",
           "DiscoverConfig", "Plan", "RethinkConfig", "budget_slug", "default_run_dir",
           "derive", "discover", "is_sparse", "load_sparse_checkpoint", "plan",
           "resolve_sparsity", "save_sparse_checkpoint", "write_outputs"]

_log = logging.getLogger(__name__)
load_sparse_checkpoint = load_base  # the name bench/ uses


def write_outputs(plan: Plan, model: nn.Module | None, genome: Genome,
                  extra: dict[str, Any], save_genome: bool = True) -> dict[str, Any]:
    """genome.json (unless refused), sparse.pt, widths.png, scales.png and result.json."""
    from archsearch.kinds import WIDTH  # a width genome's rows and plot, as `show` draws them

    run = plan.run_dir
    run.mkdir(parents=True, exist_ok=True)
    files = {}
    if save_genome:
        files["genome"] = str(genome.save(run / "genome.json"))
    rows = WIDTH.rows(plan.bound, genome)
    title = (f"{plan.pruner.name} on {plan.bound.space.name}/{plan.bound.info.name}: "
             f"{genome.cost['macs_ratio']:.1%} MACs")
    WIDTH.plot(rows, run / "widths.png", title)
    files["widths_plot"] = str(run / "widths.png")
    if model is not None:
        save_sparse_checkpoint(run / "sparse.pt", plan, model)
        dist = scale_distribution(plan.pruner, model)
        cuts = scale_cuts(dist, genome.provenance.get("threshold"))
        plot_scales(dist, run / "scales.png", cuts)
        files.update(checkpoint=str(run / "sparse.pt"), scales_plot=str(run / "scales.png"))
    result = {"method": plan.pruner.name, "space": plan.bound.space.name,
              "dataset": plan.bound.info.name, "budget": str(plan.budget),
              "config": plain(asdict(plan.config)), "cost": genome.cost,
              "base_cost": {"macs": plan.bound.base_cost.macs,
                            "params": plan.bound.base_cost.params},
              "widths": rows, "removed_blocks": sorted(genome.removed_blocks()),
              "flagged_groups": [r["group"] for r in rows if r["flagged"]],
              "provenance": plain(genome.provenance),
              "files": {**files, "result": str(run / "result.json")}, **extra}
    atomic_write_json(run / "result.json", result)
    return result


def discover(plan: Plan, on_epoch: Callable[[dict[str, Any]], None] | None = None,
             progress: bool | TrainProgress | None = True) -> dict[str, Any]:
    """Train (when the pruner needs it), derive the genome, write the run folder."""
    start = time.perf_counter()
    model, train_info = None, {}
    if plan.pruner.needs_training:
        model, train_info = train_base(plan, plan.run_dir / "base", on_epoch,
                                       progress=progress)
        model = model.cpu()
    genome = derive(plan, model)
    _log.info("discover: %s genome at %s: %.1f%% MACs", plan.pruner.name, plan.budget,
              100 * genome.cost["macs_ratio"])
    evidence = genome.provenance.get("separation")
    warnings = [] if evidence is None or evidence["separated"] else [
        warning_line(evidence, plan.pruner.name)]
    refused = bool(warnings) and plan.config.require_separation
    result = write_outputs(plan, model, genome, {
        "train": train_info, "wall_s": time.perf_counter() - start,
        "separated": None if evidence is None else evidence["separated"],
        "separation": evidence, "warnings": warnings}, save_genome=not refused)
    if refused:
        raise SeparationError(f"{warnings[0].removeprefix('warning: ')}; no genome written "
                              f"(--require-separation); evidence in {result['files']['result']}")
    return result


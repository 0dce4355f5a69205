"""Unstructured pruning runs: `discover` and `rethink` for methods whose genome is a sparsity
genome (archsearch.sparsity), e.g. `magnitude`. No printing.

The paper's unstructured experiment (Liu et al. 2019, section 6): fine-tune = the
magnitude mask with the inherited weights; Scratch-E/B = a fresh initialisation with a random
mask of the same per-layer density; the uniform leg keeps the same density in every layer
(random mask, Scratch-B). Masked weights stay zero through training (their gradients are
zeroed between backward and step). Scratch-B's epochs scale by base MACs / non-zero MACs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from torch import nn

from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.kinds import SPARSITY
from archsearch.pipeline import Plan, plain, save_sparse_checkpoint, train_base, train_config
from archsearch.pruners import MagnitudePruner
from archsearch.rethink import Leg, RethinkRun
from archsearch.sparsity import (
    MaskedTraining,
    SparsityGenome,
    density_of,
    density_rows,
    layout,
    make_genome,
    random_masks,
    uniform_density,
)

if TYPE_CHECKING:
    from archsearch.train import TrainProgress

GENOME_FILE = "sparsity.json"


def discover_sparse(plan: Plan, on_epoch: Callable[[dict[str, Any]], None] | None = None,
                    progress: bool | TrainProgress | None = True) -> dict[str, Any]:
    """Train the base (when the method needs it), derive the sparsity genome at the budget,
    write the run folder: sparsity.json, sparse.pt (the dense trained base), result.json."""
    start = time.perf_counter()
    run = plan.run_dir
    model, train_info = None, {}
    if plan.pruner.needs_training:
        model, train_info = train_base(plan, run / "base", on_epoch, progress=progress)
        model = model.cpu()
    genome = plan.pruner.genome(model, plan.budget)
    genome.provenance.update(dataset=plan.bound.info.name, seed=plan.config.seed,
                             source_run=str(run))
    run.mkdir(parents=True, exist_ok=True)
    genome.save(run / GENOME_FILE)
    files = {"genome": str(run / GENOME_FILE)}
    if model is not None:
        save_sparse_checkpoint(run / "sparse.pt", plan, model)
        files["checkpoint"] = str(run / "sparse.pt")
    result = {"method": plan.pruner.name, "genome_kind": SPARSITY.name,
              "space": plan.bound.space.name, "dataset": plan.bound.info.name,
              "budget": str(plan.budget), "config": plain(asdict(plan.config)),
              "cost": genome.cost, "base_cost": {"macs": plan.bound.base_cost.macs,
                                                 "params": plan.bound.base_cost.params},
              "layers": density_rows(plan.bound, genome),
              "files": files,
              "train": train_info, "wall_s": time.perf_counter() - start}
    atomic_write_json(run / "result.json", result)
    return result


class SparseRethink(RethinkRun[SparsityGenome]):
    """`rethink` for a sparsity-genome method: same legs, folders and resume as `Rethink`,
    with masks instead of narrower models (see the module docstring)."""

    @property
    def sparsifier(self) -> MagnitudePruner:
        """The plan's method (a sparsifier: plan() binds the method the CLI dispatched on)."""
        pruner = self.plan.pruner
        assert isinstance(pruner, MagnitudePruner)
        return pruner

    def uniform_genome(self) -> SparsityGenome:
        plan = self.plan
        density = uniform_density(plan.bound, plan.budget, self.sparsifier.pruned_layers())
        return make_genome(plan.bound, density, {"method": "uniform", "budget": str(plan.budget),
                                                 "dataset": plan.bound.info.name})

    def _pruned(self, seed: int, model: nn.Module | None
                ) -> tuple[nn.Module, SparsityGenome]:
        plan = self.plan
        model = self.base(seed, model)
        saved = plan.run_dir / f"seed{seed}" / GENOME_FILE
        if saved.exists():
            genome = SparsityGenome.load(saved)
        else:
            genome = plan.pruner.genome(model, plan.budget)
            genome.provenance.update(dataset=plan.bound.info.name, seed=seed,
                                     source_run=str(plan.run_dir / f"seed{seed}"))
            genome.save(saved)
        return model, genome

    def _train_pruned(self, leg: Leg, base: nn.Module | None,
                      genome: SparsityGenome) -> dict[str, Any]:
        from archsearch.train import resolve_epochs, seed_everything, train

        plan, bound = self.plan, self.plan.bound
        pruner = self.sparsifier
        assert base is not None
        target = self.uniform if leg.name == "uniform" else genome
        if leg.name == "finetune":
            model = copy.deepcopy(pruner.restore(base)).cpu()
            masks = pruner.masks(base, genome)
            cfg = train_config(plan, "finetune", leg.seed, plan.config.finetune_epochs)
        else:
            seed_everything(leg.seed)
            model = bound.base_model()
            masks = random_masks(bound, target.density, seed=leg.seed)
            cfg = train_config(plan, "scratch-e" if leg.name == "scratch-e" else "scratch-b",
                               leg.seed)
        keeper = MaskedTraining(masks)
        keeper.apply(model)
        epochs = resolve_epochs(cfg, bound.base_cost.macs, target.cost["macs"])
        result = train(model, plan.data(), cfg, epochs=epochs, run_dir=leg.run_dir,
                       resume=plan.config.resume, regularizer=keeper.regularize,
                       progress=self.progress)
        record = self._score(leg, result.model, target, result.summary())
        measured = density_of(result.model, bound)
        record["max_density_error"] = max(abs(measured[m] - d) for m, d in
                                          _kept_density(plan, target).items())
        return record

    def write(self, wall_s: float) -> dict[str, Any]:
        doc = super().write(wall_s)
        doc["genome_kind"] = SPARSITY.name
        note = ("\nUnstructured pruning: fine-tune = the magnitude mask with the inherited "
                "weights; Scratch-E/B = fresh initialisation with a random mask of the same "
                "per-layer density; uniform = one density in every layer, random mask, "
                "Scratch-B. MACs and params count the non-zero weights; Scratch-B's epochs "
                "scale by base MACs / non-zero MACs.\n")
        atomic_write_json(self.plan.run_dir / "rethink.json", doc)
        md = self.plan.run_dir / "rethink.md"
        atomic_write_text(md, md.read_text(encoding="utf-8") + note)
        return doc


def _kept_density(plan: Plan, genome: SparsityGenome) -> dict[str, float]:
    lay = layout(plan.bound)
    return {m: k / lay.numel[m] for m, k in lay.kept(genome.density).items()}

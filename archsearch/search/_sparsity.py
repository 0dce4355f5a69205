"""Searching sparsity genomes: per prunable layer, the fraction of weights kept.

`archsearch search --genome-kind sparsity` runs the same study, workers, fidelities and
results as a width search, with three differences:

- a trial samples one parameter per conv layer, `d.<layer>`: the natural log of the
  layer's density relative to the geometric mean of all of them, in [-3, 3]. Only the
  shape matters: one multiplier scales it onto the budget (`sparsity.fit_density`), so every
  candidate has the same non-zero params (or MACs);
- guides are sparsity genomes (`archsearch discover --method magnitude`), from any space:
  their per-layer densities are averaged by relative depth (`sparsity.guide_shape`, the
  paper's guided sparsification), the guided sampler proposes around that pattern, and the
  pattern itself and the uniform density are the first trials;
- a trial is trained from scratch with a random mask of its per-layer densities (masked
  weights stay at zero), on the proxy schedule; there is no cheap screen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import Trial
from torch import nn

from archsearch.budget import Budget
from archsearch.build import BoundSpace, bind_genome
from archsearch.errors import ArchsearchError
from archsearch.kinds import GENOME_KINDS
from archsearch.search._evaluate import ProxyTraining
from archsearch.sparsity import (
    MaskedTraining,
    SparsityGenome,
    check_budget,
    conv_layers,
    fit_density,
    guide_shape,
    make_genome,
    random_masks,
)

if TYPE_CHECKING:
    from archsearch.search._search import SearchConfig

LOG_RANGE = 3.0  # a layer's ln density lies within ±3 of the geometric mean of the layers


def check_genome_kind(config: SearchConfig) -> None:
    """A known genome kind; for sparsity, what its search cannot do, refused in one line. A
    sparsity search has no screen: every trial is proxy-trained (`evaluator` becomes
    `proxy`)."""
    if config.genome_kind not in GENOME_KINDS:
        raise ArchsearchError(f"--genome-kind must be one of {', '.join(GENOME_KINDS)}, but "
                              f"got {config.genome_kind!r}")
    if config.genome_kind != "sparsity":
        return
    if config.screen.evaluator not in (None, "proxy") or config.screen.base is not None:
        raise ArchsearchError("--genome-kind sparsity trains every trial from scratch: "
                              f"--evaluator {config.screen.evaluator or 'proxy'} and --base score "
                              "width genomes only")
    if config.multi:
        raise ArchsearchError("--genome-kind sparsity searches at one budget: "
                              "--objectives accuracy,macs is for width genomes")
    if config.granularity != "group":
        raise ArchsearchError("--granularity applies to width genomes; a sparsity search "
                              "sets one density per conv layer")
    config.screen.evaluator = "proxy"


@dataclass(frozen=True)
class SparseParameterisation:
    """How trials of one space, dataset and budget map to sparsity genomes."""

    bound: BoundSpace
    budget: Budget
    layers: tuple[str, ...]

    def params(self) -> dict[str, str]:
        """Parameter name -> the layer it sets."""
        return {f"d.{m}": m for m in self.layers}

    def suggest(self, trial: Trial, budget: Budget | None = None) -> SparsityGenome:
        """Sample a density shape on `trial` and project it onto the budget."""
        shape = {m: math.exp(trial.suggest_float(p, -LOG_RANGE, LOG_RANGE))
                 for p, m in self.params().items()}
        return self.project(shape, budget)

    def project(self, shape: Mapping[str, float], budget: Budget | None = None,
                provenance: Mapping[str, Any] | None = None) -> SparsityGenome:
        """The sparsity genome with densities proportional to `shape`, on the budget
        (BudgetError when it cannot be met within 1%)."""
        budget = budget or self.budget
        density = fit_density(self.bound, {m: float(shape[m]) for m in self.layers}, budget)
        genome = make_genome(self.bound, density, {"method": "search", "budget": str(budget),
                                                   **(provenance or {})})
        check_budget(self.bound, genome, budget)
        return genome

    def guide_params(self, shape: Mapping[str, float]) -> dict[str, float]:
        """The parameters of a density shape (clipped to the parameter range)."""
        logs = {m: math.log(shape[m]) for m in self.layers}
        mean = sum(logs.values()) / len(logs)
        return {f"d.{m}": min(LOG_RANGE, max(-LOG_RANGE, v - mean)) for m, v in logs.items()}

    def centres(self, guides: Sequence[SparsityGenome]) -> dict[str, float]:
        """The guided sampler's centre: the guides' averaged pattern, as parameters."""
        return self.guide_params(guide_shape(guides, self.layers)) if guides else {}

    @classmethod
    def for_search(cls, bound: BoundSpace, budget: Budget,
                   config: SearchConfig) -> SparseParameterisation:
        """A sparsity search's: one density per conv layer."""
        return cls(bound, budget, tuple(conv_layers(bound)))

    def uniform(self) -> SparsityGenome:
        """The baseline: one density in every conv layer, on the budget."""
        return self.project(dict.fromkeys(self.layers, 1.0), self.budget,
                            {"baseline": "uniform"})

    def enqueued(self, guides: Sequence[tuple[str, SparsityGenome]], uniform: SparsityGenome,
                 first: int) -> list[tuple[dict[str, float], dict[str, Any]]]:
        """The first trials (parameters, user attributes): the guides' averaged pattern (the
        paper's guided sparsification), then the uniform density (the baseline), as far as
        the first stage's `first` trials allow."""
        queue: list[tuple[Mapping[str, float], dict[str, Any]]] = []
        if guides:
            shape = guide_shape([g for _, g in guides], self.layers)
            queue.append((shape, {"guide": ",".join(p for p, _ in guides)}))
        if not queue or first > 1:
            queue.append((uniform.density, {"baseline": "uniform"}))
        return [(self.guide_params(shape), {**label, "guide_shape": dict(shape)})
                for shape, label in queue[:first]]

    def replay(self, shape: Mapping[str, float], sampled: SparsityGenome, budget: Budget,
               attrs: Mapping[str, Any]) -> SparsityGenome:
        """An enqueued trial's genome: its exact density shape on the budget."""
        label = {k: attrs[k] for k in ("guide", "baseline") if k in attrs}
        return self.project(shape, budget, label)


class SparseProxyEvaluator(ProxyTraining[SparsityGenome]):
    """Trains a sparsity genome from scratch on the proxy schedule: a fresh base with a
    random mask of the genome's per-layer densities (seeded by the schedule), masked weights
    kept at zero; returns validation accuracy."""

    def __call__(self, genome: SparsityGenome,
                 report: Callable[[int, float], None] | None) -> float:
        return self.fit(genome, report)[0]

    def fit(self, genome: SparsityGenome, report: Callable[[int, float], None] | None = None
            ) -> tuple[float, nn.Module]:
        """(validation accuracy, the trained masked model)."""
        from archsearch.train import seed_everything, train

        seed_everything(self.schedule.seed)
        bound = bind_genome(genome)
        model = bound.base_model()
        keeper = MaskedTraining(random_masks(bound, genome.density, seed=self.schedule.seed))
        keeper.apply(model)

        def on_epoch(record: dict[str, Any]) -> None:
            if report is not None:
                report(int(record["epoch"]), float(record["eval_acc"]))

        result = train(model, self.splits, self.train_config(), epochs=self.schedule.epochs,
                       regularizer=keeper.regularize, on_epoch=on_epoch,
                       progress=self.progress)
        score = result.val_acc if result.val_acc is not None else \
            result.history[-1]["eval_acc"]
        return float(score), result.model

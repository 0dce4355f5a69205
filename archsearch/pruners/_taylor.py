"""Taylor expansion (Molchanov et al., ICLR 2017): a channel's importance is the first-order
estimate of the loss change when its activation is zeroed, |mean(a * dL/da)|.

Groups are compared on one global ranking, so each group's scores are rescaled first. The
paper divides a layer's scores by their L2 norm; that norm grows as sqrt(width) (n channels
of scores with root mean square r have norm sqrt(n) * r), so a channel of a 64-wide layer
scores half of an identical channel of a 16-wide one, and one global threshold cuts the
wide layers hardest (resnet20 at 25%FLOPs kept 8 of layer3's 64 stream channels and trained
1.9 points below uniform, bench/results/genome_quality.md). Here a group's scores are divided
by their root mean square instead: the paper's normalisation times sqrt(width), the same
ranking within a group, and scores whose scale does not depend on the group's width."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archsearch.budget import Budget
from archsearch.build import BoundSpace
from archsearch.genome import Genome
from archsearch.pruners._base import as_budget
from archsearch.pruners._options import CUT_OPTION, DECAY_OPTION, MIN_KEEP_OPTION
from archsearch.pruners._probe import ProbePruner, ProbeStats, probe_points
from archsearch.pruners._slimming import MIN_KEEP, check_cut, check_min_keep, ranked_genome


class TaylorStats(ProbeStats):
    """Keeps each training step's watched activations (with `retain_grad`) until
    `collect`, after the backward pass, turns them into per-channel criteria."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], decay: float):
        super().__init__(shapes, decay)
        self.pending: list[tuple[str, torch.Tensor]] = []

    def observe(self, key: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.retain_grad()
            self.pending.append((key, output))

    @torch.no_grad()
    def collect(self) -> None:
        """|a * dL/da| averaged over positions, its absolute value averaged over the batch
        (the criterion of Molchanov et al.), added to each watched layer's running mean."""
        pending, self.pending = self.pending, []
        for key, out in pending:
            if out.grad is None:
                continue
            prod = out.detach().float() * out.grad.float()
            per_sample = prod.flatten(2).mean(dim=2) if prod.dim() > 2 else prod
            self.accumulate(key, per_sample.abs().mean(dim=0))


class TaylorPruner(ProbePruner):
    """Accumulates the first-order Taylor criterion per channel while the base trains
    (running mean over steps, `decay` per step: 0.99 weighs roughly the last 100 steps; 1 is
    the plain mean); a group's score is the mean over the layers that output its channels
    (its BatchNorms), divided by the group's root mean square score (`rms_normalise`: the
    scale-invariant form of the paper's per-layer L2 normalisation, see the module doc).
    One global ranking of the scores gives the genome through slimming's own path
    (`ranked_genome`: bisection onto the budget, or `cut="cost"`'s score per unit of cost;
    group floor `min_keep`, separation evidence).

    The activation is the BatchNorm output; with a ReLU after it, a * dL/da is the same
    before and after the ReLU (both vanish where it clips), so this is the criterion on the
    post-activation feature maps of the paper.
    """

    name = "taylor"
    OPTIONS = (DECAY_OPTION, MIN_KEEP_OPTION, CUT_OPTION)
    stats_name = "taylor_stats"
    score_kind = "Taylor |a * dL/da| (over its group's RMS)"

    def __init__(self, bound: BoundSpace, decay: float = 0.99, min_keep: float = MIN_KEEP,
                 cut: str = "global"):
        super().__init__(bound, decay)
        self.min_keep = check_min_keep(min_keep)
        self.cut = check_cut(cut)
        self._points = probe_points(bound)

    def options(self) -> dict[str, object]:
        return {**super().options(), "min_keep": self.min_keep, "cut": self.cut}

    def make_stats(self) -> TaylorStats:
        sizes = {m: (self.bound.graph.groups[g].size,)
                 for g, mods in self._points.items() for m in mods}
        return TaylorStats(sizes, self.decay)

    def taps(self) -> dict[str, str]:
        return {m: m for mods in self._points.values() for m in mods}

    def regularize(self, model: nn.Module) -> None:
        stats = getattr(model, self.stats_name, None)
        if isinstance(stats, TaylorStats):
            stats.collect()

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Per group: the mean criterion of its layers, divided by the group's RMS."""
        stats = self.stats(model)
        return {group: rms_normalise(torch.stack([stats.mean(m) for m in mods]).mean(dim=0))
                for group, mods in self._points.items()}

    def genome(self, model: nn.Module, budget: Budget | str) -> Genome:
        """One global ranking of the scores at the budget, exactly as slimming's (group
        floor `min_keep`, separation evidence in the provenance)."""
        return ranked_genome(self, self.importance(model), as_budget(budget), self.min_keep,
                             self.cut)


def rms_normalise(raw: torch.Tensor) -> torch.Tensor:
    """`raw` over its root mean square (unchanged when it is all zeros): unit mean square
    whatever the number of channels, where the paper's `raw / ||raw||` has mean square
    1 / width. Channels whose scores are drawn from one distribution get normalised scores
    from one distribution in groups of any width, so a global threshold keeps about the same
    share of each."""
    rms = raw.pow(2).mean().sqrt()
    return raw / rms if rms > 0 else raw

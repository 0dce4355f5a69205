"""Principal filter analysis (Suau et al., 2018), PFA-En: a layer keeps as many channels as
principal components of its responses hold a share of the spectral energy; the channels
kept are the least correlated ones."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from archsearch.budget import TOLERANCE, Budget, fit_to_budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.pruners._base import as_budget
from archsearch.pruners._options import DECAY_OPTION, Option, count
from archsearch.pruners._probe import ProbePruner, ProbeStats, probe_points

_log = logging.getLogger(__name__)


class ResponseStats(ProbeStats):
    """Running first and second moments of each watched layer's (ReLU-ed) responses, one
    row per spatial position, on a strided subsample of at most `rows` rows per step."""

    def __init__(self, sizes: dict[str, int], decay: float, rows: int):
        shapes: dict[str, tuple[int, ...]] = {}
        for key, c in sizes.items():
            shapes[f"{key}#mean"] = (c,)
            shapes[f"{key}#outer"] = (c, c)
        super().__init__(shapes, decay)
        self.rows = rows
        self.calls = 0

    @torch.no_grad()
    def observe(self, key: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        x = torch.relu(output.detach().float())
        x = x.movedim(1, -1).reshape(-1, x.shape[1])
        stride = max(1, len(x) // self.rows)
        self.calls += 1
        x = x[self.calls % stride::stride][: self.rows]
        self.accumulate(f"{key}#mean", x.mean(dim=0))
        self.accumulate(f"{key}#outer", x.T @ x / len(x))

    def covariance(self, key: str) -> torch.Tensor:
        mean = self.mean(f"{key}#mean")
        return self.mean(f"{key}#outer").double() - torch.outer(mean, mean).double()


class PFAPruner(ProbePruner):
    """Gathers the covariance of each group's responses while the base trains (the output of
    its BatchNorms after a ReLU, averaged over a group's layers). A group's width at energy
    share `e` is the number of leading eigenvalues whose sum reaches `e` of the total
    (PFA-En); `e` is bisected so the genome costs the budget (`fit_to_budget` trims the
    rounding). Kept channels: the greedy removal of the most correlated channel (of the most
    correlated remaining pair, the one more correlated with the rest) ranks them; dead
    channels (no variance) go first."""

    name = "pfa"
    OPTIONS = (DECAY_OPTION, Option("rows", "responses kept per layer and step for the "
                                    "covariance (an integer >= 2)", count))
    stats_name = "pfa_stats"
    score_kind = "PFA rank (greedy correlation removal order)"

    def __init__(self, bound: BoundSpace, decay: float = 0.99, rows: int = 512):
        super().__init__(bound, decay)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 2:
            raise ArchsearchError(f"rows must be an integer >= 2, but got rows={rows!r}")
        self.rows = rows
        self._points = probe_points(bound)

    def options(self) -> dict[str, object]:
        return {**super().options(), "rows": self.rows}

    def make_stats(self) -> ResponseStats:
        sizes = {m: self.bound.graph.groups[g].size
                 for g, mods in self._points.items() for m in mods}
        return ResponseStats(sizes, self.decay, self.rows)

    def taps(self) -> dict[str, str]:
        return {m: m for mods in self._points.values() for m in mods}

    def covariances(self, model: nn.Module) -> dict[str, torch.Tensor]:
        stats = self.stats(model)
        return {g: torch.stack([stats.covariance(m) for m in mods]).mean(dim=0)
                for g, mods in self._points.items()}

    def spectra(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Per group, the eigenvalues of its response covariance, largest first, >= 0."""
        return {g: torch.linalg.eigvalsh(c).flip(0).clamp(min=0)
                for g, c in self.covariances(model).items()}

    def widths_at(self, spectra: dict[str, torch.Tensor], energy: float) -> dict[str, int]:
        """PFA-En: per group, the fewest components holding `energy` of the spectrum."""
        out = {}
        for group, eig in spectra.items():
            total = float(eig.sum())
            if total <= 0:
                out[group] = 1
                continue
            share = eig.cumsum(0) / total
            out[group] = min(len(eig), int((share < energy - 1e-12).sum()) + 1)
        return out

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Per channel, its position in the greedy correlation-based removal order (the last
        removed scores highest)."""
        return {g: removal_rank(c) for g, c in self.covariances(model).items()}

    def genome(self, model: nn.Module, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        spectra = self.spectra(model)
        energy = self._energy_for(spectra, budget)
        shape = self._shape(self.widths_at(spectra, energy))
        widths = fit_to_budget(shape, budget, self.bound)
        _log.info("pfa: energy share %.4f", energy)
        return self.bound.genome(widths, dict.fromkeys(self.bound.graph.blocks, True),
                                 self._provenance(budget, energy=energy))

    def _shape(self, widths: dict[str, int]) -> dict[str, float]:
        sizes = self.bound.graph.base_widths()
        return {g: self.bound.space.round_width(w, sizes[g]) / sizes[g] for g, w in widths.items()}

    def _energy_for(self, spectra: dict[str, torch.Tensor], budget: Budget) -> float:
        """The smallest energy share (by bisection) whose widths cost at least the budget."""
        target = budget.target(self.bound)
        pricer, active = budget.pricer(self.bound), self.bound.costs.active({})
        base = self.bound.graph.base_widths()

        def cost(energy: float) -> float:
            shape = self._shape(self.widths_at(spectra, energy))
            widths = {g: round(shape[g] * base[g]) for g in shape}
            return pricer.vector(self.bound.costs.widths_vector(widths), active)

        lo, hi = 0.0, 1.0
        if cost(hi) < target * (1 - TOLERANCE):
            return hi
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if cost(mid) >= target else (mid, hi)
        return hi


def removal_rank(cov: torch.Tensor) -> torch.Tensor:
    """Channels ranked by greedy removal: dead channels first (lowest index first), then
    repeatedly, of the most correlated remaining pair, the channel with the larger summed
    |correlation| to the rest. Returns per channel its removal position (higher = kept
    longer)."""
    c = len(cov)
    var = cov.diagonal().clamp(min=0)
    dead = var <= 1e-12 * max(float(var.max()), 1e-30)
    std = var.sqrt().clamp(min=1e-30)
    corr = (cov / std[:, None] / std[None, :]).abs()
    corr.fill_diagonal_(0)
    corr[dead] = 0
    corr[:, dead] = 0
    rank = torch.empty(c)
    alive = torch.ones(c, dtype=torch.bool)
    pos = 0
    for i in torch.nonzero(dead).flatten().tolist():
        rank[i], alive[i], pos = pos, False, pos + 1
    while alive.any():
        idx = torch.nonzero(alive).flatten()
        sub = corr[idx][:, idx]
        flat = int(sub.argmax())
        a, b = divmod(flat, len(idx))
        pair = (int(idx[a]), int(idx[b]))
        sums = sub.sum(dim=1)
        drop = pair[0] if sums[a] >= sums[b] else pair[1]
        if len(idx) == 1:
            drop = int(idx[0])
        rank[drop], alive[drop], pos = pos, False, pos + 1
    return rank

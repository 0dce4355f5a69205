"""Channel pruning by LASSO regression (He et al., "Channel Pruning for Accelerating Very Deep
Neural Networks", ICCV 2017): a group's channels are chosen by a LASSO on their contributions
to the next layers' outputs, then the kept channels are rescaled by least squares so those
outputs are reconstructed.

With Z the `(samples, channels)` contributions of a group's channels to the sampled outputs
of the layers reading it (ThiNet's samples, `archsearch.pruners._thinet`) and Y = Z·1 the
outputs themselves, the LASSO is  min_β  1/(2n) ||Y - Zβ||² + λ ||β||₁ ; λ is bisected until
exactly the genome's width of coefficients is non-zero (He et al.'s channel selection), and
the kept channels' coefficients are then refitted without the penalty (least squares on the
kept channels) and folded into the reading layers' weights. He et al. go on to solve the
reading layers' whole weights by least squares; this keeps one coefficient per channel.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from archsearch.build import BoundSpace
from archsearch.genome import Genome
from archsearch.pruners._base import filter_l1
from archsearch.pruners._thinet import ThiNetPruner

_log = logging.getLogger(__name__)

PATH = 30  # λ values on the path: λ_max (every coefficient zero) down to λ_max * 1e-4


class Lasso:
    """min_β ½βᵀGβ - cᵀβ + λ||β||₁ with G = ZᵀZ/n, c = ZᵀY/n, Y = Z·1, by FISTA (numpy,
    float64), warm-started along a path of decreasing λ."""

    def __init__(self, contrib: torch.Tensor, iters: int = 150, tol: float = 1e-7):
        z = contrib.detach().double().cpu().numpy()
        n = max(z.shape[0], 1)
        self.gram = z.T @ z / n
        self.corr = self.gram.sum(axis=1)  # Zᵀ(Z·1)/n
        self.top = float(np.abs(self.corr).max())  # at λ >= top every coefficient is zero
        self.step = 1.0 / max(float(np.linalg.eigvalsh(self.gram)[-1]), 1e-300)
        self.iters, self.tol = iters, tol

    def solve(self, lam: float, start: np.ndarray | None = None) -> np.ndarray:
        beta = np.zeros_like(self.corr) if start is None else start.copy()
        ahead, t = beta.copy(), 1.0
        for _ in range(self.iters):
            z = ahead - self.step * (self.gram @ ahead - self.corr)
            new = np.sign(z) * np.maximum(np.abs(z) - self.step * lam, 0.0)
            t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
            ahead = new + ((t - 1.0) / t_next) * (new - beta)
            moved = float(np.abs(new - beta).max())
            beta, t = new, t_next
            if moved <= self.tol * max(1.0, float(np.abs(beta).max())):
                break
        return beta

    def path(self) -> list[tuple[float, np.ndarray]]:
        """(λ, β) from λ_max down, each solve warm-started from the one before."""
        out, beta = [], np.zeros_like(self.corr)
        for lam in self.top * np.logspace(0, -4, PATH):
            beta = self.solve(float(lam), beta)
            out.append((float(lam), beta))
        return out


def lasso_select(contrib: torch.Tensor, k: int, steps: int = 30) -> torch.Tensor:
    """The sorted indices of `k` channels: the support of the LASSO whose λ leaves exactly `k`
    non-zero coefficients (He et al.: found on the path, then by bisection); if no λ does,
    the k largest |β| at the λ that first leaves more than k (or at the path's end), then
    the channels next in line."""
    c = contrib.shape[1]
    if k >= c:
        return torch.arange(c)
    problem = Lasso(contrib)
    if problem.top == 0.0:  # nothing to reconstruct: any k
        return torch.arange(k)
    hi, beta_hi = problem.top, np.zeros(c)  # fewer than k non-zero
    lo, beta_lo = None, None
    for lam in problem.top * np.logspace(0, -4, PATH)[1:]:
        beta = problem.solve(float(lam), beta_hi)
        nnz = int(np.count_nonzero(beta))
        if nnz == k:
            return _support(beta)
        if nnz > k:
            lo, beta_lo = float(lam), beta
            break
        hi, beta_hi = float(lam), beta
    if lo is None or beta_lo is None:
        beta_lo = beta_hi
    else:
        for _ in range(steps):
            mid = (lo + hi) / 2
            beta = problem.solve(mid, beta_hi)
            nnz = int(np.count_nonzero(beta))
            if nnz == k:
                return _support(beta)
            if nnz > k:
                lo, beta_lo = mid, beta
            else:
                hi, beta_hi = mid, beta
    # no λ leaves exactly k (a LASSO keeps at most as many channels as it has samples):
    # |β| first, then the channels the LASSO would take next (the largest gradient on the
    # residual), then what a channel contributes at all (its energy)
    grad = np.abs(problem.gram @ beta_lo - problem.corr)
    order = np.lexsort((-problem.gram.diagonal(), -grad, -np.abs(beta_lo)))
    return torch.from_numpy(np.sort(order[:k])).long()


def _support(beta: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.flatnonzero(beta)).long()


def lasso_rank(contrib: torch.Tensor) -> torch.Tensor:
    """A rank per channel (higher = kept longer): by the largest λ on the path at which its
    coefficient is non-zero (channels the LASSO keeps under stronger penalties first), then
    as `lasso_select` breaks ties (|β| at the path's end, the gradient, the energy)."""
    problem = Lasso(contrib)
    c = contrib.shape[1]
    entered, beta = np.zeros(c), np.zeros(c)
    if problem.top > 0.0:
        for lam, beta in problem.path():
            entered = np.where((beta != 0) & (entered == 0), lam, entered)
    grad = np.abs(problem.gram @ beta - problem.corr)
    order = np.lexsort((problem.gram.diagonal(), grad, np.abs(beta), entered))
    rank = np.empty(c)
    rank[order] = np.arange(c)
    return torch.from_numpy(rank).float()


def refit(contrib: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Least-squares coefficients of the kept channels reconstructing Y = Z·1 (a tiny ridge
    keeps collinear channels finite)."""
    z = contrib.double()
    y = z.sum(dim=1)
    zs = z[:, keep]
    gram = zs.T @ zs
    ridge = 1e-9 * float(gram.diagonal().mean()) + 1e-12
    return torch.linalg.solve(gram + ridge * torch.eye(len(keep), dtype=gram.dtype),
                              zs.T @ y)


class LassoPruner(ThiNetPruner):
    """Predefined widths (uniform, or `stage_ratios` scaled onto the budget, as l1norm and
    thinet); the channels are chosen by LASSO on the next layers' sampled outputs and the
    model a fine-tune starts from has the kept channels rescaled by least squares (see the
    module docstring). Groups read by no dense layer fall back to filter L1 norms."""

    name = "lasso"
    stats_name = "lasso_stats"
    score_kind = "LASSO rank (by the strongest penalty that keeps the channel)"

    def __init__(self, bound: BoundSpace, stage_ratios: Sequence[float] | None = None,
                 samples: int = 512, per_step: int = 16):
        super().__init__(bound, stage_ratios=stage_ratios, samples=samples, per_step=per_step)

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        out, norms = {}, None
        for group in self.bound.graph.prunable:
            contrib = self.contributions(model, group)
            if contrib is None:
                norms = norms or filter_l1(model, self.bound)
                out[group] = norms[group]
            else:
                out[group] = lasso_rank(contrib)
        return out

    def keep(self, model: nn.Module, genome: Genome) -> dict[str, torch.Tensor]:
        """Per group, the LASSO's support at the genome's width."""
        keep, norms = {}, None
        for group in self.bound.graph.prunable:
            size = self.bound.graph.groups[group].size
            width = genome.widths.get(group, size)
            contrib = self.contributions(model, group) if width < size else None
            if contrib is not None:
                keep[group] = lasso_select(contrib, width)
                continue
            if width < size:
                _log.warning("lasso: group %s is read by no dense layer; filter L1 norms "
                             "choose its channels", group)
            norms = norms or filter_l1(model, self.bound)
            keep[group] = torch.sort(-norms[group], stable=True).indices[:width].sort().values
        return keep

    def pruned(self, model: nn.Module, genome: Genome) -> nn.Module:
        """The genome's model inheriting the kept channels, each kept channel's weights in
        the layers reading it scaled by its least-squares coefficient."""
        keep = self.keep(model, genome)
        base = copy.deepcopy(self.restore(model)).cpu()
        with torch.no_grad():
            for group, idx in keep.items():
                size = self.bound.graph.groups[group].size
                contrib = self.contributions(model, group) if len(idx) < size else None
                if contrib is None:
                    continue
                beta = refit(contrib, idx).float()
                for module, feats in self._readers[group]:
                    weight = base.get_submodule(module).weight
                    cols = feats.view(size, -1)[idx]  # (kept, features per channel)
                    weight[:, cols.flatten()] *= beta.repeat_interleave(cols.shape[1]).view(
                        1, -1, *([1] * (weight.dim() - 2)))
        return self.bound.build(genome, keep, base)

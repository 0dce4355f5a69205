"""ThiNet (Luo et al., ICCV 2017): a layer's channels are chosen by how well the next layer's
output is reconstructed without them, greedily, on sampled positions of real inputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from archsearch.budget import Budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.pruners._base import as_budget, filter_l1
from archsearch.pruners._options import STAGE_RATIOS_OPTION, Option, count
from archsearch.pruners._predefined import check_stage_ratios, predefined_widths
from archsearch.pruners._probe import ProbePruner, ProbeStats, buffer_key

_log = logging.getLogger(__name__)


def reading_layers(bound: BoundSpace) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """Per prunable group, the (module, input feature indices) of every dense conv or linear
    layer that reads it: the layers whose outputs ThiNet reconstructs."""
    out: dict[str, list[tuple[str, torch.Tensor]]] = {g: [] for g in bound.graph.prunable}
    seen: set[str] = set()
    for call in bound.graph.calls:
        if call.kind not in ("conv", "linear") or call.depthwise or call.groups != 1 \
                or call.module in seen:
            continue
        seen.add(call.module)
        offset = 0
        for seg in call.inputs:
            width = seg.size * seg.repeat
            if seg.group in out:
                out[seg.group].append((call.module, offset + torch.arange(width)))
            offset += width
    return out


class InputSamples(ProbeStats):
    """A ring of the last `samples` input patches of each reading layer, per group it reads
    (`(samples, channels, kernel positions)`), with the output channel each was drawn for."""

    def __init__(self, layout: dict[str, list[tuple[str, torch.Tensor, int, int]]],
                 samples: int, per_step: int):
        shapes: dict[str, tuple[int, ...]] = {}
        for module, parts in layout.items():
            shapes[f"{module}#out"] = (samples,)
            shapes[f"{module}#pos"] = ()
            for group, _, channels, k in parts:
                shapes[f"{module}#{group}"] = (samples, channels, k)
        super().__init__(shapes, decay=1.0)
        self.layout = layout
        self.samples, self.per_step = samples, per_step
        self.gen = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def observe(self, key: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        x = args[0].detach().float()
        m, batch = self.per_step, x.shape[0]
        b = torch.randint(batch, (m,), generator=self.gen)
        out = torch.randint(module.weight.shape[0], (m,), generator=self.gen)
        if isinstance(module, nn.Conv2d):
            ho, wo = output.shape[2:]
            pi = torch.randint(ho, (m,), generator=self.gen)
            pj = torch.randint(wo, (m,), generator=self.gen)
        pos = int(self.stat(f"{key}#pos"))
        slots = (pos + torch.arange(m)) % self.samples
        for group, idx, channels, k in self.layout[key]:
            xg = x[:, idx.to(x.device)]
            if isinstance(module, nn.Conv2d):
                patch = _patches(module, xg, b, pi, pj)
            else:
                patch = xg[b.to(x.device)].reshape(m, channels, k)
            self.stat(f"{key}#{group}")[slots] = patch.to(self.stat(f"{key}#{group}").device)
        self.stat(f"{key}#out")[slots] = out.float()
        self.stat(f"{key}#pos").fill_(pos + m)
        getattr(self, buffer_key(f"{key}#pos") + "__n").add_(1.0)

    def filled(self, key: str) -> int:
        return min(int(self.stat(f"{key}#pos")), self.samples)


def _patches(conv: nn.Conv2d, x: torch.Tensor, b: torch.Tensor, pi: torch.Tensor,
             pj: torch.Tensor) -> torch.Tensor:
    """The input windows of output positions (b, pi, pj): `(m, channels, kh * kw)`."""
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    xp = nn.functional.pad(x, (pw, pw, ph, ph))
    dev = x.device
    rows = (pi[:, None] * sh + torch.arange(kh)[None] * dh).to(dev)  # (m, kh)
    cols = (pj[:, None] * sw + torch.arange(kw)[None] * dw).to(dev)  # (m, kw)
    win = xp[b.to(dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (m,kh,kw,C)
    return win.permute(0, 3, 1, 2).reshape(len(b), x.shape[1], kh * kw)


class ThiNetPruner(ProbePruner):
    """Predefined widths (uniform, or `stage_ratios` scaled onto the budget, as l1norm). While
    the base trains, every dense conv/linear layer keeps its last `samples` input windows
    (`per_step` random output positions and output channels each step). A group's channels
    are then removed greedily: each step removes the channel whose removal, added to those
    already removed, changes the sampled outputs of the reading layers least (ThiNet's
    Algorithm 1, summed over all layers reading the group); the kept channels are the last
    removed. ThiNet's least-squares rescaling of the kept weights is not done (fine-tuning
    follows). Groups read by no dense layer fall back to filter L1 norms."""

    name = "thinet"
    OPTIONS = (STAGE_RATIOS_OPTION,
               Option("samples", "input windows kept per layer (an integer >= 1)", count),
               Option("per_step", "windows sampled per layer and step (an integer >= 1)", count))
    stats_name = "thinet_stats"
    needs_training = False  # the widths are predefined; the channel choice needs a trained base
    score_kind = "ThiNet rank (greedy reconstruction removal order)"

    def __init__(self, bound: BoundSpace, stage_ratios: Sequence[float] | None = None,
                 samples: int = 256, per_step: int = 16):
        super().__init__(bound, decay=1.0)
        self.stage_ratios = check_stage_ratios(bound, stage_ratios)
        for what, value in (("samples", samples), ("per_step", per_step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchsearchError(f"{what} must be an integer >= 1, but got "
                                      f"{what}={value!r}")
        self.samples, self.per_step = samples, min(per_step, samples)
        self._readers = reading_layers(bound)

    def options(self) -> dict[str, object]:
        opts: dict[str, object] = {"samples": self.samples, "per_step": self.per_step}
        return {**opts, "stage_ratios": self.stage_ratios} if self.stage_ratios else opts

    def _layout(self) -> dict[str, list[tuple[str, torch.Tensor, int, int]]]:
        modules = dict(self.bound.base_model().named_modules())
        layout: dict[str, list[tuple[str, torch.Tensor, int, int]]] = {}
        for group, readers in self._readers.items():
            channels = self.bound.graph.groups[group].size
            for module, idx in readers:
                mod = modules[module]
                k = (mod.kernel_size[0] * mod.kernel_size[1] if isinstance(mod, nn.Conv2d)
                     else len(idx) // channels)
                layout.setdefault(module, []).append((group, idx, channels, k))
        return layout

    def make_stats(self) -> InputSamples:
        return InputSamples(self._layout(), self.samples, self.per_step)

    def taps(self) -> dict[str, str]:
        return {m: m for m in self._layout()}

    def contributions(self, model: nn.Module, group: str) -> torch.Tensor | None:
        """`(samples, channels)`: each channel's term in the sampled outputs of the layers
        reading `group` (rows of all reading layers stacked), or None without any."""
        stats = self.stats(model)
        rows = []
        for module, _ in self._readers[group]:
            n = stats.filled(module)
            if n == 0:
                continue
            layer = model.get_submodule(module)
            idx = next(i for g, i, _, _ in stats.layout[module] if g == group)
            patch = stats.stat(f"{module}#{group}")[:n].float().cpu()
            out = stats.stat(f"{module}#out")[:n].long().cpu()
            weight = layer.weight.detach().float().cpu()[:, idx]
            weight = weight.reshape(weight.shape[0], patch.shape[1], -1)
            rows.append((weight[out] * patch).sum(dim=2))
        return torch.cat(rows) if rows else None

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        out = {}
        for group in self.bound.graph.prunable:
            contrib = self.contributions(model, group)
            if contrib is None:
                _log.warning("thinet: group %s is read by no dense layer; filter L1 norms "
                             "rank it", group)
                out[group] = filter_l1(model, self.bound)[group]
            else:
                out[group] = greedy_removal_rank(contrib)
        return out

    def genome(self, model: nn.Module | None, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        return self.bound.genome(predefined_widths(self.bound, budget, self.stage_ratios),
                                 dict.fromkeys(self.bound.graph.blocks, True),
                                 self._provenance(budget))


def greedy_removal_rank(contrib: torch.Tensor) -> torch.Tensor:
    """ThiNet's greedy selection on `(samples, channels)` contributions: repeatedly remove
    the channel that keeps the summed contribution of the removed set smallest (in squared
    norm). Returns per channel its removal position (higher = kept longer)."""
    c = contrib.shape[1]
    contrib = contrib.double()
    removed_sum = torch.zeros(contrib.shape[0], dtype=torch.float64)
    alive = torch.ones(c, dtype=torch.bool)
    rank = torch.empty(c)
    for pos in range(c):
        err = (removed_sum[:, None] + contrib).pow(2).sum(dim=0)
        err[~alive] = float("inf")
        pick = int(err.argmin())
        rank[pick], alive[pick] = pos, False
        removed_sum += contrib[:, pick]
    return rank

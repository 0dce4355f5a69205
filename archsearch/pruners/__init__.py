"""Pruners as architecture generators: each turns a (sparsity-)trained base into a genome.

Not to be confused with `optuna.pruners.MedianPruner` and friends, which stop trials;
these remove channels and blocks.
"""

from __future__ import annotations

from typing import Any

from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.pruners._base import Pruner, filter_l1, top_channels
from archsearch.pruners._pfa import PFAPruner
from archsearch.pruners._predefined import L1NormPruner, UniformPruner
from archsearch.pruners._report import plot_scales, scale_distribution
from archsearch.pruners._sfp import SFPPruner
from archsearch.pruners._slimming import SlimmingPruner, threshold_shape
from archsearch.pruners._sss import BlockGate, SSSPruner, drop_blocks
from archsearch.pruners._taylor import TaylorPruner
from archsearch.pruners._thinet import ThiNetPruner

PRUNERS: dict[str, type[Pruner]] = {
    cls.name: cls for cls in (SlimmingPruner, SSSPruner, TaylorPruner, PFAPruner,
                               UniformPruner, L1NormPruner, ThiNetPruner, SFPPruner)
}


def get_pruner(name: str, bound: BoundSpace, **opts: Any) -> Pruner:
    """The pruner `name` for a bound space; `opts` (None values dropped) go to its class."""
    if name not in PRUNERS:
        raise ArchsearchError(f"unknown pruning method {name!r}; known: {', '.join(PRUNERS)}")
    opts = {k: v for k, v in opts.items() if v is not None}
    try:
        return PRUNERS[name](bound, **opts)
    except TypeError as exc:
        raise ArchsearchError(f"method {name!r}: {exc}") from None


__all__ = [
    "PRUNERS",
    "BlockGate",
    "L1NormPruner",
    "PFAPruner",
    "Pruner",
    "SFPPruner",
    "SSSPruner",
    "SlimmingPruner",
    "TaylorPruner",
    "ThiNetPruner",
    "UniformPruner",
    "drop_blocks",
    "filter_l1",
    "get_pruner",
    "plot_scales",
    "scale_distribution",
    "threshold_shape",
    "top_channels",
]

"""Pruners as architecture generators: each turns a (sparsity-)trained base into a genome.

Not to be confused with `optuna.pruners.MedianPruner` and friends, which stop trials;
these remove channels and blocks.
"""

from __future__ import annotations

from typing import Any

from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.pruners._base import Method, Pruner, top_channels
from archsearch.pruners._evidence import warning_line as warning_line
from archsearch.pruners._lasso import LassoPruner
from archsearch.pruners._magnitude import GuidedSparsityPruner, MagnitudePruner
from archsearch.pruners._options import Option, option_defaults
from archsearch.pruners._pfa import PFAPruner
from archsearch.pruners._predefined import L1NormPruner, UniformPruner
from archsearch.pruners._report import plot_scales, scale_cuts, scale_distribution
from archsearch.pruners._sfp import SFPPruner
from archsearch.pruners._slimming import SlimmingPruner
from archsearch.pruners._sss import SSSPruner
from archsearch.pruners._taylor import TaylorPruner
from archsearch.pruners._thinet import ThiNetPruner

PRUNERS: dict[str, type[Pruner]] = {
    cls.name: cls for cls in (SlimmingPruner, SSSPruner, TaylorPruner, PFAPruner,
                               UniformPruner, L1NormPruner, ThiNetPruner, LassoPruner,
                               SFPPruner)
}


# unstructured pruners: their genome is a sparsity genome (archsearch.sparsity), not widths
SPARSIFIERS: dict[str, type[MagnitudePruner]] = {
    cls.name: cls for cls in (MagnitudePruner, GuidedSparsityPruner)}
METHOD_CLASSES: dict[str, type[Method]] = {**PRUNERS, **SPARSIFIERS}  # every method, by name
METHODS = list(METHOD_CLASSES)


def get_pruner(name: str, bound: BoundSpace, **opts: Any) -> Method[Any]:
    """The method `name` (a width pruner or a sparsifier) for a bound space; `opts` (None
    values dropped) go to its class (`method_class`)."""
    cls = method_class(name)
    opts = {k: v for k, v in opts.items() if v is not None}
    try:
        return cls(bound, **opts)
    except TypeError as exc:
        raise ArchsearchError(f"method {name!r}: {exc}") from None


def method_class(name: str) -> type[Method[Any]]:
    """The class of a pruning method (width pruner or sparsifier): the one accessor every
    caller looks a method up by."""
    if name not in METHOD_CLASSES:
        raise ArchsearchError(f"unknown pruning method {name!r}; known: {', '.join(METHODS)}")
    return METHOD_CLASSES[name]


__all__ = [
    "METHODS",
    "METHOD_CLASSES",
    "PRUNERS",
    "SPARSIFIERS",
    "GuidedSparsityPruner",
    "L1NormPruner",
    "LassoPruner",
    "MagnitudePruner",
    "Method",
    "Option",
    "PFAPruner",
    "Pruner",
    "SFPPruner",
    "SSSPruner",
    "SlimmingPruner",
    "TaylorPruner",
    "ThiNetPruner",
    "UniformPruner",
    "get_pruner",
    "method_class",
    "option_defaults",
    "plot_scales",
    "scale_cuts",
    "scale_distribution",
    "top_channels",
]

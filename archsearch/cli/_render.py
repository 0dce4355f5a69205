"""What the commands print about a genome the same way: its cost line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archsearch.cli._common import human
from archsearch.kinds import SPARSITY, GenomeKind, get_kind


def cost_line(cost: Mapping[str, Any], base_macs: float, base_params: float,
              kind: str | GenomeKind[Any] = "width") -> str:
    """`MACs 20.3M (50.0% of 40.6M)   params 135K (49.1% of 272K)`; for a sparsity genome
    the non-zero MACs and params."""
    what = "non-zero " if get_kind(kind) is SPARSITY else ""
    return (f"{what}MACs {human(cost['macs'])} ({cost['macs_ratio']:.1%} of "
            f"{human(base_macs)})   {what}params {human(cost['params'])} "
            f"({cost['params_ratio']:.1%} of {human(base_params)})")

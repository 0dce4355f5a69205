"""Width steps of a bound space's groups: the divisor, and a grouped conv's unit."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archsearch.build import BoundSpace

__all__ = ["group_steps", "round_to_step"]


def group_steps(bound: BoundSpace) -> dict[str, int]:
    """Each prunable group's width step: the space's divisor, and a multiple of the group's
    unit (a grouped conv's channels per group) where it has one."""
    steps = {}
    for g in bound.graph.prunable:
        unit, size = bound.graph.groups[g].unit, bound.graph.groups[g].size
        both = math.lcm(bound.space.divisor, unit)
        steps[g] = both if both <= size else unit
    return steps


def round_to_step(bound: BoundSpace, width: float, base: int, step: int) -> int:
    """`Space.round_width`, in whole steps of a group that has a unit."""
    if step == bound.space.divisor:
        return bound.space.round_width(width, base)
    low = -(-min(base, bound.space.min_width) // step) * step
    return max(low, min(base, int(max(step, round(width / step) * step))))

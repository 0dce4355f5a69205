"""What a latency table times: each costed call of a bound space as a module of its own, at
any input/output width of its grid, on an input of the shape the call sees in the network."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from archsearch.errors import GraphError

if TYPE_CHECKING:
    from archsearch.build import BoundSpace

TIMED_KINDS = ("conv", "linear", "bn", "avgpool", "adaptive_avgpool")
_FREE_KINDS = ("param",)  # a parameter of a non-leaf module: no call of its own to time
_ONE_WIDTH = ("bn", "avgpool", "adaptive_avgpool")  # input width = output width


@dataclass(frozen=True)
class CallSpec:
    """One timed call: `runner(cin, cout, batch, device)` runs it at those widths."""

    key: str  # calls with equal keys share one table entry
    label: str
    grid_in: tuple[int, ...]
    grid_out: tuple[int, ...]
    module: nn.Module
    kind: str
    depthwise: bool
    shape: tuple[int, ...]  # the call's input shape in the base network (batch 1)

    def runner(self, cin: int, cout: int, batch: int, device: str) -> Callable[[], object]:
        module = sized(self.module, self.kind, self.depthwise, cin, cout).to(device).eval()
        axis = -1 if self.kind == "linear" else 1
        shape = list(self.shape)
        if self.kind in _ONE_WIDTH or self.depthwise:  # cin follows cout
            cin = _follow(self.module, self.kind, cout)
        shape[0], shape[axis] = batch, cin
        x = torch.randn(*shape, device=device)
        return lambda: module(x)


def sized(m: nn.Module, kind: str, depthwise: bool, cin: int, cout: int) -> nn.Module:
    """A fresh module like `m` with `cin` inputs and `cout` outputs."""
    if kind == "conv":
        groups = cin // (m.in_channels // m.groups) if depthwise else m.groups
        return type(m)(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation, groups,
                       m.bias is not None, m.padding_mode)
    if kind == "linear":
        return nn.Linear(cin, cout, bias=m.bias is not None)
    if kind == "bn":
        return type(m)(cout, m.eps, m.momentum, m.affine, m.track_running_stats)
    return m  # pools: no weights, the width is the input's


def call_specs(bound: BoundSpace, points: int) -> dict[int, CallSpec]:
    """Per costed call index (calls with nothing to time are left out), its spec; a call
    kind latency has no rule for is refused."""
    graph, costs = bound.graph, bound.costs
    model = bound.base_model().eval()
    shapes = _input_shapes(model, bound)
    low, high = costs.widths_vector(narrowest(bound)), costs.widths_vector({})
    steps = _steps(bound)
    specs: dict[int, CallSpec] = {}
    seen: dict[str, int] = {}
    for i, call in enumerate(graph.calls):
        if call.kind in _FREE_KINDS:
            continue
        if call.kind not in TIMED_KINDS:
            raise GraphError(f"cannot price the latency of {call.module} ({call.kind}): the "
                             "latency table has no rule for it")
        k = seen[call.module] = seen.get(call.module, -1) + 1
        shape = shapes[call.module][min(k, len(shapes[call.module]) - 1)]
        module = model.get_submodule(call.module)
        unit = _unit(module, call.kind, call.depthwise)
        grid_out = _grid(costs.a_out[i] @ low, costs.a_out[i] @ high, points,
                         _step(costs.a_out[i], steps, unit))
        grid_in = (0,) if call.kind in _ONE_WIDTH or call.depthwise else _grid(
            costs.a_in[i] @ low, costs.a_in[i] @ high, points, _step(costs.a_in[i], steps, unit))
        rest = tuple(d for j, d in enumerate(shape) if j not in (0, len(shape) - 1 if
                                                                  call.kind == "linear" else 1))
        label = f"{type(module).__name__} {call.module}"
        key = repr((type(module).__name__, _hyper(module), call.depthwise, rest, grid_in,
                    grid_out))
        specs[i] = CallSpec(key, label, grid_in, grid_out, module, call.kind, call.depthwise,
                            tuple(shape))
    return specs


def narrowest(bound: BoundSpace) -> dict[str, int]:
    """The widths of `fit_to_budget` at multiplier 0: every group at its smallest step."""
    from archsearch.widths import group_steps, round_to_step

    steps, base = group_steps(bound), bound.graph.base_widths()
    return {g: round_to_step(bound, 0.0, base[g], steps[g]) for g in base}


def _input_shapes(model: nn.Module, bound: BoundSpace) -> dict[str, list[tuple[int, ...]]]:
    """Each called module's input shapes, in call order, from one forward of the base."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    names = {c.module for c in bound.graph.calls}
    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, args, n=n: shapes.setdefault(n, []).append(tuple(args[0].shape)))
        for n in names if n]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *bound.info.input_shape))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _follow(m: nn.Module, kind: str, cout: int) -> int:
    """The input width of a call whose input follows its output (depthwise conv, BN, pool)."""
    return max(1, cout * m.in_channels // m.out_channels) if kind == "conv" else cout


def _steps(bound: BoundSpace) -> np.ndarray:
    from archsearch.widths import group_steps

    steps = group_steps(bound)
    return np.array([steps.get(n, 1) for n in bound.costs.group_names], dtype=float)


def _step(coeffs: np.ndarray, steps: np.ndarray, unit: int) -> int:
    """The width step of a call's input or output: its groups' steps times their repeats."""
    used = [int(s * c) for s, c in zip(steps, coeffs, strict=True) if c]
    return math.lcm(unit, min(used) if used else 1)


def _unit(module: nn.Module, kind: str, depthwise: bool) -> int:
    if kind != "conv":
        return 1
    return module.in_channels // module.groups if depthwise else module.groups


def _grid(low: float, high: float, points: int, step: int) -> tuple[int, ...]:
    """`points` widths from `low` to `high`, the inner ones rounded to `step`."""
    low, high = int(round(low)), int(round(high))
    if high <= low:
        return (high,)
    inner = [max(step, int(round(v / step)) * step) for v in np.linspace(low, high, points)[1:-1]]
    return tuple(sorted({low, high, *(v for v in inner if low < v < high)}))


def _hyper(m: nn.Module) -> tuple[object, ...]:
    return tuple(getattr(m, a, None) for a in ("kernel_size", "stride", "padding", "dilation",
                                                "groups", "output_size", "eps", "affine"))

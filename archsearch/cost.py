"""Cost of a genome: MACs (what this project calls FLOPs) and parameters.

`thop_cost` profiles a built model with thop (on a deep copy: thop leaves buffers on the
modules it touches) and is the reference. `CostModel` is the fast path: per-layer formulas
× group widths, from the channel graph, reproducing thop's counting rules exactly
(conv: out_hw·k²·cin/g·cout; linear: in·out; BatchNorm: 4·numel (2 without affine);
avg-pool: out numel; adaptive avg-pool: ⌊(in area / out area + 1)·out numel⌋; activations,
max-pools: 0). thop 0.1.1 has no rule for attention, so `thop_cost` adds one for
self-attention (nn.MultiheadAttention and its sliced form): L·E·3I for the q/k/v projection,
2·L²·I for the scores and the weighted sum, L·I·E' for the output projection (L tokens, E in,
I = heads·head_dim, E' out), and every parameter of the module; and one of the same form for
torchvision's window attention (Swin V1/V2, MaxViT: the scores inside each window, see
`archsearch.graph._window`). Like thop, the analytic counter counts leaf modules of the
exact types thop has a rule for and nothing else (other functional ops, parameters held by
non-leaf modules); a module thop counts that the analytic counter cannot is refused, never
silently skipped.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from archsearch.errors import GraphError
from archsearch.graph import ATTENTION_TYPES, ChannelGraph, LayerCall, count_attention, window_rules

COSTED_KINDS = ("conv", "linear", "bn", "ln", "avgpool", "adaptive_avgpool", "attn_in",
                "attn_out")
CUSTOM_RULES = {t: count_attention for t in ATTENTION_TYPES}  # what thop 0.1.1 lacks
_ZERO_RULES = ("zero_ops", "count_relu")  # thop rules that always count 0 MACs


def custom_rules() -> dict[type, object]:
    """thop rules archsearch adds: self-attention, and torchvision's window attention (the
    classes loaded so far: a model that holds one has loaded it)."""
    return CUSTOM_RULES | window_rules()


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def ratio(self, base: Cost) -> dict[str, float]:
        return {"macs_ratio": self.macs / base.macs, "params_ratio": self.params / base.params}


def thop_cost(model: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """MACs and params of a built model for one input of `input_shape` (C, H, W), by thop."""
    import thop

    clone = copy.deepcopy(model).cpu().float().eval()
    example = torch.zeros(1, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, params = thop.profile(clone, inputs=(example,), custom_ops=custom_rules(),
                                    verbose=False)
    return Cost(int(round(macs)), int(round(params)))


class CostModel:
    """Analytic MACs/params of any genome of one graph: two small mat-vecs per genome.

    Each costed call contributes `q·in·out + a·in + b·out + c` MACs (and likewise params),
    where `in`/`out` are its input/output widths, linear in the group widths; a call inside
    a removed block contributes nothing.
    """

    def __init__(self, graph: ChannelGraph):
        self.graph = graph
        self.group_names = list(graph.groups)
        self.index = {name: i for i, name in enumerate(self.group_names)}
        self.base_widths = np.array([graph.groups[n].size for n in self.group_names], float)
        self.block_names = list(graph.blocks)
        calls = graph.calls
        n, g, b = len(calls), len(self.group_names), len(self.block_names)
        self.a_in, self.a_out = np.zeros((n, g)), np.zeros((n, g))
        self.in_block = np.zeros((n, b), dtype=bool)
        self.macs_terms, self.param_terms = np.zeros((n, 4)), np.zeros((n, 4))
        _refuse_uncounted(graph)
        rules = _thop_rules()
        self.adaptive = np.array([c.kind == "adaptive_avgpool" and c.module_type in rules
                                  for c in calls], dtype=bool)
        self.adaptive_k = np.array([c.kernel + 1.0 for c in calls])[self.adaptive]
        self.adaptive_s = np.array([float(c.spatial) for c in calls])[self.adaptive]
        seen: set[str] = set()
        for i, call in enumerate(calls):
            if call.module_type not in rules:  # thop counts neither MACs nor params
                continue
            for seg in call.inputs:
                self.a_in[i, self.index[seg.group]] += seg.repeat
            for seg in call.outputs:
                self.a_out[i, self.index[seg.group]] += seg.repeat
            for blk in call.blocks:
                self.in_block[i, self.block_names.index(blk)] = True
            self.macs_terms[i], params = _terms(call)
            if (call.module, call.kind) not in seen:  # params once per module, MACs per call
                self.param_terms[i] = params
                seen.add((call.module, call.kind))

    def widths_vector(self, widths: Mapping[str, int]) -> np.ndarray:
        vec = self.base_widths.copy()
        for name, width in widths.items():
            vec[self.index[name]] = width
        return vec

    def active(self, blocks: Mapping[str, bool]) -> np.ndarray:
        removed = np.array([not blocks.get(name, True) for name in self.block_names], dtype=bool)
        if not removed.any():
            return np.ones(len(self.graph.calls))
        return (~(self.in_block & removed).any(axis=1)).astype(float)

    def cost_vector(self, w: np.ndarray, active: np.ndarray) -> tuple[float, float]:
        cin, cout = self.a_in @ w, self.a_out @ w
        feats = np.stack([cin * cout, cin, cout, np.ones_like(cin)], axis=1)
        macs = float(active @ (feats * self.macs_terms).sum(axis=1))
        if self.adaptive.any():  # thop truncates (area ratio + 1) · out numel per call
            pooled = np.floor(self.adaptive_k * (self.adaptive_s * cout[self.adaptive]))
            macs += float(active[self.adaptive] @ pooled)
        params = float(active @ (feats * self.param_terms).sum(axis=1))
        return macs, params

    def cost(self, widths: Mapping[str, int], blocks: Mapping[str, bool] | None = None) -> Cost:
        macs, params = self.cost_vector(self.widths_vector(widths), self.active(blocks or {}))
        return Cost(int(round(macs)), int(round(params)))


def _terms(call: LayerCall) -> tuple[list[float], list[float]]:
    """[q, a, b, c] coefficients of (in·out, in, out, 1) for MACs and for params."""
    s, k = call.spatial, call.kernel
    bias = 1.0 if call.bias else 0.0
    if call.kind == "conv" and call.depthwise:  # whole groups of b = in / groups channels
        b = sum(seg.size * seg.repeat for seg in call.inputs) // call.groups
        return [0, s * k * b, 0, 0], [0, k * b + bias, 0, 0]
    if call.kind == "conv":
        g = call.groups
        return [s * k / g, 0, 0, 0], [k / g, 0, bias, 0]
    if call.kind == "linear":  # s: tokens (positions) it is applied at
        return [float(s), 0, 0, 0], [1.0, 0, bias, 0]
    if call.kind == "attn_in":  # s: tokens; in: embedding, out: heads·head_dim
        return [3.0 * s, 0, 0, 0], [3.0, 0, 3.0 * bias, 0]
    if call.kind == "attn_out":  # in: heads·head_dim (scores and weighted sum), out: embedding
        head_macs, fixed_macs, head_params, fixed_params = call.extra  # k: keys per query
        return [float(s), 2.0 * s * k + head_macs, 0, fixed_macs], [1.0, head_params, bias,
                                                                     fixed_params]
    if call.kind == "ln":
        return [0, s * (4.0 if call.affine else 2.0), 0, 0], [0, (1 + bias) * call.affine, 0, 0]
    if call.kind == "param":  # a parameter of a non-leaf module: thop counts none
        return [0, 0, 0, 0], [0, 0, 0, 0]
    if call.kind == "bn":
        return [0, s * (4.0 if call.affine else 2.0), 0, 0], [0, 2.0 if call.affine else 0, 0, 0]
    if call.kind == "avgpool":
        return [0, 0, s, 0], [0, 0, 0, 0]
    if call.kind == "adaptive_avgpool":  # counted apart, as thop rounds it per call
        return [0, 0, 0, 0], [0, 0, 0, 0]
    raise ValueError(f"no cost rule for call kind {call.kind!r}")


def _thop_rules() -> dict[type, object]:
    """Module type -> thop's counting rule (exact types, as thop matches them)."""
    return _thop_hooks() | custom_rules()


@cache
def _thop_hooks() -> dict[type, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from thop.profile import register_hooks
    return dict(register_hooks)


def _refuse_uncounted(graph: ChannelGraph) -> None:
    """A called module thop counts but no analytic rule covers: refuse, never undercount."""
    rules = _thop_rules()
    costed = {c.module for c in graph.calls if c.kind in COSTED_KINDS}
    for name, mtype in graph.leaves.items():
        rule = rules.get(mtype)
        if rule is None or name in costed:
            continue
        has_params = any(True for _ in graph.module.get_submodule(name).parameters())
        if getattr(rule, "__name__", "") in _ZERO_RULES and not has_params:
            continue
        raise GraphError(
            f"cannot count the cost of {name} ({mtype.__name__} on this input): thop counts "
            "it and archsearch's analytic counter has no rule for it, so the cost would be "
            "an undercount")

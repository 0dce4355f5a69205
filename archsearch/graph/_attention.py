"""Attention heads as a prunable unit: nn.MultiheadAttention in the channel graph, and the
narrower module `shrink` puts in its place.

A self-attention call `attn(x, x, x)` reads the channels of x's last axis, projects them to
q, k and v of `heads × head_dim` inner channels, and projects those back. The inner width is
a channel group of its own, kept and removed in whole heads (its `unit` is `head_dim`); q, k,
v and the output projection are sliced with it. It is recorded as two calls, `attn_in`
(x → inner, the q/k/v projection) and `attn_out` (inner → output, the scores, the weighted
sum and the output projection), so the cost stays linear in the group widths. Cross-attention,
masks, `bias_k`/`bias_v` and `add_zero_attn` are not modelled: such a call is left whole.
torchvision's window attention (Swin, MaxViT) is recorded the same way (`_window.py`).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from archsearch.graph._state import LayerCall, Seg, TraceState, node_shape
from archsearch.graph._window import (
    is_window_attention,
    projections,
    slice_window,
    window_extra,
    window_geometry,
    window_heads,
    window_sliceable,
    window_widths,
)

_UNSUPPORTED_KWARGS = ("key_padding_mask", "attn_mask", "is_causal")


class AttentionOps:
    """Mixin of ChannelTracer: self-attention calls and the items of their output tuples."""

    st: TraceState
    modules: dict[str, nn.Module]

    def _attention(self, node: fx.Node, mod: nn.Module) -> list[Seg] | None:
        self.st.leaves.setdefault(node.target, type(mod))
        x = node.args[0] if node.args else node.kwargs.get("query")
        shape = node_shape(x)
        if not (_self_attention(node, mod) and shape is not None and len(shape) == 3
                and self.st.segs.get(x.name) is not None):
            for arg in self._tensor_args(node):
                self.st.fix(self.st.segs[arg.name])
            return None
        tokens = shape[1] if mod.batch_first else shape[0]
        out = self._record_attention(
            node, mod, self._last_axis(x, mod), (mod.embed_dim, mod.out_proj.out_features),
            (tokens, tokens), (mod.in_proj_bias is not None, mod.out_proj.bias is not None))
        self.st.cdim[node.name] = 2
        self.attention_nodes.add(node.name)
        return out

    def _window_attention(self, node: fx.Node, mod: nn.Module) -> list[Seg] | None:
        """torchvision's window attention (`_window.py`). Swin's loses whole heads and takes
        any input/output width (shrink narrows it to a SlicedWindowAttention); MaxViT's takes
        its head width from its input width, so its channels stay fixed."""
        self.st.leaves.setdefault(node.target, type(mod))
        x = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        shape = node_shape(x)
        e_in, inner, e_out = window_widths(mod)
        if (shape is None or len(shape) != 4 or shape[-1] != e_in
                or self.st.segs.get(x.name) is None or node_shape(node) != (*shape[:3], e_out)):
            return self._opaque(node)  # not costed: the cost model refuses it by name
        ins = self._last_axis(x, mod)
        fixed = not window_sliceable(mod)
        if fixed:
            self.st.fix(ins)
        qkv, proj = projections(mod)
        out = self._record_attention(
            node, mod, ins, (inner, e_out), window_geometry(mod, shape),
            (qkv.bias is not None, proj.bias is not None), window_extra(mod, inner),
            fixed=fixed, resolution=shape[1])
        self.st.cdim[node.name] = 3
        return out

    def _record_attention(self, node: fx.Node, mod: nn.Module, ins: list[Seg],
                          sizes: tuple[int, int], geometry: tuple[int, int],
                          bias: tuple[bool, bool],
                          extra: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                          fixed: bool = False, resolution: int | None = None) -> list[Seg]:
        """`attn_in` (ins → inner: q/k/v) and `attn_out` (inner → out: the scores, the
        weighted sum, the output projection); geometry is (tokens, keys per query)."""
        (inner_size, out_size), (tokens, window) = sizes, geometry
        inner = [(self.st.new(inner_size, fixed), inner_size, 1)]
        self.st.set_unit(inner[0][0], inner_size // window_heads_of(mod))
        out = [(self.st.new(out_size, fixed), out_size, 1)]
        for v in (inner[0][0], out[0][0]):
            self.st.producer.setdefault(v, []).append(node.target)
            self.st.resolution[v] = tokens if resolution is None else resolution
        first = self.st.first_call.get(node.target)
        if first is not None:  # a shared module: every call has the same channels
            later = next(c for c in self.st.calls if c.module == node.target and c.kind ==
                         "attn_out")
            for a, b in ((first.inputs, ins), (first.outputs, inner), (later.outputs, out)):
                self.st.unite_segs(a, b)
        call_in = LayerCall(node.target, "attn_in", node.name, ins, inner, tokens, 1.0,
                            bias=bias[0], module_type=type(mod))
        call_out = LayerCall(node.target, "attn_out", node.name, inner, out, tokens,
                             float(window), bias=bias[1], module_type=type(mod), extra=extra)
        self.st.first_call.setdefault(node.target, call_in)
        self.st.calls.extend([call_in, call_out])
        return out

    def _attention_item(self, node: fx.Node) -> list[Seg] | None:
        """`attn(x, x, x)[0]`: the output; `[1]`: the attention weights (no channels)."""
        src, index = node.args
        if index == 0:
            self.st.cdim[node.name] = 2
            return self.st.segs[src.name]
        return self._fresh(node, fixed=True) if node_shape(node) is not None else None

    def _is_attention_item(self, node: fx.Node) -> bool:
        return (node.op == "call_function" and node.target is operator.getitem
                and isinstance(node.args[0], fx.Node)
                and node.args[0].name in self.attention_nodes)

    attention_nodes: set[str]

    # provided by ChannelTracer / LayoutOps
    def _tensor_args(self, node: fx.Node) -> list[fx.Node]:  # pragma: no cover
        raise NotImplementedError

    def _last_axis(self, src: fx.Node, mod: nn.Module) -> list[Seg] | None:  # pragma: no cover
        raise NotImplementedError

    def _fresh(self, node: fx.Node, fixed: bool, dim: int = 1) -> list[Seg] | None:
        raise NotImplementedError  # pragma: no cover

    def _opaque(self, node: fx.Node) -> list[Seg] | None:  # pragma: no cover
        raise NotImplementedError


def window_heads_of(mod: nn.Module) -> int:
    return mod.num_heads if isinstance(mod, ATTENTION_TYPES) else window_heads(mod)


def _self_attention(node: fx.Node, mod: nn.Module) -> bool:
    """q, k and v are one tensor, and nothing the sliced module does not model is used."""
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
             "average_attn_weights", "is_causal")
    bound = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
    if any(bound.get(k) not in (None, False) for k in _UNSUPPORTED_KWARGS):
        return False
    if bound.get("average_attn_weights", True) is not True:
        return False
    return (bound.get("query") is bound.get("key") is bound.get("value")
            and isinstance(bound.get("query"), fx.Node) and mod._qkv_same_embed_dim
            and mod.bias_k is None and not mod.add_zero_attn)


class SlicedMultiheadAttention(nn.Module):
    """Self-attention with any number of heads and any input/output width: what
    nn.MultiheadAttention computes for `attn(x, x, x)`, where the inner width (heads ×
    head_dim) need not equal the embedding width. Same parameter names (`in_proj_weight`,
    `in_proj_bias`, `out_proj`) and the attributes the channel graph reads, so a shrunk model
    traces, and shrinks, again."""

    bias_k = None
    add_zero_attn = False
    _qkv_same_embed_dim = True

    def __init__(self, embed_in: int, heads: int, head_dim: int, embed_out: int, bias: bool,
                 dropout: float, batch_first: bool):
        super().__init__()
        self.num_heads, self.head_dim = heads, head_dim
        self.dropout, self.batch_first = dropout, batch_first
        inner = self.embed_dim = heads * head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_in))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner)) if bias else None
        self.out_proj = nn.Linear(inner, embed_out, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, key_padding_mask: None = None,
                need_weights: bool = True, attn_mask: None = None,
                average_attn_weights: bool = True, is_causal: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = query if self.batch_first else query.transpose(0, 1)
        n, length = x.shape[0], x.shape[1]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            attn = torch.softmax(q @ k.transpose(-2, -1) * self.head_dim ** -0.5, dim=-1)
            weights = attn.mean(dim=1)
            out = F.dropout(attn, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        out = out.transpose(1, 2).reshape(n, length, self.num_heads * self.head_dim)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), weights


def slice_attention(mod: nn.Module, i: torch.Tensor, inner: torch.Tensor, o: torch.Tensor
                    ) -> nn.Module:
    """`mod` (nn.MultiheadAttention or a sliced one) keeping input features `i`, inner
    channels `inner` (whole heads) and output features `o`; Swin's window attention too."""
    if window_sliceable(mod):
        return slice_window(mod, i, inner, o)
    if is_window_attention(mod):  # MaxViT's: the graph keeps all its channels
        if (len(i), len(inner), len(o)) != window_widths(mod):
            raise ValueError(f"{type(mod).__name__} cannot be narrowed")
        return mod
    d = mod.head_dim
    width = mod.in_proj_weight.shape[0] // 3
    rows = torch.cat([inner + part * width for part in range(3)])
    new = SlicedMultiheadAttention(len(i), len(inner) // d, d, len(o),
                                   mod.in_proj_bias is not None, mod.dropout, mod.batch_first)
    with torch.no_grad():
        new.in_proj_weight.copy_(mod.in_proj_weight[rows][:, i])
        new.out_proj.weight.copy_(mod.out_proj.weight[o][:, inner])
        if mod.in_proj_bias is not None:
            new.in_proj_bias.copy_(mod.in_proj_bias[rows])
            new.out_proj.bias.copy_(mod.out_proj.bias[o])
    return new.to(mod.in_proj_weight.device).train(mod.training)


def count_attention(m: nn.Module, inputs: tuple, output: object) -> None:
    """thop rule for self-attention (nn.MultiheadAttention and the sliced one): the q/k/v
    projection, the scores q·kᵀ, the weighted sum of v and the output projection."""
    x = inputs[0]
    n, length = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
    embed_in, inner = m.in_proj_weight.shape[1], m.in_proj_weight.shape[0] // 3
    macs = n * (length * embed_in * 3 * inner + 2 * length * length * inner
                + length * inner * m.out_proj.out_features)
    m.total_ops += torch.DoubleTensor([int(macs)])


ATTENTION_TYPES = (nn.MultiheadAttention, SlicedMultiheadAttention)

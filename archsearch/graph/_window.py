"""torchvision's window attention: Swin's ShiftedWindowAttention (V1 and V2) and MaxViT's
RelativePositionalMultiHeadAttention, as the channel graph records them and as they cost.

thop 0.1.1 counts none of their matmuls, and not even Swin's q/k/v and output projections
(torchvision calls them through `F.linear`). Both counters use the rule here instead. The
modules are fx leaves, recorded like self-attention (`_attention.py`): `attn_in` (x → inner,
the q/k/v projection at every token) and `attn_out` (inner → output: q·kᵀ and attn·v inside
each window, then the output projection), with T tokens per image (Swin's input padded to
whole windows), N tokens per window, E in, I = heads × head_dim inner and E' out:

    MACs = T·E·3I + 2·T·N·I + T·I·E' + (Swin V2) its relative-position bias MLP,

each of that MLP's linear layers counted as thop counts a linear layer (in × output numel),
once per forward pass. Params are every parameter of the module: the projections, the
relative-position table (V1, MaxViT) or the logit scale and bias MLP (V2). What scales with
the heads besides the projections (tables, the MLP's last layer) and what does not (its
other layers) is `Call.extra` of the `attn_out` call.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
from torch import nn

_CLASSES = {  # qualified class name -> layout of its input
    "torchvision.models.swin_transformer.ShiftedWindowAttention": "swin",
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": "swin",
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": "maxvit",
}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_window_attention(mod: nn.Module) -> bool:
    return _qualname(type(mod)) in _CLASSES


def window_types() -> list[type]:
    """The window-attention classes loaded so far (a model holding one has loaded it)."""
    out = []
    for name in _CLASSES:
        module, _, cls = name.rpartition(".")
        found = getattr(sys.modules.get(module), cls, None)
        if isinstance(found, type):
            out.append(found)
    return out


def projections(mod: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    """(q/k/v projection, output projection)."""
    return (mod.qkv, mod.proj) if hasattr(mod, "qkv") else (mod.to_qkv, mod.merge)


def window_widths(mod: nn.Module) -> tuple[int, int, int]:
    """(E in, I = heads × head_dim inner, E' out)."""
    qkv, proj = projections(mod)
    return qkv.in_features, qkv.out_features // 3, proj.out_features


def window_heads(mod: nn.Module) -> int:
    return mod.n_heads if hasattr(mod, "n_heads") else mod.num_heads


def window_geometry(mod: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(T tokens per image, N tokens per window) for an input of `shape`: MaxViT's is
    (B, windows, N, E); Swin's (B, H, W, E), padded to whole windows."""
    if _CLASSES[_qualname(type(mod))] == "maxvit":
        return shape[1] * shape[2], shape[2]
    (wh, ww), (h, w) = mod.window_size, shape[1:3]
    return math.ceil(h / wh) * wh * math.ceil(w / ww) * ww, wh * ww


def window_extra(mod: nn.Module, inner: int) -> tuple[float, float, float, float]:
    """(MACs per inner channel, fixed MACs, params per inner channel, fixed params) besides
    the projections and the two matmuls. The module's own parameters (relative-position
    table, logit scale) hold one entry set per head; so does the output of the bias MLP's
    last layer; its other layers are fixed."""
    head_params = float(sum(p.numel() for p in mod.parameters(recurse=False)))
    head_macs = fixed_macs = fixed_params = 0.0
    mlp = getattr(mod, "cpb_mlp", None)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)] if mlp is not None else []
    if linears:
        points = mod.relative_coords_table.numel() // linears[0].in_features
        for layer in linears:
            macs = layer.in_features * layer.out_features * points
            params = sum(p.numel() for p in layer.parameters())
            if layer is linears[-1]:
                head_macs, head_params = head_macs + macs, head_params + params
            else:
                fixed_macs, fixed_params = fixed_macs + macs, fixed_params + params
    return head_macs / inner, fixed_macs, head_params / inner, fixed_params


def window_macs(mod: nn.Module, shape: tuple[int, ...]) -> int:
    """MACs of one call on an input of `shape` (batch included)."""
    tokens, window = window_geometry(mod, shape)
    e_in, inner, e_out = window_widths(mod)
    head_macs, fixed_macs, _, _ = window_extra(mod, inner)
    per_image = tokens * (3 * e_in * inner + 2 * window * inner + inner * e_out)
    return int(round(shape[0] * per_image + head_macs * inner + fixed_macs))


def count_window_attention(m: nn.Module, inputs: tuple, output: object) -> None:
    """thop rule (its parameters thop counts itself: every parameter of the module)."""
    m.total_ops += torch.DoubleTensor([window_macs(m, tuple(inputs[0].shape))])


def window_rules() -> dict[type, Callable[..., None]]:
    return {cls: count_window_attention for cls in window_types()}

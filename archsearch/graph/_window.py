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
other layers) is `LayerCall.extra` of the `attn_out` call.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

_CLASSES = {  # qualified class name -> layout of its input
    "torchvision.models.swin_transformer.ShiftedWindowAttention": "swin",
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": "swin",
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": "maxvit",
    "archsearch.graph._window.SlicedWindowAttention": "swin",
}
SLICEABLE = ("ShiftedWindowAttention", "ShiftedWindowAttentionV2", "SlicedWindowAttention")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_window_attention(mod: nn.Module) -> bool:
    return _qualname(type(mod)) in _CLASSES


def window_sliceable(mod: nn.Module) -> bool:
    """Swin's: `shrink` narrows it to a SlicedWindowAttention (whole heads, any in/out)."""
    return is_window_attention(mod) and type(mod).__name__ in SLICEABLE


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


class SlicedWindowAttention(nn.Module):
    """Swin's shifted-window attention (V1 or V2) with any number of heads and any
    input/output width: what torchvision's ShiftedWindowAttention(V2) computes, where the
    inner width (heads × head_dim) need not equal the input width. Same attribute names, so
    a shrunk model traces, is costed and shrinks again."""

    def __init__(self, source: nn.Module, heads: int, head_dim: int, qkv: nn.Linear,
                 proj: nn.Linear):
        super().__init__()
        self.window_size, self.shift_size = list(source.window_size), list(source.shift_size)
        self.attention_dropout, self.dropout = source.attention_dropout, source.dropout
        self.num_heads, self.head_dim = heads, head_dim
        self.qkv, self.proj = qkv, proj
        self.register_buffer("relative_position_index", source.relative_position_index.clone())
        self.v2 = hasattr(source, "cpb_mlp")
        if self.v2:
            self.register_buffer("relative_coords_table", source.relative_coords_table.clone())
            self.cpb_mlp = copy.deepcopy(source.cpb_mlp)
            self.logit_scale = nn.Parameter(torch.zeros(heads, 1, 1))
        else:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(
                source.relative_position_bias_table.shape[0], heads))

    def position_bias(self) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads) if self.v2 \
            else self.relative_position_bias_table
        bias = table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)
        bias = bias.contiguous().unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.v2 else bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        (wh, ww), inner = self.window_size, self.num_heads * self.head_dim
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        ph, pw = x.shape[1], x.shape[2]
        shift = [0 if wh >= ph else self.shift_size[0], 0 if ww >= pw else self.shift_size[1]]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows, n = (ph // wh) * (pw // ww), wh * ww
        x = x.view(b, ph // wh, wh, pw // ww, ww, -1).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b * windows, n, -1)
        q, k, v = self._qkv(x).reshape(b * windows, n, 3, self.num_heads, self.head_dim).permute(
            2, 0, 3, 1, 4)
        if self.v2:  # cosine attention
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        else:
            attn = (q * self.head_dim ** -0.5).matmul(k.transpose(-2, -1))
        attn = attn + self.position_bias()
        if sum(shift) > 0:
            mask = _shift_mask(x, (ph, pw), (wh, ww), shift)
            attn = attn.view(b, windows, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout,
                         training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(b * windows, n, inner)
        x = F.dropout(self.proj(x), p=self.dropout, training=self.training)
        x = x.view(b, ph // wh, pw // ww, wh, ww, -1).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, ph, pw, -1)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.qkv.bias
        if self.v2 and bias is not None:  # V2 has no key bias
            inner = bias.numel() // 3
            bias = torch.cat([bias[:inner], torch.zeros_like(bias[inner:2 * inner]),
                              bias[2 * inner:]])
        return F.linear(x, self.qkv.weight, bias)


def _shift_mask(x: torch.Tensor, padded: tuple[int, int], window: tuple[int, int],
                shift: list[int]) -> torch.Tensor:
    """torchvision's mask of shifted windows: -100 between tokens from different regions."""
    (ph, pw), (wh, ww) = padded, window
    mask = x.new_zeros((ph, pw))
    count = 0
    for hs in ((0, -wh), (-wh, -shift[0]), (-shift[0], None)):
        for ws in ((0, -ww), (-ww, -shift[1]), (-shift[1], None)):
            mask[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    mask = mask.view(ph // wh, wh, pw // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def slice_window(mod: nn.Module, i: torch.Tensor, inner: torch.Tensor, o: torch.Tensor
                 ) -> SlicedWindowAttention:
    """Swin's window attention keeping input features `i`, inner channels `inner` (whole
    heads: q, k, v, the position tables and V2's logit scale sliced at the same heads) and
    output features `o`."""
    qkv, proj = projections(mod)
    width, heads = qkv.out_features // 3, window_heads(mod)
    d = width // heads
    kept = inner[::d] // d
    rows = torch.cat([inner + part * width for part in range(3)])
    new_qkv = nn.Linear(len(i), 3 * len(inner), bias=qkv.bias is not None)
    new_proj = nn.Linear(len(inner), len(o), bias=proj.bias is not None)
    new = SlicedWindowAttention(mod, len(kept), d, new_qkv, new_proj)
    with torch.no_grad():
        new_qkv.weight.copy_(qkv.weight[rows][:, i])
        new_proj.weight.copy_(proj.weight[o][:, inner])
        if qkv.bias is not None:
            new_qkv.bias.copy_(qkv.bias[rows])
        if proj.bias is not None:
            new_proj.bias.copy_(proj.bias[o])
        if new.v2:
            new.logit_scale.copy_(mod.logit_scale[kept])
            last = [m for m in new.cpb_mlp.modules() if isinstance(m, nn.Linear)][-1]
            last.weight = nn.Parameter(last.weight[kept].clone())
            if last.bias is not None:
                last.bias = nn.Parameter(last.bias[kept].clone())
            last.out_features = len(kept)
        else:
            new.relative_position_bias_table.copy_(mod.relative_position_bias_table[:, kept])
    return new.to(qkv.weight.device).train(mod.training)

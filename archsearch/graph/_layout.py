"""Channels that move between axes: permutes, LayerNorm, and broadcasting with parameters.

Convolutional models keep channels at dim 1; transformer-style blocks (ConvNeXt's MLP, ViT,
Swin) hold them last. The tracer records each tensor's channel axis; ops here move it
(permute, transpose), normalise over it (LayerNorm, torchvision's LayerNorm2d), or combine
tensors along it, where a parameter that broadcasts over the channels (ConvNeXt's layer
scale, ViT's position embedding) is sliced with them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from archsearch.graph._state import LayerCall, Seg, TraceState, node_shape

# channel-agnostic modules: the channels may sit on any axis
ANY_AXIS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Hardswish,
                    nn.Hardsigmoid, nn.Tanh, nn.Mish, nn.ELU, nn.Dropout, nn.Identity)
# functions that pool over dims 2.. (channels must be at dim 1)
SPATIAL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
PERMUTES = {torch.permute, "permute", torch.transpose, "transpose"}
CHANNEL_FIRST_NORMS = ("LayerNorm2d",)  # torchvision's LayerNorm over dim 1 (ConvNeXt)


class LayoutOps:
    """Mixin of ChannelTracer: the channel axis of every tensor, and the ops that use it."""

    st: TraceState

    def _cd(self, node: fx.Node | None) -> int:
        return self.st.cdim.get(node.name, 1) if isinstance(node, fx.Node) else 1

    def _same_channels(self, src: fx.Node, node: fx.Node) -> bool:
        a, b = node_shape(src), node_shape(node)
        cd = self._cd(src)
        return bool(a and b and len(a) == len(b) and a[cd] == b[cd])

    def _permute(self, node: fx.Node) -> list[Seg] | None:
        src = node.args[0]
        segs = self.st.segs.get(src.name) if isinstance(src, fx.Node) else None
        if segs is None:
            return self._opaque(node)
        ndim, cd = len(node_shape(src)), self._cd(src)
        rest = list(node.args[1:]) or list(node.kwargs.values())
        if node.target in (torch.permute, "permute"):
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            if len(dims) != ndim or not all(isinstance(d, int) for d in dims):
                return self._opaque(node)
            new = [d % ndim for d in dims].index(cd)
        else:
            if len(rest) != 2 or not all(isinstance(d, int) for d in rest):
                return self._opaque(node)
            a, b = (d % ndim for d in rest)
            new = b if cd == a else a if cd == b else cd
        self.st.cdim[node.name] = new
        return segs

    def _last_axis(self, src: fx.Node, mod: nn.Module) -> list[Seg] | None:
        """The segments of `src`'s last axis, which a Linear or LayerNorm works on. If the
        tracked channels sit elsewhere (or nothing is tracked), they are fixed, and the last
        axis becomes a fixed group of its own: countable, never pruned."""
        shape, segs = node_shape(src), self.st.segs.get(src.name)
        if shape is None or len(shape) < 2 or type(mod).__name__ in CHANNEL_FIRST_NORMS:
            return segs
        if segs is not None and self._cd(src) == len(shape) - 1:
            return segs
        self.st.fix(segs)
        return [(self.st.new(shape[-1], True), shape[-1], 1)]

    def _layer_norm(self, node: fx.Node, mod: nn.LayerNorm, segs: list[Seg]) -> list[Seg] | None:
        shape, cd = node_shape(node), self._cd(node.args[0])
        if type(mod).__name__ in CHANNEL_FIRST_NORMS:
            ok = cd == 1
        else:
            ok = len(mod.normalized_shape) == 1
            cd = len(shape) - 1
        if not ok:
            return self._opaque(node)
        self.st.cdim[node.name] = cd
        self._record(node, "ln", segs, segs, affine=mod.elementwise_affine,
                     bias=getattr(mod, "bias", None) is not None)
        return segs

    def _elementwise(self, node: fx.Node) -> list[Seg] | None:
        """add/mul/sub: operands with the output's channels are one group; operands with one
        channel broadcast; a parameter with the channels is sliced with them."""
        out = node_shape(node)
        tensors: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: tensors.append(n) or n)
        tensors = [t for t in tensors if node_shape(t) is not None]
        ref = next((t for t in tensors if self.st.segs.get(t.name) is not None
                    and node_shape(t) == out), None)
        if ref is None:
            return self._opaque(node)
        cd = self._cd(ref)
        full, params = [], []
        for t in tensors:
            shape = node_shape(t)
            k = cd - (len(out) - len(shape))  # the operand's axis aligned with the channels
            tracked = self.st.segs.get(t.name) is not None
            if (shape[k] if k >= 0 else 1) == 1:
                if tracked and self._cd(t) != k:  # its channels broadcast along another axis
                    self.st.fix(self.st.segs[t.name])
                continue
            if shape[k] != out[cd]:
                return self._opaque(node)
            if tracked and self._cd(t) == k:
                full.append(t)
            elif t.op == "get_attr":
                params.append((t, k))
            else:
                return self._opaque(node)
        segs = self.st.segs[ref.name]
        for other in full:
            if not self.st.unite_segs(segs, self.st.segs[other.name]):
                for t in full:
                    self.st.fix(self.st.segs[t.name])
                return self._fresh(node, fixed=True, dim=cd)
        for attr, axis in params:
            self._param(attr, segs, axis)
        self.st.cdim[node.name] = cd
        return segs

    def _param(self, attr: fx.Node, segs: list[Seg], axis: int) -> None:
        first = self.st.first_call.get(attr.target)
        if first is not None:
            if not self.st.unite_segs(first.inputs, segs):
                self.st.fix(segs)
                self.st.fix(first.inputs)
            return
        call = LayerCall(attr.target, "param", attr.name, segs, segs, 0, 0, axis=axis)
        self.st.first_call[attr.target] = call
        self.st.calls.append(call)

    def _index(self, node: fx.Node) -> list[Seg] | None:
        """`x[:, 0]`, `x[..., ::2, :]`: integers and slices on other axes; the channel axis
        whole. The channels keep their segments; integers before them move their axis."""
        src, index = node.args
        segs, shape = self.st.segs.get(src.name), node_shape(src)
        index = index if isinstance(index, tuple) else (index,)
        if segs is None or shape is None or sum(i is Ellipsis for i in index) > 1 or not all(
                isinstance(i, (int, slice)) or i is Ellipsis for i in index):
            return self._opaque(node)
        if Ellipsis in index:
            at = index.index(Ellipsis)
            index = index[:at] + (slice(None),) * (len(shape) - len(index) + 1) + index[at + 1:]
        cd = self._cd(src)
        whole = slice(None)
        if len(index) > len(shape) or (cd < len(index) and index[cd] != whole):
            return self._opaque(node)
        self.st.cdim[node.name] = cd - sum(isinstance(i, int) for i in index[:cd])
        return segs

    def _expand_param(self, node: fx.Node) -> list[Seg] | None:
        """`param.expand(n, -1, -1)` (ViT's class token): its last axis joins whatever it is
        combined with, and the parameter is sliced with it."""
        attr, shape = node.args[0], node_shape(node)
        if not (isinstance(attr, fx.Node) and attr.op == "get_attr" and shape
                and len(shape) >= 2 and node_shape(attr) and node_shape(attr)[-1] == shape[-1]):
            return self._opaque(node)
        segs = [(self.st.new(shape[-1]), shape[-1], 1)]
        self._param(attr, segs, len(node_shape(attr)) - 1)
        self.st.cdim[node.name] = len(shape) - 1
        return segs

    def _merge_view(self, node: fx.Node) -> list[Seg] | None:
        """`x.reshape(n, c, h * w)`: trailing axes merged, the channels (dim 1) untouched. A
        channel count written as a constant is recorded, for `shrink` to rewrite."""
        src = node.args[0]
        a, b, segs = node_shape(src), node_shape(node), self.st.segs.get(src.name)
        dims = node.args[1:]
        packed = len(dims) == 1 and isinstance(dims[0], (tuple, list))
        dims = tuple(dims[0]) if packed else dims
        if (segs is None or a is None or b is None or self._cd(src) != 1 or len(a) < 3
                or len(b) < 3 or b[:2] != a[:2] or len(dims) != len(b)):
            return self._opaque(node)
        if isinstance(dims[1], int) and dims[1] != -1:  # a constant: shrink rewrites it
            self.st.calls.append(LayerCall(node.name, "reshape", node.name, segs, segs, 0, 0))
        elif not isinstance(dims[1], fx.Node) and dims[1] != -1:
            return self._opaque(node)
        return segs

    # provided by ChannelTracer
    def _opaque(self, node: fx.Node) -> list[Seg] | None:  # pragma: no cover
        raise NotImplementedError

    def _fresh(self, node: fx.Node, fixed: bool, dim: int = 1) -> list[Seg] | None:
        raise NotImplementedError  # pragma: no cover

    def _record(self, node: fx.Node, kind: str, inputs: list[Seg], outputs: list[Seg],
                **flags: Any) -> None:  # pragma: no cover
        raise NotImplementedError

"""Channel propagation over a torch.fx trace.

Every tensor's channel dimension (dim 1) is described as a list of segments, each a
channel *variable* of the union-find below with a base size and a `repeat` (how many
features each channel becomes after a flatten). Ops that must see equal channels (adds,
normalisation, depthwise convs) unite variables; concatenation joins segments; an op we
do not understand fixes the variables it touches, which keeps the result correct.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from archsearch.errors import GraphError
from archsearch.graph._attention import ATTENTION_TYPES, AttentionOps
from archsearch.graph._fx import RUNTIME_MODE_LEAVES, propagate_shapes, symbolic_trace
from archsearch.graph._layout import ANY_AXIS_MODULES, PERMUTES, SPATIAL_FUNCTIONS, LayoutOps
from archsearch.graph._shuffle import CHUNKS, VIEWS, ShuffleOps
from archsearch.graph._state import LayerCall, Seg, TraceState, node_shape
from archsearch.graph._window import is_window_attention

PASSTHROUGH_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid,
    nn.Tanh, nn.Mish, nn.ELU, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d,
)
PASSTHROUGH_FUNCTIONS = {
    F.relu, F.relu6, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.dropout,
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.sigmoid,
    torch.relu, torch.sigmoid, torch.tanh, torch.relu_, F.elu, F.mish,
}
PASSTHROUGH_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float",
                       "to", "type_as", "detach"}
ELEMENTWISE = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub,
               torch.add, torch.mul, torch.sub}
ELEMENTWISE_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}
ADDS = {operator.add, operator.iadd, torch.add, "add", "add_"}
FLATTENS = {torch.flatten, "flatten", "view", "reshape"}


class ChannelTracer(LayoutOps, AttentionOps, ShuffleOps):
    """Walks a shape-propagated GraphModule and fills a TraceState."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.st = TraceState()
        self.attention_nodes: set[str] = set()
        self.shuffle_out: set[str] = set()
        self.shuffle_inner: set[str] = set()

    def run(self) -> TraceState:
        for node in self.gm.graph.nodes:
            segs = self._visit(node)
            self.st.segs[node.name] = segs
            if segs is not None and node.name not in self.st.cdim:  # channels stay put
                src = node.args[0] if node.args else None
                self.st.cdim[node.name] = self._cd(src) if isinstance(src, fx.Node) else 1
        return self.st

    def _tensor_args(self, node: fx.Node) -> list[fx.Node]:
        flat: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: flat.append(n) or n)
        return [n for n in flat if self.st.segs.get(n.name) is not None]

    def _fresh(self, node: fx.Node, fixed: bool, dim: int = 1) -> list[Seg] | None:
        shape = node_shape(node)
        if shape is None or len(shape) < 2:
            return None
        v = self.st.new(shape[dim], fixed)
        self.st.cdim[node.name] = dim
        return [(v, shape[dim], 1)]

    def _opaque(self, node: fx.Node) -> list[Seg] | None:
        """An op we do not model: fix everything it reads, and give it fixed outputs (with
        the channel axis of its first input, where the output has as many dims)."""
        args = self._tensor_args(node)
        for arg in args:
            self.st.fix(self.st.segs[arg.name])
        shape = node_shape(node)
        dim = self._cd(args[0]) if args and shape and len(node_shape(args[0]) or ()) == len(
            shape) else 1
        return self._fresh(node, fixed=True, dim=dim)

    def _visit(self, node: fx.Node) -> list[Seg] | None:
        if node.op == "placeholder":
            return self._fresh(node, fixed=True)
        if node.op == "output":
            for arg in self._tensor_args(node):
                self.st.fix(self.st.segs[arg.name])
            return None
        if node.op == "get_attr":  # parameters: sliced where they broadcast over channels
            return None
        if node.op == "call_module" and isinstance(self.modules[node.target], ATTENTION_TYPES):
            return self._attention(node, self.modules[node.target])
        if node.op == "call_module" and is_window_attention(self.modules[node.target]):
            return self._window_attention(node, self.modules[node.target])
        if self._is_attention_item(node):
            return self._attention_item(node)
        if node.name in self.shuffle_inner:
            return None
        if node.name in self.shuffle_out:
            return self._shuffled(node)
        if node.op in ("call_method", "call_function") and node.target in CHUNKS:
            return self._chunk(node)
        if self._is_chunk_item(node):
            return self._chunk_item(node)
        if node.op == "call_method" and node.target in VIEWS and self._shuffle(node):
            return None
        if node_shape(node) is None:  # sizes, tuples and other non-tensors
            for arg in self._tensor_args(node):
                if node.op == "call_method" and node.target in ("size", "dim"):
                    continue
                if node.op == "call_function" and node.target is getattr:
                    continue
                self.st.fix(self.st.segs[arg.name])
            return None
        if node.op == "call_module":
            return self._visit_module(node, self.modules[node.target])
        return self._visit_function(node)

    def _in(self, node: fx.Node) -> list[Seg] | None:
        first = node.args[0] if node.args else None
        return self.st.segs.get(first.name) if isinstance(first, fx.Node) else None

    def _visit_module(self, node: fx.Node, mod: nn.Module) -> list[Seg] | None:
        self.st.leaves.setdefault(node.target, type(mod))
        segs = self._in(node)
        if isinstance(mod, (nn.Linear, nn.LayerNorm)) and isinstance(node.args[0], fx.Node):
            segs = self._last_axis(node.args[0], mod)
        if segs is None:
            return self._opaque(node)
        if isinstance(mod, nn.Linear):
            return self._linear(node, mod, segs)
        if isinstance(mod, nn.LayerNorm):
            return self._layer_norm(node, mod, segs)
        if isinstance(mod, ANY_AXIS_MODULES) or type(mod).__name__ in RUNTIME_MODE_LEAVES:
            return segs if node_shape(node) == node_shape(node.args[0]) else self._opaque(node)
        if self._cd(node.args[0]) != 1:  # everything below works on channels at dim 1
            return self._opaque(node)
        if isinstance(mod, nn.Conv2d):
            return self._conv(node, mod, segs)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            self._record(node, "bn", segs, segs, affine=mod.affine)
            return segs
        if isinstance(mod, PASSTHROUGH_MODULES):
            if isinstance(mod, nn.AvgPool2d):
                self._record(node, "avgpool", segs, segs)
            elif isinstance(mod, nn.AdaptiveAvgPool2d):
                self._record(node, "adaptive_avgpool", segs, segs)
            return segs
        if isinstance(mod, nn.Flatten) and mod.start_dim == 1:
            return self._flatten(node, segs)
        return self._opaque(node)

    def _conv(self, node: fx.Node, mod: nn.Conv2d, segs: list[Seg]) -> list[Seg] | None:
        if mod.groups == 1:
            out = self._fresh(node, fixed=False)
            assert out is not None
            self.st.producer.setdefault(out[0][0], []).append(node.target)
            shape = node_shape(node)
            self.st.resolution[out[0][0]] = shape[2] if shape and len(shape) == 4 else 1
            self._record(node, "conv", segs, out, bias=mod.bias is not None)
            return out
        if mod.groups == mod.in_channels == mod.out_channels:
            self._record(node, "conv", segs, segs, depthwise=True, groups=mod.groups,
                         bias=mod.bias is not None)
            return segs
        if mod.in_channels == mod.out_channels and len(segs) == 1 and segs[0][2] == 1:
            # grouped (ResNeXt, RegNet): whole groups removed, channels per group kept
            self.st.set_unit(segs[0][0], mod.in_channels // mod.groups)
            self._record(node, "conv", segs, segs, depthwise=True, groups=mod.groups,
                         bias=mod.bias is not None)
            return segs
        self.st.fix(segs)
        out = self._fresh(node, fixed=True)
        self._record(node, "conv", segs, out or [], groups=mod.groups, bias=mod.bias is not None)
        return out

    def _linear(self, node: fx.Node, mod: nn.Linear, segs: list[Seg]) -> list[Seg] | None:
        """A linear layer over the last dimension (the classifier, or a transformer's MLP)."""
        shape = node_shape(node)
        if shape is None or len(shape) < 2:
            return self._opaque(node)
        last = len(shape) - 1
        out = self._fresh(node, fixed=False, dim=last)
        assert out is not None
        self.st.producer.setdefault(out[0][0], []).append(node.target)
        self.st.resolution[out[0][0]] = 0 if len(shape) == 2 else shape[1]
        self._record(node, "linear", segs, out, bias=mod.bias is not None)
        return out

    def _flatten(self, node: fx.Node, segs: list[Seg]) -> list[Seg] | None:
        src = node.args[0]
        in_shape, out_shape = node_shape(src), node_shape(node)
        if in_shape is None or out_shape is None or len(out_shape) != 2:
            return self._opaque(node)
        if out_shape[0] != in_shape[0] or out_shape[1] != math.prod(in_shape[1:]):
            return self._opaque(node)
        factor = math.prod(in_shape[2:])
        return [(v, s, r * factor) for v, s, r in segs]

    def _visit_function(self, node: fx.Node) -> list[Seg] | None:
        target = node.target
        if target in PASSTHROUGH_FUNCTIONS or (node.op == "call_method"
                                               and target in PASSTHROUGH_METHODS):
            segs, src = self._in(node), node.args[0]
            if segs is not None and self._same_channels(src, node) and (
                    self._cd(src) == 1 or target not in SPATIAL_FUNCTIONS):
                return segs
            return self._opaque(node)
        if target in PERMUTES:
            return self._permute(node)
        if target is operator.getitem and self._in(node) is not None:
            return self._index(node)
        if node.op == "call_method" and target == "expand":
            return self._expand_param(node)
        if target in FLATTENS and self._in(node) is not None and self._cd(node.args[0]) == 1:
            if target in ("view", "reshape") and len(node_shape(node)) >= 3:
                return self._merge_view(node)
            if target in ("view", "reshape") and not self._flat_view(node):
                return self._opaque(node)
            return self._flatten(node, self._in(node))
        if target is torch.cat:
            return self._cat(node)
        if target in ELEMENTWISE or (node.op == "call_method" and target in ELEMENTWISE_METHODS):
            return self._elementwise(node)
        if target in (torch.mean, "mean") and self._spatial_mean(node):
            return self._in(node)
        return self._opaque(node)

    def _flat_view(self, node: fx.Node) -> bool:
        """`x.view(x.size(0), -1)`: the feature size is inferred, never written down."""
        dims = node.args[1:]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return len(dims) == 2 and dims[1] == -1

    def _spatial_mean(self, node: fx.Node) -> bool:
        in_shape, out_shape = node_shape(node.args[0]), node_shape(node)
        return bool(in_shape and out_shape and len(in_shape) == 4 and out_shape[:2] == in_shape[:2]
                    and self._cd(node.args[0]) == 1)

    def _cat(self, node: fx.Node) -> list[Seg] | None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        parts = [self.st.segs.get(t.name) if isinstance(t, fx.Node) else None for t in tensors]
        ndim = len(node_shape(node))
        if not isinstance(dim, int) or any(p is None for p in parts) or ndim < 2:
            return self._opaque(node)
        dim = dim % ndim
        cds = {self._cd(t) for t in tensors}
        if len(cds) != 1 or any(len(node_shape(t)) != ndim for t in tensors):
            return self._opaque(node)
        self.st.cdim[node.name] = cd = cds.pop()
        if cd != dim:  # joined along another axis (tokens): every part has the same channels
            for part in parts[1:]:
                if not self.st.unite_segs(parts[0], part):
                    return self._opaque(node)
            return parts[0]
        return [seg for part in parts for seg in part]

    def _record(self, node: fx.Node, kind: str, inputs: list[Seg], outputs: list[Seg],
                **flags: Any) -> None:
        shape = node_shape(node)
        cd = self.st.cdim.get(node.name, self._cd(node.args[0]))
        spatial = math.prod(shape[1:]) // shape[cd] if shape and len(shape) > 1 else 1
        kernel = 1
        mod = self.modules[node.target]
        if kind == "conv":
            kernel = math.prod(mod.kernel_size)
        elif kind == "adaptive_avgpool":  # thop: the true area ratio, not a whole kernel
            in_shape = node_shape(node.args[0])
            kernel = 1.0
            for i, o in zip(in_shape[2:], shape[2:], strict=True):
                kernel *= i / o
        call = LayerCall(node.target, kind, node.name, inputs, outputs, spatial, kernel,
                    module_type=type(mod), **flags)
        first = self.st.first_call.get(node.target)
        if first is not None and kind in ("conv", "linear", "bn", "ln"):
            ok = self.st.unite_segs(first.inputs, inputs) and self.st.unite_segs(
                first.outputs, outputs)
            if not ok:
                raise GraphError(f"module {node.target!r} is called on different channel layouts")
        self.st.first_call.setdefault(node.target, call)
        self.st.calls.append(call)


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """Symbolic trace (eval mode) plus shapes; the model's state is left untouched."""
    gm = symbolic_trace(model)
    propagate_shapes(gm, example, f"the forward pass of {type(model).__name__}")
    return gm

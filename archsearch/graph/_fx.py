"""torch.fx tracing as archsearch needs it: eval mode, runtime-mode modules kept as leaves,
shapes recorded per node, and every failure reported in one line.

The channel graph and `shrink` trace through this one function, so their node names match.
Tracing happens in eval mode: control flow on `self.training` (GoogLeNet's and Inception's
auxiliary heads) is resolved as inference resolves it, which is also how thop counts cost.
Modules whose behaviour depends on the mode at run time (dropout, BatchNorm, torchvision's
StochasticDepth) stay leaf modules, so the traced model still behaves right in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from archsearch.errors import GraphError
from archsearch.graph._window import is_window_attention

# non-torch.nn modules that must stay leaves (their forward branches on self.training)
RUNTIME_MODE_LEAVES = ("StochasticDepth",)
# and those kept whole so that `shrink` can slice them (a LayerNorm over dim 1)
SLICED_LEAVES = ("LayerNorm2d", "SlicedMultiheadAttention")


@dataclass(frozen=True)
class TensorMeta:
    shape: tuple[int, ...]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m).__name__ in RUNTIME_MODE_LEAVES + SLICED_LEAVES or is_window_attention(m):
            return True  # window attention: costed whole (archsearch.graph._window)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return True  # subclasses too (timm's BatchNormAct2d: its act is elementwise)
        return super().is_leaf_module(m, qualname)


def symbolic_trace(model: nn.Module) -> fx.GraphModule:
    """The model's fx graph, traced in eval mode; the model's own modes are left as found."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable control flow
        raise GraphError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
            f"{_first_line(exc)}); archsearch needs an fx-traceable model (no "
            "data-dependent control flow in forward)") from exc
    finally:
        for m, flag in modes:
            m.training = flag
    gm = fx.GraphModule(model, graph, type(model).__name__)
    gm.training = model.training
    return gm


class _ShapeRecorder(fx.Interpreter):
    current: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = TensorMeta(tuple(result.shape))
        return result


def propagate_shapes(gm: fx.GraphModule, example: torch.Tensor, what: str) -> None:
    """Run `gm` once in eval mode, recording each node's output shape (modes restored)."""
    modes = [(m, m.training) for m in gm.modules()]
    gm.eval()
    recorder = _ShapeRecorder(gm)
    try:
        with torch.no_grad():
            recorder.run(example)
    except Exception as exc:
        raise GraphError(
            f"{what} fails on input {'x'.join(map(str, example.shape[1:]))}"
            f"{_where(recorder)}: {_first_line(exc)}; try another input size ([dataset] "
            "size in the space file, or --input-size)") from exc
    finally:
        for m, flag in modes:
            m.training = flag


def _where(recorder: _ShapeRecorder) -> str:
    """The node that failed, by module path where it is a module."""
    node = recorder.current
    if node is None:
        return ""
    return f" at {node.target if node.op == 'call_module' else node.name}"


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]

"""The state channel propagation builds: union-find channel variables, the segments of every
tensor's channel axis, and the calls of costed modules (shared by `_trace` and `_layout`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

from archsearch.errors import GraphError

# (variable, base size, repeat)
Seg = tuple[int, int, int]


@dataclass
class LayerCall:
    """One call of a leaf module that the cost model and `shrink` need to know about.

    The one record of a call, in two stages: the trace builds it with `inputs`/`outputs` as
    channel-variable segments (`Seg`, rewritten while groups are refined) and no `blocks`;
    the `ChannelGraph` then holds a copy whose segments are its named group `Segment`s and
    whose `blocks` are the removable blocks containing the call."""

    module: str
    kind: str  # conv | linear | bn | ln | avgpool | adaptive_avgpool | attn_in | attn_out | ...
    node: str
    inputs: Any  # list[Seg] while tracing; tuple[Segment, ...] in a ChannelGraph
    outputs: Any
    spatial: int  # output H*W (1 for 2D outputs)
    kernel: float  # conv: kh*kw; adaptive pool: in area / out area; attn_out: keys per query
    depthwise: bool = False  # per-group conv, in = out channels (depthwise or whole groups)
    groups: int = 1
    bias: bool = False
    affine: bool = True
    module_type: type = nn.Module
    axis: int = 0  # param: the parameter's dimension that holds the channels
    # attn_out: (MACs per inner channel, MACs, params per inner channel, params) besides the
    # projections and the two matmuls (relative-position tables, Swin V2's bias MLP)
    extra: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    blocks: tuple[str, ...] = ()  # in a ChannelGraph: the removable blocks containing it


@dataclass
class TraceState:
    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    fixed: list[bool] = field(default_factory=list)
    producer: dict[int, list[str]] = field(default_factory=dict)
    resolution: dict[int, int] = field(default_factory=dict)
    segs: dict[str, list[Seg] | None] = field(default_factory=dict)
    calls: list[LayerCall] = field(default_factory=list)
    first_call: dict[str, LayerCall] = field(default_factory=dict)
    leaves: dict[str, type] = field(default_factory=dict)  # every leaf module called
    unit: dict[int, int] = field(default_factory=dict)  # root -> channels pruned as one block
    cdim: dict[str, int] = field(default_factory=dict)  # node -> its channel axis (default 1)
    parts: dict[str, list[list[Seg]]] = field(default_factory=dict)  # chunk node -> its items
    dead: set[int] = field(default_factory=set)  # variables replaced by `refine`

    def new(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] != self.size[rb]:
            raise GraphError(
                f"channel mismatch: {self.size[ra]} vs {self.size[rb]} channels joined")
        self.parent[rb] = ra
        self.fixed[ra] = self.fixed[ra] or self.fixed[rb]
        if rb in self.unit:
            self.set_unit(ra, self.unit.pop(rb))

    def set_unit(self, v: int, unit: int) -> None:
        """The variable's channels are kept and removed in aligned blocks of `unit`."""
        r = self.find(v)
        self.unit[r] = math.lcm(self.unit.get(r, 1), unit)

    def fix(self, segs: list[Seg] | None) -> None:
        for v, _, _ in segs or []:
            r = self.find(v)
            self.fixed[r] = True

    def unite_segs(self, a: list[Seg], b: list[Seg]) -> bool:
        if [(s, r) for _, s, r in a] != [(s, r) for _, s, r in b]:
            return False
        for (va, _, _), (vb, _, _) in zip(a, b, strict=True):
            self.union(va, vb)
        return True


    def refine(self, v: int, sizes: list[int], factor: int = 1) -> bool:
        """Replace every variable of v's class by variables of `sizes` channels, each channel
        `factor` old channels wide (a split where factor is 1; a coarsening where `sizes` is
        one entry), and rewrite every segment that holds them. False if v cannot be refined."""
        root = self.find(v)
        if self.unit.get(root, 1) > 1 or sum(sizes) * factor != self.size[root] or min(
                sizes) < 1:
            return False
        members = [u for u in range(len(self.parent))
                   if u not in self.dead and self.find(u) == root]
        new: dict[int, list[int]] = {}
        for u in members:
            new[u] = [self.new(size, self.fixed[root]) for size in sizes]
            for w in new[u]:
                if u in self.producer:
                    self.producer[w] = list(self.producer[u])
                if u in self.resolution:
                    self.resolution[w] = self.resolution[u]
            self.producer.pop(u, None)
            self.dead.add(u)
        for u in members[1:]:
            for a, b in zip(new[members[0]], new[u], strict=True):
                self.union(a, b)

        def sub(segs: list[Seg]) -> list[Seg]:
            out: list[Seg] = []
            for w, n, r in segs:
                out.extend([(x, size, r * factor) for x, size in zip(new[w], sizes, strict=True)]
                           if w in new else [(w, n, r)])
            return out

        self.segs = {k: None if segs is None else sub(segs) for k, segs in self.segs.items()}
        self.parts = {k: [sub(p) for p in parts] for k, parts in self.parts.items()}
        for call in self.calls:
            call.inputs, call.outputs = sub(call.inputs), sub(call.outputs)
        return True


def node_shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

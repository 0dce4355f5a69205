"""ChannelGraph: channel groups and removable blocks of any fx-traceable CNN."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import networkx as nx
import torch
from torch import fx, nn

from archsearch.graph._state import LayerCall, Seg
from archsearch.graph._trace import ADDS, ChannelTracer, trace


@dataclass(frozen=True)
class Segment:
    """A run of channels in a tensor: `size` channels of `group`, each `repeat` features wide."""

    group: str
    size: int
    repeat: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    """Layer dimensions that must keep the same channels, pruned together."""

    name: str
    size: int
    prunable: bool
    producers: tuple[str, ...]  # convs/linears whose outputs are these channels
    members: tuple[str, ...]  # every module that reads or writes them
    norms: tuple[str, ...]  # BatchNorm modules on these channels
    resolution: int  # spatial size where the group lives (0: after the classifier's flatten)
    unit: int = 1  # channels kept and removed together in aligned blocks (a grouped conv's)


@dataclass(frozen=True)
class Block:
    """A residual branch whose skip is the identity: removing it leaves `skip` in its place."""

    name: str
    add: str  # fx node name of the residual add
    skip: str  # fx node name of the identity input
    branch: str  # fx node name of the branch output
    modules: tuple[str, ...]  # parametrised modules inside the branch


class ChannelGraph:
    """Channel groups and removable blocks of a model, derived from one trace.

    `groups` holds every group (fixed ones too: input image channels, class logits, and
    channels an unmodelled op reads); `prunable` lists the names a genome may shrink.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor):
        self.input_shape = tuple(example.shape[1:])
        self.module = trace(model, example)
        state = ChannelTracer(self.module).run()
        self._root_name = self._name_groups(state)
        self.groups = self._groups(state)
        self.prunable = [g.name for g in self.groups.values() if g.prunable]
        self.nx = self._nx_graph()
        self.blocks = self._blocks()
        self.calls = self._calls(state)
        # views writing their channel count as a constant (`shrink` rewrites it), by node
        self.views = {c.module: c for c in self.calls if c.kind == "reshape"}
        self.leaves = dict(state.leaves)  # every leaf module the forward pass calls: its type

    # -- construction -------------------------------------------------------------------
    def _name_groups(self, st) -> dict[int, str]:
        roots: dict[int, list[str]] = {}
        for v in range(len(st.parent)):
            if v not in st.dead:
                roots.setdefault(st.find(v), []).extend(st.producer.get(v, []))
        self._state = st
        names: dict[int, str] = {}
        used: set[str] = set()
        for root, producers in roots.items():
            name = _group_name(producers, used) if producers else f"input{len(used)}"
            base, k = name, 1
            while name in used:  # pieces of one conv's channels (a split by a chunk)
                k += 1
                name = f"{base}.{k}"
            used.add(name)
            names[root] = name
        return names

    def _group_of(self, v: int) -> str:
        return self._root_name[self._state.find(v)]

    def _segments(self, segs: list[Seg]) -> tuple[Segment, ...]:
        return tuple(Segment(self._group_of(v), s, r) for v, s, r in segs)

    def _groups(self, st) -> dict[str, ChannelGroup]:
        members: dict[str, set[str]] = {}
        norms: dict[str, list[str]] = {}
        for call in st.calls:
            if call.kind == "reshape":  # a view's constant, not a module
                continue
            for v, _, _ in [*call.inputs, *call.outputs]:
                members.setdefault(self._group_of(v), set()).add(call.module)
            if call.kind == "bn":
                name = self._group_of(call.inputs[0][0])
                if call.module not in norms.setdefault(name, []):
                    norms[name].append(call.module)
        producers: dict[int, list[str]] = {}
        resolution: dict[int, int] = {}
        for v in range(len(st.parent)):
            if v in st.dead:
                continue
            root = st.find(v)
            producers.setdefault(root, []).extend(st.producer.get(v, []))
            if v in st.resolution:
                resolution[root] = min(resolution.get(root, st.resolution[v]), st.resolution[v])
        groups: dict[str, ChannelGroup] = {}
        for root, prods in producers.items():
            name = self._root_name[root]
            groups[name] = ChannelGroup(
                name, st.size[root], not st.fixed[root] and bool(prods), tuple(prods),
                tuple(sorted(members.get(name, ()))), tuple(norms.get(name, ())),
                resolution.get(root, 0), st.unit.get(root, 1))
        order = {n.target: i for i, n in enumerate(self.module.graph.nodes)
                 if n.op == "call_module"}
        return dict(sorted(groups.items(), key=lambda kv: min(
            (order[p] for p in kv[1].producers), default=-1)))

    def _nx_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for node in self.module.graph.nodes:
            g.add_node(node.name)
            for arg in node.all_input_nodes:
                g.add_edge(arg.name, node.name)
        return g

    def _blocks(self) -> dict[str, Block]:
        blocks: dict[str, Block] = {}
        self._block_nodes: dict[str, set[str]] = {}
        nodes = {n.name: n for n in self.module.graph.nodes}
        for node in self.module.graph.nodes:
            if node.target not in ADDS or len(node.all_input_nodes) != 2:
                continue
            a, b = node.all_input_nodes
            for skip, branch in ((a, b), (b, a)):
                inside = self._branch(self._through_identity(skip).name, branch.name,
                                      node.name, nodes)
                if inside is not None:
                    name = _block_name(node, blocks)
                    self._block_nodes[name] = inside
                    mods = tuple(nodes[n].target for n in sorted(inside)
                                 if nodes[n].op == "call_module")
                    blocks[name] = Block(name, node.name, skip.name, branch.name, mods)
                    break
        return blocks

    def _through_identity(self, node: fx.Node) -> fx.Node:
        while (node.op == "call_module" and len(node.all_input_nodes) == 1
               and isinstance(self.module.get_submodule(node.target), nn.Identity)):
            node = node.all_input_nodes[0]
        return node

    def _branch(self, skip: str, out: str, add: str, nodes: dict[str, fx.Node]) -> set[str] | None:
        """Nodes strictly between `skip` and `out` (inclusive of out) if they form a branch."""
        if skip not in nx.ancestors(self.nx, out):
            return None
        inside = (nx.ancestors(self.nx, out) | {out}) - (nx.ancestors(self.nx, skip) | {skip})
        params = False
        for name in inside:
            node = nodes[name]
            if node.op == "placeholder":
                return None
            if any(p.name not in inside and p.name != skip for p in node.all_input_nodes):
                return None
            if any(u.name not in inside and u.name != add for u in node.users):
                return None
            if node.op == "call_module" and any(
                    True for _ in self.module.get_submodule(node.target).parameters()):
                params = True
        return inside if params else None

    def _calls(self, st) -> list[LayerCall]:
        node_blocks: dict[str, list[str]] = {}
        for block in self.blocks.values():
            for name in self._block_nodes[block.name]:
                node_blocks.setdefault(name, []).append(block.name)
        return [_layer_call(c, self._segments(c.inputs), self._segments(c.outputs),
                            tuple(node_blocks.get(c.node, ()))) for c in st.calls]

    # -- queries ---------------------------------------------------------------------------
    def base_widths(self) -> dict[str, int]:
        return {name: self.groups[name].size for name in self.prunable}

    def stages(self) -> dict[str, int]:
        """Stage index of each prunable group: one stage per spatial resolution, head last."""
        res = sorted({self.groups[n].resolution for n in self.prunable}, key=lambda r: (r == 0, -r))
        return {n: res.index(self.groups[n].resolution) for n in self.prunable}

    def __repr__(self) -> str:
        return (f"ChannelGraph({len(self.prunable)} prunable groups of {len(self.groups)}, "
                f"{len(self.blocks)} removable blocks)")


def _layer_call(c: LayerCall, ins: tuple[Segment, ...], outs: tuple[Segment, ...],
                blocks: tuple[str, ...]) -> LayerCall:
    return replace(c, inputs=ins, outputs=outs, blocks=blocks)


def _group_name(producers: list[str], used: set[str]) -> str:
    """The producer's name; for a residual stream `<common prefix>.stream` or `<first>+N`."""
    if len(producers) == 1:
        return producers[0] if producers[0] not in used else producers[0] + ".out"
    for candidates in (producers, producers[1:]):
        prefix = os.path.commonprefix([p.split(".") for p in candidates])
        if prefix and len(candidates) > 1 and ".".join(prefix) + ".stream" not in used:
            return ".".join(prefix) + ".stream"
    return f"{producers[0]}+{len(producers) - 1}"


def _block_name(node: fx.Node, taken: dict[str, Block]) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] if isinstance(v, tuple) else k for k, v in stack.items()]
    name = paths[-1] if paths else f"add@{node.name}"
    return name if name not in taken else f"{name}@{node.name}"

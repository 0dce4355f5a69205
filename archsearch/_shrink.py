"""shrink(base, genome, keep): a new, physically narrower module.

The base is traced again (the same trace the channel graph was derived from, so node
names match); every conv/linear/BatchNorm is replaced by a sliced copy, and removed
residual blocks are cut out of the graph (the add is replaced by its identity input).
With `keep` (channel indices per group) the surviving weights are the original ones;
without it the first k channels are taken and, given an `init`, freshly initialised.
`shrink` is core: the graph and the initialiser come in as arguments (`BoundSpace.build`
passes its own), so it imports neither `build` nor family code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import fx, nn

from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.graph import ChannelGraph, LayerCall, Segment, slice_attention, symbolic_trace

Keep = Mapping[str, Sequence[int] | torch.Tensor]


def channel_indices(graph: ChannelGraph, genome: Genome, keep: Keep | None = None
                    ) -> dict[str, torch.Tensor]:
    """Surviving channel indices of every group (sorted), checked against the genome."""
    out: dict[str, torch.Tensor] = {}
    for name, group in graph.groups.items():
        width = genome.widths.get(name, group.size) if group.prunable else group.size
        if width % group.unit:
            raise ArchsearchError(f"group {name!r} is pruned in whole blocks of {group.unit} "
                                  f"channels (a grouped conv's groups), but the genome keeps "
                                  f"{width}")
        if keep is not None and name in keep and group.prunable:
            idx = torch.as_tensor(keep[name], dtype=torch.long).sort().values
            if len(idx) != width or len(idx.unique()) != width:
                raise ArchsearchError(f"keep[{name!r}] has {len(idx)} distinct-or-not indices, "
                                      f"but the genome keeps {width} channels")
            if len(idx) and (idx[0] < 0 or idx[-1] >= group.size):
                raise ArchsearchError(f"keep[{name!r}] has indices outside 0..{group.size - 1}")
            out[name] = _whole_blocks(idx, group.unit) if group.unit > 1 else idx
        else:
            out[name] = torch.arange(width)
    return out


def _whole_blocks(idx: torch.Tensor, unit: int) -> torch.Tensor:
    """The same number of channels in whole aligned blocks: the blocks holding most of the
    requested channels (earlier blocks first on ties)."""
    blocks = torch.bincount(idx // unit)
    order = sorted(range(len(blocks)), key=lambda b: (-int(blocks[b]), b))
    chosen = sorted(order[:len(idx) // unit])
    return torch.cat([torch.arange(b * unit, (b + 1) * unit) for b in chosen]) if chosen \
        else torch.zeros(0, dtype=torch.long)


def _feature_index(segments: Sequence[Segment], idx: Mapping[str, torch.Tensor]) -> torch.Tensor:
    parts, offset = [], 0
    for seg in segments:
        kept = idx[seg.group]
        if seg.repeat == 1:
            parts.append(offset + kept)
        else:
            expand = kept[:, None] * seg.repeat + torch.arange(seg.repeat)[None, :]
            parts.append(offset + expand.reshape(-1))
        offset += seg.size * seg.repeat
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _slice(module: nn.Module, call: LayerCall, idx: Mapping[str, torch.Tensor]) -> nn.Module:
    i = _feature_index(call.inputs, idx).to(_device(module))
    o = _feature_index(call.outputs, idx).to(_device(module))
    new = copy.deepcopy(module)
    with torch.no_grad():
        if isinstance(module, nn.Conv2d) and call.depthwise:  # whole groups kept or removed
            new.weight = nn.Parameter(module.weight[o].clone())
            new.in_channels = new.out_channels = len(o)
            new.groups = len(o) // (module.in_channels // module.groups)
        elif isinstance(module, nn.Conv2d) and module.groups == 1:
            new.weight = nn.Parameter(module.weight[o][:, i].clone())
            new.in_channels, new.out_channels = len(i), len(o)
        elif isinstance(module, nn.Linear):
            new.weight = nn.Parameter(module.weight[o][:, i].clone())
            new.in_features, new.out_features = len(i), len(o)
        elif isinstance(module, nn.LayerNorm):
            for name in ("weight", "bias"):
                if getattr(module, name, None) is not None:
                    setattr(new, name, nn.Parameter(getattr(module, name)[i].clone()))
            new.normalized_shape = (len(i),)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            for name in ("weight", "bias"):
                if getattr(module, name) is not None:
                    setattr(new, name, nn.Parameter(getattr(module, name)[i].clone()))
            for name in ("running_mean", "running_var"):
                if getattr(module, name) is not None:
                    setattr(new, name, getattr(module, name)[i].clone())
            new.num_features = len(i)
        if getattr(module, "bias", None) is not None and not isinstance(
                module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            new.bias = nn.Parameter(module.bias[o].clone())
    return new


def _slice_param(gm: fx.GraphModule, call: LayerCall, idx: Mapping[str, torch.Tensor]) -> None:
    """A parameter or buffer broadcast over channels (a layer scale, a position embedding)."""
    owner_name, _, attr = call.module.rpartition(".")
    owner = gm.get_submodule(owner_name) if owner_name else gm
    value = getattr(owner, attr)
    o = _feature_index(call.outputs, idx).to(value.device)
    with torch.no_grad():
        sliced = value.index_select(call.axis, o).clone()
    if isinstance(value, nn.Parameter):
        setattr(owner, attr, nn.Parameter(sliced, requires_grad=value.requires_grad))
    else:
        owner.register_buffer(attr, sliced)


def _slice_attention(gm: fx.GraphModule, graph: ChannelGraph, call: LayerCall,
                     idx: Mapping[str, torch.Tensor]) -> nn.Module:
    """Self-attention keeping whole heads: q/k/v and the output projection sliced as one."""
    out = next(c for c in graph.calls if c.module == call.module and c.kind == "attn_out")
    module = gm.get_submodule(call.module)
    i, inner, o = (_feature_index(s, idx).to(_device(module))
                   for s in (call.inputs, call.outputs, out.outputs))
    return slice_attention(module, i, inner, o)


def _rewrite_view(node: fx.Node, channels: int) -> None:
    """`x.view(n, C, h * w)` → `x.view(n, channels, h * w)`; also with the sizes as a tuple."""
    args = list(node.args)
    if len(args) == 2 and isinstance(args[1], (tuple, list)):
        dims = list(args[1])
        dims[1] = channels
        args[1] = type(args[1])(dims)
    else:
        args[2] = channels
    node.args = tuple(args)


def _device(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def _not_inplace(gm: fx.GraphModule, node: fx.Node) -> None:
    """Make an in-place op at `node` out-of-place (ReLU(inplace=True), F.relu(inplace=True),
    x.relu_()): after a block is cut, its input may be an activation's saved output."""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if getattr(module, "inplace", False):
            module.inplace = False  # a shared module loses in-place for every use: harmless
    elif node.op == "call_function" and node.kwargs.get("inplace"):
        node.kwargs = {**node.kwargs, "inplace": False}
    elif node.op == "call_method" and isinstance(node.target, str) and \
            node.target.endswith("_") and not node.target.endswith("__"):
        node.target = node.target[:-1]


def shrink(base: nn.Module, genome: Genome, keep: Keep | None = None, *,
           graph: ChannelGraph, init: Callable[[nn.Module], None] | None = None
           ) -> fx.GraphModule:
    """A physically smaller copy of `base` with the genome's widths and blocks.

    `graph` is the base's channel graph (`BoundSpace.graph`); without `keep`, `init(model)`
    gives the new model fresh weights (the sliced base weights are kept when it is None).
    """
    unknown = set(genome.removed_blocks()) - set(graph.blocks)
    if unknown:
        raise ArchsearchError(f"genome removes unknown block(s) {sorted(unknown)}")
    idx = channel_indices(graph, genome, keep)
    gm = symbolic_trace(copy.deepcopy(base))  # the graph's own tracer: same node names
    nodes = {n.name: n for n in gm.graph.nodes}
    for name in genome.removed_blocks():
        block = graph.blocks[name]
        add = nodes[block.add]  # its skip may already stand for an earlier removed block
        skip = next(a for a in add.all_input_nodes if a.name != block.branch)
        users = list(add.users)
        add.replace_all_uses_with(skip)
        gm.graph.erase_node(add)
        for user in users:  # e.g. relu(add): now relu(skip), which autograd may still need
            _not_inplace(gm, user)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    live = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for node in gm.graph.nodes:  # views that write the channel count as a constant
        call = graph.views.get(node.name)
        if call is not None:
            _rewrite_view(node, len(_feature_index(call.outputs, idx)))
    done: set[str] = set()
    for call in graph.calls:
        if call.kind == "param" and call.module in live and call.module not in done:
            _slice_param(gm, call, idx)
            done.add(call.module)
        if call.kind == "attn_in" and call.module in live and call.module not in done:
            gm.set_submodule(call.module, _slice_attention(gm, graph, call, idx))
            done.add(call.module)
        sliceable = call.kind in ("conv", "linear", "bn", "ln")
        if sliceable and call.module in live and call.module not in done:
            gm.set_submodule(call.module, _slice(gm.get_submodule(call.module), call, idx))
            done.add(call.module)
    gm.recompile()
    if keep is None and init is not None:
        init(gm)
    return gm

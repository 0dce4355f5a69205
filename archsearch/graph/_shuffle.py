"""Channel shuffle and chunk (ShuffleNetV2): ops that cut the channels into equal parts.

`x.chunk(k, dim=1)` cuts the channels into k equal parts; a pruned model cuts its own
(narrower) channels the same way, so the parts must keep equal widths: they are united
channel for channel. The shuffle `view(b, g, c/g, h, w) → transpose(1, 2) → view(b, c, h, w)`
interleaves its g equal parts: channel j of every part lands next to the others, so the
parts are united and each united channel becomes g times as wide (a segment's `repeat`).
Cutting where a variable's channels do not line up splits or coarsens the variable
(`TraceState.refine`); where no refinement lines them up, the op is left unmodelled.
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from archsearch.graph._state import Seg, TraceState, node_shape

CHUNKS = {"chunk", torch.chunk}
VIEWS = {"view", "reshape", torch.reshape}
_MAX_STEPS = 256  # refinements per op; each one splits or coarsens a variable


class ShuffleOps:
    """Mixin of ChannelTracer: chunk and channel shuffle."""

    st: TraceState
    shuffle_out: set[str]  # the last view of a modelled shuffle (its segments: st.parts)
    shuffle_inner: set[str]  # the nodes before it, which carry no channels of their own

    def _chunk(self, node: fx.Node) -> None:
        """A chunk along the channels: its parts, for the getitems that read them."""
        src = node.args[0]
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        shape = node_shape(src)
        ok = (isinstance(src, fx.Node) and isinstance(k, int) and isinstance(dim, int)
              and shape is not None and self.st.segs.get(src.name) is not None
              and dim % len(shape) == self._cd(src) == 1)
        parts = self._equal_parts(src.name, k) if ok else None
        if parts is None:
            self.st.fix(self.st.segs.get(src.name) if isinstance(src, fx.Node) else None)
            return
        self.st.parts[node.name] = parts

    def _chunk_item(self, node: fx.Node) -> list[Seg] | None:
        parts = self.st.parts.get(node.args[0].name)
        index = node.args[1]
        if parts is None or not isinstance(index, int):
            return self._fresh(node, fixed=True)
        return parts[index]

    def _is_chunk_item(self, node: fx.Node) -> bool:
        return (node.op == "call_function" and node.target is operator.getitem
                and isinstance(node.args[0], fx.Node) and node.args[0].target in CHUNKS)

    def _shuffled(self, node: fx.Node) -> list[Seg] | None:
        return self.st.parts[node.name][0]

    def _shuffle(self, node: fx.Node) -> bool:
        """At the first view of a channel shuffle: model the whole pattern, or return False."""
        chain = _shuffle_chain(node)
        src = node.args[0]
        if chain is None or self.st.segs.get(src.name) is None or self._cd(src) != 1:
            return False
        groups = node_shape(node)[1]
        parts = self._equal_parts(src.name, groups)
        if parts is None:
            return False
        self.shuffle_inner.update(n.name for n in chain[:-1])
        self.shuffle_out.add(chain[-1].name)
        self.st.parts[chain[-1].name] = [[(v, n, r * groups) for v, n, r in parts[0]]]
        return True

    def _equal_parts(self, name: str, k: int) -> list[list[Seg]] | None:
        """The segments of node `name` cut into k parts of equal features, refined until the
        parts line up, and united; None where they cannot be."""
        total = sum(n * r for _, n, r in self.st.segs[name])
        if k < 1 or total % k:
            return None
        at = [total // k * j for j in range(1, k)]
        for _ in range(_MAX_STEPS):  # each pass refines one variable, or finishes
            parts = self._cut(self.st.segs[name], at)
            if parts is False:
                return None
            if parts is None:
                continue
            step = next((s for p in parts[1:] if (s := self._align_step(parts[0], p))
                         is not True), True)
            if step is False:
                return None
            if step is True:
                for p in parts[1:]:
                    self.st.unite_segs(parts[0], p)
                return parts
        return None

    def _cut(self, segs: list[Seg], at: list[int]) -> list[list[Seg]] | bool | None:
        """`segs` cut at the feature offsets `at`; None after splitting a variable that a cut
        fell inside (look again), False where no split can help."""
        parts: list[list[Seg]] = [[]]
        offset, cuts = 0, list(at)
        for v, n, r in segs:
            if cuts and offset < cuts[0] < offset + n * r:
                local = cuts[0] - offset
                ok = local % r == 0 and self.st.refine(v, [local // r, n - local // r])
                return None if ok else False
            parts[-1].append((v, n, r))
            offset += n * r
            if cuts and offset == cuts[0]:
                cuts.pop(0)
                parts.append([])
        return parts if not cuts and len(parts) == len(at) + 1 else False

    def _align_step(self, a: list[Seg], b: list[Seg]) -> bool | None:
        """True if `a` and `b` have the same structure; else refine one variable (None:
        look again) or give up (False)."""
        for (va, na, ra), (vb, nb, rb) in zip(a, b, strict=False):
            la, lb = na * ra, nb * rb
            if (la, ra) == (lb, rb):
                continue
            if la != lb:  # cut the longer one where the shorter one ends
                v, n, r, length = (va, na, ra, lb) if la > lb else (vb, nb, rb, la)
                ok = length % r == 0 and self.st.refine(v, [length // r, n - length // r])
            else:  # as long, with wider channels on one side: coarsen the other
                v, n, r, wide = (va, na, ra, rb) if ra < rb else (vb, nb, rb, ra)
                ok = wide % r == 0 and self.st.refine(v, [n * r // wide], wide // r)
            return None if ok else False
        return len(a) == len(b) or False

    def _fresh(self, node: fx.Node, fixed: bool, dim: int = 1) -> list[Seg] | None:
        raise NotImplementedError  # pragma: no cover

    def _cd(self, node: fx.Node | None) -> int:
        raise NotImplementedError  # pragma: no cover


def _shuffle_chain(node: fx.Node) -> list[fx.Node] | None:
    """[view to (b, g, c/g, h, w), transpose(1, 2), (contiguous), view back] or None."""
    src = node.args[0] if node.args else None
    a, b = node_shape(src), node_shape(node)
    if node.op != "call_method" or node.target not in VIEWS or a is None or b is None:
        return None
    if len(a) != 4 or len(b) != 5 or b[0] != a[0] or b[1] * b[2] != a[1] or b[3:] != a[2:]:
        return None
    chain = [node, _sole_user(node)]
    if chain[-1] is None or chain[-1].target not in ("transpose", torch.transpose) or tuple(
            chain[-1].args[1:]) not in ((1, 2), (2, 1)):
        return None
    chain.append(_sole_user(chain[-1]))
    if chain[-1] is not None and chain[-1].target == "contiguous":
        chain.append(_sole_user(chain[-1]))
    last = chain[-1]
    if last is None or last.target not in VIEWS or node_shape(last) != a:
        return None
    return chain


def _sole_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None

"""Sparse structure selection (Huang & Wang, ECCV 2018): a scale factor on every removable
residual block, driven to exact zeros by accelerated proximal gradient (APG)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import fx, nn

from archsearch.budget import TOLERANCE, Budget, fit_to_budget
from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.presets import GateTravelRule, SparsityRule
from archsearch.pruners._base import Pruner, as_budget, check_nonnegative, check_positive, filter_l1
from archsearch.pruners._evidence import separation
from archsearch.pruners._options import Option, number

_log = logging.getLogger(__name__)
GATES = "sss_gates"


class BlockGate(nn.Module):
    """Multiplies a residual branch by a learnable factor. `scale` is the APG look-ahead
    point used in the forward pass; `sparse` is the proximal iterate (exact zeros)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("sparse", torch.ones(1))
        self.register_buffer("velocity", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    @torch.no_grad()
    def apg_step(self, lr: float, sparsity: float, momentum: float) -> None:
        """One APG step on the factor, from the gradient at the look-ahead point."""
        grad = self.scale.grad
        ahead = self.scale.detach()
        z = ahead - lr * grad
        prox = torch.sign(z) * torch.clamp(z.abs() - lr * sparsity, min=0.0)
        self.velocity.copy_(prox - ahead + momentum * self.velocity)
        self.sparse.copy_(prox)
        self.scale.copy_(prox + momentum * self.velocity)
        self.scale.grad = None  # the model's optimizer must not move it again


def gate_key(block: str) -> str:
    return f"{GATES}.{block.replace('.', '_')}"


class SSSPruner(Pruner):
    """A gate on each removable block (graph.blocks), trained by APG with an L1 proximal
    step (`sparsity`); the genome drops the blocks with the smallest factors while the
    full-width cost stays at or above the budget, then narrows every group by one ratio.

    The gates have their own step size `gate_lr` and `momentum`: `regularize` updates them
    and clears their gradients, so the model's optimizer leaves them alone. Per-channel
    importance (for fine-tuning) is the L1 norm of the producing filters.
    """

    name = "sss"
    sparsity_rule: ClassVar[SparsityRule] = GateTravelRule()
    OPTIONS = (Option("gate_lr", "step size of the block gates' proximal updates", number),
               Option("momentum", "momentum of the block gates' updates, in [0, 1)", number))

    def __init__(self, bound: BoundSpace, sparsity: float | None = None, gate_lr: float = 0.1,
                 momentum: float = 0.9):
        super().__init__(bound)
        if sparsity is None:
            sparsity = self.sparsity_rule.paper(bound.space.family)
        self.sparsity = check_nonnegative(sparsity, "sparsity")
        self.gate_lr = check_positive(gate_lr, "gate_lr")
        self.momentum = check_nonnegative(momentum, "momentum")
        if self.momentum >= 1:
            raise ArchsearchError(f"momentum must be < 1, but got momentum={momentum:g}")
        if not bound.graph.blocks:
            raise ArchsearchError(f"sss needs removable residual blocks, but space "
                                  f"{bound.space.name!r} has none")

    def options(self) -> dict[str, object]:
        return {"sparsity": self.sparsity, "gate_lr": self.gate_lr, "momentum": self.momentum}

    def prepare(self, model: nn.Module) -> nn.Module:
        """An fx rewrite of the base with a BlockGate between each branch and its add."""
        gm = fx.symbolic_trace(model)
        nodes = {n.name: n for n in gm.graph.nodes}
        for block in self.bound.graph.blocks.values():
            branch, add = nodes[block.branch], nodes[block.add]
            gm.add_submodule(gate_key(block.name), BlockGate())
            with gm.graph.inserting_after(branch):
                gate = gm.graph.call_module(gate_key(block.name), (branch,))
            add.replace_input_with(branch, gate)
        gm.recompile()
        return gm.to(_device(model))

    def regularize(self, model: nn.Module) -> None:
        for block in self.bound.graph.blocks:
            gate = model.get_submodule(gate_key(block))
            if gate.scale.grad is not None:
                gate.apg_step(self.gate_lr, self.sparsity, self.momentum)

    def gates(self, model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The sparse factor of each block, from a prepared model or its state_dict."""
        state = model if isinstance(model, Mapping) else model.state_dict()
        out = {}
        for block in self.bound.graph.blocks:
            key = f"{gate_key(block)}.sparse"
            if key not in state:
                raise ArchsearchError(f"no sss gate for block {block!r} ({key} missing): was "
                                      "the model trained with the sss pruner?")
            out[block] = float(state[key].reshape(-1)[0])
        return out

    def restore(self, model: nn.Module) -> nn.Module:
        """The base model with each gate folded into the last layer of its branch."""
        state = model.state_dict()
        base = self.bound.base_model()
        base.load_state_dict({k: v for k, v in state.items() if not k.startswith(GATES + ".")})
        nodes = {n.name: n for n in self.bound.graph.module.graph.nodes}
        with torch.no_grad():
            for block in self.bound.graph.blocks.values():
                factor = state[f"{gate_key(block.name)}.scale"].reshape(-1)[0].cpu()
                last = nodes[block.branch]
                layer = base.get_submodule(last.target) if last.op == "call_module" else None
                if layer is None or getattr(layer, "weight", None) is None:
                    raise ArchsearchError(f"cannot fold the sss gate of block {block.name!r}: "
                                          "its branch does not end in a layer with weights")
                layer.weight.mul_(factor)
                if getattr(layer, "bias", None) is not None:
                    layer.bias.mul_(factor)
        return base.to(_device(model))

    def importance(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return filter_l1(model, self.bound)

    def genome(self, model: nn.Module, budget: Budget | str) -> Genome:
        budget = as_budget(budget)
        factors = self.gates(model)
        blocks = drop_blocks(factors, budget, self.bound)
        zeros = sorted(b for b, f in factors.items() if f == 0 and blocks[b])
        if zeros:
            _log.warning("sss: %d block(s) with zero factor kept to meet budget %s: %s",
                         len(zeros), budget, ", ".join(zeros))
        widths = fit_to_budget({}, budget, self.bound, blocks)
        removed = sorted(b for b, kept in blocks.items() if not kept)
        evidence = separation([abs(factors[b]) for b in blocks if blocks[b]],
                              [abs(factors[b]) for b in removed])
        evidence["near_zero_share"] = round(sum(f == 0 for f in factors.values())
                                            / max(1, len(factors)), 4)
        return self.bound.genome(widths, blocks, self._provenance(
            budget, removed=removed, separation=evidence))


def drop_blocks(factors: Mapping[str, float], budget: Budget,
                bound: BoundSpace) -> dict[str, bool]:
    """Remove blocks by increasing |factor| while the full-width cost stays >= the budget
    (less 1%): depth first, the rest is left to widths."""
    target = budget.target(bound)
    pricer = budget.pricer(bound)
    full = bound.costs.widths_vector({})
    order = sorted(factors, key=lambda b: (abs(factors[b]), list(factors).index(b)))
    blocks = dict.fromkeys(factors, True)
    for block in order:
        trial = dict(blocks, **{block: False})
        if pricer.vector(full, bound.costs.active(trial)) < target * (
                1 - TOLERANCE):
            break
        blocks = trial
    return blocks


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))

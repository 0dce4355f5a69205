"""Pruners that learn from the base's activations while it trains (taylor, pfa, thinet).

`prepare` adds a stats module (buffers only, so the statistics travel in the checkpoint's
state_dict) and forward hooks on the modules it watches; the hooks record only training
steps (module in training mode, gradients enabled), so evaluation passes leave no trace.
`restore` strips the stats and gives back a plain base model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.pruners._base import Pruner


def probe_points(bound: BoundSpace) -> dict[str, list[str]]:
    """Per prunable group, the modules whose outputs are its channels: its 2-d BatchNorms
    (the activation a channel contributes), else the layers that produce it."""
    out: dict[str, list[str]] = {}
    modules = dict(bound.base_model().named_modules())
    for name in bound.graph.prunable:
        group = bound.graph.groups[name]
        norms = [m for m in group.norms if isinstance(modules.get(m), nn.BatchNorm2d)]
        out[name] = norms or list(group.producers)
    return out


def buffer_key(name: str) -> str:
    return name.replace(".", "__")


class Tap:
    """A forward hook that hands a training step's activations to the stats module. An object
    (not a closure) so that a deep copy of the model taps the copied stats."""

    def __init__(self, stats: ProbeStats, key: str):
        self.stats = stats
        self.key = key

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if module.training and torch.is_grad_enabled():
            self.stats.observe(self.key, module, args, output)


class ProbeStats(nn.Module):
    """Running means of per-key statistics (buffers); subclasses define `observe`."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], decay: float):
        super().__init__()
        self.decay = decay
        self.keys = list(shapes)
        for key, shape in shapes.items():
            self.register_buffer(buffer_key(key), torch.zeros(shape))
            self.register_buffer(buffer_key(key) + "__n", torch.zeros(()))

    def forward(self, x: Any) -> Any:
        """The identity: a model that calls its children in turn (nn.Sequential) passes its
        input through the statistics it was given."""
        return x

    def stat(self, key: str) -> torch.Tensor:
        return getattr(self, buffer_key(key))

    def steps(self, key: str) -> float:
        return float(getattr(self, buffer_key(key) + "__n"))

    def observe(self, key: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def accumulate(self, key: str, value: torch.Tensor) -> None:
        """One step of the running mean: total = decay * total + value, and likewise its
        normaliser (decay 1 = the plain mean over all steps)."""
        buf, n = self.stat(key), getattr(self, buffer_key(key) + "__n")
        buf.mul_(self.decay).add_(value.to(buf.device, buf.dtype))
        n.mul_(self.decay).add_(1.0)

    def mean(self, key: str) -> torch.Tensor:
        n = getattr(self, buffer_key(key) + "__n")
        return self.stat(key).detach().float().cpu() / float(n.clamp(min=1e-12))

    def recorded(self) -> bool:
        return any(self.steps(k) > 0 for k in self.keys)


class ProbePruner(Pruner):
    """A pruner whose statistics are gathered by hooks while the base trains."""

    stats_name = ""
    needs_training = True

    def __init__(self, bound: BoundSpace, decay: float = 0.99):
        super().__init__(bound)
        self.decay = float(decay)
        if not 0 < self.decay <= 1:
            raise ArchsearchError(f"decay must be in (0, 1], but got decay={decay!r}")

    def options(self) -> dict[str, object]:
        return {"decay": self.decay}

    def make_stats(self) -> ProbeStats:
        """The stats module (fresh, zero statistics)."""
        raise NotImplementedError

    def taps(self) -> dict[str, str]:
        """Key -> module name: where each statistic is observed."""
        raise NotImplementedError

    def prepare(self, model: nn.Module) -> nn.Module:
        stats = self.make_stats().to(_device(model))
        model.add_module(self.stats_name, stats)
        for key, module in self.taps().items():
            model.get_submodule(module).register_forward_hook(Tap(stats, key))
        return model

    def stats(self, model: nn.Module) -> ProbeStats:
        stats = getattr(model, self.stats_name, None)
        if not isinstance(stats, ProbeStats):
            raise ArchsearchError(f"{self.name}: the model has no {self.stats_name} (was it "
                                  f"prepared and trained with the {self.name} pruner?)")
        if not stats.recorded():
            raise ArchsearchError(f"{self.name}: no training step was recorded: train the "
                                  f"base with the {self.name} pruner first")
        return stats

    def restore(self, model: nn.Module) -> nn.Module:
        """The base model with the trained weights, without stats or hooks."""
        prefix = self.stats_name + "."
        state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
        base = self.bound.base_model()
        base.load_state_dict(state)
        return base.to(_device(model))


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))

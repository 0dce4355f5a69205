"""One optimizer step, and the running totals of an epoch's steps."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from archsearch.train._config import TrainConfig
from archsearch.train._device import Precision, onednn_1x1_guard, onednn_bf16_strided_guard
from archsearch.train._dist import World
from archsearch.train._fast import FastPath

log = logging.getLogger(__name__)

Regularizer = Callable[[nn.Module], None]


def sgd(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """The optimizer of every schedule: SGD with momentum and weight decay (the fast path:
    its multi-tensor form, the same arithmetic in fewer passes)."""
    return torch.optim.SGD(model.parameters(), lr=config.base_lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.nesterov,
                           foreach=config.fast or None)


class Step:
    """Forward under `precision`'s autocast, fp32 cross-entropy, backward (scaled for fp16),
    `regularizer(model)` between backward and step, then the optimizer step.

    A custom step (`train`'s `step` argument) subclasses it and overrides `__call__`, with
    `backward` for each of its losses and `update` once at the end (the supernet's sandwich
    rule: `SandwichStep` in archsearch/search/_supernet.py).

    `net` is what runs forward: `model` wrapped in DistributedDataParallel under torchrun,
    compiled with `config.compile` (unless oneDNN's 1x1 guard is needed); `close()` removes
    the guards (the 1x1 guard's hooks; the fp32 forward of strided convs on inputs
    narrower than their stride under bf16, `onednn_bf16_strided_guard`)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 device: torch.device, precision: Precision, world: World,
                 regularizer: Regularizer | None = None):
        self.model, self.optimizer, self.regularizer = model, optimizer, regularizer
        self.smoothing = config.label_smoothing
        self.device, self.precision, self.world = device, precision, world
        net: nn.Module = model
        if world.size > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
        self.guards = onednn_1x1_guard(model, device, config.channels_last)
        self.overrides = onednn_bf16_strided_guard(model, device, precision)
        self.fast = FastPath(model, config, device)
        if config.compile and self.guards:  # inductor re-lays convs out NHWC: the bug is back
            log.warning("torch.compile skipped: this model has 1x1 strided convs with < 16 "
                        "input channels, which oneDNN gets wrong in NHWC (oneDNN#6035); "
                        "training eagerly")
        elif config.compile:
            net = torch.compile(net)
        self.net = net

    def begin_epoch(self, lr: float, epoch: int = 0) -> None:
        """Before the 0-based `epoch`'s batches (a custom step may seed its draws with it,
        so a resumed run draws what an uninterrupted one would): set the lr, train mode."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on the batch (x, y): its loss and outputs, detached."""
        loss, out = self.forward(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.update()
        return loss.detach(), out.detach()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The net's outputs on `x` under the precision's autocast and their fp32
        cross-entropy against `y` (label smoothing as configured): (loss, outputs)."""
        with self.precision.autocast(self.device):
            out = self.net(x)
            loss = nn.functional.cross_entropy(out.float(), y, label_smoothing=self.smoothing)
        return loss, out

    def backward(self, loss: torch.Tensor) -> None:
        """Add `loss`'s gradients (scaled for fp16); a step may call it more than once."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def update(self) -> None:
        """After the step's backward passes: unscale (fp16), `regularizer(model)`, then the
        optimizer step."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.regularizer is not None:
            self.regularizer(self.model)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def close(self) -> None:
        for handle in [*self.guards, *self.overrides]:
            handle.remove()
        self.overrides = []
        self.fast.close()


class Tally:
    """An epoch's summed loss, correct predictions and images, kept on the device (no sync
    per step) and summed over the processes at the end."""

    def __init__(self, device: torch.device):
        self.device = device
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += loss * len(y)
        self.correct += (out.argmax(1) == y).sum()
        self.seen += len(y)

    def totals(self, world: World) -> tuple[float, float, float]:
        """(mean loss, accuracy, images) over every process."""
        stats = torch.stack([self.loss.double(), self.correct.double(),
                             torch.tensor(float(self.seen), device=self.device,
                                          dtype=torch.float64)])
        if world.size > 1:
            dist.all_reduce(stats)
        return float(stats[0] / stats[2]), float(stats[1] / stats[2]), float(stats[2])

"""The engine's fast path (`TrainConfig.fast`, on by default; `--no-fast` turns it off).

Each piece was measured side by side against the plain path (bench/throughput_kernels.md
per layer, bench/throughput_ablation.md and bench/throughput_cifar10.md per network):

- glibc keeps freed memory instead of unmapping it (`tune_cpu_allocator`): the page faults
  of re-touching a step's activations go away;
- BatchNorm layers narrower than `_fastbn.NARROW` channels in channels_last on CPU run the
  folded kernel (`_fastbn`), about 2.5x torch's at 6 channels;
- SGD in its multi-tensor (foreach) form (`_step.sgd`).

Measured and not taken: per-layer fp32 or NCHW convolutions (bf16 channels_last is the
fastest at every width measured, 6 to 64 channels), torch.compile (slower, see issue 25).

None changes what is trained or stored: parameters, buffers, optimizer state, checkpoints
and metrics have the plain path's form; the arithmetic differs only in the order of
floating-point sums (fp32 losses agree to 1e-4 over 8 steps: tests/test_train_fast.py).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from archsearch.train import _fastbn
from archsearch.train._config import TrainConfig
from archsearch.train._device import tune_cpu_allocator

log = logging.getLogger(__name__)


class FastPath:
    """The fast path's changes to one model's training; `close()` undoes those on the
    model (the allocator setting is the process's and stays)."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device):
        self.layers: list[nn.Module] = []
        if not config.fast or device.type != "cpu":
            return
        tune_cpu_allocator()
        if config.channels_last and not config.compile:
            self.layers = _fastbn.install(model)
        if self.layers:
            log.debug("fast path: %d narrow BatchNorm layers folded", len(self.layers))

    def close(self) -> None:
        _fastbn.uninstall(self.layers)
        self.layers = []

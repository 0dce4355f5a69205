"""The training engine: schedules, the fast in-memory loop, checkpoints and resume."""

from __future__ import annotations

from archsearch.train._config import (
    DEFAULT_LR,
    SCHEDULES,
    TrainConfig,
    resolve_epochs,
    scratch_b_epochs,
)
from archsearch.train._device import cpu_has_fast_bf16, resolve_device, resolve_precision
from archsearch.train._loop import (
    TrainResult,
    evaluate,
    load_checkpoint,
    seed_everything,
    train,
)
from archsearch.train._progress import LogProgress, TrainProgress

__all__ = [
    "DEFAULT_LR",
    "LogProgress",
    "SCHEDULES",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "cpu_has_fast_bf16",
    "evaluate",
    "load_checkpoint",
    "resolve_device",
    "resolve_epochs",
    "resolve_precision",
    "scratch_b_epochs",
    "seed_everything",
    "train",
]

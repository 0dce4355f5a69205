"""The training engine: schedules, the fast in-memory loop, checkpoints and resume.

Its pieces (the run folder, the epochs' batches, the step, devices and precision) are in
the private modules `_run`, `_epochs`, `_step`, `_dist` and `_device`."""

from __future__ import annotations

from archsearch.train._config import (
    AMP_MODES,
    LR_SCHEDULES,
    SCHEDULES,
    TrainConfig,
    lr_at,
    resolve_epochs,
    scratch_b_epochs,
)
from archsearch.train._device import (
    Augment,
    cpu_has_fast_bf16,
    resolve_device,
    tune_cpu_allocator,
)
from archsearch.train._loop import TrainResult, evaluate, seed_everything, train
from archsearch.train._progress import LogProgress, TrainProgress
from archsearch.train._run import load_checkpoint
from archsearch.train._step import Step

__all__ = [
    "AMP_MODES",
    "LR_SCHEDULES",
    "Augment",
    "SCHEDULES",
    "LogProgress",
    "Step",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "cpu_has_fast_bf16",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "resolve_device",
    "resolve_epochs",
    "scratch_b_epochs",
    "seed_everything",
    "train",
    "tune_cpu_allocator",
]

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
from archsearch.train._device import Augment as Augment
from archsearch.train._device import cpu_has_fast_bf16 as cpu_has_fast_bf16
from archsearch.train._device import resolve_device as resolve_device
from archsearch.train._device import tune_cpu_allocator as tune_cpu_allocator
from archsearch.train._loop import TrainResult, evaluate, seed_everything, train
from archsearch.train._progress import LogProgress, TrainProgress
from archsearch.train._run import load_checkpoint
from archsearch.train._step import Step

__all__ = [
    "AMP_MODES",
    "LR_SCHEDULES",
    "SCHEDULES",
    "LogProgress",
    "Step",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "resolve_epochs",
    "scratch_b_epochs",
    "seed_everything",
    "train",
]

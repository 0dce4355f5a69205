"""The training loop: in-memory uint8 data on the device, batched augmentation,
channels_last, autocast where it is fast, atomic per-epoch checkpoints, exact resume,
divergence detection, and DistributedDataParallel under torchrun.

The pieces live beside it: the run folder and checkpoints (`_run`), the epochs' batches
(`_epochs`), the step (`_step`), the device and processes (`_dist`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.data import FolderSet, ImageSet, Splits
from archsearch.errors import ArchsearchError, DivergenceError
from archsearch.genome import Genome
from archsearch.train._config import TrainConfig
from archsearch.train._device import Augment, Precision, resolve_device, resolve_precision
from archsearch.train._dist import World, join, unwrap
from archsearch.train._epochs import Epochs
from archsearch.train._progress import TrainProgress, reporter
from archsearch.train._run import RunFolder
from archsearch.train._step import Regularizer, Step, Tally, sgd

OnEpoch = Callable[[dict[str, Any]], None]
StepFactory = Callable[..., Step]  # (model, optimizer, config, device, precision, world,
#                                     regularizer) -> Step


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    test_acc: float | None = None
    val_acc: float | None = None
    epochs: int = 0
    wall_s: float = 0.0
    precision: str = "fp32"
    device: str = "cpu"
    world_size: int = 1

    @classmethod
    def of(cls, model: nn.Module, history: list[dict[str, Any]], config: TrainConfig,
           epochs: int, precision: Precision, device: torch.device, world: World
           ) -> TrainResult:
        """The result of a run: its last epoch's evaluation, as val_acc for a run that
        reports on val (search; it never looks at the test split), else as test_acc."""
        last = history[-1]["eval_acc"] if history else None
        return cls(model, history, epochs=epochs, precision=precision.name,
                   device=str(device), world_size=world.size,
                   test_acc=last if config.eval_split == "test" else None,
                   val_acc=last if config.eval_split == "val" else None)

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {"test_acc": self.test_acc, "val_acc": self.val_acc, "epochs": self.epochs,
                "wall_s": self.wall_s, "train_loss": last.get("train_loss"),
                "images_per_s": last.get("images_per_s"), "precision": self.precision,
                "device": self.device, "world_size": self.world_size}


def seed_everything(seed: int) -> None:
    """Seed torch (model initialisation happens before `train`, so callers seed first)."""
    torch.manual_seed(seed)


def train(model: nn.Module, splits: Splits, config: TrainConfig, *, epochs: int | None = None,
          genome: Genome | None = None, run_dir: str | Path | None = None,
          resume: bool = False, regularizer: Regularizer | None = None,
          on_epoch: OnEpoch | None = None, progress: bool | TrainProgress | None = True,
          step: StepFactory = Step) -> TrainResult:
    """Train `model` in place on `splits.train` for `epochs` (default `config.epochs`).

    With `run_dir`: config.json, genome.json, metrics.jsonl, checkpoint.pt (atomic, every
    epoch) and result.json; `resume` continues from its checkpoint. `regularizer(model)`
    runs between backward and step; `on_epoch(record)` after every epoch (its exceptions,
    e.g. optuna.TrialPruned, propagate); `progress` (a TrainProgress, e.g. the CLI's bar;
    True: a log line per epoch) hears on_step/on_epoch. NaN/inf loss raises DivergenceError,
    keeping the last good checkpoint. `step(model, optimizer, config, device, precision,
    world, regularizer)` makes what trains a batch: `Step`, or a subclass with its own
    `__call__` (the supernet's `SandwichStep`); all else stays the trainer's.
    """
    start = time.perf_counter()
    epochs = epochs or config.epochs
    device, world = join(config.device)
    precision = resolve_precision(config.amp, device)
    run = RunFolder(run_dir, world.main, config, epochs, genome)
    data = Epochs(splits, config, device, world)
    eval_set = _eval_set(splits, config)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = sgd(model, config)
    done, history = run.open(model, optimizer, resume)
    offset = history[-1]["wall_s"] if history else 0.0
    stepper = step(model, optimizer, config, device, precision, world, regularizer)
    bar = reporter(progress, world.main)
    bar.on_start(epochs, data.steps, done)
    try:
        for epoch in range(done, epochs):
            record = _epoch(stepper, data, eval_set, config, epoch, epochs, bar, run)
            record["wall_s"] = offset + time.perf_counter() - start
            history.append(record)
            run.save(model, optimizer, history)
            bar.on_epoch(record)
            if on_epoch is not None:
                on_epoch(record)
    finally:
        bar.on_end()
        stepper.close()
    result = TrainResult.of(model, history, config, epochs, precision, device, world)
    result.wall_s = offset + time.perf_counter() - start
    run.finish(result.summary())
    return result


def _eval_set(splits: Splits, config: TrainConfig) -> ImageSet | FolderSet:
    eval_set = splits.split(config.eval_split)
    if len(eval_set) == 0:
        raise ArchsearchError(f"the {config.eval_split} split is empty: nothing to evaluate on")
    return eval_set


def _epoch(step: Step, data: Epochs, eval_set: ImageSet | FolderSet, config: TrainConfig,
           epoch: int, epochs: int, bar: TrainProgress, run: RunFolder) -> dict[str, Any]:
    """Train one epoch, stop on a non-finite loss, evaluate: the epoch's record (but its
    wall_s)."""
    lr = config.lr_at(epoch, epochs)
    step.begin_epoch(lr, epoch)
    t0 = time.perf_counter()
    tally = Tally(step.device)
    for x, y in data.batches(epoch):
        loss, out = step(x, y)
        tally.add(loss, out, y)
        bar.on_step(epoch)
    train_s = time.perf_counter() - t0
    train_loss, train_acc, seen = tally.totals(step.world)
    if not math.isfinite(train_loss):
        ckpt = run.checkpoint
        where = f"; the last good checkpoint is {ckpt}" if ckpt and ckpt.exists() else ""
        raise DivergenceError(f"training diverged in epoch {epoch + 1}: the loss is "
                              f"{train_loss} (lr {lr:g}){where}")
    world = step.world
    c, t = _correct(unwrap(step.net), eval_set, data.augment, step.device, step.precision,
                    max(data.per_rank, 256), world.rank, world.size, config.test_flip)
    c, t = world.all_sum([c, t], step.device)
    return {"epoch": epoch + 1, "epochs": epochs, "lr": lr, "train_loss": train_loss,
            "train_acc": train_acc, "eval_acc": c / max(t, 1),
            "eval_split": config.eval_split, "images_per_s": seen / train_s}


@torch.no_grad()
def _correct(model: nn.Module, data: ImageSet | FolderSet, augment: Augment, device: torch.device,
             precision: Precision, batch_size: int, rank: int = 0, world: int = 1,
             flip: bool = False) -> tuple[int, int]:
    """Correct top-1 predictions and images; `flip`: logits of the image and its mirror
    image summed (test-time flip)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    idx = torch.arange(rank, len(data), world)
    if isinstance(data, ImageSet):
        batches = ((data.images[sel], data.labels[sel])
                   for sel in idx.split(batch_size))
    else:
        batches = data.batches(idx, batch_size, seed=0)
    for xb, yb in batches:
        x = augment.normalise(xb.to(device, non_blocking=True))
        with precision.autocast(device):
            logits = model(x).float()
            if flip:
                logits += model(x.flip(3)).float()
            pred = logits.argmax(1)
        correct += int((pred.cpu() == yb).sum())
        total += len(yb)
    model.train(was_training)
    return correct, total


def evaluate(model: nn.Module, data: ImageSet | FolderSet, splits: Splits,
             device: str | torch.device = "auto", batch_size: int = 512,
             amp: str = "auto", channels_last: bool = True, test_flip: bool = False) -> float:
    """Top-1 accuracy of `model` on `data`, normalised as training does (with `splits`'
    statistics: required, so evaluation can never see other inputs than training)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    aug = Augment(splits.mean, splits.std, 0, False, dev, channels_last)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    c, t = _correct(model, data, aug, dev, resolve_precision(amp, dev), batch_size,
                    flip=test_flip)
    return c / max(t, 1)

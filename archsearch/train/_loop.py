"""The training loop: in-memory uint8 data on the device, batched augmentation,
channels_last, autocast where it is fast, atomic per-epoch checkpoints, exact resume,
divergence detection, and DistributedDataParallel under torchrun.

Randomness is a function of (seed, epoch): the data order and augmentation of epoch e come
from a generator seeded with both, so a resumed run sees exactly what an uninterrupted run
would have seen.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from archsearch.data._folder import FolderSet
from archsearch.data._loaders import ImageSet, Splits
from archsearch.errors import ArchsearchError, DivergenceError
from archsearch.genome import Genome
from archsearch.io import (
    append_jsonl,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from archsearch.train._config import TrainConfig
from archsearch.train._device import (
    Augment,
    Precision,
    onednn_1x1_guard,
    resolve_device,
    resolve_precision,
)
from archsearch.train._progress import TrainProgress, reporter

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "archsearch.checkpoint"
CHECKPOINT_VERSION = 1
Regularizer = Callable[[nn.Module], None]
OnEpoch = Callable[[dict[str, Any]], None]


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

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {"test_acc": self.test_acc, "val_acc": self.val_acc, "epochs": self.epochs,
                "wall_s": self.wall_s, "train_loss": last.get("train_loss"),
                "images_per_s": last.get("images_per_s"), "precision": self.precision,
                "device": self.device, "world_size": self.world_size}


def seed_everything(seed: int) -> None:
    """Seed torch (model initialisation happens before `train`, so callers seed first)."""
    torch.manual_seed(seed)


# -- distributed ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    """Under torchrun (WORLD_SIZE > 1) join the process group: gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


# -- evaluation ----------------------------------------------------------------------------

@torch.no_grad()
def _correct(model: nn.Module, data: ImageSet | FolderSet, augment: Augment, device: torch.device,
             precision: Precision, batch_size: int, rank: int = 0, world: int = 1
             ) -> tuple[int, int]:
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
            pred = model(x).argmax(1)
        correct += int((pred.cpu() == yb).sum())
        total += len(yb)
    model.train(was_training)
    return correct, total


def evaluate(model: nn.Module, data: ImageSet | FolderSet, splits: Splits,
             device: str | torch.device = "auto", batch_size: int = 512,
             amp: str = "auto", channels_last: bool = True) -> float:
    """Top-1 accuracy of `model` on `data`, normalised as training does (with `splits`'
    statistics: required, so evaluation can never see other inputs than training)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    aug = Augment(splits.mean, splits.std, 0, False, dev, channels_last)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    c, t = _correct(model, data, aug, dev, resolve_precision(amp, dev), batch_size)
    return c / max(t, 1)


# -- checkpoints ---------------------------------------------------------------------------

def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `train` (weights_only: no code runs on load)."""
    if Path(path).exists() and not Path(path).is_file():
        raise ArchsearchError(f"{path} is not a checkpoint file")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchsearchError(f"no checkpoint at {path}") from None
    except Exception as exc:  # noqa: BLE001 (any unpickling failure is a bad file)
        raise ArchsearchError(f"cannot load checkpoint {path}: {_load_error(exc)}") from None
    if not isinstance(doc, dict) or "state_dict" not in doc:
        raise ArchsearchError(f"{path} is not an archsearch checkpoint")
    return doc


def _load_error(exc: Exception) -> str:
    """torch's weights-only refusal is a page of advice (including to load unsafely): keep
    what was wrong with the file."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(exc).split()))
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Please use| Please file| Check the "
                      r"documentation|$)", text)
    if found:
        return (f"not a weights-only checkpoint ({found[1].rstrip('. ')}); archsearch "
                "loads checkpoints weights-only and never runs code from them")
    return text[:300]


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DDP
    return getattr(inner, "_orig_mod", inner)  # torch.compile


# -- the loop ------------------------------------------------------------------------------

_RESUME_KEYS = ("schedule", "batch_size", "lr", "momentum", "weight_decay", "seed",
                "train_subset", "augment")


def train(model: nn.Module, splits: Splits, config: TrainConfig, *, epochs: int | None = None,
          genome: Genome | None = None, run_dir: str | Path | None = None,
          resume: bool = False, regularizer: Regularizer | None = None,
          on_epoch: OnEpoch | None = None, progress: bool | TrainProgress | None = True
          ) -> TrainResult:
    """Train `model` in place on `splits.train` for `epochs` (default `config.epochs`).

    With `run_dir`: config.json, genome.json, metrics.jsonl, checkpoint.pt (atomic, every
    epoch) and result.json; `resume` continues from its checkpoint. `regularizer(model)`
    runs between backward and step; `on_epoch(record)` after every epoch (its exceptions,
    e.g. optuna.TrialPruned, propagate); `progress` (a TrainProgress, e.g. the CLI's bar;
    True: a log line per epoch) hears on_step/on_epoch. NaN/inf loss raises DivergenceError,
    keeping the last good checkpoint.
    """
    start = time.perf_counter()
    epochs = epochs or config.epochs
    device = resolve_device(config.device)
    world = _init_distributed(device)
    if world.world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", world.rank)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = resolve_precision(config.amp, device)
    run = Path(run_dir) if run_dir is not None else None
    ckpt_path = run / "checkpoint.pt" if run else None
    if run is not None and world.main:
        remove_stale_temps(run)  # leftovers of a write interrupted by a kill

    train_set = splits.train.subset(config.train_subset, seed=config.seed)
    if len(train_set) < world.world:
        raise ArchsearchError(f"the training split has {len(train_set)} images: too few")
    eval_set = splits.split(config.eval_split)
    if len(eval_set) == 0:
        raise ArchsearchError(f"the {config.eval_split} split is empty: nothing to evaluate on")

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.base_lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    done, offset = 0, 0.0
    if run is not None and ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise ArchsearchError(f"{run} already holds a run: pass --resume to continue it, "
                                  "or another --out")
        done, history = _restore(ckpt_path, model, optimizer, config, epochs)
        offset = history[-1]["wall_s"] if history else 0.0
        if world.main:  # the metrics file holds exactly the checkpointed epochs
            atomic_write_text(run / "metrics.jsonl",
                              "".join(_jsonl(r) for r in history))
    elif run is not None and world.main:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "config.json", {**config.to_dict(), "epochs_run": epochs})
        if genome is not None:
            genome.save(run / "genome.json")
        if (run / "metrics.jsonl").exists():
            (run / "metrics.jsonl").unlink()

    net: nn.Module = model
    if world.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
    augment = Augment(splits.mean, splits.std, splits.pad if config.augment else 0,
                      splits.flip and config.augment, device, config.channels_last)
    in_memory = isinstance(train_set, ImageSet)
    if in_memory:  # uint8 on the device: a batch is an index, augmentation a tensor op
        images = train_set.images.to(device)
        labels = train_set.labels.to(device)
    per_rank = max(1, config.batch_size // world.world)
    steps = len(train_set) // world.world // per_rank or 1

    bar = reporter(progress, world.main)
    bar.on_start(epochs, steps, done)
    guards = onednn_1x1_guard(model, device, config.channels_last)
    if config.compile and guards:  # inductor re-lays convs out NHWC: the bug comes back
        log.warning("torch.compile skipped: this model has 1x1 strided convs with < 16 input "
                    "channels, which oneDNN gets wrong in NHWC (oneDNN#6035); training eagerly")
    elif config.compile:
        net = torch.compile(net)
    try:
        for epoch in range(done, epochs):
            lr = config.lr_at(epoch, epochs)
            for g in optimizer.param_groups:
                g["lr"] = lr
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order = torch.randperm(len(train_set), generator=gen)
            order = order[world.rank::world.world]
            net.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            if in_memory:
                batches = ((images[sel], labels[sel]) for sel in (
                    order[s * per_rank:(s + 1) * per_rank].to(device) for s in range(steps)))
            else:  # decoded and augmented by loader workers
                batches = train_set.batches(order, per_rank, seed=config.seed * 1009 + epoch)
            for xb, yb in batches:
                x = augment(xb, gen) if in_memory else augment.normalise(
                    xb.to(device, non_blocking=True))
                y = yb.to(device, non_blocking=True)
                with precision.autocast(device):
                    out = net(x)
                    loss = nn.functional.cross_entropy(out.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if regularizer is not None:
                    regularizer(model)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                loss_sum += loss.detach() * len(y)
                correct += (out.detach().argmax(1) == y).sum()
                seen += len(y)
                bar.on_step(epoch)
            train_s = time.perf_counter() - t0
            stats = torch.stack([loss_sum.double(), correct.double(),
                                 torch.tensor(float(seen), device=device, dtype=torch.float64)])
            if world.world > 1:
                dist.all_reduce(stats)
            train_loss = float(stats[0] / stats[2])
            if not math.isfinite(train_loss):
                where = f"; the last good checkpoint is {ckpt_path}" if (
                    ckpt_path and ckpt_path.exists()) else ""
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1}: the loss is {train_loss}"
                    f" (lr {lr:g}){where}")
            c, t = _correct(_unwrap(net), eval_set, augment, device, precision,
                            max(per_rank, 256), world.rank, world.world)
            acc = _all_sum([c, t], device, world)
            record = {"epoch": epoch + 1, "epochs": epochs, "lr": lr,
                      "train_loss": train_loss, "train_acc": float(stats[1] / stats[2]),
                      "eval_acc": acc[0] / max(acc[1], 1), "eval_split": config.eval_split,
                      "images_per_s": float(stats[2]) / train_s,
                      "wall_s": offset + time.perf_counter() - start}
            history.append(record)
            if run is not None and world.main:
                _save(ckpt_path, model, optimizer, config, epoch + 1, epochs, history, genome)
                append_jsonl(run / "metrics.jsonl", record)
            bar.on_epoch(record)
            if on_epoch is not None:
                on_epoch(record)
    finally:
        bar.on_end()
        for handle in guards:
            handle.remove()

    result = TrainResult(model, history, epochs=epochs, precision=precision.name,
                         device=str(device), world_size=world.world)
    last = history[-1]["eval_acc"] if history else None
    # the last epoch's evaluation is the result; the test split is never looked at by a
    # run that reports on val (search)
    result.test_acc = last if config.eval_split == "test" else None
    result.val_acc = last if config.eval_split == "val" else None
    result.wall_s = offset + time.perf_counter() - start
    if run is not None and world.main:
        doc = {**result.summary(), "config": config.to_dict()}
        if genome is not None:
            doc.update(genome=genome.to_dict(), macs=genome.cost.get("macs"),
                       params=genome.cost.get("params"))
        atomic_write_json(run / "result.json", doc)
    return result


def _all_sum(values: list[int], device: torch.device, world: _Dist) -> list[int]:
    if world.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.long, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


def _jsonl(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record, sort_keys=True) + "\n"


def _save(path: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer,
          config: TrainConfig, epoch: int, epochs: int, history: list[dict[str, Any]],
          genome: Genome | None) -> None:
    assert path is not None
    atomic_torch_save(path, {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "genome": genome.to_dict() if genome is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(), "epoch": epoch, "epochs": epochs,
        "history": history, "config": config.to_dict(),
        "rng": torch.get_rng_state()})


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             config: TrainConfig, epochs: int) -> tuple[int, list[dict[str, Any]]]:
    doc = load_checkpoint(path)
    saved = doc.get("config", {})
    changed = [k for k in _RESUME_KEYS if saved.get(k) != getattr(config, k)]
    if doc.get("epochs") != epochs:
        changed.append("epochs")
    if changed:
        raise ArchsearchError(
            f"cannot resume {path}: it was trained with different settings "
            f"({', '.join(f'{k}={saved.get(k, doc.get(k))!r}' for k in changed)}); "
            "rerun with the same options, or use another --out")
    try:
        _unwrap(model).load_state_dict(doc["state_dict"])
        optimizer.load_state_dict(doc["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArchsearchError(f"checkpoint {path} does not fit this model: "
                              f"{str(exc).splitlines()[0]}") from None
    if isinstance(doc.get("rng"), torch.Tensor):
        torch.set_rng_state(doc["rng"])
    return int(doc["epoch"]), list(doc.get("history", []))


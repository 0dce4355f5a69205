"""Supernet: one slimmable base per space × dataset (AutoSlim, Yu & Huang 2019).

Every subnetwork is the leading channels of every group (`keep = range(width)`): training
the widest, the narrowest and a few random widths on every batch (the sandwich rule), the
narrow ones distilled in place from the widest's predictions, makes the leading channels
the ones every subnetwork relies on, so slicing at any genome is meaningful.

A width is trained on the full base by masking: every conv/linear/BatchNorm output beyond
the group's width is multiplied by zero, which is exactly the sliced network (per-channel
BatchNorm, zero inputs contribute nothing); `Supernet.slice` cuts the same channels out
with `shrink`. A removed residual block is its branch's output multiplied by zero (the add
then passes the skip alone, as `shrink` cuts it); the random subnetworks drop each block
with probability `block_drop`.

`train_supernet` checkpoints every epoch (atomic) and resumes; `supernet_for` trains it at
most once per run folder, also with several workers (a file lock).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError, DivergenceError
from archsearch.genome import Genome
from archsearch.graph import Segment
from archsearch.io import atomic_torch_save, file_lock
from archsearch.search._evaluators import BNScorer, Scoring
from archsearch.train import lr_at

log = logging.getLogger(__name__)

FORMAT = "archsearch.supernet"
VERSION = 1
FILE = "supernet.pt"


@dataclass(frozen=True)
class SupernetSchedule:
    """How the supernet is trained (once per run folder).

    How the defaults were chosen (none of them is tuned, and the fidelity of this exact
    setting is not measured):
    - `random_widths = 2`: the sandwich rule's n = 4 subnetworks per step (widest,
      narrowest, 2 random) of Yu & Huang's universally slimmable networks (ICCV 2019),
      which AutoSlim trains with; taken from the paper.
    - `epochs = 4` on `subset = 0.2` (the search's defaults, `--base-epochs`,
      `--base-subset`: 10,800 of Fashion-MNIST's 54,000 search-training images): a step
      runs 4 full-width passes (a masked subnetwork costs as much as the widest), so this is
      4 × 4 × 10,800 = 172,800 image passes, about one base training on the from-scratch
      schedule of bench/genome_quality.py (3 epochs × 59,400 = 178,200), i.e. the cost of
      the trained base that adaptive-bn inherits from. A compute match, not a measured
      optimum.
    - `min_ratio = 0.1`, `block_drop = 0.25`, `lr = 0.1`: unmeasured choices (0.1 is the
      narrowest ratio the search samples; lr as the trainer's).
    The nearest measured setting is bench/evaluator_fidelity.py's `SUPERNET` (3 epochs on
    12,000 images, 2 random widths: 144,000 image passes): see
    bench/results/evaluator_fidelity.md for its Kendall τ against from-scratch accuracy.
    """

    epochs: int = 4
    subset: float | int = 0.2  # training images: a fraction or a count
    batch_size: int = 128
    lr: float = 0.1
    random_widths: int = 2  # random subnetworks per step, besides the widest and narrowest
    min_ratio: float = 0.1  # the narrowest subnetwork's ratio of every group
    block_drop: float = 0.25  # chance that a random subnetwork removes a removable block
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ArchsearchError(f"supernet epochs must be >= 1, but got {self.epochs}")
        if self.random_widths < 0:
            raise ArchsearchError(f"random_widths must be >= 0, but got {self.random_widths}")
        if not 0 < self.min_ratio <= 1:
            raise ArchsearchError(f"min_ratio must be in (0, 1], but got {self.min_ratio}")
        if not 0 <= self.block_drop < 1:
            raise ArchsearchError(f"block_drop must be in [0, 1), but got {self.block_drop}")


def _feature_index(segments: tuple[Segment, ...], widths: Mapping[str, int]) -> torch.Tensor:
    """Kept feature indices of a tensor whose channels are `segments` (leading channels)."""
    parts, offset = [], 0
    for seg in segments:
        kept = torch.arange(widths.get(seg.group, seg.size))
        if seg.repeat > 1:
            kept = (kept[:, None] * seg.repeat + torch.arange(seg.repeat)[None, :]).reshape(-1)
        parts.append(offset + kept)
        offset += seg.size * seg.repeat
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


class Supernet:
    """A base model trained to work at every width; `at(widths)` runs it masked, `slice`
    builds the genome's model from its leading channels."""

    def __init__(self, bound: BoundSpace, model: nn.Module | None = None) -> None:
        self.bound = bound
        self.model = model if model is not None else bound.base_model()
        graph = bound.graph
        self._calls = {}
        for call in graph.calls:  # the first call of every costed module
            if call.kind in ("conv", "linear", "bn") and call.module not in self._calls:
                self._calls[call.module] = call
        self._full = graph.base_widths()
        nodes = {n.name: n for n in graph.module.graph.nodes}
        # the module whose output is a removable block's branch (where removal zeroes it)
        self._branches = {name: str(nodes[b.branch].target) for name, b in graph.blocks.items()
                          if nodes[b.branch].op == "call_module"}

    def widths_at(self, ratio: float) -> dict[str, int]:
        """Every prunable group at one ratio of its base width (rounded as the space rounds)."""
        return {g: self.bound.space.round_width(ratio * size, size)
                for g, size in self._full.items()}

    def random_widths(self, low: float, generator: torch.Generator) -> dict[str, int]:
        """An independent ratio in [low, 1] per group."""
        u = torch.rand(len(self._full), generator=generator).tolist()
        return {g: self.bound.space.round_width((low + (1 - low) * r) * size, size)
                for (g, size), r in zip(self._full.items(), u, strict=True)}

    def random_blocks(self, drop: float, generator: torch.Generator) -> set[str]:
        """Blocks a random subnetwork removes (each with probability `drop`)."""
        u = torch.rand(len(self._branches), generator=generator).tolist()
        return {b for b, r in zip(self._branches, u, strict=True) if r < drop}

    def masks(self, widths: Mapping[str, int]) -> dict[str, torch.Tensor]:
        """Per module, a 0/1 mask over its output features (modules left whole are absent)."""
        out = {}
        for name, call in self._calls.items():
            total = sum(s.size * s.repeat for s in call.outputs)
            kept = _feature_index(call.outputs, widths)
            if len(kept) < total:
                mask = torch.zeros(total)
                mask[kept] = 1.0
                out[name] = mask
        return out

    @contextlib.contextmanager
    def at(self, widths: Mapping[str, int] | None, removed: Iterable[str] = ()
           ) -> Iterator[nn.Module]:
        """The model masked to `widths` (None: full width) without the `removed` blocks,
        while the context is open."""
        handles = []
        device = next(self.model.parameters()).device
        for name, mask in ({} if widths is None else self.masks(widths)).items():
            module = self.model.get_submodule(name)
            handles.append(module.register_forward_hook(_masker(mask.to(device))))
        for block in removed:
            if block not in self._branches:
                raise ArchsearchError(f"block {block!r} cannot be removed in the supernet")
            module = self.model.get_submodule(self._branches[block])
            handles.append(module.register_forward_hook(_zero))
        try:
            yield self.model
        finally:
            for handle in handles:
                handle.remove()

    def keep(self, genome: Genome) -> dict[str, torch.Tensor]:
        return {g: torch.arange(genome.widths.get(g, size)) for g, size in self._full.items()}

    def slice(self, genome: Genome) -> nn.Module:
        """The genome's model with the supernet's leading channels (a copy)."""
        return self.bound.build(genome, keep=self.keep(genome), base=self.model)

    # -- training ----------------------------------------------------------------------
    def sandwich_step(self, x: torch.Tensor, y: torch.Tensor, optimizer: Any,
                      schedule: SupernetSchedule, generator: torch.Generator) -> float:
        """One step: widest on the labels, narrowest and random widths distilled from it."""
        optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        soft = logits.detach().softmax(1)
        subnets = [(self.widths_at(schedule.min_ratio), set())] + [
            (self.random_widths(schedule.min_ratio, generator),
             self.random_blocks(schedule.block_drop, generator))
            for _ in range(schedule.random_widths)]
        for widths, removed in subnets:
            with self.at(widths, removed) as model:
                out = model(x)
            (-(soft * out.log_softmax(1)).sum(1).mean()).backward()
        optimizer.step()
        value = float(loss.detach())
        if value != value or value in (float("inf"), float("-inf")):
            raise DivergenceError(f"supernet training diverged: the loss is {value}")
        return value


def _masker(mask: torch.Tensor) -> Callable[..., torch.Tensor]:
    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * mask.view(shape)

    return hook


def _zero(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out * 0.0


def _lr(schedule: SupernetSchedule, epoch: int) -> float:
    return lr_at("step", schedule.lr, epoch, schedule.epochs)  # the trainer's one schedule


def train_supernet(bound: BoundSpace, splits: Any, schedule: SupernetSchedule,
                   path: str | Path | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> Supernet:
    """Train a supernet (resuming from the checkpoint at `path` if there is one)."""
    from archsearch.train import Augment, resolve_device

    device = resolve_device(schedule.device)
    torch.manual_seed(schedule.seed)
    supernet = Supernet(bound)
    model = supernet.model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=0.9,
                                weight_decay=1e-4, nesterov=True)
    done, before = _resume(path, supernet, optimizer, schedule) if path else (0, 0.0)
    start = time.perf_counter()
    data = splits.train.subset(schedule.subset, seed=schedule.seed)
    if not hasattr(data, "images"):
        raise ArchsearchError("the supernet needs an in-memory dataset: use --evaluator proxy")
    augment = Augment(splits.mean, splits.std, splits.pad, splits.flip, device, False)
    images, labels = data.images.to(device), data.labels.to(device)
    steps = max(1, len(data) // schedule.batch_size)
    for epoch in range(done, schedule.epochs):
        for group in optimizer.param_groups:
            group["lr"] = _lr(schedule, epoch)
        gen = torch.Generator().manual_seed(schedule.seed * 1_000_003 + epoch)
        order = torch.randperm(len(data), generator=gen).to(device)
        model.train()
        total = 0.0
        for s in range(steps):
            sel = order[s * schedule.batch_size:(s + 1) * schedule.batch_size]
            total += supernet.sandwich_step(augment(images[sel], gen), labels[sel], optimizer,
                                            schedule, gen)
        record = {"epoch": epoch + 1, "epochs": schedule.epochs, "loss": total / steps,
                  "train_s": before + time.perf_counter() - start}
        if path:
            _save(path, supernet, optimizer, schedule, epoch + 1, record["train_s"])
        if on_epoch is not None:
            on_epoch(record)
    return supernet


def _save(path: str | Path, supernet: Supernet, optimizer: Any, schedule: SupernetSchedule,
          epoch: int, train_s: float) -> None:
    atomic_torch_save(path, {
        "format": FORMAT, "version": VERSION, "space": supernet.bound.space.name,
        "dataset": supernet.bound.info.key, "schedule": asdict(schedule), "epoch": epoch,
        "train_s": train_s,
        "state_dict": {k: v.detach().cpu() for k, v in supernet.model.state_dict().items()},
        "optimizer": optimizer.state_dict()})


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unpickling failure is a bad file)
        raise ArchsearchError(f"cannot load supernet checkpoint {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArchsearchError(f"{path} is not an archsearch supernet checkpoint")
    return doc


def supernet_cost(path: str | Path) -> dict[str, Any] | None:
    """What a supernet checkpoint cost: epochs trained, of the schedule's, and the seconds
    of training in all (summed over resumed sessions; None for checkpoints written before
    it was recorded). None when there is no checkpoint at `path`."""
    path = Path(path)
    if not path.exists():
        return None
    doc = _load(path)
    return {"epoch": int(doc["epoch"]), "epochs": int(doc["schedule"]["epochs"]),
            "train_s": doc.get("train_s")}


def _resume(path: str | Path, supernet: Supernet, optimizer: Any,
            schedule: SupernetSchedule) -> tuple[int, float]:
    """(epochs already trained, seconds they took): (0, 0.0) without a checkpoint; refuses
    another schedule's."""
    path = Path(path)
    if not path.exists():
        return 0, 0.0
    doc = _load(path)
    bound = supernet.bound
    mine = {"space": bound.space.name, "dataset": bound.info.key, "schedule": asdict(schedule)}
    theirs = {k: doc.get(k) for k in mine}
    if theirs != mine:
        raise ArchsearchError(f"{path} was trained with {theirs}, not {mine}: use another "
                              "--out or delete it")
    supernet.model.load_state_dict(doc["state_dict"])
    optimizer.load_state_dict(doc["optimizer"])
    return int(doc["epoch"]), float(doc.get("train_s") or 0.0)


def supernet_for(bound: BoundSpace, splits: Any, schedule: SupernetSchedule,
                 run_dir: str | Path) -> Supernet:
    """The run folder's supernet: trained (or its training resumed) by the first worker to
    get here, loaded by the others."""
    run_dir = Path(run_dir)
    with file_lock(run_dir / "supernet.lock"):
        return train_supernet(bound, splits, schedule, run_dir / FILE, on_epoch=lambda r:
                              log.info("supernet epoch %d/%d: loss %.4f", r["epoch"],
                                       r["epochs"], r["loss"]))


class SupernetEvaluator:
    """Slice the genome out of the supernet, re-estimate BatchNorm statistics, score."""

    name = "supernet"

    def __init__(self, supernet: Supernet, splits: Any, scoring: Scoring) -> None:
        self.supernet = supernet
        supernet.model.cpu().eval()
        self.scorer = BNScorer(splits, scoring)

    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        return self.scorer(self.supernet.slice(genome))

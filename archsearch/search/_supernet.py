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

`train_supernet` trains it through the trainer (`archsearch.train.train` with a
`SandwichStep`: its data, SGD, lr schedule, atomic per-epoch checkpoints and exact resume)
in a run folder holding the trainer's files and `supernet.json` (the space, dataset and
schedule it resumes only under); `supernet_for` trains it at most once per search run
folder (in `<run>/supernet/`), also with several workers (a file lock).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.graph import Segment
from archsearch.io import atomic_write_json, file_lock
from archsearch.search._evaluators import BNScorer, Scoring
from archsearch.train import Step, TrainConfig, load_checkpoint, resolve_device, train

log = logging.getLogger(__name__)

FORMAT = "archsearch.supernet"
VERSION = 2  # 1: its own loop's supernet.pt
FILE = "supernet.json"  # beside the trainer's files in the supernet's run folder
CHECKPOINT = "checkpoint.pt"  # the trainer's
FOLDER = "supernet"  # the supernet's run folder in a search's run folder


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
      narrowest ratio the search samples; lr as the trainer's). It trains through the
      trainer (`train_config`: its SGD and step lr schedule, its precision).
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


class SandwichStep(Step):
    """The trainer's step for a supernet (`train(..., step=...)`): per batch, the widest on
    the labels, then the narrowest and `schedule.random_widths` random subnetworks (random
    widths, random blocks removed) distilled in place from the widest's predictions, the
    gradients of all summed into one optimizer step. The random draws come from a
    generator seeded with (seed, epoch), as the trainer's batches: a resumed run draws what
    the uninterrupted one would have."""

    def __init__(self, supernet: Supernet, schedule: SupernetSchedule, model: nn.Module,
                 optimizer: torch.optim.Optimizer, config: TrainConfig, device: torch.device,
                 precision: Any, world: Any, regularizer: Any = None) -> None:
        if world.size > 1:
            raise ArchsearchError("the supernet trains in one process, not under torchrun")
        super().__init__(model, optimizer, config, device, precision, world, regularizer)
        self.supernet, self.schedule = supernet, schedule
        self.narrowest = supernet.widths_at(schedule.min_ratio)
        self.generator = torch.Generator()

    def begin_epoch(self, lr: float, epoch: int = 0) -> None:
        super().begin_epoch(lr, epoch)
        # a stream of its own: the batches' generators are seeded with seed × 1,000,003 + epoch
        self.generator.manual_seed(2 ** 32 + self.schedule.seed * 1_000_003 + epoch)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One sandwich step on (x, y): the widest's loss and outputs, detached."""
        supernet, schedule = self.supernet, self.schedule
        self.optimizer.zero_grad(set_to_none=True)
        loss, out = self.forward(x, y)  # the widest, on the labels
        self.backward(loss)
        soft = out.detach().float().softmax(1)
        subnets = [(self.narrowest, set())] + [
            (supernet.random_widths(schedule.min_ratio, self.generator),
             supernet.random_blocks(schedule.block_drop, self.generator))
            for _ in range(schedule.random_widths)]
        with frozen_bn_stats(self.net):
            for widths, removed in subnets:
                with supernet.at(widths, removed), self.precision.autocast(self.device):
                    sub = self.net(x).float()
                    distill = -(soft * sub.log_softmax(1)).sum(1).mean()
                self.backward(distill)
        self.update()
        return loss.detach(), out.detach()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorms normalise by the batch but leave their running statistics (and batch
    count) as they were while the context is open: the subnetworks of a sandwich step would
    otherwise mix their statistics into the widest's, and the trainer's per-epoch
    full-width evaluation would read statistics of no network (a subnetwork is scored after
    its own BatchNorm re-estimation, `BNScorer`, either way)."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None
              else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def _masker(mask: torch.Tensor) -> Callable[..., torch.Tensor]:
    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * mask.view(shape).to(out.dtype)

    return hook


def _zero(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out * 0.0


def train_config(schedule: SupernetSchedule) -> TrainConfig:
    """The trainer's settings for a supernet schedule: SGD at `schedule.lr` (momentum 0.9,
    Nesterov, weight decay 1e-4), the step lr schedule, the training split's `subset`,
    full-width accuracy on the val split after each epoch (the search never looks at
    test)."""
    return TrainConfig(schedule="base", epochs=schedule.epochs, batch_size=schedule.batch_size,
                       lr=schedule.lr, momentum=0.9, weight_decay=1e-4, nesterov=True,
                       lr_schedule="step", seed=schedule.seed, device=schedule.device,
                       train_subset=schedule.subset, eval_split="val")


def train_supernet(bound: BoundSpace, splits: Any, schedule: SupernetSchedule,
                   run_dir: str | Path | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> Supernet:
    """Train a supernet through the trainer (`train` with a `SandwichStep`), in its run
    folder `run_dir` (the trainer's files and `supernet.json`): resumed from its checkpoint
    if there is one, loaded if its training finished. `on_epoch` hears the trainer's
    records."""
    torch.manual_seed(schedule.seed)
    supernet = Supernet(bound)
    folder = Path(run_dir) if run_dir is not None else None
    if folder is not None:
        doc = _open(folder, supernet, schedule)
        if doc is not None and (folder / "result.json").is_file() and \
                int(doc["epoch"]) >= int(doc["epochs"]):  # trained: load it
            try:
                supernet.model.load_state_dict(doc["state_dict"])
            except (RuntimeError, KeyError) as exc:
                raise ArchsearchError(f"supernet checkpoint {folder / CHECKPOINT} does not "
                                      f"fit this space: {str(exc).splitlines()[0]}") from None
            supernet.model.to(resolve_device(schedule.device))
            return supernet
    train(supernet.model, splits, train_config(schedule), run_dir=folder, resume=True,
          on_epoch=on_epoch, progress=False,
          step=functools.partial(SandwichStep, supernet, schedule))
    supernet.model.to(memory_format=torch.contiguous_format)  # as a loaded one
    return supernet


def _settings(bound: BoundSpace, schedule: SupernetSchedule) -> dict[str, Any]:
    """What a supernet folder's training must keep to resume (the device may change)."""
    kept = {k: v for k, v in asdict(schedule).items() if k != "device"}
    return {"format": FORMAT, "version": VERSION, "space": bound.space.name,
            "dataset": bound.info.key, "schedule": kept}


def _open(folder: Path, supernet: Supernet, schedule: SupernetSchedule
          ) -> dict[str, Any] | None:
    """The folder's checkpoint (None: a fresh folder, whose supernet.json is written);
    refuses another schedule's or a damaged one, in one line."""
    mine = _settings(supernet.bound, schedule)
    ckpt = folder / CHECKPOINT
    if not ckpt.exists():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / FILE, mine)
        return None
    doc = load_checkpoint(ckpt, what="supernet checkpoint")
    try:
        theirs = json.loads((folder / FILE).read_text())
    except (OSError, ValueError):
        raise ArchsearchError(f"{folder} holds a checkpoint but no readable {FILE}: it is "
                              "not a supernet's run folder; use another --out or delete it"
                              ) from None
    if theirs != mine:
        raise ArchsearchError(f"{folder} was trained with {theirs}, not {mine}: use another "
                              "--out or delete it")
    return doc


def supernet_cost(run_dir: str | Path) -> dict[str, Any] | None:
    """What the supernet in its run folder cost: epochs trained, of the schedule's, and the
    seconds of training in all (the trainer's `wall_s`, summed over resumed sessions). None
    when the folder has no checkpoint."""
    ckpt = Path(run_dir) / CHECKPOINT
    if not ckpt.exists():
        return None
    doc = load_checkpoint(ckpt, what="supernet checkpoint")
    history = doc.get("history") or []
    return {"epoch": int(doc["epoch"]), "epochs": int(doc["epochs"]),
            "train_s": history[-1].get("wall_s") if history else None}


def supernet_for(bound: BoundSpace, splits: Any, schedule: SupernetSchedule,
                 run_dir: str | Path) -> Supernet:
    """The search run folder's supernet (in its `supernet/` folder): trained (or its
    training resumed) by the first worker to get here, loaded by the others."""
    folder = Path(run_dir) / FOLDER
    with file_lock(folder / "train.lock"):
        return train_supernet(bound, splits, schedule, folder, on_epoch=lambda r: log.info(
            "supernet epoch %d/%d: loss %.4f, full-width val accuracy %.4f", r["epoch"],
            r["epochs"], r["train_loss"], r["eval_acc"]))


class SupernetEvaluator:
    """Slice the genome out of the supernet, re-estimate BatchNorm statistics, score."""

    name = "supernet"

    def __init__(self, supernet: Supernet, splits: Any, scoring: Scoring) -> None:
        self.supernet = supernet
        supernet.model.cpu().eval()
        self.scorer = BNScorer(splits, scoring)

    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        return self.scorer(self.supernet.slice(genome))

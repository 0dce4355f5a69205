"""The search objective: a genome's validation accuracy after proxy training from scratch.

Uses the project's trainer (`archsearch.train`) on a validation split carved from the
training files (never the test set); every epoch's validation accuracy goes to `report`,
which may raise `optuna.TrialPruned` to stop the trial early.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from archsearch.build import bind_genome
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.sparsity import SparsityGenome

if TYPE_CHECKING:
    from archsearch.data import DatasetInfo

log = logging.getLogger(__name__)
G = TypeVar("G", Genome, SparsityGenome)

VAL_FRACTION = 0.1


@dataclass(frozen=True)
class ProxySchedule:
    """How each candidate is trained: a short scratch-e run on a subset of the train split."""

    epochs: int = 2
    subset: float | int = 0.2  # fraction of the train split (float) or a number of images
    val_subset: float | int | None = None  # validation images scored (None: all of them)
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    fast: bool = True  # the trainer's fast path (TrainConfig.fast)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ArchsearchError(f"proxy epochs must be >= 1, but got {self.epochs}")
        check_subset(self.subset)
        if self.val_subset is not None:
            check_subset(self.val_subset, "--proxy-val")
        if self.batch_size < 1:
            raise ArchsearchError(f"batch size must be >= 1, but got {self.batch_size}")


def check_subset(subset: float | int, what: str = "--proxy-subset") -> float | int:
    """A subset: a fraction in (0, 1] (float) or a positive number of images (int)."""
    ok = 0 < subset <= 1 if isinstance(subset, float) else (isinstance(subset, int)
                                                             and subset >= 1)
    if not ok:
        raise ArchsearchError(f"{what} must be a fraction in (0, 1] or a number of "
                              f"images >= 1, but got {subset!r}")
    return subset


class ProxyTraining(Generic[G]):
    """What every proxy evaluator shares: the proxy schedule and the validation split its
    genomes (of one kind, `G`) are scored on. Calling one trains a genome from scratch on
    the schedule and returns its validation accuracy."""

    def __init__(self, dataset: str | DatasetInfo, schedule: ProxySchedule,
                 data_root: str | None = None, progress: bool = False,
                 splits: Any = None) -> None:
        from archsearch.data import load_data  # the data files are only needed here

        self.schedule = schedule
        if splits is None:
            splits = load_data(dataset, root=data_root, val_fraction=VAL_FRACTION, split_seed=0)
        if len(splits.val) == 0:
            name = getattr(dataset, "name", dataset)
            raise ArchsearchError(f"dataset {name!r} has no validation split to score on")
        # the test split is never looked at by the search
        self.splits = dataclasses.replace(splits, val=splits.val.subset(schedule.val_subset))
        self.progress = progress

    @property
    def val_images(self) -> int:
        """How many validation images each genome is scored on."""
        return len(self.splits.val)

    def train_config(self) -> Any:
        from archsearch.train import TrainConfig

        s = self.schedule
        # channels_last stays on: the trainer's onednn_1x1_guard routes the narrow strided
        # 1x1 convs that oneDNN#6035 corrupts through NCHW
        return TrainConfig(schedule="scratch-e", epochs=s.epochs, batch_size=s.batch_size,
                           lr=s.lr, seed=s.seed, device=s.device, train_subset=s.subset,
                           eval_split="val", fast=s.fast)

    def __call__(self, genome: G, report: Callable[[int, float], None] | None) -> float:
        raise NotImplementedError


class ProxyEvaluator(ProxyTraining[Genome]):
    """Trains each width genome from scratch on the proxy schedule; returns validation
    accuracy."""

    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        from archsearch.train import seed_everything, train

        seed_everything(self.schedule.seed)  # the same initial weights for the same genome
        model = bind_genome(genome).build(genome)

        def on_epoch(record: dict[str, Any]) -> None:
            if report is not None:
                report(int(record["epoch"]), float(record["eval_acc"]))

        # NaN/inf raises archsearch.errors.DivergenceError: the search fails this trial
        result = train(model, self.splits, self.train_config(), epochs=self.schedule.epochs,
                       genome=genome, on_epoch=on_epoch, progress=self.progress)
        if result.val_acc is not None:
            return float(result.val_acc)
        return float(result.history[-1]["eval_acc"])

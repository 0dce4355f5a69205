"""Cheap evaluators: a genome's validation accuracy with inherited weights, in seconds.

Every evaluator is a callable `(genome, report) -> score` (the `Evaluator` protocol of
`archsearch.search`); the search picks one by name from the registry (`EVALUATORS` of
`archsearch.search._registry`, which also builds them):

- `proxy`: short training from scratch (`ProxyEvaluator`, the expensive one);
- `adaptive-bn` (EagleEye, Li et al. ECCV 2020): the genome's channels are inherited from a
  trained base by the pruner's importance, BatchNorm statistics are re-estimated on a few
  hundred training images, and the model is scored on the validation split;
- `supernet` (AutoSlim, Yu & Huang 2019): the genome is sliced out of a slimmable base
  trained once with the sandwich rule (`archsearch.search._supernet`), then the same
  BatchNorm re-estimation and scoring.

Scores are deterministic for a seed: the calibration images are a seeded subset of the
training split and the validation images a fixed subset of the validation split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.build import BoundSpace
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Scoring:
    """How a cheap evaluator scores a model: BatchNorm re-estimation, then validation."""

    calib_images: int = 256  # training images that re-estimate BatchNorm statistics
    val_images: int | None = 1000  # validation images scored (None: all of them)
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.calib_images < 1:
            raise ArchsearchError(f"--calib-images must be >= 1, but got {self.calib_images}")
        if self.val_images is not None and self.val_images < 1:
            raise ArchsearchError(f"--screen-val must be >= 1, but got {self.val_images}")


def _normalise(x: torch.Tensor, splits: Any, device: torch.device) -> torch.Tensor:
    mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
    return (x.to(device).float() / 255.0 - mean) / std


def _images(data: Any, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed subset of an in-memory split as (uint8 images, labels)."""
    subset = data.subset(n, seed=seed) if n is not None else data
    if not hasattr(subset, "images"):
        raise ArchsearchError("cheap evaluators need an in-memory dataset (not an image "
                              "folder): use --evaluator proxy")
    return subset.images, subset.labels


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, splits: Any,
                   device: torch.device, batch_size: int = 256) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on `images` (uint8, exact averages
    over the batches, no momentum); returns the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.to(device).train()
    for xb in images.split(batch_size):
        model(_normalise(xb, splits, device))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, splits: Any,
             device: torch.device, batch_size: int = 256) -> float:
    """Top-1 accuracy in eval mode, fp32."""
    model.to(device).eval()
    correct = 0
    for xb, yb in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        pred = model(_normalise(xb, splits, device)).argmax(1).cpu()
        correct += int((pred == yb).sum())
    return correct / max(len(labels), 1)


class BNScorer:
    """BatchNorm re-estimation on a fixed set of training images, then validation accuracy
    on a fixed set of validation images: the scoring shared by the cheap evaluators."""

    def __init__(self, splits: Any, scoring: Scoring) -> None:
        from archsearch.train import resolve_device

        if len(splits.val) == 0:
            raise ArchsearchError("no validation split to score on")
        self.splits, self.scoring = splits, scoring
        self.device = resolve_device(scoring.device)
        self.calib, _ = _images(splits.train, scoring.calib_images, scoring.seed)
        self.val_x, self.val_y = _images(splits.val, scoring.val_images, 0)

    def __call__(self, model: nn.Module) -> float:
        s = self.scoring
        torch.manual_seed(s.seed)
        recalibrate_bn(model, self.calib, self.splits, self.device, s.batch_size)
        return accuracy(model, self.val_x, self.val_y, self.splits, self.device, s.batch_size)


class AdaptiveBNEvaluator:
    """Inherit the genome's channels from a trained base (by the pruner's importance),
    re-estimate BatchNorm statistics, score on validation images."""

    name = "adaptive-bn"

    def __init__(self, bound: BoundSpace, base: nn.Module, pruner: Any, splits: Any,
                 scoring: Scoring) -> None:
        self.bound, self.pruner = bound, pruner
        self.scores = pruner.importance(base)  # once: the base does not change
        self.base = pruner.restore(base).cpu().eval()
        self.scorer = BNScorer(splits, scoring)

    def model(self, genome: Genome) -> nn.Module:
        from archsearch.pruners import top_channels

        keep = top_channels(self.scores, genome, self.bound)
        return self.bound.build(genome, keep=keep, base=self.base)

    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        return self.scorer(self.model(genome))


def load_base(path: str | Path, bound: BoundSpace, method: str | None = None
              ) -> tuple[nn.Module, Any]:
    """(prepared base with the checkpoint's weights, its pruner) from discover's sparse.pt or
    a train checkpoint (`weights_only`). The pruner is `method`, else the checkpoint's
    method, else l1norm (filter norms need no sparsity training). The checkpoint is read,
    and refused, by `archsearch.pipeline.load_base`."""
    from archsearch.pipeline import load_base as load_prepared
    from archsearch.pruners import get_pruner
    from archsearch.train import load_checkpoint

    doc = load_checkpoint(path)  # one line for a missing, unsafe or foreign file
    pruner = get_pruner(method or doc.get("method") or "l1norm", bound)
    return load_prepared(path, pruner, doc), pruner

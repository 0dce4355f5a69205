"""Named recipes for `discover` and `rethink`, and the sparsity strength sized to a schedule.

`quick` (the default) runs in minutes on a 2-core CPU; `paper` is the recipe of Liu et al.
(ICLR 2019) for CIFAR-size data: the full training split, 160 epochs at batch 64, lr 0.1
dropped ×0.1 at 50% and 75%, fine-tuning 40 epochs, and the paper's slimming λ per family.

Why λ must follow the schedule: the L1 subgradient moves every BatchNorm scale towards zero
by lr_t · λ / (1 - momentum) per step (SGD with momentum), so what a run can do to the scales
is bounded by their *travel* Σ_t lr_t · λ / (1 - momentum), in units of their initial value
1. The paper's λ over its 160 epochs gives a travel of 0.66 (ResNet, 1e-5) and 6.6 (VGG,
1e-4); the same λ over a few short epochs gives ~500× less and leaves every scale where it
started. The paper's travel does not transfer to short schedules either (measured,
bench/results/separation.md and the closing note of issue 10): a small travel shrinks every
scale together (no separation), a travel of 6.6 or more over a few hundred steps drives most
scales to zero within the first epoch and the network with them. A travel of 3 over 625
steps separates every shipped CIFAR-style space (resnet20/56/110, preresnet164, vgg11,
vgg11-half, vgg16, vgg19; the deep VGGs through the three-class cut of
`archsearch.pruners._evidence`); the same travel over 186 steps does not (the networks are
still at 11-16% validation accuracy). The auto rule gives every
schedule a travel of AUTO_TRAVEL, and the quick preset has 625 steps.

sss is different: its gates take proximal steps with their own constant step size, so its λ
sets *which* blocks die (those whose loss gradient stays below λ) and the schedule only needs
enough steps for a gate to travel from 1 to 0; its rule keeps the anchor and raises it only
when the run is too short for that travel.

Each method with a sparsity term declares its rule (`Pruner.sparsity_rule`: a
`ScaleTravelRule` or a `GateTravelRule` here, or its own `SparsityRule`); nothing here knows a
method by name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.train import lr_at

# The paper's slimming λ per model family (Liu et al. 2017/2019 code: VGG 1e-4, ResNet and
# DenseNet 1e-5), for its CIFAR schedule below.
PAPER_SLIMMING = {"vgg": 1e-4}
PAPER_SLIMMING_DEFAULT = 1e-5
# sss: the factor penalty of archsearch's sss (proximal step on the block gates); the gates
# must be able to travel from 1 to 0 this many times over within the run.
SSS_ANCHOR = 1e-2
SSS_TRAVEL = 3.0
AUTO_TRAVEL = 3.0  # slimming: how far (in initial |gamma|) the L1 term can move a scale
PAPER_IMAGES = 50_000  # CIFAR training split
PAPER_EPOCHS = 160
PAPER_BATCH = 64
PAPER_LR = 0.1
PAPER_FINETUNE_EPOCHS = 40
# The CIFAR preset: standard, architecture-neutral tricks, the same for every genome
# (measured: bench/results/cifar_recipe.md).
CIFAR_EPOCHS = 20
CIFAR_TRAIN: dict[str, Any] = {"lr_schedule": "onecycle", "nesterov": True,
                               "weight_decay": 5e-4, "label_smoothing": 0.1, "test_flip": True}


@dataclass(frozen=True)
class Preset:
    """A whole recipe: training length and data, batch, and the sparsity rule."""

    name: str
    epochs: int
    subset: int | None  # training images (None: the whole training split)
    batch_size: int
    finetune_epochs: int | None  # None: a quarter of the base epochs (paper: 40 of 160)
    sparsity: str  # "auto": sized to the schedule; "paper": the paper's λ for the family
    summary: str
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields it sets

    @property
    def lr_schedule(self) -> str:
        return str(self.train.get("lr_schedule", "step"))

    @property
    def lr(self) -> float:
        return float(self.train.get("lr", PAPER_LR))


PRESETS = {
    "quick": Preset("quick", epochs=5, subset=8000, batch_size=64, finetune_epochs=None,
                    sparsity="auto", summary="5 epochs on 8,000 images, λ sized to that "
                    "schedule: minutes on a 2-core CPU"),
    "paper": Preset("paper", epochs=PAPER_EPOCHS, subset=None, batch_size=PAPER_BATCH,
                    finetune_epochs=PAPER_FINETUNE_EPOCHS, sparsity="paper",
                    summary="Liu et al.: the full training split, 160 epochs, batch 64, lr 0.1 "
                    "(×0.1 at 50%/75%), the paper's λ; hours on a GPU"),
    "cifar": Preset("cifar", epochs=CIFAR_EPOCHS, subset=None, batch_size=128,
                    finetune_epochs=None, sparsity="auto", train=CIFAR_TRAIN,
                    summary=f"CIFAR-scale data on a CPU: the full training split, "
                    f"{CIFAR_EPOCHS} epochs, batch 128, one-cycle lr 0.1, Nesterov, weight "
                    "decay 5e-4, label smoothing 0.1, test-time flip"),
}
DEFAULT_PRESET = "quick"


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ArchsearchError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def lr_sum(images: int, epochs: int, batch_size: int, lr: float = PAPER_LR,
           shape: str = "step") -> float:
    """Σ_t lr_t over a base-training run: steps per epoch (the trainer drops the last partial
    batch) times the epoch's learning rate (`archsearch.train` `lr_at`, of `shape`)."""
    steps = max(1, images // batch_size)
    return steps * sum(lr_at(shape, lr, e, epochs) for e in range(epochs))


PAPER_LR_SUM = lr_sum(PAPER_IMAGES, PAPER_EPOCHS, PAPER_BATCH)


@dataclass(frozen=True)
class Schedule:
    """The base-training run a sparsity strength is sized to."""

    images: int
    epochs: int
    batch_size: int
    lr: float = PAPER_LR
    shape: str = "step"

    def __post_init__(self) -> None:
        if self.images < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ArchsearchError(f"cannot size the sparsity for images={self.images}, "
                                  f"epochs={self.epochs}, batch_size={self.batch_size}")

    @property
    def steps(self) -> int:
        return max(1, self.images // self.batch_size) * self.epochs

    @property
    def lr_sum(self) -> float:
        return lr_sum(self.images, self.epochs, self.batch_size, self.lr, self.shape)


class SparsityRule(abc.ABC):
    """How a method's sparsity strength is chosen: the paper's value for a model family, and
    the value sized to a schedule (`auto`). A method declares its rule as the class attribute
    `sparsity_rule`; `options` names the method's own settings the rule reads."""

    options: tuple[str, ...] = ()

    @abc.abstractmethod
    def paper(self, family: str) -> float:
        """The paper's strength for a model family."""

    @abc.abstractmethod
    def auto(self, family: str, schedule: Schedule, **options: float) -> float:
        """The strength sized to `schedule` (see the module doc)."""


class ScaleTravelRule(SparsityRule):
    """An L1 subgradient on BatchNorm scales (slimming): λ = travel · (1 - momentum) / Σ lr,
    whatever the family; the paper's value per family."""

    def __init__(self, travel: float = AUTO_TRAVEL, momentum: float = 0.9):
        self.travel, self.momentum = travel, momentum

    def paper(self, family: str) -> float:
        return PAPER_SLIMMING.get(family, PAPER_SLIMMING_DEFAULT)

    def auto(self, family: str, schedule: Schedule, **options: float) -> float:
        return float(f"{self.travel * (1 - self.momentum) / schedule.lr_sum:.3g}")


class GateTravelRule(SparsityRule):
    """Proximal steps on gates with their own step size (sss): the anchor, raised when the run
    has too few steps for a gate to travel `travel` × from 1 to 0 (step gate_lr·λ/(1-momentum))."""

    options = ("gate_lr", "momentum")

    def __init__(self, anchor: float = SSS_ANCHOR, travel: float = SSS_TRAVEL):
        self.anchor, self.travel = anchor, travel

    def paper(self, family: str) -> float:
        return self.anchor

    def auto(self, family: str, schedule: Schedule, gate_lr: float = 0.1,
             momentum: float = 0.9, **options: float) -> float:
        moved = schedule.steps * gate_lr * self.anchor / (1 - momentum)
        if moved >= self.travel:
            return self.anchor
        return float(f"{self.anchor * self.travel / moved:.3g}")


def sparsity_for(rule: SparsityRule, family: str, images: int, epochs: int, batch_size: int,
                 lr: float = PAPER_LR, shape: str = "step", **options: float) -> float:
    """The sparsity strength `rule` sizes to a schedule (see the module doc)."""
    return rule.auto(family, Schedule(images, epochs, batch_size, lr, shape), **options)


def travel(sparsity: float, images: int, epochs: int, batch_size: int,
           lr: float = PAPER_LR, momentum: float = 0.9, shape: str = "step") -> float:
    """How far the L1 term can move a BatchNorm scale over a run (in its initial value)."""
    return lr_sum(images, epochs, batch_size, lr, shape) * sparsity / (1 - momentum)

"""Training configuration and schedules (the paper's recipes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from archsearch.errors import ArchsearchError

SCHEDULES = ("base", "scratch-e", "scratch-b", "finetune")
AMP_MODES = ("auto", "off", "bf16", "fp16")
EVAL_SPLITS = ("test", "val")
LR_SCHEDULES = ("step", "onecycle")
WARMUP = 0.15  # onecycle: the share of the epochs the lr rises over
MAX_LR = 1e3  # far beyond any rate SGD trains with; larger ones overflow float32
DEFAULT_LR = {"base": 0.1, "scratch-e": 0.1, "scratch-b": 0.1, "finetune": 1e-3}


def check_amp(mode: str) -> str:
    """`mode` if it is an autocast mode ("off" is fp32), else one line of error."""
    if mode not in AMP_MODES:
        raise ArchsearchError(f"amp is one of {', '.join(AMP_MODES)} (off: fp32), but got "
                              f"{mode!r}")
    return mode


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `epochs` are the *base* epochs: scratch-b scales them by the MAC ratio
    (see `resolve_epochs`); finetune uses them as given (the paper: 40 at lr 1e-3)."""

    schedule: str = "scratch-e"
    epochs: int = 160
    batch_size: int = 64
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    train_subset: int | float | None = None
    eval_split: str = "test"
    max_scale: float | None = None
    compile: bool = False
    amp: str = "auto"
    channels_last: bool = True
    augment: bool = True
    lr_schedule: str = "step"
    label_smoothing: float = 0.0
    nesterov: bool = False
    test_flip: bool = False
    fast: bool = True  # the engine's fast path (see `archsearch.train._fast`); False: plain

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ArchsearchError(f"unknown schedule {self.schedule!r}; known: "
                                  f"{', '.join(SCHEDULES)}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ArchsearchError(f"epochs must be an integer >= 1, but got {self.epochs!r}")
        if self.batch_size < 1:
            raise ArchsearchError(f"batch size must be >= 1, but got {self.batch_size}")
        if self.lr is not None and not 0 < self.lr <= MAX_LR:
            raise ArchsearchError(f"learning rate must be in (0, {MAX_LR:g}], but got "
                                  f"{self.lr}")
        if not 0 <= self.momentum < 1 or not self.weight_decay >= 0:
            raise ArchsearchError("momentum must be in [0, 1) and weight decay >= 0")
        check_amp(self.amp)
        if self.eval_split not in EVAL_SPLITS:
            raise ArchsearchError(f"eval split must be test or val, got {self.eval_split!r}")
        if self.max_scale is not None and not self.max_scale >= 1:
            raise ArchsearchError(f"--max-scale must be >= 1, but got {self.max_scale}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ArchsearchError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, but "
                                  f"got {self.lr_schedule!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ArchsearchError(f"label smoothing must be in [0, 1), but got "
                                  f"{self.label_smoothing}")
        sub = self.train_subset
        if sub is not None and not (0 < sub <= 1 if isinstance(sub, float) else sub >= 1):
            raise ArchsearchError(f"train subset must be a fraction in (0, 1] or a count >= 1, "
                                  f"but got {sub}")

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.schedule]

    def lr_at(self, epoch: int, epochs: int) -> float:
        """lr for 0-based `epoch` of `epochs`. step: ×0.1 at 50% and 75%, as in the paper's
        code; onecycle: linear from a tenth of the lr up to it over the first WARMUP of the
        epochs, then linear down towards 0 (taken at each epoch's middle). Constant for
        finetune."""
        if self.schedule == "finetune":
            return self.base_lr
        return lr_at(self.lr_schedule, self.base_lr, epoch, epochs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def lr_at(shape: str, lr: float, epoch: int, epochs: int) -> float:
    """The one lr schedule every training shares (the trainer, the presets' sparsity
    sizing): `shape` step or onecycle (see `TrainConfig.lr_at`)."""
    if shape == "step":
        return lr * 0.1 ** ((epoch >= epochs * 0.5) + (epoch >= epochs * 0.75))
    t = (epoch + 0.5) / epochs
    if t < WARMUP:
        return lr * (0.1 + 0.9 * t / WARMUP)
    return lr * (1 - t) / (1 - WARMUP)


def scratch_b_epochs(epochs: int, base_macs: float, genome_macs: float,
                     max_scale: float | None = None) -> int:
    """Scratch-B: the same compute as the base, epochs × base MACs / genome MACs (rounded,
    as the paper's code), optionally capped at `max_scale` × epochs."""
    if genome_macs <= 0 or base_macs <= 0:
        raise ArchsearchError("scratch-b needs positive MACs for the base and the genome")
    scale = base_macs / genome_macs
    if max_scale is not None:
        scale = min(scale, max_scale)
    return max(1, round(epochs * scale))


def resolve_epochs(config: TrainConfig, base_macs: float | None = None,
                   genome_macs: float | None = None) -> int:
    """The epochs a schedule runs: scratch-b scales the base epochs, the others keep them."""
    if config.schedule != "scratch-b":
        return config.epochs
    if base_macs is None or genome_macs is None:
        raise ArchsearchError("scratch-b needs the base and genome MACs to set its epochs")
    return scratch_b_epochs(config.epochs, base_macs, genome_macs, config.max_scale)

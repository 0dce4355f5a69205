"""What defines a search: `SearchConfig`, its run-wide settings and one dataclass per stage.

A search screens many candidates cheaply (`ScreenStage`: the evaluator and its settings),
trains the best on a short proxy schedule (`ProxyStage`), trains the best of those longer
(`FinalStage`), in a study kept in a storage (`StorageStage`). On disk (`search.json`) and
on the command line the settings are flat, as they always were: `FLAT` maps each flat name
to its place (stage, field); `SearchConfig.from_flat(doc)` reads it, `.flat()` writes it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archsearch.budget import parse_budget
from archsearch.build import BoundSpace, bind
from archsearch.errors import ArchsearchError
from archsearch.latency import LATENCY_FIELDS, LatencySettings, settings_of
from archsearch.metrics import get_metric, metrics
from archsearch.search import _fidelity as fd
from archsearch.search._evaluate import ProxySchedule
from archsearch.search._evaluators import Scoring
from archsearch.search._registry import (
    EVALUATORS,
    EvaluatorSpec,
    check_evaluator,
    default_evaluator,
)
from archsearch.search._sparsity import check_genome_kind

EARLY_STOPS = ("hyperband", "median", "none")


@dataclass
class ScreenStage:
    """The screen: candidates scored by a cheap evaluator (`archsearch.search._registry`)."""

    # "proxy": no screen; None: the registry's default for the genome kind
    evaluator: str | None = None
    trials: int = 200  # candidates scored by the cheap evaluator (--screen)
    base: str | None = None  # adaptive-bn: trained base checkpoint (None: train one)
    base_epochs: int = 4  # the supernet's (or adaptive-bn's own base's) epochs: SupernetSchedule
    base_subset: float | int = 0.2
    calib_images: int = 256  # BatchNorm re-estimation images per screened genome
    val: int | None = 1000  # validation images scored per screened genome (--screen-val)


@dataclass
class ProxyStage:
    """Proxy-trained trials (promoted from the screen when there is one)."""

    trials: int = 20
    epochs: int = 2
    subset: float | int = 0.2
    val: float | int | None = None
    early_stop: str = "hyperband"  # Optuna's trial pruner over the proxy epochs


@dataclass
class FinalStage:
    """The best proxy-trained genomes trained from scratch for longer.

    `margin` (standard errors; None: off) makes the uniform genome the incumbent: it takes
    the stage's last place when the best proxy-trained genomes do not include it, and the
    search's winner is the best final genome only if it beats uniform's final accuracy by
    more than `margin` standard errors of the difference (`archsearch.search._fidelity.
    incumbent_choice`); else it is uniform. A search then returns something other than the
    baseline only on evidence its own final stage can resolve."""

    trials: int = 3
    epochs: int = 6
    subset: float | int = 0.2
    margin: float | None = 1.0


@dataclass
class StorageStage:
    """Where the study is kept and how many worker processes run it."""

    url: str | None = None  # an Optuna storage URL (None: a journal file in the run folder)
    study: str | None = None  # the study's name (None: named after the search)
    workers: int = 1


STAGES = {"screen": ScreenStage, "proxy": ProxyStage, "final": FinalStage,
          "storage": StorageStage}

# flat name (search.json, flags) -> (stage, field); stage None: a run-wide SearchConfig field.
# The order is search.json's.
FLAT: dict[str, tuple[str | None, str]] = {
    "budget": (None, "budget"), "out": (None, "out"), "space": (None, "space"),
    "dataset": (None, "dataset"), "data_root": (None, "data_root"),
    "input_size": (None, "input_size"), "guides": (None, "guides"),
    "trials": ("proxy", "trials"), "proxy_epochs": ("proxy", "epochs"),
    "proxy_subset": ("proxy", "subset"), "proxy_val": ("proxy", "val"),
    "evaluator": ("screen", "evaluator"), "screen": ("screen", "trials"),
    "final": ("final", "trials"), "final_epochs": ("final", "epochs"),
    "final_subset": ("final", "subset"), "base": ("screen", "base"),
    "base_epochs": ("screen", "base_epochs"), "base_subset": ("screen", "base_subset"),
    "calib_images": ("screen", "calib_images"), "screen_val": ("screen", "val"),
    "batch_size": (None, "batch_size"), "storage": ("storage", "url"),
    "study": ("storage", "study"), "workers": ("storage", "workers"),
    "granularity": (None, "granularity"), "early_stop": ("proxy", "early_stop"),
    "objectives": (None, "objectives"), "budget_low": (None, "budget_low"),
    "seed": (None, "seed"), "genome_kind": (None, "genome_kind"),
    "latency_device": (None, "latency_device"), "threads": (None, "threads"),
    "latency_batch": (None, "latency_batch"), "fast": (None, "fast"),
    "final_margin": ("final", "margin"),
}


@dataclass
class SearchConfig:
    """Everything that defines a search (saved flat as `search.json` in the run folder)."""

    budget: str
    out: str
    space: str = "resnet20"
    dataset: str | None = "fashion-mnist"
    data_root: str | None = None
    input_size: int | None = None  # the image size (None: the space's, else the dataset's)
    guides: list[str] = field(default_factory=list)
    screen: ScreenStage = field(default_factory=ScreenStage)
    proxy: ProxyStage = field(default_factory=ProxyStage)
    final: FinalStage = field(default_factory=FinalStage)
    storage: StorageStage = field(default_factory=StorageStage)
    batch_size: int = 128
    granularity: str = "group"
    objectives: tuple[str, ...] = ("accuracy",)
    budget_low: str | None = None
    seed: int = 0
    genome_kind: str = "width"  # or "sparsity": per-layer densities (search/_sparsity.py)
    latency_device: str = "cpu"  # where latency is measured (a latency budget or objective)
    threads: int = 1
    latency_batch: int = 1
    fast: bool = True  # proxy and final trials through the trainer's fast path

    def __post_init__(self) -> None:
        self.objectives = tuple(self.objectives)
        check_genome_kind(self)  # and what a sparsity search cannot do
        if self.proxy.trials < 1:
            raise ArchsearchError(f"--trials must be >= 1, but got {self.proxy.trials}")
        for name, value in (("screen", self.screen.trials), ("final", self.final.trials)):
            if value < 0:
                raise ArchsearchError(f"--{name} must be >= 0, but got {value}")
        if self.screen.base_epochs < 1:
            raise ArchsearchError(f"--base-epochs must be >= 1, but got "
                                  f"{self.screen.base_epochs}")
        if self.screen.evaluator is None:
            self.screen.evaluator = default_evaluator(self.genome_kind)
        check_evaluator(self.screen.evaluator, self.genome_kind)
        self.scoring()
        if self.storage.workers < 1:
            raise ArchsearchError(f"--workers must be >= 1, but got {self.storage.workers}")
        if self.proxy.early_stop not in EARLY_STOPS:
            raise ArchsearchError(f"--early-stop must be one of {', '.join(EARLY_STOPS)}, but "
                                  f"got {self.proxy.early_stop!r}")
        if self.objectives[:1] != ("accuracy",) or len(self.objectives) > 2 or (
                self.multi and self.objectives[1] not in metrics()):
            raise ArchsearchError(f"--objectives must be 'accuracy' or 'accuracy,M' for a cost "
                                  f"metric M ({', '.join(metrics())}), but got "
                                  f"{','.join(self.objectives)!r}")
        margin = self.final.margin
        if margin is not None and (isinstance(margin, bool) or not isinstance(
                margin, int | float) or not 0 <= margin < float("inf")):
            raise ArchsearchError(f"--final-margin must be a number of standard errors >= 0 "
                                  f"or off, but got {margin!r}")
        self.latency()  # checks --threads, --latency-batch, --latency-device
        self.schedule()  # checks --proxy-epochs, --proxy-subset, --batch-size
        self.final_schedule()

    # -- the flat form (search.json, the flags) ----------------------------------------------
    @classmethod
    def from_flat(cls, doc: Mapping[str, Any] | None = None, /, **settings: Any
                  ) -> SearchConfig:
        """A config from flat settings (a `search.json`, the flags): `doc`, then `settings`.
        A setting missing takes its default (a run folder written before it existed)."""
        given = {**(doc or {}), **settings}
        top: dict[str, Any] = {}
        stages: dict[str, dict[str, Any]] = {name: {} for name in STAGES}
        for key, value in given.items():
            if key not in FLAT:
                raise TypeError(f"SearchConfig got an unexpected setting {key!r}")
            stage, name = FLAT[key]
            (top if stage is None else stages[stage])[name] = value
        return cls(**top, **{name: STAGES[name](**kw) for name, kw in stages.items()})

    def flat(self) -> dict[str, Any]:
        """The flat settings in search.json's order (what `from_flat` reads back)."""
        return {key: copy.deepcopy(getattr(self if stage is None else getattr(self, stage),
                                           name))
                for key, (stage, name) in FLAT.items()}

    @classmethod
    def flat_type(cls) -> type:
        """A dataclass of the flat settings (their types and defaults): the flags' source."""
        made: list[Any] = []
        for key, (stage, name) in FLAT.items():
            f = next(g for g in dataclasses.fields(cls if stage is None else STAGES[stage])
                     if g.name == name)
            if f.default is not dataclasses.MISSING:
                made.append((key, f.type, field(default=f.default)))
            elif f.default_factory is not dataclasses.MISSING:
                made.append((key, f.type, field(default_factory=f.default_factory)))
            else:
                made.append((key, f.type))
        return dataclasses.make_dataclass("SearchSettings", made)

    # -- what the settings make ---------------------------------------------------------------
    def latency(self) -> LatencySettings:
        return settings_of(self)

    @property
    def cost_objective(self) -> str | None:
        """The metric minimised beside accuracy (None: accuracy only)."""
        return self.objectives[1] if self.multi else None

    def bound(self) -> BoundSpace:
        """The searched space at the search's dataset and input size."""
        return bind(self.space, self.dataset, input_size=self.input_size)

    def schedule(self) -> ProxySchedule:
        p = self.proxy
        return ProxySchedule(epochs=p.epochs, subset=p.subset, val_subset=p.val,
                             batch_size=self.batch_size, seed=self.seed, fast=self.fast)

    def final_schedule(self) -> ProxySchedule:
        f = self.final
        return ProxySchedule(epochs=f.epochs, subset=f.subset, val_subset=None,
                             batch_size=self.batch_size, seed=self.seed, fast=self.fast)

    def scoring(self) -> Scoring:
        return Scoring(calib_images=self.screen.calib_images, val_images=self.screen.val,
                       seed=self.seed)

    def evaluator_spec(self) -> EvaluatorSpec:
        """The registry's entry of the screen's evaluator."""
        return EVALUATORS[check_evaluator(str(self.screen.evaluator))]

    def stages(self) -> fd.Stages:
        """The plan: (fidelity, trials) per stage. Two objectives: proxy trials only."""
        if self.multi:
            return [(fd.PROXY, self.proxy.trials)]
        plan = [(fd.SCREEN, self.screen.trials)] if self.screen.evaluator != "proxy" else []
        plan += [(fd.PROXY, self.proxy.trials), (fd.FINAL, self.final.trials)]
        return [(f, n) for f, n in plan if n > 0]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.stages())

    @property
    def uses_latency(self) -> bool:
        metric_names = [self.cost_objective, *(
            parse_budget(b).metric for b in (self.budget, self.budget_low) if b)]
        return any(m and get_metric(m).settings for m in metric_names)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def study_name(self) -> str:
        kind = "" if self.genome_kind == "width" else f"{self.genome_kind}-"
        return self.storage.study or f"search-{kind}{self.space}-{self.budget}"

    def identity(self) -> dict[str, Any]:
        """What must match when a worker joins or resumes the study (flat names)."""
        keys = ("budget", "space", "dataset", "granularity", "objectives", "budget_low", "trials",
                "evaluator", "screen", "final")
        if self.genome_kind != "width":  # width studies started before genome kinds match
            keys += ("genome_kind",)
        if self.input_size is not None:  # and those started before input sizes
            keys += ("input_size",)
        if self.uses_latency:  # and those started before latency budgets
            keys += LATENCY_FIELDS
        if self.final.margin is not None and self.final.trials > 0:
            keys += ("final_margin",)  # and those started before the incumbent final
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self.flat().items() if k in keys}

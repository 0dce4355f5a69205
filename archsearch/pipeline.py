"""The orchestration every experiment shares, in one place: plan (check every input) →
train the base (with the pruner's sparsity term) → derive the genome → the legs that train
from it. `discover`, `rethink` and `unstructured` are thin users of this module; the core
(graph, genome, cost, budget, shrink, build, spaces) knows nothing of it. No printing.

One checkpoint rule: a trained base records the method (and its options) that trained it,
in `sparse.pt` (`method`) and in a base run's `checkpoint.pt` (its genome's provenance), so
`inherit` never guesses which channels survive."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from archsearch.budget import Budget, parse_budget
from archsearch.build import BoundSpace, bind
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.io import atomic_torch_save
from archsearch.kinds import SPARSITY, get_kind
from archsearch.presets import DEFAULT_PRESET, PRESETS, Schedule, get_preset
from archsearch.pruners import (
    METHOD_CLASSES,
    PRUNERS,
    Method,
    Pruner,
    get_pruner,
    method_class,
)
from archsearch.train import load_checkpoint

if TYPE_CHECKING:
    from archsearch.data import Splits
    from archsearch.train import TrainConfig, TrainProgress

DEFAULT_SPACE = "resnet20"
VAL_FRACTION = 0.01  # a small validation split monitors training; the test split is not used
CHECKPOINT_VERSION = 1
SPARSITY_RULES = ("auto", "paper")
_QUICK = PRESETS[DEFAULT_PRESET]
OnEpoch = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class DiscoverConfig:
    """Everything `discover` needs. Training length, data, batch and the sparsity rule come
    from a preset (`from_preset`; the defaults here are the quick preset's); `sparsity` is
    "auto" (sized to the schedule that runs), "paper" (the paper's λ) or a number."""

    method: str
    budget: str
    space: str = DEFAULT_SPACE
    dataset: str | None = None
    data_root: str | None = None
    input_size: int | None = None  # the image size (None: the space's, else the dataset's)
    preset: str = DEFAULT_PRESET
    epochs: int = _QUICK.epochs
    subset: int | float | None = _QUICK.subset  # images, or a fraction of the train split
    sparsity: float | str = _QUICK.sparsity
    seed: int = 0
    batch_size: int | None = _QUICK.batch_size
    out: str | None = None
    resume: bool = False
    require_separation: bool = False
    pruner_options: dict[str, Any] = field(default_factory=dict)
    fast: bool = True  # the trainer's fast path (TrainConfig.fast)
    latency_device: str = "cpu"  # where a latency budget is measured (archsearch.latency)
    threads: int = 1
    latency_batch: int = 1

    kind = "discover"

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **given: Any) -> DiscoverConfig:
        """The preset's recipe, with every value in `given` that is not None on top."""
        recipe = get_preset(preset)
        values: dict[str, Any] = {"epochs": recipe.epochs, "subset": recipe.subset,
                                  "batch_size": recipe.batch_size, "sparsity": recipe.sparsity}
        if issubclass(cls, RethinkConfig):
            values["finetune_epochs"] = recipe.finetune_epochs
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(preset=preset, **values)


@dataclass(frozen=True)
class RethinkConfig(DiscoverConfig):
    """`rethink` adds seeds (`seed`, `seed + 1`, ...), the fine-tune epochs, an optional cap
    on Scratch-B's epoch scale and an optional subset of the test split."""

    seeds: int = 3
    finetune_epochs: int | None = None  # None: a quarter of the base epochs (the paper: 40/160)
    max_scale: float | None = None
    test_subset: int | None = None

    kind = "rethink"

    def __post_init__(self) -> None:
        if self.finetune_epochs is None:
            object.__setattr__(self, "finetune_epochs", max(1, round(self.epochs / 4)))


@dataclass
class Plan:
    """A validated run: nothing trained yet, every input checked."""

    config: DiscoverConfig
    bound: BoundSpace
    pruner: Method[Any]  # a width pruner or a sparsifier (its genome_kind says which)
    budget: Budget
    run_dir: Path
    splits: Splits | None = None

    def data(self) -> Splits:
        """The loaded splits (plan() loads them when the run trains)."""
        if self.splits is None:
            raise ArchsearchError("no data loaded for this run")
        return self.splits


# -- plan ----------------------------------------------------------------------------------

def budget_slug(budget: Budget | str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "", str(budget).replace("%", "pct"))


def default_run_dir(cfg: DiscoverConfig, bound: BoundSpace) -> Path:
    return Path("runs") / (f"{cfg.kind}-{cfg.method}-{bound.space.name}-{bound.info.name}-"
                           f"{budget_slug(cfg.budget)}-s{cfg.seed}")


def plan(cfg: DiscoverConfig) -> Plan:
    """Check every input before anything is trained or written: numbers, method and its
    options, space, dataset, budget (against the narrowest genome), run folder, data files."""
    _check_counts(cfg)
    get_preset(cfg.preset)
    bound = bind(cfg.space, cfg.dataset, input_size=cfg.input_size)
    from archsearch.latency import settings_of

    budget = parse_budget(cfg.budget, settings_of(cfg))
    known = cfg.method in METHOD_CLASSES  # an unknown one: get_pruner says so below
    rule = method_class(cfg.method).sparsity_rule if known else None
    takes_sparsity = rule is not None
    if not isinstance(cfg.sparsity, str) and not takes_sparsity:
        raise ArchsearchError(f"--sparsity applies to methods with a sparsity term "
                              f"({', '.join(_sparsity_methods())}), not {cfg.method!r}")
    if isinstance(cfg.sparsity, str) and cfg.sparsity not in SPARSITY_RULES:
        raise ArchsearchError(f"sparsity is a number, auto or paper, but got {cfg.sparsity!r}")
    early = get_pruner(cfg.method, bound, **cfg.pruner_options)  # method and options checked
    if not is_sparse(early):  # BudgetError when even the narrowest genome is too big
        bound.uniform(budget)
    early.set_budget(budget)  # a sparsity method checks its budget here
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg, bound)
    if run_dir.exists() and not run_dir.is_dir():
        raise ArchsearchError(f"--out {run_dir} is a file, not a folder")
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise ArchsearchError(f"run folder {run_dir} exists: pass --resume to continue it, "
                              "or --out for a new one")
    splits = None
    opts = dict(cfg.pruner_options)
    if early.needs_training or isinstance(cfg, RethinkConfig):
        from archsearch.data import load_data

        splits = load_data(bound.info, cfg.data_root, val_fraction=VAL_FRACTION)
        if takes_sparsity:
            opts["sparsity"] = resolve_sparsity(cfg, bound.space.family,
                                                len(splits.train.subset(cfg.subset, cfg.seed)))
    pruner = get_pruner(cfg.method, bound, **opts)
    pruner.set_budget(budget)  # before training: sfp's zeroing rate comes from it
    return Plan(cfg, bound, pruner, budget, run_dir, splits)


def resolve_sparsity(cfg: DiscoverConfig, family: str, images: int) -> float:
    """The sparsity strength a run uses: the given number, the paper's λ, or (auto) the λ the
    method's own rule (`Method.sparsity_rule`) sizes to this schedule."""
    if not isinstance(cfg.sparsity, str):
        return float(cfg.sparsity)
    rule = method_class(cfg.method).sparsity_rule
    if rule is None:
        raise ArchsearchError(f"{cfg.method!r} has no sparsity term")
    if cfg.sparsity == "paper":
        return rule.paper(family)
    options = {k: v for k, v in cfg.pruner_options.items() if k in rule.options}
    recipe = get_preset(cfg.preset)
    schedule = Schedule(images, cfg.epochs, cfg.batch_size or 64, recipe.lr, recipe.lr_schedule)
    return rule.auto(family, schedule, **options)


def _sparsity_methods() -> list[str]:
    return [n for n, c in METHOD_CLASSES.items() if c.sparsity_rule is not None]


def is_sparse(pruner: Method[Any] | type[Method[Any]] | str) -> bool:
    """Whether a method's genome is a sparsity genome (archsearch.sparsity), not widths: a
    method, its class or its name (the one test every caller asks)."""
    cls = method_class(pruner) if isinstance(pruner, str) else pruner
    return get_kind(cls.genome_kind) is SPARSITY


def _check_counts(cfg: DiscoverConfig) -> None:
    checks = [("epochs", cfg.epochs, 1), ("seed", cfg.seed, 0), ("batch_size", cfg.batch_size, 1)]
    if isinstance(cfg.subset, float):
        if not 0 < cfg.subset <= 1:
            raise ArchsearchError(f"subset must be a fraction in (0, 1] or a number of images, "
                                  f"but got subset={cfg.subset!r}")
    else:
        checks.append(("subset", cfg.subset, 1))
    if isinstance(cfg, RethinkConfig):
        checks += [("seeds", cfg.seeds, 1), ("finetune_epochs", cfg.finetune_epochs, 1),
                   ("test_subset", cfg.test_subset, 1)]
        if cfg.max_scale is not None and not cfg.max_scale >= 1:
            raise ArchsearchError(f"max_scale must be >= 1, but got max_scale={cfg.max_scale}")
    for name, value, low in checks:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise ArchsearchError(f"{name} must be an integer >= {low}, but got "
                                  f"{name}={value!r}")


# -- train the base ------------------------------------------------------------------------

def train_config(plan: Plan, schedule: str, seed: int, epochs: int | None = None
                 ) -> TrainConfig:
    """The trainer's config for one leg: the plan's epochs/subset/batch, monitored on the
    validation split (the test split is evaluated once, at the end of a leg)."""
    from archsearch.train import TrainConfig

    cfg = plan.config
    opts: dict[str, Any] = {**get_preset(cfg.preset).train, "schedule": schedule,
                            "epochs": epochs or cfg.epochs, "seed": seed,
                            "train_subset": cfg.subset, "eval_split": "val", "fast": cfg.fast}
    if cfg.batch_size is not None:
        opts["batch_size"] = cfg.batch_size
    if getattr(cfg, "max_scale", None) is not None:
        opts["max_scale"] = cfg.max_scale
    return TrainConfig(**opts)


def base_genome(plan: Plan) -> Genome:
    """The base's genome, its provenance naming the method that trains it (so the base's
    checkpoint records the method, and `inherit` need not guess it)."""
    genome = plan.bound.base_genome()
    genome.provenance.update(method=plan.pruner.name, options=plain(plan.pruner.options()))
    return genome


def train_base(plan: Plan, run_dir: Path, on_epoch: OnEpoch | None = None, *,
               seed: int | None = None, progress: bool | TrainProgress | None = True
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Train the (prepared) base with the pruner's regularizer into `run_dir`; resumes from
    its checkpoint when the plan says so. Returns the trained model and a summary."""
    from archsearch.train import seed_everything, train

    seed = plan.config.seed if seed is None else seed
    seed_everything(seed)
    model = plan.pruner.prepare(plan.bound.base_model())
    regularizer = plan.pruner.regularize if plan.pruner.needs_training else None
    result = train(model, plan.data(), train_config(plan, "base", seed),
                   genome=base_genome(plan), run_dir=run_dir, resume=plan.config.resume,
                   regularizer=regularizer, on_epoch=_ending_epochs(plan, model, on_epoch),
                   progress=progress)
    return result.model, {**result.summary(), "run_dir": str(run_dir)}


def _ending_epochs(plan: Plan, model: nn.Module, on_epoch: OnEpoch | None) -> OnEpoch:
    """`on_epoch` preceded by the pruner's end-of-epoch action (sfp zeroes filters)."""
    def hook(record: dict[str, Any]) -> None:
        plan.pruner.end_epoch(model)
        if on_epoch is not None:
            on_epoch(record)
    return hook


def derive(plan: Plan, model: nn.Module | None, source: str = "") -> Genome:
    """The pruner's genome at the plan's budget, with full provenance."""
    genome = plan.pruner.genome(model, plan.budget)
    genome.provenance.update({"dataset": plan.bound.info.name, "seed": plan.config.seed,
                              "source_run": source or str(plan.run_dir),
                              "preset": plan.config.preset})
    if "sparsity" in genome.provenance:
        rule = plan.config.sparsity
        genome.provenance["sparsity_rule"] = rule if isinstance(rule, str) else "given"
    return genome


# -- checkpoints of a trained base ---------------------------------------------------------

def save_sparse_checkpoint(path: Path, plan: Plan, model: nn.Module) -> Path:
    """The trained (sparse) base: `{genome, state_dict, method, options, version}`, loadable
    with weights_only=True; sss gates are the `sss_gates.*` entries of the state_dict."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save(path, {
        "genome": plan.bound.base_genome().to_dict(), "state_dict": state,
        "method": plan.pruner.name, "options": plain(plan.pruner.options()),
        "version": CHECKPOINT_VERSION})


def load_base(path: str | Path, pruner: Method[Any], doc: dict[str, Any] | None = None
              ) -> nn.Module:
    """The pruner's prepared base model with the weights (and gates) of a trained base's
    checkpoint (discover's sparse.pt or a base run's checkpoint.pt); `doc`: the checkpoint
    at `path`, already read."""
    if doc is None:
        doc = load_checkpoint(path)  # one line for a missing, unsafe or foreign file
    try:
        model = pruner.prepare(pruner.bound.base_model())
        model.load_state_dict(doc["state_dict"])
    except Exception as exc:  # noqa: BLE001 (any shape or key failure is a foreign base)
        raise ArchsearchError(f"{path} is not a checkpoint of the {pruner.bound.space.name} "
                              f"base for {pruner.name}: {str(exc).splitlines()[0]}") from None
    return model


def recorded_method(path: str | Path, bound: BoundSpace) -> str:
    """The method that trained the base in a checkpoint: `method` in sparse.pt, the
    genome's provenance in a base run's checkpoint.pt. Never guessed."""
    doc = load_checkpoint(path)  # one line for a missing, unsafe or foreign file
    genome = doc.get("genome") if isinstance(doc.get("genome"), dict) else {}
    provenance = genome.get("provenance") or {}
    method = doc.get("method") or provenance.get("method")
    if method not in PRUNERS:
        raise ArchsearchError(
            f"{path} is not a checkpoint of the {bound.space.name} base trained by a pruning "
            f"method: it records method={method!r}, not one of {', '.join(PRUNERS)} (inherit "
            "from discover's sparse.pt or a rethink base's checkpoint.pt)")
    return method


def inherit(bound: BoundSpace, genome: Genome, checkpoint: str | Path) -> nn.Module:
    """The genome's model with the surviving weights of the trained base in `checkpoint`,
    the channels chosen by the method the checkpoint records."""
    pruner = get_pruner(recorded_method(checkpoint, bound), bound)
    assert isinstance(pruner, Pruner)  # recorded_method names width pruners only
    prepared = load_base(checkpoint, pruner)
    return pruner.pruned(prepared, genome)  # lasso also rescales the kept channels


def plain(obj: Any) -> Any:
    """`obj` with tuples as lists, paths as strings and keys as strings (for JSON)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj

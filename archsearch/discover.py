"""`discover`: train a base with a pruner's sparsity term, derive the genome at a budget,
write the run folder (genome.json, sparse checkpoint, plots, result.json). No printing."""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from archsearch.budget import Budget, parse_budget
from archsearch.build import BoundSpace, bind
from archsearch.errors import ArchsearchError, SeparationError
from archsearch.genome import Genome
from archsearch.io import atomic_torch_save, atomic_write_json
from archsearch.presets import DEFAULT_PRESET, PRESETS, get_preset, paper_sparsity, sparsity_for
from archsearch.pruners import PRUNERS, Pruner, get_pruner, plot_scales, scale_distribution
from archsearch.pruners._evidence import warning_line

if TYPE_CHECKING:
    from archsearch.data import Splits

_log = logging.getLogger(__name__)

DEFAULT_SPACE = "resnet20"
VAL_FRACTION = 0.01  # a small validation split monitors training; the test split is not used
CHECKPOINT_VERSION = 1
_QUICK = PRESETS[DEFAULT_PRESET]
SPARSITY_RULES = ("auto", "paper")


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
    """A validated discover run: nothing trained yet, every input checked."""

    config: DiscoverConfig
    bound: BoundSpace
    pruner: Pruner
    budget: Budget
    run_dir: Path
    splits: Splits | None = None


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
    bound = bind(cfg.space, cfg.dataset)
    budget = parse_budget(cfg.budget)
    takes_sparsity = cfg.method in PRUNERS and "sparsity" in inspect.signature(
        PRUNERS[cfg.method].__init__).parameters
    if not isinstance(cfg.sparsity, str) and not takes_sparsity:
        raise ArchsearchError(f"--sparsity applies to methods with a sparsity term "
                              f"({', '.join(_sparsity_methods())}), not {cfg.method!r}")
    if isinstance(cfg.sparsity, str) and cfg.sparsity not in SPARSITY_RULES:
        raise ArchsearchError(f"sparsity is a number, auto or paper, but got {cfg.sparsity!r}")
    get_pruner(cfg.method, bound, **cfg.pruner_options)  # method and options checked early
    bound.uniform(budget)  # raises BudgetError when even the narrowest genome is too big
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg, bound)
    if run_dir.exists() and not run_dir.is_dir():
        raise ArchsearchError(f"--out {run_dir} is a file, not a folder")
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise ArchsearchError(f"run folder {run_dir} exists: pass --resume to continue it, "
                              "or --out for a new one")
    splits = None
    opts = dict(cfg.pruner_options)
    if PRUNERS[cfg.method].needs_training or isinstance(cfg, RethinkConfig):
        from archsearch.data import load_data

        splits = load_data(bound.info, cfg.data_root, val_fraction=VAL_FRACTION)
        if takes_sparsity:
            opts["sparsity"] = resolve_sparsity(cfg, bound.space.family,
                                                len(splits.train.subset(cfg.subset, cfg.seed)))
    return Plan(cfg, bound, get_pruner(cfg.method, bound, **opts), budget, run_dir, splits)


def resolve_sparsity(cfg: DiscoverConfig, family: str, images: int) -> float:
    """The sparsity strength a run uses: the given number, the paper's λ, or (auto) the λ
    that gives this schedule the paper's total pull (`archsearch.presets.sparsity_for`)."""
    if not isinstance(cfg.sparsity, str):
        return float(cfg.sparsity)
    if cfg.sparsity == "paper":
        return paper_sparsity(cfg.method, family)
    return sparsity_for(cfg.method, family, images, cfg.epochs, cfg.batch_size or 64)


def _sparsity_methods() -> list[str]:
    return [n for n, c in PRUNERS.items() if "sparsity" in inspect.signature(c.__init__).parameters]


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


def save_sparse_checkpoint(path: Path, plan: Plan, model: nn.Module) -> Path:
    """The trained (sparse) base: `{genome, state_dict, method, options, version}`, loadable
    with weights_only=True; sss gates are the `sss_gates.*` entries of the state_dict."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save(path, {
        "genome": plan.bound.base_genome().to_dict(), "state_dict": state,
        "method": plan.pruner.name, "options": _plain(plan.pruner.options()),
        "version": CHECKPOINT_VERSION})


def load_sparse_checkpoint(path: str | Path, pruner: Pruner) -> nn.Module:
    """The prepared base model with the checkpoint's weights (and gates)."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
        model = pruner.prepare(pruner.bound.base_model())
        model.load_state_dict(doc["state_dict"])
    except FileNotFoundError:
        raise ArchsearchError(f"no sparse checkpoint at {path}") from None
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ArchsearchError(f"cannot load sparse checkpoint {path} for {pruner.name}: "
                              f"{str(exc).splitlines()[0]}") from None
    return model


def write_outputs(plan: Plan, model: nn.Module | None, genome: Genome,
                  extra: dict[str, Any], save_genome: bool = True) -> dict[str, Any]:
    """genome.json (unless refused), sparse.pt, widths.png, scales.png and result.json."""
    from archsearch.viz import plot_widths, width_rows

    run = plan.run_dir
    run.mkdir(parents=True, exist_ok=True)
    files = {}
    if save_genome:
        files["genome"] = str(genome.save(run / "genome.json"))
    rows = width_rows(plan.bound, genome)
    title = (f"{plan.pruner.name} on {plan.bound.space.name}/{plan.bound.info.name}: "
             f"{genome.cost['macs_ratio']:.1%} MACs")
    plot_widths(rows, run / "widths.png", title)
    files["widths_plot"] = str(run / "widths.png")
    if model is not None:
        save_sparse_checkpoint(run / "sparse.pt", plan, model)
        dist = scale_distribution(plan.pruner, model)
        plot_scales(dist, run / "scales.png", genome.provenance.get("threshold"))
        files.update(checkpoint=str(run / "sparse.pt"), scales_plot=str(run / "scales.png"))
    result = {"method": plan.pruner.name, "space": plan.bound.space.name,
              "dataset": plan.bound.info.name, "budget": str(plan.budget),
              "config": _plain(asdict(plan.config)), "cost": genome.cost,
              "base_cost": {"macs": plan.bound.base_cost.macs,
                            "params": plan.bound.base_cost.params},
              "widths": rows, "removed_blocks": sorted(genome.removed_blocks()),
              "flagged_groups": [r["group"] for r in rows if r["flagged"]],
              "provenance": _plain(genome.provenance),
              "files": {**files, "result": str(run / "result.json")}, **extra}
    atomic_write_json(run / "result.json", result)
    return result


def discover(plan: Plan, on_epoch: Callable[[dict[str, Any]], None] | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Train (when the pruner needs it), derive the genome, write the run folder."""
    start = time.perf_counter()
    model, train_info = None, {}
    if plan.pruner.needs_training:
        from archsearch.rethink import train_base

        model, train_info = train_base(plan, plan.run_dir / "base", on_epoch,
                                       progress=progress)
        model = model.cpu()
    genome = derive(plan, model)
    _log.info("discover: %s genome at %s: %.1f%% MACs", plan.pruner.name, plan.budget,
              100 * genome.cost["macs_ratio"])
    evidence = genome.provenance.get("separation")
    warnings = [] if evidence is None or evidence["separated"] else [
        warning_line(evidence, plan.pruner.name)]
    refused = bool(warnings) and plan.config.require_separation
    result = write_outputs(plan, model, genome, {
        "train": train_info, "wall_s": time.perf_counter() - start,
        "separated": None if evidence is None else evidence["separated"],
        "separation": evidence, "warnings": warnings}, save_genome=not refused)
    if refused:
        raise SeparationError(f"{warnings[0].removeprefix('warning: ')}; no genome written "
                              f"(--require-separation); evidence in {result['files']['result']}")
    return result


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj

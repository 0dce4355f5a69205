"""The screen's evaluators, one entry each: `EVALUATORS` (name -> `EvaluatorSpec`).

An entry owns everything about its evaluator: its factory `(config, splits) -> evaluator`
(an `Evaluator`: `(genome, report) -> score`), the `SearchConfig` settings it reads (their
flat names, as the flags and `search.json` spell them), its one-off setup cost in a run
folder (`setup_cost(run_dir) -> dict | None`), the genome kinds it scores and the kinds it
is the default for. The search, the CLI's checks and the benches all ask this registry;
adding an evaluator is one `register_evaluator(EvaluatorSpec(...))` (docs/extending.md).

- `proxy`: no screen: every trial is trained from scratch (its factory is the proxy
  fidelity's evaluator of the config's genome kind);
- `adaptive-bn` (EagleEye): channels inherited from a trained base (`--base`, else one
  trained once in the run folder's `base/`), BatchNorm re-estimated;
- `supernet` (AutoSlim): sliced out of a slimmable base trained once in the run folder;
- `naswot` (Mellor et al. 2021): training-free, the activation codes of the genome's network
  at its random init on one batch of training images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsearch.errors import ArchsearchError

Factory = Callable[[Any, Any], Callable[..., float]]


@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator of the screen (see the module docstring)."""

    name: str
    factory: Factory  # (SearchConfig, splits) -> evaluator
    settings: tuple[str, ...] = ()  # the flat SearchConfig settings the factory reads
    setup_cost: Callable[[Path], dict[str, Any] | None] = lambda run_dir: None
    kinds: tuple[str, ...] = ("width",)  # the genome kinds it scores
    default_for: tuple[str, ...] = ()  # the genome kinds whose screen it is by default
    in_memory: bool = False  # it scores images held in memory (not a streamed dataset)
    summary: str = ""

    def build(self, config: Any, splits: Any) -> Callable[..., float]:
        return self.factory(config, splits)


EVALUATORS: dict[str, EvaluatorSpec] = {}


def register_evaluator(spec: EvaluatorSpec) -> EvaluatorSpec:
    """Add (or replace) an evaluator; returns it."""
    EVALUATORS[spec.name] = spec
    return spec


def check_evaluator(name: str, kind: str | None = None) -> str:
    """A registered evaluator's name (that scores genomes of `kind`, when given)."""
    if name not in EVALUATORS:
        raise ArchsearchError(f"--evaluator must be one of {', '.join(EVALUATORS)}, but got "
                              f"{name!r}")
    if kind is not None and kind not in EVALUATORS[name].kinds:
        raise ArchsearchError(f"--evaluator {name} scores {', '.join(EVALUATORS[name].kinds)} "
                              f"genomes, not {kind} genomes")
    return name


def default_evaluator(kind: str) -> str:
    """The screen's evaluator of a genome kind when none is given."""
    for spec in EVALUATORS.values():
        if kind in spec.default_for:
            return spec.name
    raise ArchsearchError(f"no evaluator is the default for {kind} genomes: pass --evaluator")


def screen_setup_cost(run_dir: Any) -> dict[str, Any] | None:
    """The screen's one-off training in a search's run folder, as the evaluator that made it
    records it: the supernet's (`kind` "supernet") or adaptive-bn's own base (`kind`
    "base"), with its epochs and seconds of training (`train_s`, None where not recorded).
    None when the folder has neither (a proxy-only search, or a screen on a given
    `--base`)."""
    for spec in EVALUATORS.values():
        cost = spec.setup_cost(Path(run_dir))
        if cost is not None:
            return cost
    return None


# -- proxy -----------------------------------------------------------------------------------
def _proxy(config: Any, splits: Any) -> Callable[..., float]:
    """The proxy fidelity's evaluator of the config (its genome kind's proxy training)."""
    from archsearch.search._fidelity import PROXY, evaluators_for

    return evaluators_for(config, splits)[PROXY]


# -- adaptive-bn -----------------------------------------------------------------------------
BASE_DIR = "base"  # adaptive-bn's own base in the run folder (without --base)


def _adaptive_bn(config: Any, splits: Any) -> Callable[..., float]:
    """Adaptive BatchNorm on `--base`, or on a base trained once in the run folder."""
    from archsearch.search._evaluators import AdaptiveBNEvaluator, load_base

    bound = config.bound()
    path = config.screen.base or trained_base(config, splits, Path(config.out) / BASE_DIR)
    base, pruner = load_base(path, bound)
    return AdaptiveBNEvaluator(bound, base, pruner, splits, config.scoring())


def trained_base(config: Any, splits: Any, run_dir: Any) -> Any:
    """A base trained (or its training resumed) in `run_dir`, once for all workers; the path
    of its checkpoint."""
    from archsearch.io import file_lock
    from archsearch.train import TrainConfig, seed_everything, train

    with file_lock(run_dir / "train.lock"):
        if not (run_dir / "result.json").exists():
            seed_everything(config.seed)
            model = config.bound().base_model()
            cfg = TrainConfig(schedule="base", epochs=config.screen.base_epochs,
                              train_subset=config.screen.base_subset, eval_split="val",
                              batch_size=config.batch_size, seed=config.seed)
            train(model, splits, cfg, run_dir=run_dir, resume=True, progress=False)
    return run_dir / "checkpoint.pt"


def _base_cost(run_dir: Path) -> dict[str, Any] | None:
    result = run_dir / BASE_DIR / "result.json"
    if not result.is_file():
        return None
    doc = json.loads(result.read_text())
    return {"kind": "base", "epochs": doc.get("epochs"), "train_s": doc.get("wall_s")}


# -- supernet --------------------------------------------------------------------------------
def supernet_schedule(config: Any) -> Any:
    """How the config's supernet is trained (`--base-epochs`, `--base-subset`)."""
    from archsearch.search._supernet import SupernetSchedule

    return SupernetSchedule(epochs=config.screen.base_epochs, subset=config.screen.base_subset,
                            batch_size=config.batch_size, seed=config.seed)


def _supernet(config: Any, splits: Any) -> Callable[..., float]:
    """The genome sliced out of the run folder's supernet (trained there once)."""
    from archsearch.search._supernet import SupernetEvaluator, supernet_for

    net = supernet_for(config.bound(), splits, supernet_schedule(config), Path(config.out))
    return SupernetEvaluator(net, splits, config.scoring())


def _supernet_cost(run_dir: Path) -> dict[str, Any] | None:
    from archsearch.search._supernet import FOLDER, supernet_cost

    net = supernet_cost(Path(run_dir) / FOLDER)  # the supernet's run folder
    return None if net is None else {"kind": "supernet", **net}


_SCORING = ("calib_images", "screen_val")
register_evaluator(EvaluatorSpec(
    "proxy", _proxy, kinds=("width", "sparsity"), default_for=("sparsity",),
    summary="no screen: every trial trained from scratch on the proxy schedule"))
# the default: adaptive-bn ranked genomes best against training from scratch on both spaces
# measured (bench/results/evaluator_fidelity.md)
register_evaluator(EvaluatorSpec(
    "adaptive-bn", _adaptive_bn, settings=("base", "base_epochs", "base_subset", *_SCORING),
    setup_cost=_base_cost, default_for=("width",), in_memory=True,
    summary="channels inherited from a trained base, BatchNorm re-estimated"))
register_evaluator(EvaluatorSpec(
    "supernet", _supernet, settings=("base_epochs", "base_subset", *_SCORING),
    setup_cost=_supernet_cost, in_memory=True,
    summary="sliced out of a slimmable supernet trained once in the run folder"))


# -- naswot ----------------------------------------------------------------------------------
def _naswot(config: Any, splits: Any) -> Callable[..., float]:
    """The genome's network at its seeded init, scored by its activation-code kernel."""
    from archsearch.search._zero_cost import NaswotEvaluator

    return NaswotEvaluator(config.bound(), splits, config.scoring())


register_evaluator(EvaluatorSpec(
    "naswot", _naswot, settings=("calib_images",), in_memory=True,
    summary="training-free: activation codes of the untrained network on one batch"))

"""`rethink`: the paper's experiment in one run. Per seed: train the base (with the pruner's
sparsity term) → prune to the budget → (a) fine-tune the pruned model with inherited
weights, (b) Scratch-E, (c) Scratch-B, (d) the uniform genome at the same budget from
scratch (Scratch-B schedule). Test accuracy mean ± std over seeds, MACs, params, wall time.

Resumable: every finished leg is recorded in `legs.json` (atomic) and never re-run; a leg
that was killed resumes from its own checkpoint. No printing: `on_leg` reports progress.
"""

from __future__ import annotations

import abc
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from torch import nn

from archsearch.errors import ArchsearchError, SeparationError
from archsearch.genome import Genome
from archsearch.io import atomic_write_json, atomic_write_text
from archsearch.pipeline import Plan, derive, load_base, plain, train_base, train_config
from archsearch.pruners import Pruner, warning_line
from archsearch.sparsity import SparsityGenome

if TYPE_CHECKING:
    from archsearch.train import TrainProgress

_log = logging.getLogger(__name__)

LEGS = ("base", "finetune", "scratch-e", "scratch-b", "uniform")
LEG_TITLES = {"base": "base (sparsity-trained)", "finetune": "pruned + fine-tune",
              "scratch-e": "pruned, Scratch-E", "scratch-b": "pruned, Scratch-B",
              "uniform": "uniform, Scratch-B"}
OnLeg = Callable[[dict[str, Any]], None]
G = TypeVar("G", Genome, SparsityGenome)


@dataclass(frozen=True)
class Leg:
    name: str
    seed: int
    run_dir: Path

    @property
    def key(self) -> str:
        return f"seed{self.seed}/{self.name}"


class RethinkRun(abc.ABC, Generic[G]):
    """One rethink run folder: `legs.json` (finished legs), `seed<k>/<leg>/` (trainer run
    folders), `seed<k>/genome.json`, `uniform_genome.json`, `rethink.json`, `rethink.md`;
    its genomes of one kind `G` (`Rethink`: width genomes; `unstructured.SparseRethink`:
    sparsity genomes, masks instead of narrower models)."""

    def __init__(self, plan: Plan, on_leg: OnLeg | None = None,
                 progress: bool | TrainProgress | None = True):
        self.plan = plan
        self.on_leg = on_leg or (lambda record: None)
        self.progress = progress
        self.path = plan.run_dir / "legs.json"
        self.legs: dict[str, dict[str, Any]] = {}
        self.uniform = self.uniform_genome()

    @abc.abstractmethod
    def uniform_genome(self) -> G:
        """The uniform leg's genome at the plan's budget."""

    @abc.abstractmethod
    def _pruned(self, seed: int, model: nn.Module | None) -> tuple[nn.Module, G]:
        """The seed's trained base (from memory or its checkpoint) and its pruned genome."""

    @abc.abstractmethod
    def _train_pruned(self, leg: Leg, base: nn.Module | None, genome: G) -> dict[str, Any]:
        """Train one leg after the base (fine-tune, Scratch-E/B, uniform); its record."""

    def seeds(self) -> list[int]:
        first = self.plan.config.seed
        return list(range(first, first + self.plan.config.seeds))

    def legs_for(self, seed: int) -> list[Leg]:
        names = [n for n in LEGS if not (n == "uniform" and self.plan.pruner.name == "uniform")]
        return [Leg(n, seed, self.plan.run_dir / f"seed{seed}" / n) for n in names]

    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        self._open()
        for seed in self.seeds():
            model: nn.Module | None = None
            genome: G | None = None
            for leg in self.legs_for(seed):
                if leg.key in self.legs:
                    self.on_leg({**self.legs[leg.key], "status": "done"})
                    continue
                if leg.name != "base" and genome is None:
                    model, genome = self._pruned(seed, model)
                self.on_leg({"leg": leg.name, "seed": seed, "status": "start"})
                record = self._run_leg(leg, model, genome)
                if leg.name == "base":
                    model, record = record.pop("_model"), record
                self.legs[leg.key] = record
                self._save()
                self.on_leg({**record, "status": "finished"})
        return self.write(time.perf_counter() - start)

    # -- one leg --------------------------------------------------------------------------

    def _run_leg(self, leg: Leg, base: nn.Module | None, genome: G | None
                 ) -> dict[str, Any]:
        plan = self.plan
        if leg.name == "base":
            model, info = train_base(plan, leg.run_dir, seed=leg.seed, progress=self.progress)
            return {**self._score(leg, model, plan.bound.base_genome(), info), "_model": model}
        assert genome is not None
        return self._train_pruned(leg, base, genome)

    def _score(self, leg: Leg, model: nn.Module, genome: Genome | SparsityGenome,
               info: dict[str, Any]) -> dict[str, Any]:
        """The leg's record: test accuracy on the (full) test split, evaluated once."""
        from archsearch.train import evaluate

        splits = self.plan.data()
        test = splits.test.subset(self.plan.config.test_subset, seed=0)
        t0 = time.perf_counter()
        acc = evaluate(model, test, splits=splits)
        return {"leg": leg.name, "seed": leg.seed, "test_acc": acc, "test_images": len(test),
                "val_acc": info.get("val_acc"), "epochs": info.get("epochs"),
                "wall_s": info.get("wall_s"), "eval_s": time.perf_counter() - t0,
                "macs": genome.cost["macs"], "params": genome.cost["params"],
                "macs_ratio": genome.cost["macs_ratio"],
                "params_ratio": genome.cost["params_ratio"], "run_dir": str(leg.run_dir)}

    def base(self, seed: int, model: nn.Module | None) -> nn.Module:
        """The seed's trained base: in memory, or from its checkpoint (same pruner)."""
        if model is None:
            path = self.plan.run_dir / f"seed{seed}" / "base" / "checkpoint.pt"
            model = load_base(path, self.plan.pruner)
        return model.cpu()

    # -- bookkeeping ----------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        cfg = asdict(self.plan.config)
        latency = {"latency_device": "cpu", "threads": 1, "latency_batch": 1}  # at the default,
        return {k: v for k, v in cfg.items() if k not in ("out", "resume", "seeds")  # runs
                and not (k in latency and v == latency[k])}  # made before them still resume

    def _open(self) -> None:
        if not self.path.exists():
            self.plan.run_dir.mkdir(parents=True, exist_ok=True)
            self.uniform.save(self.plan.run_dir / "uniform_genome.json")
            self._save()
            return
        import json

        doc = json.loads(self.path.read_text(encoding="utf-8"))
        old = doc.get("config", {})
        changed = sorted(k for k, v in self._identity().items() if old.get(k) != v)
        if changed:
            raise ArchsearchError(
                f"cannot resume {self.plan.run_dir}: it was run with different settings ("
                + ", ".join(f"{k}={old.get(k)!r}" for k in changed) + "); use another --out")
        self.legs = dict(doc.get("legs", {}))

    def _save(self) -> None:
        atomic_write_json(self.path, {"config": self._identity(), "legs": self.legs})

    def write(self, wall_s: float) -> dict[str, Any]:
        rows = summarize(list(self.legs.values()))
        plan = self.plan
        separation = {}
        for seed in self.seeds():
            saved = plan.run_dir / f"seed{seed}" / "genome.json"
            if saved.exists():
                separation[str(seed)] = Genome.load(saved).provenance.get("separation")
        doc = {"method": plan.pruner.name, "space": plan.bound.space.name,
               "dataset": plan.bound.info.name, "budget": str(plan.budget),
               "seeds": self.seeds(), "config": plain(asdict(plan.config)),
               "base_cost": {"macs": plan.bound.base_cost.macs,
                             "params": plan.bound.base_cost.params},
               "rows": rows, "legs": list(self.legs.values()), "wall_s": wall_s,
               "separation": separation,
               "files": {"json": str(plan.run_dir / "rethink.json"),
                         "markdown": str(plan.run_dir / "rethink.md")}}
        atomic_write_json(plan.run_dir / "rethink.json", doc)
        atomic_write_text(plan.run_dir / "rethink.md", markdown(doc))
        return doc


class Rethink(RethinkRun[Genome]):
    """`rethink` for a width pruner: the pruned genome's narrower model is fine-tuned with
    inherited weights, or trained from scratch."""

    def uniform_genome(self) -> Genome:
        genome = self.plan.bound.uniform(self.plan.budget)
        genome.provenance.update(dataset=self.plan.bound.info.name)
        return genome

    def _train_pruned(self, leg: Leg, base: nn.Module | None, genome: Genome
                      ) -> dict[str, Any]:
        from archsearch.train import resolve_epochs, seed_everything, train

        plan, bound = self.plan, self.plan.bound
        schedule = {"finetune": "finetune", "scratch-e": "scratch-e"}.get(leg.name, "scratch-b")
        target = self.uniform if leg.name == "uniform" else genome
        if leg.name == "finetune":
            assert base is not None and isinstance(plan.pruner, Pruner)
            model = plan.pruner.pruned(base, genome)
            cfg = train_config(plan, schedule, leg.seed, plan.config.finetune_epochs)
        else:
            seed_everything(leg.seed)
            model = bound.build(target)
            cfg = train_config(plan, schedule, leg.seed)
        epochs = resolve_epochs(cfg, bound.base_cost.macs, target.cost["macs"])
        result = train(model, plan.data(), cfg, epochs=epochs, genome=target,
                       run_dir=leg.run_dir, resume=plan.config.resume, progress=self.progress)
        return self._score(leg, result.model, target, result.summary())

    def _pruned(self, seed: int, model: nn.Module | None) -> tuple[nn.Module, Genome]:
        """The seed's trained base (from memory or its checkpoint) and its pruned genome."""
        plan = self.plan
        model = self.base(seed, model)
        saved = plan.run_dir / f"seed{seed}" / "genome.json"
        if saved.exists():
            genome = plan.bound.with_cost(Genome.load(saved))
        else:
            genome = derive(plan, model, source=str(plan.run_dir / f"seed{seed}"))
            genome.provenance["seed"] = seed
            evidence = genome.provenance.get("separation")
            if evidence is not None and not evidence["separated"]:
                line = warning_line(evidence, plan.pruner.name)
                if plan.config.require_separation:
                    raise SeparationError(f"seed {seed}: {line.removeprefix('warning: ')} "
                                          "(--require-separation)")
                _log.warning("seed %d: %s", seed, line)
            genome.save(saved)
        return model, genome


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per leg: test accuracy, epochs and wall time as mean ± std over seeds."""
    rows = []
    for name in LEGS:
        recs = [r for r in records if r["leg"] == name]
        if not recs:
            continue
        row: dict[str, Any] = {"leg": name, "title": LEG_TITLES[name], "n": len(recs)}
        for key in ("test_acc", "wall_s", "macs", "params", "macs_ratio", "params_ratio",
                    "epochs"):
            mean, std = _mean_std([float(r[key]) for r in recs])
            row[key] = mean
            row[f"{key}_std"] = std
        rows.append(row)
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """The result table (and the settings it was made with) as markdown."""
    cfg = doc["config"]
    lines = [f"# rethink: {doc['method']} at {doc['budget']} on {doc['space']} / "
             f"{doc['dataset']}", "",
             f"Seeds {doc['seeds']}; base {cfg['epochs']} epochs on "
             f"{images_label(cfg['subset'])} training images; fine-tune "
             f"{cfg['finetune_epochs']} epochs; test accuracy on "
             f"{cfg['test_subset'] or 'all'} test images. FLOPs = MACs.", "",
             "| model | test acc (%) | MACs | params | epochs | wall time (s) |",
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(
            f"| {r['title']} | {100 * r['test_acc']:.2f} ± {100 * r['test_acc_std']:.2f} | "
            f"{r['macs'] / 1e6:.2f}M ({r['macs_ratio']:.1%}) | {r['params'] / 1e6:.3f}M "
            f"({r['params_ratio']:.1%}) | {r['epochs']:g} | {r['wall_s']:.0f} ± "
            f"{r['wall_s_std']:.0f} |")
    lines += ["", f"n = {', '.join(str(r['n']) for r in doc['rows'])} run(s) per row; "
              f"total wall time {doc['wall_s']:.0f} s (this invocation)."]
    seps = {k: v for k, v in doc.get("separation", {}).items() if v and v.get("statistic")
            is not None}
    if seps:
        lines += ["", "Separation of the pruner's scores at the cut, per seed (separated at >= "
                  f"{next(iter(seps.values()))['min_separation']}): " + ", ".join(
                      f"seed {k}: {v['statistic']:.2f}" for k, v in seps.items()) + "."]
    return "\n".join(lines) + "\n"


def images_label(subset: int | float | None) -> str:
    """How many training images a subset setting means, for people."""
    if subset is None or subset == 1.0:
        return "all"
    return f"{subset:.0%} of the" if isinstance(subset, float) else f"{subset:,}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


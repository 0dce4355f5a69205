"""Multi-fidelity plan: screen many candidates cheaply, train the best few, finish the top-k.

A search is a list of stages `(fidelity, trials)`: `screen` (a cheap evaluator, sampled by
the study's sampler), `proxy` (short training from scratch) and `final` (longer training
from scratch). The first stage samples its genomes; every later stage promotes the best
distinct genomes of the stage before it, once that stage has finished. Every trial is an
Optuna trial with its fidelity in the user attribute `fidelity`.

A trial's place in the plan is its slot: the number of earlier trials that are not
retries (a retry of a trial whose worker died takes the slot of the trial it retries), so
the plan is the same whichever worker creates a trial, on any storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from archsearch.genome import Genome
from archsearch.kinds import AnyGenome, genome_from_dict, kind_of
from archsearch.search import _storage as st

SCREEN, PROXY, FINAL = "screen", "proxy", "final"
FIDELITIES = (SCREEN, PROXY, FINAL)
FIDELITY_ATTR = "fidelity"
PROMOTED_ATTR = "promoted_from"
Stages = list[tuple[str, int]]


def fidelity_of(trial: FrozenTrial) -> str:
    """A trial's fidelity (trials of searches older than fidelities were proxy-trained)."""
    return str(trial.user_attrs.get(FIDELITY_ATTR, PROXY))


def rank_of(fidelity: str) -> int:
    return FIDELITIES.index(fidelity) if fidelity in FIDELITIES else 1


def slot(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> int:
    """The trial's place in the plan (a retry takes the place of the trial it retries)."""
    by_number = {t.number: t for t in trials}
    while "retry_of" in trial.user_attrs and trial.user_attrs["retry_of"] in by_number:
        trial = by_number[trial.user_attrs["retry_of"]]
    return sum(1 for t in trials if t.number < trial.number and "retry_of" not in t.user_attrs)


def next_slot(trials: Sequence[FrozenTrial]) -> int:
    """The slot a freshly created trial would take."""
    return sum(1 for t in trials if "retry_of" not in t.user_attrs)


def stage_at(stages: Stages, place: int) -> tuple[int, int] | None:
    """(stage index, index within the stage) of a slot, None past the plan's end."""
    start = 0
    for i, (_, count) in enumerate(stages):
        if place < start + count:
            return i, place - start
        start += count
    return None


def stage_done(trials: Sequence[FrozenTrial], fidelity: str, count: int) -> bool:
    """Whether `count` trials of this fidelity have finished (and count)."""
    done = sum(1 for t in trials if st.finished(t) and fidelity_of(t) == fidelity)
    return done >= count


def ready(stages: Stages, trials: Sequence[FrozenTrial]) -> bool:
    """Whether a fresh trial may start now: its stage samples, or the stage before it is done
    (past the end of the plan it may: it becomes a surplus trial)."""
    where = stage_at(stages, next_slot(trials))
    if where is None or where[0] == 0:
        return True
    fidelity, count = stages[where[0] - 1]
    return stage_done(trials, fidelity, count)


def genome_key(doc: dict[str, Any]) -> str:
    """What makes two trials' genomes the same (their kind says, by the `format`)."""
    return kind_of(doc).key(doc)


def _merit(t: FrozenTrial) -> tuple[int, float, int]:
    if t.state == TrialState.COMPLETE:
        return 0, -t.values[0], t.number
    steps = t.intermediate_values
    return 1, -(steps[max(steps)] if steps else 0.0), t.number


def ranked(trials: Sequence[FrozenTrial], fidelity: str) -> list[FrozenTrial]:
    """Trials of one fidelity, best first, one per distinct genome: the complete ones by
    score, then the ones stopped early by their last reported score."""
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and fidelity_of(t) == fidelity and t.user_attrs.get("genome")]
    out, seen = [], set()
    for t in sorted(done, key=_merit):
        key = genome_key(t.user_attrs["genome"])
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def promoted(trials: Sequence[FrozenTrial], fidelity: str, index: int,
             incumbent_of: int | None = None) -> FrozenTrial | None:
    """The `index`-th best distinct genome of a finished stage (None: fewer than that).
    `incumbent_of=count`: the promoting stage has `count` >= 2 places and keeps the uniform
    baseline; when the best `count - 1` do not include it, its trial takes the last place
    (from any stage it reached: the baseline need not have passed the screen)."""
    best = ranked(trials, fidelity)
    if incumbent_of is not None and incumbent_of >= 2:
        base = baseline_trial(trials)
        head = best[:incumbent_of - 1]
        if base is not None and genome_key(base.user_attrs["genome"]) not in {
                genome_key(t.user_attrs["genome"]) for t in head}:
            best = [*head, base]
    return best[index] if index < len(best) else None


def is_baseline(trial: FrozenTrial) -> bool:
    """Whether the trial is the uniform baseline (enqueued, or promoted from it)."""
    return trial.user_attrs.get("baseline") == "uniform"


def baseline_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """A finished trial of the uniform baseline (the one of the highest fidelity), or None."""
    done = [t for t in trials if is_baseline(t)
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs.get("genome")]
    return max(done, key=lambda t: (rank_of(fidelity_of(t)), -t.number), default=None)


VAL_IMAGES_ATTR = "val_images"


def incumbent_choice(ranked_final: Sequence[FrozenTrial], margin: float | None
                     ) -> dict[str, Any] | None:
    """Whether the uniform baseline stays the winner of a final stage (`ranked_final`: its
    complete trials, best first): the best other genome wins only if its accuracy exceeds
    the baseline's by more than `margin` standard errors of the difference of two accuracies
    measured on the same number of validation images, sqrt(p1(1-p1)/n + p2(1-p2)/n) (the
    sampling error of the validation set; seed-to-seed noise comes on top, so this is the
    smallest margin that means anything); `challenger` is the best other genome (behind the
    baseline when the baseline is the best anyway: `delta` < 0). None: no margin, or no
    baseline and another genome among the trials."""
    if margin is None or not ranked_final:
        return None
    base = next((t for t in ranked_final if is_baseline(t)), None)
    best = next((t for t in ranked_final if t is not base), None)
    if base is None or best is None:
        return None
    n = base.user_attrs.get(VAL_IMAGES_ATTR) or best.user_attrs.get(VAL_IMAGES_ATTR)
    if not n:
        return None  # trials scored before the count was recorded: no error to judge by
    p1, p2 = float(best.values[0]), float(base.values[0])
    se = ((p1 * (1 - p1) + p2 * (1 - p2)) / int(n)) ** 0.5
    delta = p1 - p2
    return {"challenger": best.number, "baseline": base.number, "delta": delta, "se": se,
            "margin": margin, "val_images": int(n), "kept_baseline": delta <= margin * se}


def promoted_genome(source: FrozenTrial) -> AnyGenome:
    return genome_from_dict(source.user_attrs["genome"], source=f"trial {source.number}")


def lineage(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> dict[str, FrozenTrial]:
    """fidelity -> the trial of that fidelity this trial's genome was promoted through."""
    by_number = {t.number: t for t in trials}
    out = {fidelity_of(trial): trial}
    while PROMOTED_ATTR in trial.user_attrs and trial.user_attrs[PROMOTED_ATTR] in by_number:
        trial = by_number[trial.user_attrs[PROMOTED_ATTR]]
        out.setdefault(fidelity_of(trial), trial)
    return out


class LazyEvaluator:
    """An evaluator built on its first call (a supernet is trained only if a trial needs it,
    and only in the worker that runs that trial)."""

    def __init__(self, factory: Callable[[], Callable[..., float]], name: str = "") -> None:
        self.factory, self.name = factory, name
        self._built: Callable[..., float] | None = None

    def __call__(self, genome: Genome, report: Callable[[int, float], None] | None) -> float:
        if self._built is None:
            self._built = self.factory()
        return self._built(genome, report)


# -- the evaluators of a search ------------------------------------------------------------
def evaluators_for(config: Any, splits: Any = None) -> dict[str, Any]:
    """The evaluator of every fidelity of a `SearchConfig` (the screen's built lazily)."""
    from archsearch.data import load_data
    from archsearch.search._evaluate import VAL_FRACTION
    from archsearch.search._kinds import search_kind

    info = config.bound().info  # the images at the search's input size
    if splits is None:
        splits = load_data(info, root=config.data_root, val_fraction=VAL_FRACTION,
                           split_seed=0)
    proxy = search_kind(config.genome_kind).proxy  # sparsity: a randomly masked base
    out: dict[str, Any] = {
        PROXY: proxy(info, config.schedule(), splits=splits),
        FINAL: proxy(info, config.final_schedule(), splits=splits)}
    name = config.screen.evaluator
    if name != "proxy":  # the registry's evaluator (archsearch.search._registry)
        out[SCREEN] = LazyEvaluator(lambda: config.evaluator_spec().build(config, splits), name)
    return out

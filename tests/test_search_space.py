"""Search in one process: parameterisation on budget, guided sampling and transfer, guides
and the uniform baseline enqueued, divergence, trial early stopping, two objectives."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.search import (
    GuidedSampler,
    Parameterisation,
    Search,
    SearchConfig,
    best_trials,
    open_run,
    write_results,
)
from archsearch.search._search import make_trial_pruner
from archsearch.search._space import map_stages, stage_ratios
from tests.test_search_workers import FakeEvaluator

optuna.logging.set_verbosity(optuna.logging.WARNING)


def config(tmp_path, **kw) -> SearchConfig:
    base = {"budget": "25%FLOPs", "out": str(tmp_path / "run"), "space": "resnet20",
            "dataset": "fashion-mnist", "trials": 6, "proxy_epochs": 2,
            "evaluator": "proxy", "final": 0}
    return SearchConfig.from_flat(**(base | kw))


def profiled_guide(space: str, dataset: str, profile: list[float], budget: str) -> Genome:
    """A genome whose stage s keeps `profile[s]` of its channels (relative), on budget."""
    bound = bind(space, dataset)
    stages = bound.graph.stages()
    param = Parameterisation(bound, parse_budget(budget))
    shape = {g: profile[stages[g]] for g in bound.graph.prunable}
    genome = param.project(shape, provenance={"method": "handmade"})
    genome.provenance["method"] = "handmade"
    return genome


def within_budget(genome: dict, target: float) -> bool:
    return abs(genome["cost"]["macs_ratio"] - target) <= 0.01 * target


@pytest.mark.parametrize("space,granularity,budget,metric", [
    ("resnet20", "group", "25%FLOPs", "macs_ratio"),
    ("vgg11", "stage", "30%params", "params_ratio")])
def test_every_trial_costs_the_budget_within_one_percent(tmp_path, space, granularity, budget,
                                                          metric):
    cfg = config(tmp_path, space=space, granularity=granularity, budget=budget, trials=8)
    search = Search(cfg, FakeEvaluator())
    search.work()
    trials = search.study.get_trials(deepcopy=False)
    assert len([t for t in trials if t.state.is_finished()]) == 8
    target = parse_budget(budget).value
    bound = bind(space, "fashion-mnist")
    for t in trials:
        genome = Genome.from_dict(t.user_attrs["genome"])
        bound.validate(genome)
        assert abs(genome.cost[metric] - target) <= 0.01 * target, (t.number, genome.cost)
    names = set(trials[-1].params)
    prefix = "s." if granularity == "stage" else "w."
    widths = {n for n in names if n.startswith(prefix)}
    expected = (len(set(bound.graph.stages().values())) if granularity == "stage"
                else len(bound.graph.prunable))
    assert len(widths) == expected


def test_blocks_are_searched_and_shapes_vary(tmp_path):
    search = Search(config(tmp_path, trials=6, early_stop="none"), FakeEvaluator())
    search.work()
    trials = search.study.get_trials(deepcopy=False)
    assert {p for p in trials[-1].params if p.startswith("b.")} == \
        {f"b.{b}" for b in bind("resnet20", "fashion-mnist").graph.blocks}
    widths = {tuple(sorted(t.user_attrs["genome"]["widths"].items())) for t in trials}
    assert len(widths) == len(trials)


def test_guides_then_uniform_are_enqueued_and_evaluated_first(tmp_path):
    guide = profiled_guide("resnet20", "fashion-mnist", [1.0, 0.5, 0.25], "25%FLOPs")
    path = guide.save(tmp_path / "guide.json")
    search = Search(config(tmp_path, guides=[str(path)], trials=4), FakeEvaluator())
    search.work()
    first, second = search.study.trials[:2]
    assert first.user_attrs["guide"] == str(path)
    got = first.user_attrs["genome"]["widths"]
    assert max(abs(got[g] - w) for g, w in guide.widths.items()) <= 1
    assert second.user_attrs["baseline"] == "uniform"
    uniform = bind("resnet20", "fashion-mnist").uniform(parse_budget("25%FLOPs"))
    assert second.user_attrs["genome"]["widths"] == uniform.widths


def _sample(sampler, param: Parameterisation, n: int) -> list[dict[str, float]]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    out = []

    def objective(trial):
        param.suggest(trial)
        out.append(dict(trial.params))
        return float(len(out))

    study.optimize(objective, n_trials=n)
    return out


def _deviation(samples: list[dict[str, float]], centres: dict[str, float]) -> float:
    return float(np.mean([abs(s[k] - centres[k]) for s in samples for k in centres
                          if k.startswith(("w.", "s."))]))


def test_guided_sampler_proposes_near_the_guides_average():
    guides = [profiled_guide("resnet20", "fashion-mnist", p, "25%FLOPs")
              for p in ([1.0, 0.6, 0.2], [1.0, 0.4, 0.3])]
    bound = bind("resnet20", "fashion-mnist")
    param = Parameterisation(bound, parse_budget("25%FLOPs"))
    centres = param.centres(guides)
    mean = np.mean([stage_ratios(g) for g in guides], axis=0)
    for name, value in centres.items():
        if name.startswith("w."):
            assert value == pytest.approx(mean[param.param_stage(name)] / mean.max(), abs=1e-6)
    guided = _sample(GuidedSampler(centres, sigma=0.1, handover=1000, seed=0), param, 12)
    plain = _sample(optuna.samplers.RandomSampler(seed=0), param, 12)
    assert _deviation(guided, centres) < 0.1 < _deviation(plain, centres)


def test_guided_noise_narrows_and_hands_over_to_tpe():
    sampler = GuidedSampler({"w.x": 0.5}, sigma=0.2, min_sigma=0.02, handover=4, seed=1)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    plans = []

    def objective(trial):
        trial.suggest_float("w.x", 0.1, 1.0)
        plans.append(sampler.plan(study, study._storage.get_trial(trial._trial_id)))
        return 0.0

    study.optimize(objective, n_trials=8)
    sigmas = [s for _, s in plans]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[-1] < sigmas[0]
    assert plans[0][0] is True  # the first trial is always guided
    assert not any(g for g, _ in plans[4:])  # after `handover` finished trials: TPE only


def test_transfer_vgg16_on_cifar10_to_vgg19_on_fashion_mnist(tmp_path):
    profile = [1.0, 0.8, 0.5, 0.3, 0.2]
    guide = profiled_guide("vgg16", "cifar10", profile, "25%FLOPs")
    path = guide.save(tmp_path / "vgg16.json")
    target = bind("vgg19", "fashion-mnist")
    param = Parameterisation(target, parse_budget("25%FLOPs"))
    centres = param.centres([guide])
    source = stage_ratios(guide)
    for name, value in centres.items():
        assert value == pytest.approx(source[param.param_stage(name)] / max(source), abs=1e-6)
    # guided proposals on vgg19 follow the vgg16 guide's stage profile after projection
    samples = _sample(GuidedSampler(centres, sigma=0.1, handover=1000, seed=0), param, 6)
    genomes = [param.project({g: s[f"w.{g}"] for g in target.graph.prunable}) for s in samples]
    curves = np.array([stage_ratios(g) for g in genomes]).mean(axis=0)
    assert np.corrcoef(curves, source)[0, 1] > 0.95
    assert curves[0] > 2 * curves[-1]
    # in a search: the other-space guide is not enqueued, the sampler is guided by it
    cfg = config(tmp_path, space="vgg19", guides=[str(path)], trials=2, early_stop="none")
    search = Search(cfg, FakeEvaluator())
    assert isinstance(search.study.sampler, GuidedSampler)
    assert search.study.sampler._centres == pytest.approx(centres)
    search.work()
    assert search.study.trials[0].user_attrs.get("baseline") == "uniform"
    assert not any("guide" in t.user_attrs for t in search.study.trials)


def test_map_stages():
    assert map_stages([1.0, 0.5, 0.25], 3) == [1.0, 0.5, 0.25]
    assert map_stages([1.0, 0.0], 3) == [1.0, 0.5, 0.0]
    assert map_stages([0.7], 4) == [0.7] * 4
    with pytest.raises(ArchsearchError):
        map_stages([1.0], 0)


def test_a_diverging_trial_is_failed_and_the_search_goes_on(tmp_path):
    evaluator = FakeEvaluator(diverge=lambda g: g.provenance["trial"] == 1)
    search = Search(config(tmp_path, trials=4), evaluator)
    search.work()
    trials = search.study.trials
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["outcome"].startswith("diverged")
    assert len(trials) == 4 and all(t.state.is_finished() for t in trials)


def test_trial_pruner_choice(tmp_path):
    assert isinstance(make_trial_pruner(config(tmp_path)), optuna.pruners.HyperbandPruner)
    median = make_trial_pruner(config(tmp_path, early_stop="median"))
    assert isinstance(median, optuna.pruners.MedianPruner)
    for kw in ({"early_stop": "none"}, {"objectives": ("accuracy", "macs")}):
        assert isinstance(make_trial_pruner(config(tmp_path, **kw)), optuna.pruners.NopPruner)


def test_weak_trials_are_stopped_early(tmp_path):
    search = Search(config(tmp_path, trials=12, early_stop="median"), FakeEvaluator(epochs=3))
    search.work()
    states = [t.state for t in search.study.trials]
    assert TrialState.PRUNED in states and states.count(TrialState.COMPLETE) >= 3


def test_two_objectives_search_a_budget_range_and_export_the_pareto_front(tmp_path):
    cfg = config(tmp_path, budget="50%FLOPs", objectives=("accuracy", "macs"), trials=8)
    search = Search(cfg, FakeEvaluator())
    search.work()
    assert isinstance(search.study.sampler, optuna.samplers.NSGAIISampler)
    trials = search.study.get_trials(deepcopy=False)
    for t in trials:
        assert 0.125 <= t.params["budget"] <= 0.5
        assert within_budget(t.user_attrs["genome"], t.params["budget"])
        assert t.values[1] == t.user_attrs["genome"]["cost"]["macs"]
    run = open_run(cfg.out)
    front = best_trials(run)
    assert front and all(not (o.values[0] >= f.values[0] and o.values[1] < f.values[1])
                         for f in front for o in trials if o.values)
    write_results(run)
    assert len(list((tmp_path / "run" / "pareto").glob("pareto*.json"))) == len(front)


def test_joining_a_study_with_another_config_is_refused(tmp_path):
    Search(config(tmp_path, trials=1), FakeEvaluator()).work()
    with pytest.raises(ArchsearchError, match="was started with"):
        Search(config(tmp_path, trials=1, granularity="stage"), FakeEvaluator())


def test_resume_runs_only_the_missing_trials(tmp_path):
    log = tmp_path / "log.jsonl"
    Search(config(tmp_path, trials=3), FakeEvaluator(log=str(log))).work()
    assert Search(config(tmp_path, trials=3), FakeEvaluator(log=str(log))).work() == 0
    assert len(log.read_text().splitlines()) == 3

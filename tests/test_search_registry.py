"""The evaluator registry and the staged SearchConfig: every entry builds an evaluator that
scores a genome, an evaluator registered here is a search's like the shipped ones, and the
config is flat on disk (search.json) exactly as before, nested by stage in memory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.data import load_data
from archsearch.errors import ArchsearchError
from archsearch.search import (
    EVALUATORS,
    EvaluatorSpec,
    ProxyStage,
    ScreenStage,
    Search,
    SearchConfig,
    check_inputs,
    evaluators_for,
    load_base,
    open_run,
    register_evaluator,
    screen_setup_cost,
)
from archsearch.search import _registry as rg
from archsearch.search._config import FLAT
from tests.conftest import write_space

TINY = 'family = "resnet_cifar"\ndepth = 8\nwidths = [8, 16, 32]'
BUDGET = "40%FLOPs"
# search.json's keys, in its order, as every version so far wrote them
ON_DISK = ["budget", "out", "space", "dataset", "data_root", "input_size", "guides", "trials",
           "proxy_epochs", "proxy_subset", "proxy_val", "evaluator", "screen", "final",
           "final_epochs", "final_subset", "base", "base_epochs", "base_subset",
           "calib_images", "screen_val", "batch_size", "storage", "study", "workers",
           "granularity", "early_stop", "objectives", "budget_low", "seed", "genome_kind",
           "latency_device", "threads", "latency_batch", "fast", "final_margin"]


@pytest.fixture(autouse=True)
def tiny_space(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("spaces")
    write_space(folder, "tinyres", TINY)
    monkeypatch.setenv("ARCHSEARCH_SPACES", str(folder))


@pytest.fixture(scope="module")
def splits():
    return load_data("synthetic", size=512)


@pytest.fixture
def toy(monkeypatch):
    """A toy evaluator registered for this test only: scores a genome by its MACs ratio."""
    monkeypatch.setitem(EVALUATORS, "toy", None)  # removed again after the test

    def factory(config, splits):
        return lambda genome, report: float(genome.cost["macs_ratio"])

    return register_evaluator(EvaluatorSpec("toy", factory, settings=("calib_images",),
                                            summary="a test's"))


def tiny_config(out: Path, **flat) -> SearchConfig:
    settings = {"budget": BUDGET, "out": str(out), "space": "tinyres", "dataset": "synthetic",
                "trials": 2, "final": 0, "proxy_epochs": 1, "proxy_subset": 64,
                "proxy_val": 64, "base_epochs": 1, "base_subset": 64, "calib_images": 32,
                "screen_val": 64, "batch_size": 32} | flat
    return SearchConfig.from_flat(settings)


@pytest.mark.parametrize("name", ["proxy", "adaptive-bn", "supernet", "naswot"])
def test_every_shipped_evaluator_is_built_by_its_entry_and_scores_a_genome(name, splits,
                                                                          tmp_path):
    torch.manual_seed(0)
    config = tiny_config(tmp_path / "run", evaluator=name)
    spec = EVALUATORS[name]
    assert config.evaluator_spec() is spec and spec.kinds[0] == "width"
    bound = config.bound()
    uniform = bound.uniform(parse_budget(BUDGET))
    evaluator = spec.build(config, splits)
    score = float(evaluator(uniform, None))
    if name == "naswot":  # a log-determinant, not an accuracy
        assert 0.0 < score < float("inf")
    else:
        assert 0.0 <= score <= 1.0
    if name != "proxy":  # the cheap ones are deterministic
        assert float(evaluator(uniform, None)) == score
    cost = spec.setup_cost(tmp_path / "run")
    if name in ("proxy", "naswot"):  # nothing trained once in the run folder
        assert cost is None and screen_setup_cost(tmp_path / "run") is None
    else:  # its one-off training, in the run folder, reported as the benches read it
        assert cost["kind"] == {"adaptive-bn": "base", "supernet": "supernet"}[name]
        assert cost["train_s"] > 0 and screen_setup_cost(tmp_path / "run") == cost
    assert set(spec.settings) <= set(FLAT)


def test_adaptive_bn_on_a_given_base_and_the_base_checkpoints_refused(splits, tmp_path):
    trained = tiny_config(tmp_path / "a", evaluator="adaptive-bn")
    path = rg.trained_base(trained, splits, tmp_path / "a" / "base")
    config = tiny_config(tmp_path / "b", evaluator="adaptive-bn", base=str(path))
    check_inputs(config)
    uniform = config.bound().uniform(parse_budget(BUDGET))
    assert 0.0 <= EVALUATORS["adaptive-bn"].build(config, splits)(uniform, None) <= 1.0
    assert screen_setup_cost(tmp_path / "b") is None  # a given base: no one-off training
    with pytest.raises(ArchsearchError, match="the evaluator is 'supernet'"):
        check_inputs(tiny_config(tmp_path / "c", evaluator="supernet", base=str(path)))
    # the checkpoint read by the pipeline's load_base: its one-line errors
    with pytest.raises(ArchsearchError, match="no checkpoint at"):
        load_base(tmp_path / "missing.pt", config.bound())
    other = bind("resnet20", "synthetic")
    with pytest.raises(ArchsearchError, match="not a checkpoint of the resnet20 base"):
        load_base(path, other)


def test_defaults_per_genome_kind_come_from_the_registry(tmp_path):
    assert SearchConfig(budget=BUDGET, out="x").screen.evaluator == "adaptive-bn"
    assert rg.default_evaluator("width") == "adaptive-bn"
    assert rg.default_evaluator("sparsity") == "proxy"
    sparse = tiny_config(tmp_path, genome_kind="sparsity")
    assert sparse.screen.evaluator == "proxy" and sparse.stages() == [("proxy", 2)]
    with pytest.raises(ArchsearchError, match="--evaluator must be one of proxy, "
                                              "adaptive-bn, supernet, naswot, but got 'nope'"):
        tiny_config(tmp_path, evaluator="nope")


def test_a_registered_evaluator_screens_a_search(toy, splits, tmp_path):
    assert EVALUATORS["toy"] is toy and rg.EVALUATORS is EVALUATORS
    config = tiny_config(tmp_path / "run", evaluator="toy", screen=4, calib_images=16)
    assert config.stages() == [("screen", 4), ("proxy", 2)]
    check_inputs(config)
    with pytest.raises(ArchsearchError, match="the evaluator is 'toy'"):
        check_inputs(tiny_config(tmp_path / "x", evaluator="toy", base=__file__))
    evaluators = evaluators_for(config, splits)
    evaluators["proxy"] = lambda genome, report: 0.25  # no training here
    Search(config, evaluators, worker_index=0).work()
    run = open_run(tmp_path / "run")
    assert run.config.screen.evaluator == "toy"
    screened = [t for t in run.trials() if t.user_attrs["fidelity"] == "screen"]
    assert len(screened) == 4
    assert all(t.value == pytest.approx(t.user_attrs["genome"]["cost"]["macs_ratio"])
               for t in screened)
    assert json.loads((tmp_path / "run" / "search.json").read_text())["evaluator"] == "toy"


def test_the_cli_accepts_a_registered_evaluator_and_refuses_an_unknown_one(toy, tmp_path):
    from archsearch.cli import cmd_search

    parser = argparse.ArgumentParser()
    cmd_search.add_arguments(parser)
    base = ["--budget", BUDGET, "--space", "tinyres", "--dataset", "synthetic", "--out",
            str(tmp_path / "run")]
    config = cmd_search.make_config(parser.parse_args(base + ["--evaluator", "toy",
                                                              "--screen", "5"]))
    assert (config.screen.evaluator, config.screen.trials) == ("toy", 5)
    assert config.evaluator_spec().summary == "a test's"
    with pytest.raises(ArchsearchError, match="one of proxy, adaptive-bn, supernet, naswot, toy"):
        cmd_search.make_config(parser.parse_args(base + ["--evaluator", "nope"]))


def test_a_toy_evaluator_of_another_genome_kind_is_refused(monkeypatch, tmp_path):
    monkeypatch.setitem(EVALUATORS, "dense-only", None)
    register_evaluator(EvaluatorSpec("dense-only", lambda c, s: None, kinds=("sparsity",)))
    with pytest.raises(ArchsearchError, match="scores sparsity genomes, not width genomes"):
        tiny_config(tmp_path, evaluator="dense-only")


def test_the_flat_form_round_trips_in_search_json_order(tmp_path):
    config = tiny_config(tmp_path, evaluator="supernet", screen=7, final=2, final_epochs=3,
                         storage="sqlite:///x.db", study="s", workers=3, early_stop="median",
                         screen_val=None, objectives=("accuracy", "macs"), guides=["g.json"])
    flat = config.flat()
    assert list(flat) == ON_DISK == list(FLAT)
    assert SearchConfig.from_flat(flat) == config
    assert SearchConfig.from_flat(json.loads(json.dumps(flat))) == config
    assert (config.screen.trials, config.final.trials, config.final.epochs) == (7, 2, 3)
    assert (config.storage.url, config.storage.study, config.storage.workers) == (
        "sqlite:///x.db", "s", 3)
    assert config.proxy.early_stop == "median" and config.screen.val is None
    assert config.study_name == "s"
    nested = SearchConfig(budget=BUDGET, out="x", screen=ScreenStage(trials=9),
                          proxy=ProxyStage(trials=4))
    assert nested == SearchConfig.from_flat(budget=BUDGET, out="x", screen=9, trials=4)
    assert nested.flat()["screen"] == 9 and nested.identity()["trials"] == 4
    with pytest.raises(TypeError, match="unexpected setting 'screens'"):
        SearchConfig.from_flat(budget=BUDGET, out="x", screens=3)
    # the flags are generated from the flat settings, with the stages' defaults
    fields = {f.name: f.default for f in dataclasses.fields(SearchConfig.flat_type())}
    assert list(fields) == ON_DISK
    assert (fields["screen"], fields["trials"], fields["screen_val"]) == (200, 20, 1000)


def test_validation_messages_name_the_flags(tmp_path):
    for flat, message in [({"trials": 0}, "--trials must be >= 1, but got 0"),
                          ({"screen": -1}, "--screen must be >= 0, but got -1"),
                          ({"final": -2}, "--final must be >= 0, but got -2"),
                          ({"base_epochs": 0}, "--base-epochs must be >= 1, but got 0"),
                          ({"workers": 0}, "--workers must be >= 1, but got 0"),
                          ({"calib_images": 0}, "--calib-images must be >= 1, but got 0"),
                          ({"early_stop": "x"}, "--early-stop must be one of hyperband, "
                                                "median, none, but got 'x'")]:
        with pytest.raises(ArchsearchError) as err:
            tiny_config(tmp_path, **flat)
        assert str(err.value) == message


def test_a_run_folder_written_before_the_stages_loads_and_resumes(tmp_path):
    """A search.json of an older version (flat, without the later settings) still opens,
    and the search in its folder resumes under the same study identity."""
    config = tiny_config(tmp_path / "run", evaluator="proxy", trials=2)
    Search(config, lambda genome, report: 0.5, worker_index=0).work()
    path = tmp_path / "run" / "search.json"
    old = json.loads(path.read_text())
    for later in ("genome_kind", "input_size", "latency_device", "threads", "latency_batch",
                  "fast"):
        old.pop(later)
    path.write_text(json.dumps(old))
    run = open_run(tmp_path / "run")
    assert run.config == config and len(run.trials()) == 2
    more = SearchConfig.from_flat(old | {"trials": 2})
    assert Search(more, lambda genome, report: 0.5, worker_index=0).work() == 0
    assert json.loads(path.read_text()) == config.flat() | {"objectives": ["accuracy"]}


def test_the_fidelity_bench_builds_its_evaluators_through_the_registry(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import evaluator_fidelity as ef

    from archsearch.search import SupernetSchedule

    args = ef.parse_args(["--work", str(tmp_path / "w")])
    assert args.evaluators.split(",") == list(EVALUATORS)
    s = args.sizes
    net = ef.search_config("supernet", "resnet20", args)
    # the schedule the bench trained its supernets on before: their checkpoints resume
    assert rg.supernet_schedule(net) == SupernetSchedule(
        epochs=s["supernet"]["epochs"], subset=s["supernet"]["subset"],
        random_widths=s["supernet"]["random_widths"], seed=0)
    assert net.out == str(tmp_path / "w" / "resnet20")
    assert (net.scoring().calib_images, net.scoring().val_images) == (
        s["scoring"]["calib_images"], s["scoring"]["val_images"])
    proxy = ef.search_config("proxy", "resnet20", args).schedule()
    assert (proxy.epochs, proxy.subset, proxy.val_subset) == (
        s["proxy"]["epochs"], s["proxy"]["subset"], s["proxy"]["val"])
    bn = ef.search_config("adaptive-bn", "resnet20", args, tmp_path / "sparse.pt")
    assert bn.screen.base == str(tmp_path / "sparse.pt")
    assert ef.base_seconds("proxy", "resnet20", ef.Legs(args)) == 0.0

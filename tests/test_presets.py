"""The named recipes resolve to what they document (no training): the cifar preset's
fields reach the trainer from discover/rethink's plan and from `train --preset`; the one lr
schedule's shapes; the sparsity rule sized to a preset's own schedule."""

from __future__ import annotations

import argparse

import pytest

from archsearch.cli import cmd_train
from archsearch.errors import ArchsearchError
from archsearch.presets import AUTO_TRAVEL, get_preset, lr_sum, sparsity_for, travel
from archsearch.pruners import METHOD_CLASSES
from archsearch.train import TrainConfig, lr_at


def test_the_cifar_preset_is_the_documented_recipe():
    p = get_preset("cifar")
    assert (p.epochs, p.subset, p.batch_size, p.sparsity) == (20, None, 128, "auto")
    assert p.train == {"lr_schedule": "onecycle", "nesterov": True, "weight_decay": 5e-4,
                       "label_smoothing": 0.1, "test_flip": True}
    config = TrainConfig(schedule="base", epochs=p.epochs, batch_size=p.batch_size, **p.train)
    assert config.lr_schedule == "onecycle" and config.test_flip and config.nesterov
    for word in ("20 epochs", "batch 128", "one-cycle", "Nesterov", "5e-4",
                 "label smoothing 0.1", "test-time flip"):
        assert word in p.summary
    assert get_preset("paper").train == {} and get_preset("quick").train == {}


def test_onecycle_rises_then_falls_and_step_drops_twice():
    step = [lr_at("step", 0.1, e, 20) for e in range(20)]
    assert step[0] == step[9] == 0.1 and step[10] == pytest.approx(0.01)
    assert step[15] == pytest.approx(0.001)
    one = [lr_at("onecycle", 0.1, e, 20) for e in range(20)]
    peak = max(range(20), key=one.__getitem__)
    assert one[0] < one[1] < one[peak] <= 0.1 and peak <= 3
    assert all(a > b for a, b in zip(one[peak:], one[peak + 1:], strict=False))
    assert 0 < one[-1] < 0.01
    with pytest.raises(ArchsearchError, match="lr schedule must be one of"):
        TrainConfig(lr_schedule="cosine")


def test_auto_sparsity_gives_the_preset_schedule_the_auto_travel():
    p = get_preset("cifar")
    rule = METHOD_CLASSES["slimming"].sparsity_rule
    lam = sparsity_for(rule, "vgg", 49_500, p.epochs, p.batch_size, shape="onecycle")
    assert travel(lam, 49_500, p.epochs, p.batch_size, shape="onecycle") == pytest.approx(
        AUTO_TRAVEL, rel=1e-2)
    assert lr_sum(49_500, 20, 128, shape="onecycle") < lr_sum(49_500, 20, 128, shape="step")


def _train_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd_train.add_arguments(parser)
    return parser.parse_args(["g.json", *argv])


def test_train_preset_fills_what_the_flags_leave_out():
    values = cmd_train.recipe_values(_train_args("--preset", "cifar", "--epochs", "3",
                                                 "--no-test-flip"))
    config = TrainConfig(**values)
    assert (config.epochs, config.batch_size, config.lr_schedule) == (3, 128, "onecycle")
    assert config.nesterov and not config.test_flip and config.label_smoothing == 0.1
    plain = TrainConfig(**cmd_train.recipe_values(_train_args()))
    assert plain == TrainConfig()  # no preset, no flags: the trainer's own defaults


def test_discover_plans_train_with_the_preset_fields(tmp_path):
    from archsearch.pipeline import DiscoverConfig, Plan, train_config

    cfg = DiscoverConfig.from_preset("cifar", method="uniform", budget="50%FLOPs")
    the_plan = Plan(cfg, None, None, None, tmp_path)  # train_config reads only the config
    leg = train_config(the_plan, "scratch-e", seed=1)
    assert (leg.lr_schedule, leg.label_smoothing, leg.nesterov, leg.test_flip) == (
        "onecycle", 0.1, True, True)
    assert (leg.epochs, leg.batch_size, leg.weight_decay) == (20, 128, 5e-4)


def test_no_fast_reaches_every_leg_of_discover_and_search(tmp_path):
    from archsearch.pipeline import DiscoverConfig, Plan, train_config
    from archsearch.search import SearchConfig

    cfg = DiscoverConfig.from_preset("quick", method="uniform", budget="50%FLOPs", fast=False)
    assert not train_config(Plan(cfg, None, None, None, tmp_path), "base", seed=0).fast
    search = SearchConfig(budget="25%FLOPs", out=str(tmp_path / "s"), fast=False)
    assert not search.schedule().fast and not search.final_schedule().fast
    assert SearchConfig(budget="25%FLOPs", out=str(tmp_path / "t")).schedule().fast

"""`archsearch report RUN`: leaderboard data and plots of a search."""

from __future__ import annotations

import json

import optuna
import pytest

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.search import Search, SearchConfig, leaderboard, open_run
from archsearch.search._plots import cost_points, history_points, stage_rows
from tests.test_search_space import profiled_guide
from tests.test_search_workers import FakeEvaluator

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    guide = profiled_guide("resnet20", "fashion-mnist", [1.0, 0.5, 0.3], "25%FLOPs")
    path = guide.save(tmp / "guide.json")
    config = SearchConfig.from_flat(budget="25%FLOPs", out=str(tmp / "run"), space="resnet20",
                                    dataset="fashion-mnist", trials=8, guides=[str(path)],
                                    early_stop="median", evaluator="proxy", final=0)
    Search(config, FakeEvaluator(epochs=3)).work()
    return tmp / "run"


def test_plot_data(run_dir):
    run = open_run(run_dir)
    points = history_points(run)
    bests = [p["best"] for p in points if p["best"] is not None]
    assert bests == sorted(bests)  # best so far never decreases
    kinds = {p["kind"] for p in cost_points(run)}
    assert {"guide", "uniform"} <= kinds
    rows = leaderboard(run)
    accs = [r["accuracy"] for r in rows if r["state"] == "complete"]
    assert accs == sorted(accs, reverse=True) and rows[0]["state"] == "complete"
    bound = bind("resnet20", "fashion-mnist")
    stages = stage_rows(bound, bound.uniform(parse_budget(run.config.budget)))
    assert [r["stage"] for r in stages] == [0, 1, 2]
    assert all(0 < r["kept"] <= 1 for r in stages)


def test_report_prints_the_leaderboard_and_writes_plots(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "trials finished" in out and "best: trial" in out
    for name in ("history", "accuracy_vs_cost", "best_stages", "best_widths"):
        assert (run_dir / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_report_json(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tally"]["finished"] == 8
    assert len(doc["trials"]) == 8 and len(doc["plots"]) == 4
    assert all(p.startswith(str(tmp_path)) for p in doc["plots"])

"""Multi-fidelity search: trials that trained their whole schedule are complete, fidelities
follow the plan (screen → proxy → final), promotions take the best of the previous stage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from optuna.trial import TrialState

from archsearch.cli.main import main
from archsearch.genome import Genome
from archsearch.search import screen_setup_cost
from tests.test_search_cli import ROOT, _fashion_mnist_available
from tests.test_search_workers import FakeEvaluator, search_config


class Worsening:
    """Every trial scores below the one before (the case Hyperband prunes at its rung)."""

    def __call__(self, genome, report) -> float:
        score = 1.0 / (2 + genome.provenance["trial"])
        if report is not None:
            report(1, score)
        return score


def test_a_trial_that_trained_its_last_epoch_is_never_pruned(tmp_path):
    """Hyperband at one proxy epoch used to prune 3 of 4 trials after they had trained."""
    from archsearch.search import Search, open_run

    config = search_config(tmp_path / "run", 4, early_stop="hyperband")
    config.proxy.epochs = 1
    Search(config, Worsening(), worker_index=0).work()
    states = [t.state for t in open_run(tmp_path / "run").trials()]
    assert states == [TrialState.COMPLETE] * 4


def test_early_stopping_still_stops_before_the_last_epoch(tmp_path):
    from archsearch.search import Search, open_run

    config = search_config(tmp_path / "run", 12, early_stop="median")
    config.proxy.epochs = 3
    Search(config, FakeEvaluator(epochs=3), worker_index=0).work()
    trials = open_run(tmp_path / "run").trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median rule should stop some of 12 trials early"
    assert all(max(t.intermediate_values) < 3 for t in pruned)


class Recording(FakeEvaluator):
    """FakeEvaluator that remembers which genomes it scored (and offsets its scores, so the
    fidelities' scales differ as real ones do)."""

    def __init__(self, offset: float, epochs: int = 2) -> None:
        super().__init__(epochs=epochs)
        self.offset, self.seen = offset, []

    def __call__(self, genome, report) -> float:
        self.seen.append(genome.provenance["trial"])
        return super().__call__(genome, report) + self.offset


def _key(trial):
    from archsearch.search._fidelity import genome_key

    return genome_key(trial.user_attrs["genome"])


def test_multi_fidelity_screens_then_promotes_the_best_distinct_genomes(tmp_path):
    from archsearch.search import Search, best_trials, open_run, summary

    config = search_config(tmp_path / "run", 4, evaluator="supernet", screen=12, final=2,
                           early_stop="none")
    evaluators = {"screen": Recording(0.0), "proxy": Recording(1.0), "final": Recording(2.0)}
    Search(config, evaluators, worker_index=0).work()
    run = open_run(tmp_path / "run")
    trials = run.trials()
    assert [t.user_attrs["fidelity"] for t in trials] == ["screen"] * 12 + ["proxy"] * 4 + \
        ["final"] * 2
    assert all(t.state == TrialState.COMPLETE for t in trials)
    screen, proxy, final = trials[:12], trials[12:16], trials[16:]
    assert all(t.params for t in screen) and not any(t.params for t in proxy + final)
    assert screen[0].user_attrs.get("baseline") == "uniform"  # the baseline is screened too
    # proxy: the 4 best distinct screened genomes, best first; final: the 2 best proxy ones
    distinct = {}
    for t in sorted(screen, key=lambda t: (-t.value, t.number)):
        distinct.setdefault(_key(t), t)
    assert [t.user_attrs["promoted_from"] for t in proxy] == \
        [t.number for t in list(distinct.values())[:4]]
    assert [_key(t) for t in proxy] == list(distinct)[:4]
    by_value = sorted(proxy, key=lambda t: (-t.value, t.number))
    assert [t.user_attrs["promoted_from"] for t in final] == [t.number for t in by_value[:2]]
    assert evaluators["screen"].seen == list(range(12))
    assert evaluators["final"].seen == [16, 17]
    assert [t.number for t in best_trials(run)] == sorted(
        [16, 17], key=lambda n: (-run.study.trials[n].value, n))
    doc = summary(run)
    assert doc["fidelities"] == {"screen": 12, "proxy": 4, "final": 2}
    assert doc["evaluator"] == "supernet"


def test_fidelity_costs_count_candidates_outcomes_and_seconds_per_fidelity(tmp_path):
    from archsearch.search import Search, fidelity_costs, open_run, summary

    config = search_config(tmp_path / "run", 3, evaluator="supernet", screen=2, final=1,
                           early_stop="none")
    Search(config, {"screen": Recording(0.0), "proxy": Recording(1.0),
                    "final": Recording(2.0)}, worker_index=0).work()
    run = open_run(tmp_path / "run")
    costs = fidelity_costs(run.trials())
    assert list(costs) == ["screen", "proxy", "final"]  # plan order
    # 2 distinct screened genomes for 3 proxy trials: the third fails, and still counts
    assert {f: (c["candidates"], c["complete"], c["failed"]) for f, c in costs.items()} == {
        "screen": (2, 2, 0), "proxy": (3, 2, 1), "final": (1, 1, 0)}
    walls = {r["trial"]: r["wall_s"] for r in summary(run)["trials"]}
    for fidelity, cost in costs.items():
        numbers = [t.number for t in run.trials() if t.user_attrs["fidelity"] == fidelity]
        assert cost["wall_s"] == pytest.approx(sum(walls[n] for n in numbers))
    assert summary(run)["costs"] == costs


def test_a_promoted_stage_with_too_few_distinct_genomes_fails_its_extra_trials(tmp_path):
    from archsearch.search import Search, open_run
    from archsearch.search._storage import tally

    # a screen of 2 candidates has at most 2 distinct genomes for 3 proxy trials
    config = search_config(tmp_path / "run", 3, evaluator="supernet", screen=2, final=0,
                           early_stop="none")
    Search(config, FakeEvaluator(), worker_index=0).work()
    trials = open_run(tmp_path / "run").trials()
    assert tally(trials)["finished"] == 5
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "nothing to promote" in failed[0].user_attrs["outcome"]


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST files not installed")
@pytest.mark.parametrize("evaluator", ["supernet", "adaptive-bn"])
def test_real_multi_fidelity_search_end_to_end(tmp_path, evaluator):
    """A small real search: cheap screen (a supernet / a base trained in the run folder),
    proxy training of the best, a final trial; then export and report."""
    out = tmp_path / "run"
    # The supernet's 512 images are 4 sandwich steps: every subnet still predicts one class
    # (measured: all ten screened at 7.0%); 1,024 (8 steps) is the fewest that ranks them.
    base_subset = "1024" if evaluator == "supernet" else "512"
    cmd = [sys.executable, "-m", "archsearch", "search", "--budget", "25%FLOPs",
           "--space", "resnet20", "--evaluator", evaluator, "--screen", "10", "--trials", "2",
           "--final", "1", "--base-epochs", "1", "--base-subset", base_subset,
           "--proxy-epochs", "1", "--proxy-subset", "256", "--proxy-val", "256",
           "--final-epochs", "1", "--final-subset", "256", "--screen-val", "200",
           "--calib-images", "64", "--out", str(out), "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["tally"]["finished"] == 13 and doc["fidelities"] == {
        "screen": 10, "proxy": 2, "final": 1}
    assert doc["evaluator"] == evaluator
    assert doc["best"][0]["fidelity"] == "final"
    screened = [r for r in doc["trials"] if r["fidelity"] == "screen"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in screened)
    assert len({r["accuracy"] for r in screened}) > 1, "the screen should tell genomes apart"
    cached = out / ("supernet" if evaluator == "supernet" else "base") / "checkpoint.pt"
    assert cached.is_file()
    setup = screen_setup_cost(out)  # the screen's one-off training, as benches report it
    assert setup["kind"] == ("supernet" if evaluator == "supernet" else "base")
    assert setup["train_s"] > 0
    best = Genome.load(out / "best_genome.json")
    assert best.provenance["trial"] == doc["best"][0]["trial"]
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "fidelity.png").read_bytes()[:4] == b"\x89PNG"


def test_report_shows_the_evaluator_counts_and_finalists_scores(tmp_path, capsys):
    from archsearch.search import Search, open_run
    from archsearch.search._plots import fidelity_points, kendall_tau

    config = search_config(tmp_path / "run", 3, evaluator="adaptive-bn", screen=8, final=2,
                           early_stop="none")
    evaluators = {"screen": Recording(0.0), "proxy": Recording(1.0), "final": Recording(2.0)}
    Search(config, evaluators, worker_index=0).work()
    run = open_run(tmp_path / "run")
    points = fidelity_points(run)
    trials = run.study.trials
    assert sorted(p["trial"] for p in points) == [11, 12]
    for p in points:
        proxy = trials[trials[p["trial"]].user_attrs["promoted_from"]]
        screen = trials[proxy.user_attrs["promoted_from"]]
        assert (p["final"], p["proxy"], p["screen"]) == (trials[p["trial"]].value, proxy.value,
                                                          screen.value)
    assert main(["report", str(tmp_path / "run"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["evaluator"] == "adaptive-bn"
    assert doc["fidelities"] == {"screen": 8, "proxy": 3, "final": 2}
    assert len(doc["finalists"]) == 2
    assert (tmp_path / "run" / "report" / "fidelity.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "run"), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "evaluator adaptive-bn: 8 screen, 3 proxy, 2 final" in text and "finalists" in text
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0 and kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1.0], [2.0]) is None

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
                           early_stop="none", final_margin=None)  # the incumbent: below
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
    for p in points:  # each finalist's score at every stage it passed through
        chain, t = {}, trials[p["trial"]]
        while True:
            chain[t.user_attrs["fidelity"]] = t.value
            if "promoted_from" not in t.user_attrs:
                break
            t = trials[t.user_attrs["promoted_from"]]
        assert (p["final"], p["proxy"], p["screen"]) == tuple(
            chain.get(f) for f in ("final", "proxy", "screen"))
    # the uniform incumbent's place in the final: promoted from the screen if it did not
    # pass it (no proxy score), from the proxy stage if it did
    uniform = [p for p in points if p["kind"] == "uniform"]
    assert len(uniform) == 1 and uniform[0]["screen"] is not None
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


class Incumbent:
    """A fidelity's fake evaluator scoring on `val_images` images: the uniform baseline gets
    `base`, every other genome `base + lead` plus a small per-trial spread (so the ranking
    among challengers is set); `screen=True` ranks uniform last (it does not pass the screen,
    as on CIFAR-10, where adaptive BN favoured params-light shapes)."""

    def __init__(self, base: float, lead: float, val_images: int = 1000,
                 screen: bool = False) -> None:
        self.base, self.lead, self.val_images, self.screen = base, lead, val_images, screen
        self.seen: list[bool] = []

    def __call__(self, genome, report) -> float:
        uniform = genome.provenance.get("baseline") == "uniform"
        self.seen.append(uniform)
        spread = 0.001 * (genome.provenance["trial"] % 7)
        if self.screen:
            return 0.0 if uniform else 0.5 + spread
        return self.base if uniform else self.base + self.lead + spread


def _incumbent_search(tmp_path, lead: float, **kw):
    from archsearch.search import Search, open_run, write_results

    config = search_config(tmp_path / "run", 3, evaluator="supernet", screen=8, final=2,
                           early_stop="none", **kw)
    evaluators = {"screen": Incumbent(0.0, 0.0, screen=True), "proxy": Incumbent(0.5, 0.05),
                  "final": Incumbent(0.6, lead)}
    Search(config, evaluators, worker_index=0).work()
    run = open_run(tmp_path / "run")
    return run, evaluators, write_results(run)


@pytest.mark.parametrize("lead, kept", [(0.01, True), (0.05, False), (-0.02, True)])
def test_the_final_stage_trains_uniform_and_keeps_it_unless_beaten_beyond_its_error(
        tmp_path, capsys, lead, kept):
    """Uniform never reached the proxy stage, yet trains in the final one; a challenger
    1 point ahead on 1,000 images (standard error of the difference ~2.2 points) does not
    displace it, one 5 points ahead does; one behind it is recorded behind it."""
    from archsearch.search import best_trials

    run, evaluators, doc = _incumbent_search(tmp_path, lead)
    assert evaluators["proxy"].seen == [False] * 3  # the screen kept uniform out
    assert evaluators["final"].seen == [False, True]  # the best proxy genome, then uniform
    final = [t for t in run.trials() if t.user_attrs["fidelity"] == "final"]
    assert final[1].user_attrs["baseline"] == "uniform"
    assert run.study.trials[final[1].user_attrs["promoted_from"]].user_attrs["fidelity"] == \
        "screen"
    assert all(t.user_attrs["val_images"] == 1000 for t in final)
    choice = doc["final_choice"]
    se = (2 * 0.6 * 0.4 / 1000) ** 0.5  # both near 0.6
    assert choice["se"] == pytest.approx(se, rel=0.05)
    assert choice["kept_baseline"] is kept
    assert (choice["delta"] < 0) is (lead < 0)
    winner = best_trials(run, 1)[0]
    assert (winner.user_attrs.get("baseline") == "uniform") is kept
    best = Genome.load(tmp_path / "run" / "best_genome.json")
    assert (best.provenance.get("baseline") == "uniform") is kept
    assert main(["report", str(tmp_path / "run"), "--no-plots"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal's width
    line = text[text.index("final: "):]
    assert line.startswith("final: uniform kept" if kept else f"final: trial {choice['challenger']}"
                           " wins")
    assert "standard error on 1000 validation images" in line


def test_with_the_margin_off_the_final_stage_is_the_best_proxy_genomes(tmp_path):
    from archsearch.search import best_trials

    run, evaluators, doc = _incumbent_search(tmp_path, 0.01, final_margin=None)
    assert evaluators["final"].seen == [False, False]
    assert doc["final_choice"] is None
    assert best_trials(run, 1)[0].user_attrs.get("baseline") is None


def test_a_final_stage_of_one_place_is_not_given_to_uniform(tmp_path):
    from archsearch.search import Search

    config = search_config(tmp_path / "run", 3, evaluator="supernet", screen=8, final=1,
                           early_stop="none")
    evaluators = {"screen": Incumbent(0.0, 0.0, screen=True), "proxy": Incumbent(0.5, 0.05),
                  "final": Incumbent(0.6, 0.01)}
    Search(config, evaluators, worker_index=0).work()
    assert evaluators["final"].seen == [False]


def test_a_search_from_before_the_margin_reads_back_without_it(tmp_path):
    """search.json written before --final-margin: its final stage chose the best, and it
    still does when read back; resuming it under the new default is refused, not mixed."""
    from archsearch.errors import ArchsearchError
    from archsearch.search import Search, SearchConfig, best_trials, open_run

    run, _, _ = _incumbent_search(tmp_path, 0.01, final_margin=None)
    path = tmp_path / "run" / "search.json"
    flat = json.loads(path.read_text())
    del flat["final_margin"]
    path.write_text(json.dumps(flat))
    again = open_run(tmp_path / "run")
    assert again.config.final.margin is None
    assert best_trials(again, 1)[0].number == best_trials(run, 1)[0].number
    with pytest.raises(ArchsearchError, match="was started with"):
        Search(SearchConfig.from_flat(flat), Incumbent(0.6, 0.0), worker_index=0)


@pytest.mark.parametrize("value", ["-1", "abc", "inf"])
def test_a_bad_final_margin_is_one_line_and_exit_2(value, capsys):
    assert main(["search", "--budget", "25%FLOPs", "--final-margin", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--final-margin" in err[0]

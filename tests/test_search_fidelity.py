"""Multi-fidelity search: trials that trained their whole schedule are complete, fidelities
follow the plan (screen → proxy → final), promotions take the best of the previous stage."""

from __future__ import annotations

from optuna.trial import TrialState

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
    config.proxy_epochs = 1
    Search(config, Worsening(), worker_index=0).work()
    states = [t.state for t in open_run(tmp_path / "run").trials()]
    assert states == [TrialState.COMPLETE] * 4


def test_early_stopping_still_stops_before_the_last_epoch(tmp_path):
    from archsearch.search import Search, open_run

    config = search_config(tmp_path / "run", 12, early_stop="median")
    config.proxy_epochs = 3
    Search(config, FakeEvaluator(epochs=3), worker_index=0).work()
    trials = open_run(tmp_path / "run").trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median rule should stop some of 12 trials early"
    assert all(max(t.intermediate_values) < 3 for t in pruned)

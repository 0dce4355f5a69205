"""`archsearch export RUN --top K`: the best genomes of a search as loadable genome files."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.genome import Genome
from archsearch.search import Search, SearchConfig
from tests.test_search_workers import FakeEvaluator

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    config = SearchConfig.from_flat(budget="25%FLOPs", out=str(out), space="resnet20",
                                    dataset="fashion-mnist", trials=6, early_stop="none",
                                    evaluator="proxy", final=0)
    Search(config, FakeEvaluator()).work()
    return out


def test_export_writes_the_top_k_best_first_and_they_load(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--top", "3", "--out", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [g["path"] for g in doc["genomes"]] == sorted(str(p) for p in tmp_path.glob("*.json"))
    accs = [g["val_accuracy"] for g in doc["genomes"]]
    assert len(accs) == 3 and accs == sorted(accs, reverse=True)
    complete = [t.value for t in optuna.load_study(
        study_name="search-resnet20-25%FLOPs",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(run_dir / "journal.log")))).trials if t.value is not None]
    assert accs == sorted(complete, reverse=True)[:3]
    for entry in doc["genomes"]:
        genome = Genome.load(entry["path"])
        bound = bind(genome.space, genome.dataset)
        bound.validate(genome)
        assert genome.provenance["rank"] >= 1 and genome.provenance["source_run"]
        assert abs(genome.cost["macs_ratio"] - 0.25) <= 0.0025
        assert bound.build(genome)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_export_defaults_to_the_run_folder(run_dir):
    assert main(["export", str(run_dir)]) == 0
    assert len(list((run_dir / "export").glob("top*-trial*.json"))) == 3


def test_export_bad_top_is_exit_2(run_dir, capsys):
    assert main(["export", str(run_dir), "--top", "0"]) == 2
    assert "--top" in capsys.readouterr().err


def test_export_without_complete_trials_is_exit_2(tmp_path, capsys):
    config = SearchConfig.from_flat(budget="25%FLOPs", out=str(tmp_path / "run"), space="resnet20",
                                    dataset="fashion-mnist", trials=1, evaluator="proxy", final=0)
    Search(config, FakeEvaluator(diverge=lambda g: True)).work()
    assert main(["export", str(tmp_path / "run")]) == 2
    assert "no complete trial" in capsys.readouterr().err

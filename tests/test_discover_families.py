"""`archsearch discover --method M` for the pruning families beyond slimming/sss: a real
(tiny) run on Fashion-MNIST writes a genome that meets the budget and is the one the pruner
derives from the written checkpoint."""

from __future__ import annotations

import json

import pytest

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.discover import load_sparse_checkpoint
from archsearch.genome import Genome
from archsearch.pruners import get_pruner
from tests.test_discover import needs_fmnist

TRAINED = ["taylor", "pfa"]


@needs_fmnist
@pytest.mark.parametrize("method", TRAINED)
def test_discover_trained_method_real_data(method, capsys, tmp_path):
    out = tmp_path / method
    argv = ["discover", "--method", method, "--budget", "50%FLOPs", "--epochs", "1",
            "--subset", "128", "--out", str(out), "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == method and doc["train"]["epochs"] == 1
    assert doc["cost"]["macs_ratio"] == pytest.approx(0.5, abs=0.005)
    genome = Genome.load(out / "genome.json")
    bound = bind("resnet20", "fashion-mnist")
    bound.validate(genome)
    assert genome.provenance["method"] == method
    pruner = get_pruner(method, bound)
    model = load_sparse_checkpoint(out / "sparse.pt", pruner)
    assert pruner.genome(model, "50%FLOPs").widths == genome.widths


def test_sparsity_option_is_refused_by_methods_without_it(capsys, tmp_path):
    code = main(["discover", "--method", "taylor", "--budget", "50%FLOPs", "--sparsity",
                 "1e-4", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--sparsity applies to slimming, sss, not 'taylor'" in err

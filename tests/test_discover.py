"""`archsearch discover`: bad input is one line and exit 2 with nothing written; a real (tiny)
run on Fashion-MNIST writes a genome that loads and meets the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.data import load_data
from archsearch.discover import DiscoverConfig, plan
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.pruners import SlimmingPruner

PNG = b"\x89PNG\r\n\x1a\n"


def _has_fashion_mnist() -> bool:
    try:
        load_data("fashion-mnist", val_fraction=0.0)
    except ArchsearchError:
        return False
    return True


needs_fmnist = pytest.mark.skipif(not _has_fashion_mnist(),
                                  reason="Fashion-MNIST not installed (dataset-fashion-mnist)")

BAD = {
    "unknown method": (["discover", "--method", "magic", "--budget", "50%FLOPs"],
                       "unknown pruning method 'magic'"),
    "tiny relative budget": (["discover", "--method", "slimming", "--budget", "0.001%FLOPs"],
                             "cannot be met"),
    "below narrowest genome": (["discover", "--method", "slimming", "--budget", "100KFLOPs"],
                               "narrowest genome"),
    "negative sparsity": (["discover", "--method", "slimming", "--budget", "50%FLOPs",
                           "--sparsity", "-1"], "sparsity=-1"),
    "sparsity for uniform": (["discover", "--method", "uniform", "--budget", "50%FLOPs",
                              "--sparsity", "1e-4"], "--sparsity applies"),
    "zero epochs": (["discover", "--method", "slimming", "--budget", "50%FLOPs", "--epochs",
                     "0"], "epochs=0"),
    "zero subset": (["discover", "--method", "sss", "--budget", "50%FLOPs", "--subset", "0"],
                    "--subset must be > 0"),
    "sss without blocks": (["discover", "--method", "sss", "--budget", "50%FLOPs", "--space",
                            "vgg11"], "residual blocks"),
    "budget text": (["discover", "--method", "slimming", "--budget", "half"],
                    "cannot read budget"),
    "missing data": (["discover", "--method", "slimming", "--budget", "50%FLOPs", "--dataset",
                      "cifar10", "--data-root", "/nonexistent"], "cifar10 not found"),
    "stage ratios for slimming": (["discover", "--method", "slimming", "--budget", "50%FLOPs",
                                   "--stage-ratios", "0.5,1,1"], "applies to l1norm"),
    "stage ratios count": (["discover", "--method", "l1norm", "--budget", "50%FLOPs",
                            "--stage-ratios", "0.5,1"], "one ratio per stage"),
    "rethink zero seeds": (["rethink", "--method", "slimming", "--budget", "50%FLOPs",
                            "--seeds", "0"], "seeds=0"),
    "rethink unknown method": (["rethink", "--method", "pruneall", "--budget", "50%FLOPs"],
                               "unknown pruning method"),
    "rethink impossible budget": (["rethink", "--method", "slimming", "--budget",
                                   "0.001%FLOPs"], "cannot be met"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_nothing_written(case, capsys, tmp_path, monkeypatch):
    argv, message = BAD[case]
    monkeypatch.chdir(tmp_path)  # the default run folder would be ./runs/...
    code = main([*argv, "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("archsearch: error: ")
    assert message in err and "Traceback" not in err
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_bad_input_real_process_stderr(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "archsearch", "discover", "--method", "slimming", "--budget",
         "0.001%FLOPs", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("archsearch: error: budget 0.001%FLOPs cannot be met")
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_existing_run_folder_needs_resume(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "genome.json").write_text("{}")
    with pytest.raises(ArchsearchError, match="--resume"):
        plan(DiscoverConfig("uniform", "50%FLOPs", out=str(tmp_path / "out")))


def test_uniform_needs_no_training_or_data(capsys, tmp_path):
    code = main(["discover", "--method", "uniform", "--budget", "30%params", "--space",
                 "vgg11", "--dataset", "cifar10", "--data-root", "/nonexistent", "--out",
                 str(tmp_path / "u"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["cost"]["params_ratio"] == pytest.approx(0.3, abs=0.003)
    genome = Genome.load(tmp_path / "u" / "genome.json")
    assert genome.provenance["method"] == "uniform" and genome.dataset == "cifar10"
    assert (tmp_path / "u" / "widths.png").read_bytes()[:8] == PNG
    assert not (tmp_path / "u" / "sparse.pt").exists()


@needs_fmnist
def test_discover_real_fashion_mnist(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["discover", "--method", "slimming", "--budget", "50%FLOPs", "--epochs", "1",
            "--subset", "256", "--sparsity", "1e-3", "--out", str(out), "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    # a real training run happened on real images
    assert doc["train"]["epochs"] == 1 and doc["train"]["val_acc"] is not None
    assert 0 <= doc["train"]["val_acc"] <= 1
    metrics = (out / "base" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1 and json.loads(metrics[0])["train_loss"] > 0

    bound = bind("resnet20", "fashion-mnist")
    genome = Genome.load(out / "genome.json")
    bound.validate(genome)
    half = bound.base_cost.macs / 2
    assert abs(bound.costs.cost(genome.widths, genome.blocks).macs - half) <= 0.01 * half
    for group in bound.graph.prunable:
        assert genome.widths[group] >= bound.space.min_width
    assert genome.provenance["method"] == "slimming" and genome.provenance["sparsity"] == 1e-3

    ckpt = torch.load(out / "sparse.pt", map_location="cpu", weights_only=True)
    model = bound.base_model()
    model.load_state_dict(ckpt["state_dict"])
    gammas = torch.cat([model.get_submodule(n).weight.detach() for g in bound.graph.prunable
                        for n in bound.graph.groups[g].norms])
    assert not torch.allclose(gammas, torch.ones_like(gammas))  # trained, not the init
    # the genome is the global threshold of the checkpoint's BN scales
    assert SlimmingPruner(bound, sparsity=1e-3).genome(model, "50%FLOPs").widths == \
        genome.widths
    for name in ("widths.png", "scales.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert json.loads((out / "result.json").read_text())["cost"] == genome.cost

    # --resume: the finished base is not trained again, the genome is the same
    before = (out / "base" / "checkpoint.pt").stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cost"] == doc["cost"]
    assert (out / "base" / "checkpoint.pt").stat().st_mtime_ns == before
    assert Genome.load(out / "genome.json").widths == genome.widths


def test_l1norm_stage_ratios_shape_the_genome(capsys, tmp_path):
    argv = ["discover", "--method", "l1norm", "--budget", "50%FLOPs", "--stage-ratios",
            "0.5,0.75,1", "--out", str(tmp_path / "l1"), "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    kept = {}
    for row in doc["widths"]:
        kept.setdefault(row["stage"], []).append(row["kept"])
    means = [sum(v) / len(v) for _, v in sorted(kept.items())]
    assert means[0] < means[1] < means[2]
    assert doc["cost"]["macs_ratio"] == pytest.approx(0.5, abs=0.005)
    assert Genome.load(tmp_path / "l1" / "genome.json").provenance["stage_ratios"] == \
        [0.5, 0.75, 1.0]


def test_run_dir_default_names_method_space_budget(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = plan(DiscoverConfig("l1norm", "25%FLOPs", space="vgg11"))
    assert p.run_dir == Path("runs/discover-l1norm-vgg11-fashion-mnist-25pctFLOPs-s0")
    assert p.splits is None  # l1norm's genome needs no training, so no data is loaded


def test_human_output_is_a_per_layer_table(capsys, tmp_path):
    argv = ["discover", "--method", "uniform", "--budget", "50%FLOPs", "--space", "vgg11",
            "--out", str(tmp_path / "h")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    bound = bind("vgg11", "fashion-mnist")
    for group in bound.graph.prunable:
        assert group in out
    assert "MACs" in out and "% of" in out

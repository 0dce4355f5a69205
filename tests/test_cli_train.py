"""`archsearch train` as a user runs it: real processes, real Fashion-MNIST, real SIGKILL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.train import load_checkpoint
from tests.conftest import assert_resumed_equals_uninterrupted, kill_after_first_checkpoint

ROOT = Path(__file__).resolve().parents[1]

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(),
                                  reason="Debian package dataset-fashion-mnist not installed")


def cli(*args: str, env: dict | None = None, timeout: float = 600
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archsearch", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def genomes(tmp_path_factory):
    d = tmp_path_factory.mktemp("genomes")
    bound = bind("vgg11", "fashion-mnist")
    out = {}
    for budget in ("5%FLOPs", "10%FLOPs"):
        path = d / f"vgg11-{budget.replace('%', 'pct')}.json"
        bound.uniform(parse_budget(budget)).save(path)
        out[budget] = path
    return out


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_bad_inputs_exit_2_and_keep_what_exists(genomes, tmp_path, capsys, monkeypatch):
    from archsearch.cli.main import main

    def error(*argv: str) -> str:  # in-process: the same code path, without a torch import
        capsys.readouterr()
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        return err[0]

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "bad.json" in one_error_line(cli("train", str(bad)))  # a real process, once
    assert "not found" in error(str(tmp_path / "none.json"))
    g = str(genomes["5%FLOPs"])
    assert "--from" in error(g, "--schedule", "finetune")
    assert "epochs" in error(g, "--epochs", "0")
    assert "subset" in error(g, "--subset", "-3")
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text('{"precious": true}')
    assert "--resume" in error(g, "--out", str(out))
    assert json.loads((out / "result.json").read_text()) == {"precious": True}
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("ARCHSEARCH_DATA", str(empty))
    line = error(g, "--dataset", "cifar10", "--data-root", str(empty), "--out",
                 str(tmp_path / "cifar"))
    assert "cifar10" in line and "--data-root" in line
    assert not (tmp_path / "cifar").exists()  # nothing written before the inputs are checked


@needs_fmnist
@pytest.mark.slow
def test_one_epoch_on_fashion_mnist_is_sane(genomes, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", str(genomes["10%FLOPs"]), "--epochs", "1", "--subset", "10000",
               "--lr", "0.05", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["test_acc"] > 0.70, result
    assert result["macs_ratio"] == pytest.approx(0.10, abs=0.001)
    for name in ("config.json", "genome.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
        assert (out / name).is_file(), name


@needs_fmnist
@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(genomes, tmp_path):
    args = ["train", str(genomes["5%FLOPs"]), "--epochs", "4", "--subset", "1500",
            "--seed", "3", "--json"]
    ref = cli(*args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    kill_after_first_checkpoint([*args, "--out", str(out)], tmp_path / "epoch-1-saved")
    assert not (out / "result.json").exists()
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1

    resumed = cli(*args, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_resumed_equals_uninterrupted(ref.stdout, resumed.stdout, tmp_path / "ref", out, 4)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]


@needs_fmnist
def test_finetune_inherits_from_a_base_checkpoint(genomes, tmp_path):
    torch.manual_seed(0)
    base = bind("vgg11", "fashion-mnist").base_model()
    ckpt = tmp_path / "base.pt"
    torch.save({"state_dict": base.state_dict(), "method": "l1norm"}, ckpt)
    out = tmp_path / "ft"
    proc = cli("train", str(genomes["5%FLOPs"]), "--schedule", "finetune", "--from", str(ckpt),
               "--epochs", "1", "--subset", "256", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schedule"] == "finetune"
    # the first conv of the fine-tuned model started as the base's top-L1 filters
    config = json.loads((out / "config.json").read_text())
    assert config["schedule"] == "finetune" and config["lr"] is None
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, wrong)
    line = one_error_line(cli("train", str(genomes["5%FLOPs"]), "--schedule", "finetune",
                              "--from", str(wrong), "--out", str(tmp_path / "ft2")))
    assert "not a checkpoint of the vgg11 base" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_fmnist
@pytest.mark.slow
def test_distributed_data_parallel_on_cpu_gloo(genomes, tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "archsearch",
         "train", str(genomes["5%FLOPs"]), "--epochs", "2", "--subset", "1024",
         "--batch-size", "64", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["epochs"] == 2
    assert result["test_acc"] > 0.3  # learned something across both ranks
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]  # only rank 0 writes

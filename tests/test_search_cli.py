"""`archsearch search` from the command line: bad input is one line and exit 2 with nothing
written; a short real search on Fashion-MNIST end to end (search → export → report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archsearch.cli.main import main
from archsearch.genome import Genome

ROOT = Path(__file__).resolve().parents[1]


def _fashion_mnist_available() -> bool:
    try:
        from archsearch.data import load_data

        load_data("fashion-mnist")
    except Exception:
        return False
    return True


@pytest.mark.parametrize("args,message", [
    (["--space", "nope"], "unknown space"),
    (["--budget", "abc"], "cannot read budget"),
    (["--budget", "250%FLOPs"], "percentage"),
    (["--budget", "0.001%FLOPs"], "cannot be met"),
    (["--guide", "missing.json"], "genome file not found"),
    (["--objectives", "accuracy,energy"], "--objectives"),
    (["--early-stop", "sometimes"], "--early-stop"),
    (["--granularity", "layer"], "granularity"),
    (["--storage", "redis://x"], "--storage"),
    (["--trials", "0"], "--trials"),
    (["--workers", "0"], "--workers"),
    (["--proxy-subset", "1.5"], "--proxy-subset"),
    (["--objectives", "accuracy,macs", "--budget-low", "40%params"], "--budget-low"),
    (["--evaluator", "oracle"], "--evaluator"),
    (["--screen", "-1"], "--screen"),
    (["--final", "-2"], "--final"),
    (["--base-epochs", "0"], "--base-epochs"),
    (["--calib-images", "0"], "--calib-images"),
    (["--base", "missing.pt", "--evaluator", "adaptive-bn"], "--base checkpoint not found"),
    (["--base", "missing.pt"], "--base checkpoint not found"),  # adaptive-bn: the default
    (["--base", "missing.pt", "--evaluator", "supernet"], "adaptive-bn"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    argv = ["search", "--budget", "25%FLOPs", "--out", str(out), *args]
    if "--budget" in args:
        argv = ["search", "--out", str(out), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith("archsearch: error:")
    assert not out.exists()


def test_bad_guide_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "archsearch.genome", "version": 1, "space": "vgg11",
                               "widths": {"features.0": 9999}}))
    assert main(["search", "--budget", "25%FLOPs", "--guide", str(bad),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "features.0" in err
    assert not (tmp_path / "run").exists()


def test_export_and_report_need_a_search_run(tmp_path, capsys):
    for cmd in ("export", "report"):
        assert main([cmd, str(tmp_path)]) == 2
        assert "not a search run folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST files not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_search_on_fashion_mnist_end_to_end(tmp_path):
    """Two worker processes, real proxy training on Fashion-MNIST, then export and report."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "archsearch", "search", "--budget", "25%FLOPs",
           "--space", "vgg11", "--trials", "4", "--workers", "2", "--proxy-epochs", "2",
           "--proxy-subset", "256", "--proxy-val", "256", "--evaluator", "proxy",
           "--final", "0", "--out", str(out), "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["tally"]["finished"] == 4 and doc["tally"]["counted"] == 4
    assert 0.0 <= doc["best"][0]["accuracy"] <= 1.0
    assert len({r["worker"] for r in doc["trials"]}) == 2
    for row in doc["trials"]:
        assert abs(row["macs_ratio"] - 0.25) <= 0.0025
    best = Genome.load(out / "best_genome.json")
    assert best.provenance["trial"] == doc["best"][0]["trial"]

    exported = tmp_path / "exported"
    assert main(["export", str(out), "--top", "2", "--out", str(exported)]) == 0
    files = sorted(exported.glob("top*.json"))
    complete = sum(r["state"] == "complete" for r in doc["trials"])  # hyperband may stop some
    assert complete >= 1 and len(files) == min(2, complete)
    from archsearch.build import bind

    genome = Genome.load(files[0])
    model = bind(genome.space, genome.dataset).build(genome)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert genome.provenance["val_accuracy"] == pytest.approx(doc["best"][0]["accuracy"])

    assert main(["report", str(out)]) == 0
    for name in ("history", "accuracy_vs_cost", "best_stages", "best_widths"):
        assert (out / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

"""CLI: spaces and show, and one clear line with exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archsearch.cli.main import main
from archsearch.genome import Genome


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_json(capsys):
    code, out, _ = run_cli(capsys, "spaces", "--json")
    rows = {r["space"]: r for r in json.loads(out)}
    assert code == 0 and rows["resnet20"]["groups"] == 12 and rows["resnet20"]["blocks"] == 7


def test_show_budget_json_gives_a_loadable_genome(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "show", "resnet56", "--dataset", "cifar10",
                           "--budget", "50%FLOPs", "--json")
    doc = json.loads(out)
    assert code == 0
    assert {"space", "macs", "params", "widths", "genome"} <= set(doc)
    assert doc["macs"] == pytest.approx(0.5 * doc["base_macs"], rel=0.01)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc["genome"]))
    code, out, _ = run_cli(capsys, "show", str(path), "--json", "--plot",
                           str(tmp_path / "w.png"))
    again = json.loads(out)
    assert code == 0 and again["macs"] == doc["macs"] and again["widths"] == doc["widths"]
    assert Genome.load(path).space == "resnet56"
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def test_show_table(capsys):
    code, out, _ = run_cli(capsys, "show", "vgg11", "--budget", "1.5Mparams")
    assert code == 0 and "features.0" in out and "params" in out


@pytest.mark.parametrize("argv", [
    ["show", "resnet20", "--budget", "0%FLOPs"],
    ["show", "resnet20", "--budget", "150%FLOPs"],
    ["show", "resnet20", "--budget", "fast"],
    ["show", "nospace"],
    ["show", "resnet20", "--dataset", "mnist-xl"],
    ["show", "resnet20", "--budget", "10KFLOPs"],
])
def test_bad_input_is_one_line_exit_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("archsearch: error:")


def test_malformed_genome_file_in_a_real_process(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text('{"format": "archsearch.genome", "version": 1, "space": "resnet20", '
                   '"widths": {"layer1.stream": 0}}')
    proc = subprocess.run([sys.executable, "-m", "archsearch", "show", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "must be >= 1" in proc.stderr

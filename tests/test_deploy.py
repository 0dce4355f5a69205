"""`archsearch export TRAIN_RUN --format onnx|pt2|state-dict`: a network trained for real on
Fashion-MNIST leaves as files that a Python process without archsearch runs, with the trained
network's outputs; its latency against the base is measured; bad input is one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind, bind_genome
from archsearch.cli.main import main
from archsearch.data import load_data
from archsearch.deploy import compare_speed, open_train_run, rebuild, time_interleaved
from archsearch.errors import ArchsearchError
from archsearch.genome import Genome
from archsearch.train import load_checkpoint
from tests.test_cli_train import needs_fmnist

pytestmark = needs_fmnist
needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(n) is None for n in ("onnx", "onnxscript", "onnxruntime")),
    reason="the onnx extra is not installed: pip install 'archsearch[onnx]'")

# runs in `python -I` (no PYTHONPATH, no cwd on the path) with archsearch blocked
WITHOUT_ARCHSEARCH = textwrap.dedent("""
    import sys
    sys.modules["archsearch"] = None
    try:
        import archsearch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("archsearch was importable")
    import numpy as np, onnxruntime, torch
    images = np.load(sys.argv[1])
    session = onnxruntime.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
    np.save(sys.argv[4], session.run(["logits"], {"images": images})[0])
    program = torch.export.load(sys.argv[3]).module()
    with torch.no_grad():
        np.save(sys.argv[5], program(torch.from_numpy(images)).numpy())
        np.save(sys.argv[6], program(torch.from_numpy(images[:1])).numpy())
        x = torch.from_numpy(images)
        exec(sys.argv[7])  # the README's lines, on model.onnx and model.pt2 in the cwd
        np.save(sys.argv[8], logits.numpy())  # noqa: F821
""")
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_export_block() -> str:
    """The python block of the README's export subsection."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Export: a trained network", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.fixture(scope="module")
def train_run(tmp_path_factory) -> Path:
    """A resnet20 genome at 10% MACs, trained for one epoch on 512 Fashion-MNIST images."""
    d = tmp_path_factory.mktemp("deploy")
    genome = d / "resnet20-10pct.json"
    bind("resnet20", "fashion-mnist").uniform(parse_budget("10%FLOPs")).save(genome)
    out = d / "train"
    assert main(["train", str(genome), "--schedule", "scratch-e", "--epochs", "1",
                 "--subset", "512", "--out", str(out), "--json"]) == 0
    return out


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """64 Fashion-MNIST test images, normalised as training does."""
    splits = load_data("fashion-mnist", val_fraction=0.0)
    x = splits.test.images[:64].float() / 255
    return (x - torch.tensor(splits.mean).view(1, -1, 1, 1)) / torch.tensor(
        splits.std).view(1, -1, 1, 1)


def trained_outputs(run: Path, x: torch.Tensor) -> torch.Tensor:
    """The trained network's outputs, rebuilt from the checkpoint the plain way."""
    doc = load_checkpoint(run / "checkpoint.pt")
    genome = Genome.from_dict(doc["genome"])
    model = bind_genome(genome).build(genome)
    model.load_state_dict(doc["state_dict"])
    with torch.no_grad():
        return model.eval()(x)


def export(run: Path, *argv: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["export", str(run), *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@needs_onnx
def test_onnx_and_pt2_run_without_archsearch(train_run, images, tmp_path, capsys):
    onnx = export(train_run, "--format", "onnx", "--no-speed", capsys=capsys)
    pt2 = export(train_run, "--format", "pt2", "--out", str(tmp_path / "net.pt2"),
                 "--no-speed", capsys=capsys)
    assert onnx["files"] == [str(train_run / "export" / "model.onnx")]
    assert pt2["files"] == [str(tmp_path / "net.pt2")]
    for doc in (onnx, pt2):  # the export's own check, on real test images
        assert doc["check"]["images"] == "fashion-mnist test" and doc["check"]["count"] == 64
        assert doc["check"]["max_abs_diff"] <= 1e-4
    np.save(tmp_path / "x.npy", images.numpy())
    shutil.copy(onnx["files"][0], tmp_path / "model.onnx")
    shutil.copy(pt2["files"][0], tmp_path / "model.pt2")
    outs = [tmp_path / f"{name}.npy" for name in ("onnx", "pt2", "pt2_one")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", WITHOUT_ARCHSEARCH, str(tmp_path / "x.npy"),
                           onnx["files"][0], pt2["files"][0], *map(str, outs),
                           readme_export_block(), str(tmp_path / "readme.npy")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = trained_outputs(train_run, images)
    fresh = bind("resnet20", "fashion-mnist").build(Genome.load(train_run / "genome.json"))
    with torch.no_grad():  # the outputs are the trained weights', not any network's
        assert (fresh.eval()(images) - want).abs().max() > 1e-2
    for path in [*outs[:2], tmp_path / "readme.npy"]:
        got = torch.from_numpy(np.load(path))
        assert got.dtype == torch.float32 and got.shape == (64, 10)
        assert (got - want).abs().max() <= 1e-4
    assert (torch.from_numpy(np.load(outs[2])) - want[:1]).abs().max() <= 1e-4  # batch 1


def test_state_dict_pair_rebuilds_the_trained_network(train_run, images, tmp_path, capsys):
    doc = export(train_run, "--format", "state-dict", "--out", str(tmp_path / "w.pt"),
                 "--no-speed", capsys=capsys)
    weights, genome_path = map(Path, doc["files"])
    assert genome_path == tmp_path / "w.genome.json"
    genome = Genome.load(genome_path)  # the README's way to rebuild
    model = bind_genome(genome).build(genome)
    model.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        assert torch.equal(model.eval()(images), trained_outputs(train_run, images))
    assert doc["check"]["max_abs_diff"] == 0.0
    with torch.no_grad():  # the library's one call does the same
        assert torch.equal(rebuild(weights, genome_path)(images), model(images))
    other = tmp_path / "other.pt"
    torch.save({"features.0.weight": torch.zeros(1)}, other)
    with pytest.raises(ArchsearchError, match="cannot load .*other.pt"):
        rebuild(other, genome_path)


@pytest.mark.slow
@needs_onnx
def test_export_reports_latency_against_the_base(train_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["export", str(train_run), "--format", "pt2", "--out", str(tmp_path / "m.pt2"),
                 "--threads", "1", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 thread(s)" in out and "median of 2 runs" in out
    rows = [line for line in out.splitlines() if "torch" in line or "onnxruntime" in line]
    assert len(rows) == 4 and all("10.0%" in r for r in rows)  # MACs ratio beside each


def test_compare_speed_times_both_networks_per_runtime_and_batch(train_run):
    run = open_train_run(train_run)
    rows = compare_speed(run.model(), run.base_model(), run.input_shape, batches=(1, 3),
                         threads=1, runtimes=("torch",), repeats=3, warmup=1)
    assert [(r.runtime, r.batch) for r in rows] == [("torch", 1), ("torch", 3)]
    for r in rows:
        assert r.base.runs == r.pruned.runs == 3 and r.base.threads == 1
        assert 0 < r.pruned.min_ms <= r.pruned.median_ms <= r.pruned.max_ms
        assert r.speedup == pytest.approx(r.base.median_ms / r.pruned.median_ms)


def test_time_interleaved_excludes_warmup_and_takes_turns():
    calls: list[str] = []
    times = time_interleaved([lambda: calls.append("a"), lambda: calls.append("b")],
                             repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5 and [len(t) for t in times] == [3, 3]


def test_help_names_both_uses(capsys):
    assert main(["export", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "search run folder" in text and "train run folder" in text
    assert "onnx" in text and "pt2" in text and "state-dict" in text
    from archsearch.cli.cmd_export import FORMAT_CHOICES
    from archsearch.deploy import FORMATS

    assert FORMAT_CHOICES == tuple(FORMATS)  # the CLI's list is the library's


def error(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["export", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_one_line_exit_2_and_keeps_what_exists(train_run, tmp_path, capsys,
                                                            monkeypatch):
    run = str(train_run)
    kept = tmp_path / "kept.onnx"
    kept.write_bytes(b"precious")
    assert "'tflite'" in error(capsys, run, "--format", "tflite", "--out", str(kept))
    assert "--format" in error(capsys, run)
    assert "--top" in error(capsys, run, "--top", "2", "--format", "pt2")
    assert "/proc" in error(capsys, run, "--format", "pt2", "--out", "/proc/none/m.pt2")
    assert "--repeats" in error(capsys, run, "--format", "pt2", "--repeats", "0")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    line = error(capsys, run, "--format", "onnx", "--out", str(kept))
    assert "onnxruntime" in line and "pip install" in line
    assert kept.read_bytes() == b"precious"
    norun = tmp_path / "norun"
    norun.mkdir()
    assert "not a train run" in error(capsys, str(norun), "--format", "pt2")
    assert not list(norun.iterdir()) and not list(tmp_path.glob(".*.tmp"))


def test_run_folder_without_checkpoint_is_exit_2(train_run, tmp_path, capsys):
    stopped = tmp_path / "stopped"  # what train writes before its first checkpoint
    stopped.mkdir()
    for name in ("config.json", "genome.json"):
        (stopped / name).write_bytes((train_run / name).read_bytes())
    assert "no checkpoint.pt" in error(capsys, str(stopped), "--format", "onnx")
    (stopped / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert "cannot load checkpoint" in error(capsys, str(stopped), "--format", "pt2")
    assert sorted(p.name for p in stopped.iterdir()) == ["checkpoint.pt", "config.json",
                                                         "genome.json"]


def test_a_failed_export_leaves_the_previous_file(train_run, tmp_path, monkeypatch, capsys):
    import archsearch.deploy._export as exp

    target = tmp_path / "model.pt2"
    target.write_bytes(b"previous export")

    def broken(program):
        raise RuntimeError("exporter crashed")
    monkeypatch.setattr(exp, "pt2_bytes", broken)
    assert main(["export", str(train_run), "--format", "pt2", "--out", str(target),
                 "--no-speed"]) == 1
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]  # no temp file left

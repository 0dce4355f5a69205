"""Hostile input and broken environments through the CLI: one line on stderr and exit 2,
no traceback (unless --debug), nothing written when an input is refused, nothing
half-written left behind (issue 14)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archsearch.budget import parse_budget
from archsearch.build import bind
from archsearch.cli.main import main
from archsearch.io import remove_stale_temps
from tests.test_hostile_data import write_fmnist


def refused(capsys, *argv: str) -> str:
    """Run the CLI in-process; assert exit 2 with exactly one line on stderr."""
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def genome_doc():
    return bind("vgg11", "fashion-mnist").uniform(parse_budget("5%FLOPs")).to_dict()


@pytest.fixture
def fmnist(tmp_path):
    return write_fmnist(tmp_path / "fm", n_img=40, n_lab=40)


def _genome_file(tmp_path, doc, name="g.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


# -- genome files --------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, match", [
    ("provenance", [1, 2], "'provenance' must be an object"),
    ("cost", "x", "'cost' must be an object"),
    ("cost", {"macs": "x"}, r"cost\['macs'\] must be a number"),
    ("version", True, "unsupported genome version True"),
    ("version", 1.0, "unsupported genome version 1.0"),
    ("widths", {"features.0": 1.5}, "must be int"),
    ("format", ["x"] * 100, r"format=\[.*\.\.\."),
])
def test_bad_genome_fields(capsys, tmp_path, genome_doc, field, value, match):
    path = _genome_file(tmp_path, {**genome_doc, field: value})
    for argv in (["show", path],
                 ["train", path, "--out", str(tmp_path / "run")],
                 ["search", "--budget", "5%FLOPs", "--space", "vgg11", "--guide", path,
                  "--out", str(tmp_path / "search")]):
        line = refused(capsys, *argv)
        assert path in line
        assert __import__("re").search(match, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]


def test_deeply_nested_genome_json(capsys, tmp_path):
    path = _genome_file(tmp_path, "[" * 200_000 + "]" * 200_000)
    for argv in (["show", path], ["train", path, "--out", str(tmp_path / "run")],
                 ["search", "--budget", "5%FLOPs", "--guide", path, "--out",
                  str(tmp_path / "s")]):
        assert "nested too deeply" in refused(capsys, *argv)
    path = _genome_file(tmp_path, '{"widths": ' + "9" * 5000 + "}", "big.json")
    assert "unreadable JSON" in refused(capsys, "show", path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json", "g.json"]


# -- numbers -------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, match", [
    ("--subset", "nan", "--subset must be a finite number"),
    ("--subset", "inf", "--subset must be a finite number"),
    ("--subset", "-inf", "--subset must be a finite number"),
    ("--seed", "99999999999999999999", "--seed is out of range"),
    ("--seed", "-3", "--seed must be >= 0"),
    ("--batch-size", "1e20", "invalid int value"),
    ("--batch-size", "100000000000000000000", "--batch-size is out of range"),
    ("--epochs", "-1", "epochs must be an integer >= 1"),
    ("--lr", "1e308", "learning rate must be in"),
    ("--lr", "nan", "--lr must be a finite number"),
    ("--max-scale", "inf", "--max-scale must be a finite number"),
])
def test_bad_numbers_refused_before_any_folder(capsys, tmp_path, genome_doc, flag, value,
                                               match):
    path = _genome_file(tmp_path, genome_doc)
    out = tmp_path / "run"
    assert match in refused(capsys, "train", path, "--out", str(out), flag, value)
    assert not out.exists()


@pytest.mark.parametrize("argv, match", [
    (["--proxy-subset", "nan"], "--proxy-subset must be a finite number"),
    (["--trials", "99999999999"], "--trials is out of range"),
    (["--workers", "100000"], "--workers must be at most"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_bad_search_numbers(capsys, tmp_path, argv, match):
    out = tmp_path / "s"
    assert match in refused(capsys, "search", "--budget", "50%FLOPs", "--out", str(out), *argv)
    assert not out.exists()


@pytest.mark.parametrize("budget, match", [
    ("-5%FLOPs", "must be positive"),
    ("100.0001%FLOPs", "but got 100.0001%"),
    ("-0.5Mparams", "must be positive"),
])
def test_budgets(capsys, budget, match):
    assert match in refused(capsys, "show", "resnet20", "--budget", budget)


# -- space files ---------------------------------------------------------------------------

GOOD_MODEL = '[model]\nfamily = "resnet_cifar"\ndepth = 8\n'


@pytest.mark.parametrize("text, match", [
    (GOOD_MODEL + '[search]\ndivisor = "abc"\n', "divisor must be a whole number"),
    (GOOD_MODEL + "[search]\ndivisor = 2.7\n", "divisor must be a whole number >= 1, but got 2.7"),
    (GOOD_MODEL + "[search]\ndivisor = true\n", "divisor must be a whole number"),
    (GOOD_MODEL + "[search]\nmin_width = [1]\n", "min_width must be a whole number"),
    (GOOD_MODEL + "[search]\nmin_width = 0\n", "min_width must be a whole number"),
    ('[model]\nfamily = "resnet_cifar"\ndepth = 7\n', "'depth' must be 6n\\+2"),
    ('[model]\nfamily = "preresnet"\ndepth = 21\n', "'depth' must be 9n\\+2"),
    ('[model]\nfamily = "resnet_cifar"\ndepth = 8\nwidths = [16, -32, 64]\n', "'widths' must"),
    ('model = "vgg"\n', "'model' must be a table"),
    ('[model]\nfamily = "vgg"\ncfg = [64, "X", 128]\n', "vgg 'cfg' must list widths"),
    ('[model]\nfamily = "vgg"\ncfg = [0]\n', "vgg 'cfg' must list widths"),
    ('[model]\nfamily = "vgg"\ncfg = [8]\ndepth = 3\n', "unknown \\[model\\] argument"),
    ('[model]\nfamily = 3\n', "needs a 'family'"),
    ('[model]\nfamily = "torchvision"\n', "torchvision spaces need"),
    ('[model]\nfamily = "torchvision"\nname = "nonet"\n', "unknown torchvision model"),
    (GOOD_MODEL + '[dataset]\ndefault = "mnist-xl"\n', "unknown dataset"),
    (GOOD_MODEL + "[search]\ndivisr = 2\n", "unknown key"),
    ("[model\n", "cannot read space file"),
])
def test_bad_space_files(capsys, tmp_path, text, match):
    path = tmp_path / "myspace.toml"
    path.write_text(text)
    line = refused(capsys, "show", str(path))
    assert __import__("re").search(match, line), line


def test_show_and_search_take_a_space_path(capsys, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text('[model]\nfamily = "vgg"\ncfg = [8, "M", 16]\n[search]\nmin_width = 2\n')
    capsys.readouterr()
    assert main(["show", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["space"] == "tiny" and doc["widths"] == {"features.0": 8, "features.4": 16}


# -- output paths and storage --------------------------------------------------------------

@pytest.mark.parametrize("out, match", [
    ("/dev/null", "exists and is not a folder"),
    ("FILE", "exists and is not a folder"),
    ("/proc/archsearch/run", "cannot write in /proc"),
])
def test_bad_out_folders(capsys, tmp_path, genome_doc, fmnist, out, match):
    path = _genome_file(tmp_path, genome_doc)
    out = path if out == "FILE" else out
    before = Path(path).read_bytes()
    assert match in refused(capsys, "train", path, "--data-root", str(fmnist), "--out", out)
    assert match in refused(capsys, "search", "--budget", "50%FLOPs", "--out", out)
    assert Path(path).read_bytes() == before


def test_read_only_mount(capsys, tmp_path, genome_doc):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        path = _genome_file(tmp_path, genome_doc)
        assert "Read-only file system" in refused(capsys, "train", path, "--out",
                                                  str(mnt / "run"))
        assert "Read-only file system" in refused(capsys, "show", path, "--plot",
                                                  str(mnt / "w.png"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_plot_on_a_folder(capsys, tmp_path):
    assert "is a folder" in refused(capsys, "show", "resnet20", "--plot", str(tmp_path))


@pytest.mark.parametrize("storage, match", [
    ("journal:/proc/x/j.log", "cannot write in /proc"),
    ("journal:", "name the journal file"),
    ("journal:DIR", "is a folder, not a journal file"),
    ("sqlite:///", "sqlite is not supported: sqlite:/// keeps the study in memory"),
    ("sqlite:////tmp/x.db", "sqlite is not supported"),
    ("mysql://u:secret@h/db", "PostgreSQL URL"),
    ("redis://h", "PostgreSQL URL"),
])
def test_bad_storage(capsys, tmp_path, storage, match):
    storage = storage.replace("DIR", str(tmp_path))
    out = tmp_path / "s"
    line = refused(capsys, "search", "--budget", "50%FLOPs", "--storage", storage,
                   "--out", str(out))
    assert match in line and "secret" not in line
    assert not out.exists()


# -- training: disk full, leftovers, restarts ----------------------------------------------

def _train(path: str, fmnist: Path, out: Path, *extra: str) -> list[str]:
    return ["train", path, "--data-root", str(fmnist), "--out", str(out), "--epochs", "2",
            "--device", "cpu", "--batch-size", "16", "--json", *extra]


def test_disk_full_during_checkpoint_then_resume(capsys, tmp_path, genome_doc, fmnist,
                                                 monkeypatch):
    path = _genome_file(tmp_path, genome_doc)
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_then_fill_disk(obj, fh, *a, **k):  # the second checkpoint hits a full disk
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *a, **k)

    monkeypatch.setattr(torch, "save", save_then_fill_disk)
    line = refused(capsys, *_train(path, fmnist, out))
    assert "No space left on device" in line
    assert not list(out.glob(".*.tmp"))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert main(_train(path, fmnist, out, "--resume")) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


def test_stale_temps_removed_on_resume_live_ones_kept(capsys, tmp_path, genome_doc, fmnist):
    path = _genome_file(tmp_path, genome_doc)
    out = tmp_path / "run"
    assert main(_train(path, fmnist, out, "--epochs", "1")) == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    from archsearch.io import _host_tag

    stale = out / f".checkpoint.pt.{_host_tag()}p{dead}-abc123.tmp"
    old = out / ".checkpoint.pt.x1y2z3.tmp"  # an older archsearch's name, long untouched
    live = out / f".checkpoint.pt.{_host_tag()}p{os.getppid()}-abc123.tmp"
    for p in (stale, old, live):
        p.write_bytes(b"x" * 1000)
    os.utime(old, (1, 1))
    (out / "result.json").unlink()
    assert main(_train(path, fmnist, out, "--epochs", "1", "--resume")) == 0
    assert not stale.exists() and not old.exists() and live.exists()
    assert remove_stale_temps(out) == []


def test_run_stopped_before_its_first_checkpoint_restarts(capsys, tmp_path, genome_doc,
                                                          fmnist):
    path = _genome_file(tmp_path, genome_doc)
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"epochs_run": 2}))
    (out / "genome.json").write_text("{}")
    assert main(_train(path, fmnist, out, "--epochs", "1")) == 0
    assert (out / "checkpoint.pt").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("not a run")
    assert "exists" in refused(capsys, *_train(path, fmnist, other))
    assert (other / "notes.txt").read_text() == "not a run"


def test_non_weights_checkpoint_is_one_line(capsys, tmp_path, genome_doc, recwarn):
    from fractions import Fraction  # any class outside torch's weights-only allow-list

    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": Fraction(1, 3)}, bad)
    path = _genome_file(tmp_path, genome_doc)
    line = refused(capsys, "train", path, "--schedule", "finetune", "--from", str(bad),
                   "--out", str(tmp_path / "ft"))
    assert "not a weights-only checkpoint" in line and "weights_only` set to `False" not in line
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# -- --debug -------------------------------------------------------------------------------

def test_debug_shows_the_traceback_only_when_asked(tmp_path):
    path = _genome_file(tmp_path, '{"format": "archsearch.genome", "version": true}')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    quiet = subprocess.run([sys.executable, "-m", "archsearch", "show", path],
                           capture_output=True, text=True, env=env)
    loud = subprocess.run([sys.executable, "-m", "archsearch", "--debug", "show", path],
                          capture_output=True, text=True, env=env)
    assert quiet.returncode == loud.returncode == 2
    assert quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and "ArchsearchError" in loud.stderr
    assert loud.stderr.splitlines()[-1] == quiet.stderr.strip()


def test_internal_errors_are_one_line_exit_1(capsys, monkeypatch):
    def boom(*_a, **_k):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr("archsearch.cli.cmd_show.load_target", boom)
    capsys.readouterr()
    assert main(["show", "resnet20"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: planted" in err
    assert "--debug" in err


def test_device_files_are_not_read_forever(capsys, tmp_path, genome_doc):
    assert "larger than 16 MiB" in refused(capsys, "train", "/dev/zero", "--out",
                                           str(tmp_path / "run"))
    path = _genome_file(tmp_path, genome_doc)
    for source in ("/dev/zero", str(tmp_path)):
        assert "is not a checkpoint file" in refused(
            capsys, "train", path, "--schedule", "finetune", "--from", source, "--out",
            str(tmp_path / "ft"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]


def test_report_and_export_out_paths(capsys, tmp_path):
    assert "exists and is not a folder" in refused(capsys, "report", str(tmp_path), "--out",
                                                   "/dev/null")
    assert "cannot write in /proc" in refused(capsys, "export", str(tmp_path), "--out",
                                              "/proc/x/y")
    assert "not a search run folder" in refused(capsys, "report", str(tmp_path))

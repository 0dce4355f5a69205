"""Search runs with damaged storage, and reports read at 80 columns (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from archsearch.cli.main import main
from archsearch.errors import ArchsearchError
from archsearch.search import Search, SearchConfig, open_run, write_results
from archsearch.search._storage import check_journal
from tests.test_search_workers import FakeEvaluator

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-search")
    guide = tmp / "guide-resnet20-30pct-flops-uniform.json"
    from archsearch.budget import parse_budget
    from archsearch.build import bind

    bind("resnet20", "fashion-mnist").uniform(parse_budget("30%FLOPs")).save(guide)
    config = SearchConfig.from_flat(budget="25%FLOPs", out=str(tmp / "run"), space="resnet20",
                                    dataset="fashion-mnist", trials=5, guides=[str(guide)],
                                    early_stop="none", evaluator="proxy", final=0)
    Search(config, FakeEvaluator(epochs=2)).work()
    write_results(open_run(config.out))
    return Path(config.out)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    dst.mkdir()
    for p in run_dir.iterdir():
        if p.is_file():
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _report(capsys, run: Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["report", str(run), "--no-plots"])
    return code, capsys.readouterr().err


def test_truncated_journal_is_refused_not_read_as_empty(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    journal = run / "journal.log"
    journal.write_bytes(journal.read_bytes()[:300])
    code, err = _report(capsys, run)
    assert code == 2 and err.count("\n") == 1
    assert "journal.log is damaged: its last record is cut off at byte 300" in err
    code = main(["search", "--budget", "25%FLOPs", "--space", "resnet20", "--trials", "5",
                 "--out", str(run)])
    assert code == 2 and "is damaged" in capsys.readouterr().err


def test_journal_cut_at_a_record_boundary_is_caught_by_results(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    journal = run / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[: len(lines) // 3]))
    code, err = _report(capsys, run)
    assert code == 2 and err.count("\n") == 1 and "lost trials" in err


def test_garbage_line_in_journal(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    journal = run / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:3]) + b"{not json}\n" + b"".join(lines[3:]))
    with pytest.raises(ArchsearchError, match="line 4 is not a journal record"):
        check_journal(journal)
    with pytest.raises(ArchsearchError, match="is damaged"):
        open_run(run)


def test_intact_journal_reads_every_trial(run_dir, capsys):
    code, err = _report(capsys, run_dir)
    assert code == 0 and err == ""
    assert len(open_run(run_dir).trials()) == 5


def test_damaged_search_json(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    (run / "search.json").write_text('{"budget": "25%FLOPs", "out": 3, "trials": "x"}')
    code, err = _report(capsys, run)
    assert code == 2 and err.count("\n") == 1 and "not a search config" in err
    (run / "search.json").write_text("[" * 100_000)
    code, err = _report(capsys, run)
    assert code == 2 and err.count("\n") == 1


def test_report_is_readable_at_80_columns(run_dir):
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "archsearch", "report", str(run_dir),
                           "--no-plots"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in proc.stdout
    header = next(line for line in lines if "trial" in line and "val acc" in line)
    assert "MACs" in header and "params" in header
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 5 and all("%" in row for row in rows)
    wide = subprocess.run([sys.executable, "-m", "archsearch", "report", str(run_dir),
                           "--no-plots"], capture_output=True, text=True,
                          env={**env, "COLUMNS": "200"})
    assert "guide-resnet20-30pct-flops-uniform.json" in wide.stdout
    assert "worker" in wide.stdout and "…" not in wide.stdout


def test_spaces_table_at_80_columns():
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "archsearch", "spaces"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0 and "…" not in proc.stdout and "resnet56" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80

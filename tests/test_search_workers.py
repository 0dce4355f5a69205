"""Worker processes on one study: exactly N trials between them, kill -9 and resume, and
PostgreSQL storage. The trials use a cheap fake evaluator (a real, tiny computation on the
genome) so the process logic is what is tested; `python -m tests.test_search_workers` is
the worker these tests start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from archsearch.errors import DivergenceError
from archsearch.genome import Genome

ROOT = Path(__file__).resolve().parents[1]
SPACE = "resnet20"
BUDGET = "25%FLOPs"


class FakeEvaluator:
    """Accuracy from the genome's widths: a tiny random linear probe whose capacity grows
    with the kept channels (deterministic per genome), reported over `epochs` steps.

    Optional: `sleep` seconds per epoch (to be killed mid-trial), a `log` file that gets one
    line per evaluated trial, and `diverge(genome)` -> True to raise DivergenceError."""

    def __init__(self, epochs: int = 2, sleep: float = 0.0, log: str | None = None,
                 diverge=None) -> None:
        self.epochs, self.sleep, self.log, self.diverge = epochs, sleep, log, diverge

    def __call__(self, genome: Genome, report) -> float:
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(json.dumps({"trial": genome.provenance.get("trial"),
                                     "pid": os.getpid()}) + "\n")
        widths = torch.tensor([float(w) for _, w in sorted(genome.widths.items())])
        gen = torch.Generator().manual_seed(int(widths.sum().item()) % 10_000)
        x = torch.randn(64, len(widths), generator=gen)
        score = torch.sigmoid((x @ torch.log1p(widths)).std() / 10.0).item()
        if self.diverge is not None and self.diverge(genome):
            raise DivergenceError("loss is nan (fake)")
        for epoch in range(1, self.epochs + 1):
            if self.sleep:
                time.sleep(self.sleep)
            if report is not None:
                report(epoch, score * epoch / self.epochs)
        return score


def search_config(out: Path, trials: int, **kw):
    from archsearch.search import SearchConfig

    kw = {"evaluator": "proxy", "final": 0, **kw}  # one fidelity unless asked otherwise
    return SearchConfig.from_flat(budget=BUDGET, out=str(out), space=SPACE, dataset="fashion-mnist",
                                  trials=trials, proxy_epochs=2, **kw)


def _start_worker(out: Path, trials: int, index: int, sleep: float, log: Path,
                  storage: str | None = None, study: str | None = None,
                  plan: tuple[int, int] | None = None, slow: str = "") -> subprocess.Popen:
    """A worker process; `plan` = (screen, final) makes it a multi-fidelity search, whose
    `slow` fidelity alone sleeps (all of them without)."""
    args = [sys.executable, "-m", "tests.test_search_workers", str(out), str(trials),
            str(index), str(sleep), str(log), storage or "", study or "",
            ",".join(map(str, plan)) if plan else "", slow]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err[-3000:]}"


def _evaluated(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _check_exactly(study, trials: int) -> None:
    from archsearch.search._storage import tally

    t = study.get_trials(deepcopy=False)
    n = tally(t)
    assert n["finished"] == trials, n
    assert n["counted"] == trials and n["running"] == 0 and n["waiting"] == 0, n


@pytest.mark.slow
def test_two_workers_on_one_journal_finish_exactly_n_trials(tmp_path):
    from archsearch.search import open_run

    trials, log = 10, tmp_path / "evaluated.jsonl"
    out = tmp_path / "run"
    procs = [_start_worker(out, trials, i, 0.05, log) for i in range(2)]
    _wait(procs)
    run = open_run(out)
    _check_exactly(run.study, trials)
    done = [t for t in run.trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    evaluated = _evaluated(log)
    numbers = Counter(e["trial"] for e in evaluated)
    assert all(c == 1 for c in numbers.values()), f"a trial was evaluated twice: {numbers}"
    assert set(numbers) == {t.number for t in done}, "evaluations and finished trials differ"
    assert len({e["pid"] for e in evaluated}) == 2, "both workers should have run trials"
    assert not [t for t in run.trials() if t.state == TrialState.FAIL]


def _running_trial(out: Path, pid: int, timeout: float = 60.0, fidelity: str | None = None
                   ) -> int:
    """Wait until worker `pid` is inside a trial (of `fidelity`); its number."""
    from archsearch.search import open_run

    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "search.json").exists() and (out / "journal.log").exists():
            for t in open_run(out).study.get_trials(states=(TrialState.RUNNING,)):
                if (t.user_attrs.get("worker") or {}).get("pid") == pid and \
                        fidelity in (None, t.user_attrs.get("fidelity")):
                    return t.number
        time.sleep(0.2)
    raise AssertionError("the worker never started a trial")


@pytest.mark.slow
def test_kill_9_mid_trial_then_restart_completes_the_study(tmp_path):
    from archsearch.search import open_run

    trials, log, out = 6, tmp_path / "evaluated.jsonl", tmp_path / "run"
    victim = _start_worker(out, trials, 0, 1.0, log)
    other = _start_worker(out, trials, 1, 0.3, log)
    killed = _running_trial(out, victim.pid)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _wait([other])  # the survivor fails the dead trial, queues it again and finishes
    restarted = _start_worker(out, trials, 0, 0.0, log)  # rerun: nothing left to do
    _wait([restarted])
    run = open_run(out)
    _check_exactly(run.study, trials)
    dead = run.study.trials[killed]
    assert dead.state == TrialState.FAIL and "outcome" not in dead.user_attrs
    retries = [t for t in run.trials() if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1 and retries[0].state.is_finished()
    # queued again with the parameters it had (a kill during sampling leaves only some)
    assert all(retries[0].params[k] == v for k, v in dead.params.items())


@pytest.mark.slow
def test_rerun_after_kill_resumes(tmp_path):
    """Kill the only worker, start the same command again: the dead trial is failed and the
    study completes with exactly N trials."""
    from archsearch.search import open_run

    trials, log, out = 4, tmp_path / "evaluated.jsonl", tmp_path / "run"
    victim = _start_worker(out, trials, 0, 1.0, log)
    killed = _running_trial(out, victim.pid)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _wait([_start_worker(out, trials, 0, 0.0, log)])
    run = open_run(out)
    _check_exactly(run.study, trials)
    assert run.study.trials[killed].state == TrialState.FAIL


PLAN = (8, 2)  # multi-fidelity: 8 screened, `trials` proxy-trained, 2 final


def _check_plan(study, trials: int) -> None:
    """Exactly the plan's trials per fidelity, in order, each promoted from a finished one."""
    _check_exactly(study, PLAN[0] + trials + PLAN[1])
    counted = [t for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.FAIL or t.user_attrs.get("outcome")]
    fidelities = [t.user_attrs["fidelity"] for t in counted]
    assert Counter(fidelities) == {"screen": PLAN[0], "proxy": trials, "final": PLAN[1]}
    numbers = {t.number: t for t in study.get_trials(deepcopy=False)}
    for t in counted:
        if t.user_attrs["fidelity"] != "screen":
            assert "promoted_from" in t.user_attrs, (t.number, t.state, t.user_attrs)
            source = numbers[t.user_attrs["promoted_from"]]
            assert source.state in (TrialState.COMPLETE, TrialState.PRUNED)
            assert source.datetime_complete <= t.datetime_start


@pytest.mark.slow
def test_two_workers_multi_fidelity_finish_exactly_the_plan(tmp_path):
    from archsearch.search import open_run

    trials, log, out = 4, tmp_path / "evaluated.jsonl", tmp_path / "run"
    procs = [_start_worker(out, trials, i, 0.05, log, plan=PLAN) for i in range(2)]
    _wait(procs)
    run = open_run(out)
    _check_plan(run.study, trials)
    numbers = Counter(e["trial"] for e in _evaluated(log))
    assert sum(numbers.values()) == PLAN[0] + trials + PLAN[1]
    assert all(c == 1 for c in numbers.values()), f"a trial was evaluated twice: {numbers}"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["screen", "final"])
def test_multi_fidelity_kill_9_then_rerun_completes_the_plan(tmp_path, stage):
    """Kill the only worker inside a screen (or a final) trial, rerun: the plan completes."""
    from archsearch.search import open_run

    trials, log, out = 3, tmp_path / "evaluated.jsonl", tmp_path / "run"
    victim = _start_worker(out, trials, 0, 2.0, log, plan=PLAN, slow=stage)
    killed = _running_trial(out, victim.pid, fidelity=stage)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    _wait([_start_worker(out, trials, 0, 0.0, log, plan=PLAN)])
    run = open_run(out)
    _check_plan(run.study, trials)
    dead = run.study.trials[killed]
    assert dead.state == TrialState.FAIL and "outcome" not in dead.user_attrs
    retry = [t for t in run.trials() if t.user_attrs.get("retry_of") == killed]
    assert dead.user_attrs["fidelity"] == stage
    assert len(retry) == 1 and retry[0].user_attrs["fidelity"] == stage


def postgres_url() -> str | None:
    url = os.environ.get("ARCHSEARCH_TEST_POSTGRES")
    path = ROOT / ".ci" / ".postgres-url"
    if not url and path.is_file():
        url = path.read_text().strip()
    return url or None


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path):
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL: set ARCHSEARCH_TEST_POSTGRES=postgresql://... or run "
                    "`bash .ci/setup.sh` (which runs .ci/postgres.sh and writes .ci/.postgres-url)")
    from archsearch.errors import ArchsearchError
    from archsearch.search._storage import open_storage

    try:
        open_storage(url, tmp_path)
    except ArchsearchError as exc:
        pytest.skip(f"PostgreSQL at {url.split('@')[-1]} is not reachable: {exc}")
    import optuna

    trials, log, study = 6, tmp_path / "evaluated.jsonl", f"test-{uuid.uuid4().hex[:10]}"
    out = tmp_path / "run"
    procs = [_start_worker(out, trials, i, 0.05, log, storage=url, study=study)
             for i in range(2)]
    try:
        _wait(procs)
        loaded = optuna.load_study(study_name=study, storage=open_storage(url, tmp_path))
        _check_exactly(loaded, trials)
        evaluated = Counter(e["trial"] for e in _evaluated(log))
        assert sum(evaluated.values()) == trials and all(c == 1 for c in evaluated.values())
    finally:
        optuna.delete_study(study_name=study, storage=open_storage(url, tmp_path))


def _worker(argv: list[str]) -> None:
    from archsearch.search import Search

    out, trials, index, sleep, log, storage, study, plan, slow = argv
    kw = {}
    if plan:
        screen, final = map(int, plan.split(","))
        kw = {"evaluator": "supernet", "screen": screen, "final": final}
    config = search_config(Path(out), int(trials), storage=storage or None, study=study or None,
                           **kw)
    torch.set_num_threads(1)
    evaluator = {f: FakeEvaluator(sleep=float(sleep) if slow in ("", f) else 0.0, log=log)
                 for f in ("screen", "proxy", "final")}
    Search(config, evaluator, worker_index=int(index)).work()


if __name__ == "__main__":
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _worker(sys.argv[1:])

"""Study storage and trial bookkeeping shared by every worker of one search.

Default storage is an Optuna journal file in the run folder (safe for several processes
on one machine); an RDB URL (`postgresql://...`) lets workers on many machines join.
A trial counts towards the total unless it died with its worker (FAIL without an
`outcome`) or was started over the total in a race (`outcome="surplus"`); dead trials are
failed, then re-queued with the same parameters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from archsearch.errors import ArchsearchError
from archsearch.io import file_lock

log = logging.getLogger(__name__)

JOURNAL = "journal.log"
HEARTBEAT_S = 10
GRACE_S = 30
ORPHAN_S = 60.0  # a RUNNING trial with no worker record this old is treated as dead
WORKER_ATTR = "worker"
OUTCOME_ATTR = "outcome"
SURPLUS = "surplus"


def check_storage_url(url: str | None) -> None:
    """Raise ArchsearchError for a storage argument other than journal:PATH (a file that can
    be written) or a PostgreSQL URL. SQLite is refused: `sqlite:///` is an in-memory
    database per connection (the heartbeat thread finds no tables, and the study is gone
    when the command ends), and a SQLite file takes one writer at a time, which several
    workers with heartbeats contend for. MySQL is untested here."""
    if url is None:
        return
    if url.startswith("journal:"):
        if not url[len("journal:"):].strip():
            raise ArchsearchError(f"--storage {url!r}: name the journal file, journal:PATH")
        _check_journal_path(Path(url[len("journal:"):]), url)
        return
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        raise ArchsearchError(
            "--storage sqlite is not supported: sqlite:/// keeps the study in memory (lost "
            "when the command ends) and a SQLite file takes one writer at a time, which the "
            "workers of a search and their heartbeats contend for ('database is locked'); "
            "use the default journal file (safe for several workers on one machine), "
            "journal:PATH, or postgresql://user@host/db")
    if scheme != "postgresql":
        raise ArchsearchError(f"--storage must be journal:PATH or a PostgreSQL URL like "
                              f"postgresql://user@host/db, but got {_redact(url)!r}")


def _check_journal_path(path: Path, url: str) -> None:
    if path.is_dir():
        raise ArchsearchError(f"--storage {url!r}: {path} is a folder, not a journal file")
    if path.exists():
        if not path.is_file():
            raise ArchsearchError(f"--storage {url!r}: {path} is not a regular file")
        return
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".archsearch-probe-", dir=parent))
    except OSError as exc:
        raise ArchsearchError(f"--storage {url!r}: cannot write in {parent} "
                              f"({exc.strerror or exc})") from None


def open_storage(url: str | None, run_dir: Path) -> BaseStorage:
    """A journal file in `run_dir` (url None, or `journal:PATH`), else an RDB URL."""
    check_storage_url(url)
    if url is None or url.startswith("journal:"):
        path = Path(url[len("journal:"):]) if url else Path(run_dir) / JOURNAL
        path.parent.mkdir(parents=True, exist_ok=True)
        check_journal(path)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)
    url = _with_driver(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=optuna.storages
                              .RetryHeartbeatStaleTrialCallback())
    except ImportError as exc:
        raise ArchsearchError(f"storage {url.split('://')[0]} needs a driver: {exc} "
                              "(pip install 'archsearch[postgres]')") from None
    except Exception as exc:  # sqlalchemy OperationalError and friends: unreachable server
        raise ArchsearchError(f"cannot open storage {_redact(url)}: "
                              f"{str(exc).splitlines()[0]}") from None


def check_journal(path: Path, settle_s: float = 0.5) -> None:
    """Raise ArchsearchError if the journal file is damaged: a record cut off (the file
    was truncated, or copied while written) or a line that is not JSON. A record being
    appended right now is given `settle_s` to complete."""
    import json

    try:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            time.sleep(settle_s)
            data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ArchsearchError(f"cannot read the study journal {path}: "
                              f"{exc.strerror or exc}") from None
    if data and not data.endswith(b"\n"):
        raise ArchsearchError(f"the study journal {path} is damaged: its last record is cut "
                              f"off at byte {len(data)} (truncated, or copied while being "
                              "written); restore it from a copy, or start over in another "
                              "--out")
    for number, line in enumerate(data.splitlines(), 1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise ArchsearchError(f"the study journal {path} is damaged: line {number} is "
                                  "not a journal record; restore it from a copy, or start "
                                  "over in another --out")


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; use psycopg2 when only it is
    installed (the `postgres` extra installs psycopg2-binary)."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _redact(url: str) -> str:
    head, _, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if head else url


def is_journal(storage: BaseStorage) -> bool:
    return isinstance(storage, JournalStorage)


# -- workers -----------------------------------------------------------------------------
def _proc_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) from /proc, None if gone/zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def worker_record() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid)}


def worker_alive(record: dict[str, Any]) -> bool | None:
    """True/False for a worker on this host, None when it lives elsewhere (unknowable)."""
    if record.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = _proc_start(int(record["pid"]))
    return start is not None and (record.get("start") in (None, start))


@contextlib.contextmanager
def claim_lock(run_dir: Path, enabled: bool) -> Iterator[None]:
    """Exclusive lock for checking the count and creating a trial (journal storage)."""
    if not enabled:
        yield
        return
    with file_lock(Path(run_dir) / "claim.lock"):
        yield


# -- bookkeeping -------------------------------------------------------------------------
def counts(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards the search's total."""
    if trial.state == TrialState.FAIL:
        outcome = trial.user_attrs.get(OUTCOME_ATTR)
        return outcome is not None and outcome != SURPLUS
    return True


def finished(trial: FrozenTrial) -> bool:
    return trial.state.is_finished() and counts(trial)


def tally(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """counted (running/waiting included), finished and waiting trials."""
    return {"counted": sum(counts(t) for t in trials),
            "finished": sum(finished(t) for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials)}


def rank(trials: Sequence[FrozenTrial], number: int) -> int:
    """How many counted trials precede trial `number` (its place in the total)."""
    return sum(counts(t) for t in trials if t.number < number)


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker died and queue their parameters again.

    Journal storage: the worker's pid on this host is gone. RDB storage: Optuna's
    heartbeat (`optuna.storages.fail_stale_trials`, which re-queues via its callback).
    """
    storage = study._storage
    if not is_journal(storage):
        optuna.storages.fail_stale_trials(study)
        return []
    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = trial.user_attrs.get(WORKER_ATTR)
        if record is None:
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            dead = now - started > ORPHAN_S
        else:
            dead = worker_alive(record) is False
        if dead and _fail(storage, trial):
            failed.append(trial.number)
            _requeue(study, trial)
    if failed:
        log.warning("trials %s died with their worker: marked failed and queued again", failed)
    return failed


def _fail(storage: BaseStorage, trial: FrozenTrial) -> bool:
    try:
        return bool(storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    attrs = {k: v for k, v in trial.user_attrs.items() if k != WORKER_ATTR}
    attrs["retry_of"] = trial.number
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=attrs))

"""Atomic writes (a temp file in the same folder, fsync, then rename over the target) and
the one inter-process file lock (`file_lock`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"
STALE_S = 600.0  # a temp file without a writer pid, untouched this long, is a leftover
_TMP_PID = re.compile(r"^\..+\.([0-9a-f]{8})p(\d+)-[^.]+\.tmp$")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _writer_tag() -> str:
    """Who writes a temp file: host hash and pid (so a leftover can be told from a write
    in progress, also in a folder shared between machines)."""
    return f"{_host_tag()}p{os.getpid()}"


def _atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_writer_tag()}-", suffix=TMP_SUFFIX,
                               dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created, with its folder, if missing) for the
    block: the one lock between processes sharing a run folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_dir() -> Path:
    """Where archsearch caches what it can rebuild (decoded datasets, latency tables):
    $ARCHSEARCH_CACHE, else $XDG_CACHE_HOME/archsearch, else ~/.cache/archsearch."""
    explicit = os.environ.get("ARCHSEARCH_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "archsearch"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> Path:
    import torch

    return _atomic(path, lambda fh: torch.save(obj, fh))


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line and fsync (a line is either whole or absent after a kill)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files of atomic writes in `folder` that were interrupted (their
    writer on this host, named in the file name, is dead; any other temp file once it has
    not been touched for STALE_S). A write in progress by a live process is left alone."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).glob(f".*{TMP_SUFFIX}"))
    except OSError:
        return removed
    now = time.time()
    for path in entries:
        match = _TMP_PID.match(path.name)
        try:
            if match and match[1] == _host_tag():
                pid = int(match[2])
                if pid == os.getpid() or _writer_alive(pid):
                    continue
            elif now - path.stat().st_mtime < STALE_S:
                continue
            path.unlink()
            removed.append(path)
        except (OSError, ValueError):
            continue
    return removed

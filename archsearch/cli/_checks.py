"""Checks every command shares, run before the command does anything: numbers that are
finite and in range, output paths that can be written, negative values of options.

Everything here raises ArchsearchError (one line, exit 2) and writes nothing.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import tempfile
from pathlib import Path

from archsearch.errors import ArchsearchError

INT_LIMIT = 2**31 - 1  # no count, epoch, batch size or seed of this tool is larger
_NEGATIVE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_numbers(args: argparse.Namespace) -> None:
    """Every numeric option finite, integers within INT_LIMIT, seeds non-negative."""
    for dest, value in vars(args).items():
        if isinstance(value, bool):
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ArchsearchError(f"{_flag(dest)} must be a finite number, but got {v}")
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_LIMIT:
                raise ArchsearchError(f"{_flag(dest)} is out of range: {v} (at most "
                                      f"{INT_LIMIT})")
        if dest == "seed" and isinstance(value, int) and value < 0:
            raise ArchsearchError(f"{_flag(dest)} must be >= 0, but got {value}")


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings (of the parser and its sub-commands) that take a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--budget -5%FLOPs` → `--budget=-5%FLOPs`, so that argparse hands the value to the
    option (and its check says what is wrong with it) instead of reading an option."""
    options = _value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if (token in options and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1])):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def os_error_line(exc: OSError) -> str:
    """An OSError as one line naming the file: 'cannot write X: No space left on device'."""
    what = exc.strerror or str(exc) or type(exc).__name__
    name = exc.filename
    if name is None:
        return what
    verb = "write" if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT) else "use"
    return f"cannot {verb} {name}: {what}"


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _writable_folder(folder: Path, what: str) -> None:
    """Probe by creating (and removing) a folder: permissions, read-only mounts, /proc."""
    if not folder.is_dir():
        raise ArchsearchError(f"{what}: {folder} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".archsearch-probe-", dir=folder))
    except OSError as exc:
        raise ArchsearchError(f"{what}: cannot write in {folder} "
                              f"({exc.strerror or exc})") from None


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """A run folder that is (or can be created as) a writable folder."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise ArchsearchError(f"{flag} {path} exists and is not a folder: pass a folder "
                                  "(it is created if missing)")
        _writable_folder(path, f"{flag} {path}")
        return path
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ArchsearchError(f"{flag} {path}: {base} is not a folder")
    _writable_folder(base, f"{flag} {path}")
    return path


def check_out_file(path: str | Path, flag: str) -> Path:
    """A file to (over)write: not a folder, in a writable (or creatable) folder."""
    path = Path(path)
    if path.is_dir():
        raise ArchsearchError(f"{flag} {path} is a folder: pass a file name")
    if path.exists() and not path.is_file():
        raise ArchsearchError(f"{flag} {path} is not a regular file")
    check_out_dir(path.parent if str(path.parent) else Path("."), flag)
    return path

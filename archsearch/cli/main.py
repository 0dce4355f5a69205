"""The `archsearch` command line: one sub-command per module in COMMANDS.

Each command module `cmd_NAME` is documented by its docstring (the first line is the short
help, the rest `archsearch NAME --help`'s description), adds its flags in
`add_arguments(parser)`, and `run(args)` returns an exit code. Library errors become exit
codes only here: bad input and a broken environment (an unwritable path, a full disk) print
one line and exit 2; anything else is an internal error (one line, exit 1); `--debug` shows
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings

from archsearch import __version__
from archsearch.cli._args import add_command
from archsearch.cli._checks import check_numbers, join_negative_values, os_error_line
from archsearch.errors import ArchsearchError, DivergenceError

COMMANDS = [
    "archsearch.cli.cmd_spaces",
    "archsearch.cli.cmd_datasets",
    "archsearch.cli.cmd_show",
    "archsearch.cli.cmd_discover",
    "archsearch.cli.cmd_rethink",
    "archsearch.cli.cmd_train",
    "archsearch.cli.cmd_search",
    "archsearch.cli.cmd_export",
    "archsearch.cli.cmd_report",
]

MAC_NOTE = (
    "FLOPs in archsearch means multiply-accumulates (MACs), the convention of "
    "Liu et al. 2019 and Li et al. 2017: ResNet-56 on CIFAR-10 costs about 1.25e8."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every bad input
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="archsearch",
        description="Network pruning as architecture search. " + MAC_NOTE,
    )
    parser.add_argument("--version", action="version", version=f"archsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the Python traceback (and warnings)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        add_command(sub, importlib.import_module(name))
    return parser


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "(no message)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:  # a usage error (or --help) exits inside argparse: return its code instead
        args = parser.parse_args(join_negative_values(
            parser, list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    with warnings.catch_warnings():
        if not (args.debug or args.verbose):
            warnings.simplefilter("ignore")
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    def fail(prefix: str, message: object, code: int) -> int:
        if args.debug:
            traceback.print_exc()
        print(f"archsearch: {prefix}: {_one_line(message)}", file=sys.stderr)
        return code

    try:
        check_numbers(args)
        return int(args.func(args) or 0)
    except ArchsearchError as exc:
        return fail("error", exc, 2)
    except DivergenceError as exc:
        return fail("diverged", exc, 3)
    except KeyboardInterrupt:
        return fail("interrupted", "stopped by the user", 130)
    except OSError as exc:  # the environment: an unwritable path, a full disk, a bad mount
        return fail("error", os_error_line(exc), 2)
    except RecursionError:
        return fail("error", "input nested too deeply to read", 2)
    except MemoryError:
        return fail("error", "out of memory (is an input far larger than it should be?)", 2)
    except Exception as exc:  # noqa: BLE001 (the last line of defence: no traceback)
        return fail("internal error", f"{type(exc).__name__}: {exc} (rerun with --debug "
                    "for the traceback, and please report it)", 1)


if __name__ == "__main__":
    sys.exit(main())

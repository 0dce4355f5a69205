"""The `archsearch` command line: one sub-command per module in COMMANDS.

Each command module exposes `add_parser(subparsers)` (which sets `func`) and the
function itself returns an exit code. Library errors become exit codes only here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from archsearch import __version__
from archsearch.errors import ArchsearchError, DivergenceError

COMMANDS = [
    "archsearch.cli.cmd_spaces",
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
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="archsearch",
        description="Network pruning as architecture search. " + MAC_NOTE,
    )
    parser.add_argument("--version", action="version", version=f"archsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ArchsearchError as exc:
        print(f"archsearch: error: {exc}", file=sys.stderr)
        return 2
    except DivergenceError as exc:
        print(f"archsearch: diverged: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("archsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

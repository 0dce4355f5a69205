"""Shared CLI helpers: resolving a space-or-genome argument, formatting, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from archsearch.build import BoundSpace, bind
from archsearch.genome import Genome

console = Console()
err_console = Console(stderr=True)


def looks_like_file(arg: str) -> bool:
    return arg.endswith(".json") or (Path(arg).is_file() and not arg.endswith(".toml"))


def load_target(arg: str, dataset: str | None, input_size: int | None = None
                ) -> tuple[BoundSpace, Genome | None]:
    """A space name or file, or a genome file (validated against its space and dataset)."""
    if looks_like_file(arg):
        genome = Genome.load(arg)
        bound = bind(genome.space, dataset or genome.dataset, input_size=input_size)
        bound.validate(genome)
        return bound, bound.with_cost(genome)
    return bind(arg, dataset, input_size=input_size), None


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")

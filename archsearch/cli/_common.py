"""Shared CLI helpers: resolving a space-or-genome argument, formatting, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from archsearch.build import BoundSpace, bind, bind_genome
from archsearch.genome import Genome

console = Console()
err_console = Console(stderr=True)


def looks_like_file(arg: str) -> bool:
    """A genome file (a space may be given as a path too: NAME.toml)."""
    return not arg.endswith(".toml") and (arg.endswith(".json") or Path(arg).is_file())


def load_target(arg: str, dataset: str | None, input_size: int | None = None
                ) -> tuple[BoundSpace, Genome | None]:
    """A space name or file, or a genome file (validated against its space and dataset, at
    its recorded input size)."""
    if looks_like_file(arg):
        genome = Genome.load(arg)
        bound = bind_genome(genome, dataset, input_size, source=arg)
        bound.validate(genome)
        return bound, bound.with_cost(genome)
    return bind(arg, dataset, input_size=input_size), None


def data_lines(splits: Any, genome: Genome | None = None, source: str = "the genome"
               ) -> list[str]:
    """What a run should say about its data: the notes of loading (converted or resized
    images) and, for a genome made on other files, that its dataset changed since."""
    lines = [f"note: {note}" for note in splits.notes]
    made = genome.provenance.get("dataset_fingerprint") if genome is not None else None
    if made and splits.fingerprint and made != splits.fingerprint:
        lines.append(f"warning: the dataset {splits.info.key} changed since {source} was made "
                     f"(fingerprint {made}, now {splits.fingerprint}): its files were added, "
                     "removed or resized")
    return lines


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def emit(doc: Any, as_json: bool, render: Callable[[Any], None]) -> int:
    """A command's result: JSON on stdout (--json), else rendered for a person; exit 0."""
    if as_json:
        print_json(doc)
    else:
        render(doc)
    return 0


def fit_columns(columns: Sequence[str], rows: Sequence[Mapping[str, str]], width: int,
                drop_order: Sequence[str]) -> list[str]:
    """The columns (in their order) that fit `width` terminal columns at their natural
    width (no cell cut to an ellipsis): columns are dropped in `drop_order` until they do.
    Widths count rich's box: one border between columns and one space of padding each side."""
    natural = {c: max([len(c), *(len(r.get(c, "")) for r in rows)]) for c in columns}
    keep = list(columns)
    for name in [*drop_order, None]:
        if sum(natural[c] + 3 for c in keep) + 1 <= width or name is None:
            break
        if name in keep and len(keep) > 1:
            keep.remove(name)
    return keep

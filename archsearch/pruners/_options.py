"""A pruner's settings, declared once by the pruner (`OPTIONS`): what each means and how its
value is read from text. The default is the constructor's (read from its signature), so it
is written in one place; the CLI builds its flags from these declarations."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One keyword of a pruner's constructor. `parse` turns the text of a flag into a value
    (ValueError on bad text); `repeat`: the flag may be given several times (a list);
    `flag` is the command-line flag when it is not `--name` with dashes; `training` False:
    the option acts only when the genome is cut from trained scores (a trained model may be
    cut again with another value)."""

    name: str
    help: str
    parse: Callable[[str], Any] = float
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    repeat: bool = False
    flag: str = ""
    training: bool = True

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def option_defaults(cls: type) -> dict[str, Any]:
    """The default of each option `cls` declares, from its constructor's signature."""
    params = inspect.signature(cls.__init__).parameters
    return {o.name: params[o.name].default for o in getattr(cls, "OPTIONS", ())}


def ratios(text: str) -> list[float]:
    """`0.5,0.75,1` → [0.5, 0.75, 1.0]."""
    try:
        return [float(r) for r in text.split(",")]
    except ValueError:
        raise ValueError(f"numbers separated by commas, but got {text!r}") from None


def count(text: str) -> int:
    """An integer (the pruner checks its range)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"an integer, but got {text!r}") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"a number, but got {text!r}") from None


def boolean(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in value:
        raise ValueError(f"true or false, but got {text!r}")
    return value[text.lower()]


MIN_KEEP_OPTION = Option(
    "min_keep", "no group below this share of its base width unless its scores are zeros",
    number, metavar="SHARE", training=False)
CUTS = ("global", "cost", "base-cost")
CUT_OPTION = Option(
    "cut", "how the ranked scores meet the budget: 'global', one threshold over every group "
    "(the paper's); 'cost', channels go in order of score per unit of the budget's cost (a "
    "greedy knapsack: a cheap channel stays on a lower score than a costly one), priced at "
    "the widths of the moment; 'base-cost', the same priced once at the base widths",
    str, metavar="CUT", choices=CUTS, training=False)
STREAM_VALUES = ("max", "sum")
STREAM_VALUE_OPTION = Option(
    "stream_value", "what the cost cut values a channel of a coupled group (a residual "
    "stream, one BatchNorm per block writing it) at: 'max', its largest |gamma| (the global "
    "threshold's score); 'sum', its |gamma| summed over the group's BatchNorms, as its cost "
    "is summed over every conv it feeds or is fed by", str, metavar="HOW",
    choices=STREAM_VALUES, training=False)
STAGE_RATIOS_OPTION = Option(
    "stage_ratios", "relative keep ratio per stage (e.g. 0.5,0.75,1), scaled together onto "
    "the budget (default: uniform)", ratios, metavar="R1,R2,...")
DECAY_OPTION = Option(
    "decay", "running-mean decay of the statistics per step (1: the plain mean)", number)

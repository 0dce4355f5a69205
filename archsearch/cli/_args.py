"""Building the commands' parsers, each default written once: a command's header, the flags
commands share, flags generated from a config dataclass's fields (their defaults and types
are the dataclass's), and a pruner's declared options (`archsearch.pruners.Option`)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from types import ModuleType
from typing import Any

from archsearch.data import DATASETS
from archsearch.errors import ArchsearchError

SHARED: dict[str, dict[str, Any]] = {
    "dataset": {"help": f"dataset whose images and shapes to use: a known name "
                        f"({', '.join(DATASETS)}), an image folder DIR (train/<class>/… and "
                        "test/<class>/…) or a dataset .toml file (`archsearch datasets`); "
                        "default: the genome's, else the space's"},
    "data_root": {"help": "where the dataset files are (else $ARCHSEARCH_DATA, then "
                          "/usr/share/datasets)"},
    "input_size": {"type": int, "metavar": "PIXELS",
                   "help": "image size the model is built, costed and trained at (the images "
                           "are resized to it; default: the space's [dataset] size, else the "
                           "dataset's)"},
    "out": {"help": "run folder (default: a new one under runs/, named after the run)"},
    "resume": {"action": "store_true", "help": "continue the run in --out"},
    "json": {"action": "store_true", "help": "machine-readable output on stdout"},
    "fast": {"action": argparse.BooleanOptionalAction, "default": True,
             "help": "train through the fast path (folded narrow BatchNorm, allocator, foreach "
                     "SGD; bench/results/throughput_cifar10.md); --no-fast: the plain path "
                     "(default: fast)"},
    "run": {"positional": True, "metavar": "RUN",
            "help": "a search run folder (the --out of search)"},
}


def add_command(sub: argparse._SubParsersAction, module: ModuleType) -> None:
    """The sub-command of a `cmd_NAME` module: the first line of its docstring is the short
    help, the rest the description; `add_arguments(parser)` adds its flags and `run(args)`
    runs it."""
    short, _, description = inspect.cleandoc(module.__doc__ or "").partition("\n\n")
    short = short.rstrip(".")
    parser = sub.add_parser(module.__name__.rpartition(".cmd_")[2],
                            help=(short[:1].lower() + short[1:]).replace("%", "%%"),
                            description=" ".join(description.split()).replace("%", "%%"))
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def add_shared(parser: argparse.ArgumentParser, *names: str, **helps: str) -> None:
    """The flags of SHARED named (`helps` replaces a flag's help text)."""
    for name in names:
        spec = dict(SHARED[name])
        if name in helps:
            spec["help"] = helps[name]
        parser.add_argument(name if spec.pop("positional", False) else _flag(name), **spec)


def count_or_fraction(text: str) -> float | int:
    """`5000` → 5000 images, `0.2` → a fifth of them."""
    try:
        return int(text) if re.fullmatch(r"\d+", text) else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction or a count: {text!r}") from None


_PARSERS: dict[frozenset[str], Callable[[str], Any]] = {
    frozenset({"int"}): int, frozenset({"float"}): float, frozenset({"str"}): str,
    frozenset({"float", "int"}): count_or_fraction,
}


def add_fields(parser: argparse.ArgumentParser, config: type, helps: Mapping[str, str], *,
               types: Mapping[str, Callable[[str], Any]] | None = None,
               choices: Mapping[str, Collection[str]] | None = None,
               metavars: Mapping[str, str] | None = None,
               unset: Collection[str] = ()) -> list[str]:
    """A flag `--name` per field of the dataclass `config` in `helps`: its default is the
    field's (shown in the help), its type read from the field's annotation (`types` replaces
    it; a bool is a switch). A field in `unset` defaults to None: its value comes from
    elsewhere (a preset), as its help says. Returns the field names."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for name, text in helps.items():
        field = fields[name]
        default = None if name in unset else _default(field)
        text = text.replace("%", "%%")
        kind = (types or {}).get(name) or _parser_for(field.type)
        if kind is bool:
            parser.add_argument(_flag(name), action="store_true", help=text)
            continue
        spec: dict[str, Any] = {"type": kind, "default": default,
                                "help": text if default in (None, ()) else
                                f"{text} (default {_shown(default)})"}
        if choices and name in choices:
            spec["choices"] = list(choices[name])
        if metavars and name in metavars:
            spec["metavar"] = metavars[name]
        parser.add_argument(_flag(name), **spec)
    return list(helps)


def field_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names}


def add_pruner_options(parser: argparse.ArgumentParser, classes: Mapping[str, type]) -> None:
    """One flag per option the pruning methods declare (in their order), grouped under the
    methods that take it, with each method's default; unset flags are None."""
    from archsearch.pruners import option_defaults

    for option, takers in _declared(classes).items():
        defaults = {m: option_defaults(classes[m])[option.name] for m in takers}
        shown = {_shown(d) for d in defaults.values() if d not in (None, ())}
        text = f"{', '.join(takers)}: {option.help}"
        if shown:
            text += (f" (default {shown.pop()})" if len(shown) == 1 else " (default " + "; ".join(
                f"{m} {_shown(d)}" for m, d in defaults.items()) + ")")
        parser.add_argument(option.cli_flag, dest=option.name, type=_text_parser(option),
                            metavar=option.metavar, help=text.replace("%", "%%"),
                            action="append" if option.repeat else "store",
                            **({"choices": list(option.choices)} if option.choices else {}))


def pruner_options(args: argparse.Namespace, method: str, classes: Mapping[str, type]
                   ) -> dict[str, Any]:
    """The options given for `method`; one of another method is refused in one line."""
    opts: dict[str, Any] = {}
    for option, takers in _declared(classes).items():
        value = getattr(args, option.name, None)
        if value is None:
            continue
        if method not in takers:
            raise ArchsearchError(f"{option.cli_flag} applies to {', '.join(takers)}, not "
                                  f"{method!r}")
        opts[option.name] = value
    return opts


def _declared(classes: Mapping[str, type]) -> dict[Any, list[str]]:
    """Each declared option (by name, first declaration) → the methods that take it."""
    first: dict[str, Any] = {}
    takers: dict[str, list[str]] = {}
    for method, cls in classes.items():
        for option in getattr(cls, "OPTIONS", ()):
            first.setdefault(option.name, option)
            takers.setdefault(option.name, []).append(method)
    return {first[name]: methods for name, methods in takers.items()}


def _text_parser(option: Any) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected {exc}" if str(exc) else
                                             f"invalid value {text!r}") from None
    return parse


def _parser_for(annotation: object) -> Callable[[str], Any] | type[bool]:
    names = frozenset(part.strip() for part in str(annotation).split("|")) - {"None"}
    if names == {"bool"}:
        return bool
    if names not in _PARSERS:
        raise TypeError(f"no flag type for a field annotated {annotation!r}: pass types=")
    return _PARSERS[names]


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")

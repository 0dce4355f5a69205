"""Model families: each builds its base model and declares the `[model]` arguments it takes.

A space file names a family and its arguments; `family_args` checks them (before any model
is built) and `build_family` builds the model for a dataset's channels, classes and input
size. Adding a family is one `Family` entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.errors import ArchsearchError
from archsearch.models._cifar import VGG, PreResNet, ResNetCifar
from archsearch.models._external import (
    PYTHON_DOC,
    build_python,
    build_timm,
    check_python,
    check_timm,
)
from archsearch.models._torchvision import build_torchvision

MAX_WIDTH = 8192  # channels of one layer; wider base models are not what spaces are for

Check = Callable[[dict[str, Any], Path | None], dict[str, Any]]


def _any(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    return args


@dataclass(frozen=True)
class Family:
    """A model family: `build(in_channels, num_classes, input_hw, **args)` makes the base
    model; `check(args, base_dir)` validates a space's `[model]` arguments (raising
    ArchsearchError naming the value) and returns them resolved (paths against `base_dir`,
    the space file's folder); `keys` are the arguments it takes (None: any, passed on to a
    builder that checks its own); `doc` says in one line what it needs."""

    name: str
    build: Callable[..., nn.Module]
    check: Check = _any
    keys: frozenset[str] | None = None
    doc: str = ""


def _widths(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_WIDTH for w in value)


def _check_vgg(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    cfg = args.get("cfg")
    if not isinstance(cfg, list) or not cfg or not all(
            c == "M" or _widths([c]) for c in cfg) or "M" == cfg[0]:
        raise ArchsearchError(f"vgg 'cfg' must list widths (whole numbers 1..{MAX_WIDTH}) and "
                              f"\"M\" (max-pool) entries, starting with a width, but got {cfg!r}")
    return args


def _check_resnet(family: str, n: int) -> Check:
    def check(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
        depth = args.get("depth")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < n + 2 \
                or (depth - 2) % n or depth > 2000:
            raise ArchsearchError(f"{family} 'depth' must be {n}n+2 (n >= 1), but got {depth!r}")
        if "widths" in args and not (_widths(args["widths"]) and len(args["widths"]) == 3):
            raise ArchsearchError(f"{family} 'widths' must be three whole numbers "
                                  f"1..{MAX_WIDTH}, but got {args['widths']!r}")
        return args
    return check


def _check_torchvision(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    if not isinstance(args.get("name"), str):
        raise ArchsearchError("torchvision spaces need [model] name = \"<torchvision model "
                              "name>\"")
    return args


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("vgg", lambda in_channels, num_classes, cfg, input_hw=None:
           VGG(cfg, in_channels, num_classes), _check_vgg, frozenset({"cfg"}),
           "cfg = [64, \"M\", 128, ...]"),
    Family("resnet_cifar", lambda in_channels, num_classes, depth, widths=(16, 32, 64),
           input_hw=None: ResNetCifar(depth, in_channels, num_classes, widths),
           _check_resnet("resnet_cifar", 6), frozenset({"depth", "widths"}),
           "depth = 6n+2, widths = [16, 32, 64]"),
    Family("preresnet", lambda in_channels, num_classes, depth, widths=(16, 32, 64),
           input_hw=None: PreResNet(depth, in_channels, num_classes, widths),
           _check_resnet("preresnet", 9), frozenset({"depth", "widths"}),
           "depth = 9n+2, widths = [16, 32, 64]"),
    Family("torchvision", build_torchvision, _check_torchvision, None,
           "name = \"<torchvision model>\", other keys to its builder"),
    Family("timm", build_timm, check_timm, None,
           "name = \"<timm model>\", other keys to timm.create_model (pip install "
           "'archsearch[timm]')"),
    Family("python", build_python, check_python, None, PYTHON_DOC),
)}


def family_args(family: str, args: Mapping[str, Any], base_dir: Path | None = None
                ) -> dict[str, Any]:
    """A space's `[model]` arguments checked against its family (ArchsearchError naming the
    value otherwise) and resolved (a builder file's path against `base_dir`)."""
    if family not in FAMILIES:
        raise ArchsearchError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    spec = FAMILIES[family]
    args = spec.check(dict(args), base_dir)
    extra = set(args) - spec.keys if spec.keys is not None else set()
    if extra:
        raise ArchsearchError(f"unknown [model] argument(s) {sorted(extra)} for family "
                              f"{family!r}")
    return args


def build_family(family: str, in_channels: int, num_classes: int, input_hw: int | None = None,
                 **args: Any) -> nn.Module:
    """A family's base model; `input_hw` is the input size, for builders that fix one."""
    if family not in FAMILIES:
        raise ArchsearchError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        return FAMILIES[family].build(in_channels=in_channels, num_classes=num_classes,
                                      input_hw=input_hw, **args)
    except TypeError as exc:
        raise ArchsearchError(f"bad arguments for model family {family!r}: {exc}") from exc
    except (ValueError, AssertionError, RuntimeError) as exc:  # e.g. ViT: size vs patch
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ArchsearchError(f"cannot build the {family!r} model {args.get('name', '')} at "
                              f"input size {input_hw}: {lines[0] if lines else exc!r}") from exc

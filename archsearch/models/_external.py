"""Families whose models come from outside archsearch: a user's Python builder, and timm.

`family = "python"`, `builder = "path/to/file.py:make_net"` (a path relative to the space
file, or absolute) or `"package.module:make_net"`: the function is called with the other
`[model]` keys as keyword arguments, plus the dataset's `in_channels`, `num_classes` and
`input_size` for those its signature takes, and returns an `nn.Module`.

`family = "timm"`, `name = "resnet18d"`: `timm.create_model(name, pretrained=False, ...)`
with the dataset's channels and classes (and `img_size` for models whose input size is fixed,
such as ViT); other `[model]` keys go to `create_model`. timm is an optional extra
(`pip install 'archsearch[timm]'`); nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from archsearch.errors import ArchsearchError

_log = logging.getLogger(__name__)

PYTHON_DOC = ("builder = \"file.py:make_net\" or \"package.module:make_net\", other keys to it "
              "as keyword arguments")
# what a builder is told about the dataset, by keyword, when its signature takes it
DATASET_KWARGS = ("in_channels", "num_classes", "input_size")
TIMM_MISSING = "model family 'timm' needs the timm package: pip install 'archsearch[timm]'"
# timm arguments archsearch sets itself (from the dataset; no pretrained weights: no network)
TIMM_OWN = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
            "num_classes", "in_chans")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _split(spec: Any) -> tuple[str, str]:
    """`target:function` of a builder spec (a file path may hold a drive letter's colon)."""
    target, _, name = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
    if not target or not name.isidentifier():
        raise ArchsearchError(f"python spaces need [model] builder = \"file.py:function\" or "
                              f"\"package.module:function\", but got builder={spec!r}"[:300])
    return target, name


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def check_python(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """The builder named and found (a file: its path made absolute, against the space file's
    folder `base_dir` when relative); no argument that the dataset sets."""
    target, name = _split(args.get("builder"))
    clash = sorted(set(args) & set(DATASET_KWARGS))
    if clash:
        raise ArchsearchError(f"[model] argument(s) {clash} of a python space come from the "
                              "dataset; leave them out")
    if _is_file(target):
        path = Path(target).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ArchsearchError(f"builder file not found: {path}")
        return {**args, "builder": f"{path.resolve()}:{name}"}
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        raise ArchsearchError(f"builder module {target!r} cannot be found: "
                              f"{_first_line(exc)}") from None
    if found is None:
        raise ArchsearchError(f"builder module {target!r} not found (not importable from "
                              "here; a file is named by its path, file.py:function)")
    return args


def load_builder(spec: str) -> Callable[..., Any]:
    """The function a builder spec names (its file or module imported)."""
    target, name = _split(spec)
    module = _load_file(Path(target)) if _is_file(target) else _import(target)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ArchsearchError(f"builder {spec}: {target} has no function {name!r}")
    return fn


def _import(target: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except Exception as exc:  # a user's module may raise anything on import
        raise ArchsearchError(f"builder module {target!r} cannot be imported: "
                              f"{_first_line(exc)}") from None


def _load_file(path: Path) -> ModuleType:
    """The builder file as a module (imported once per version of the file), its folder on
    `sys.path` while it imports, so that it can import the modules beside it."""
    if not path.is_file():
        raise ArchsearchError(f"builder file not found: {path}")
    path = path.resolve()
    key = "archsearch_builder_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    stamp = path.stat().st_mtime_ns
    cached = sys.modules.get(key)
    if cached is not None and getattr(cached, "__archsearch_stamp__", None) == stamp:
        return cached
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ArchsearchError(f"builder file {path} cannot be imported (not a Python file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses and pickling look classes up here
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SyntaxError, SystemExit, anything a user's file raises
        sys.modules.pop(key, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ArchsearchError(f"builder file {path} fails on import: "
                              f"{_first_line(exc)}") from None
    finally:
        sys.path.remove(str(path.parent))
    vars(module)["__archsearch_stamp__"] = stamp
    return module


def _dataset_kwargs(fn: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    """The dataset's facts that `fn` takes by name (all of them if it takes **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: tell it everything
        return values
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return values
    return {k: v for k, v in values.items() if k in params}


def build_python(in_channels: int, num_classes: int, input_hw: int | None = None, *,
                 builder: str, **kwargs: Any) -> nn.Module:
    """The model a user's builder returns (see the module doc)."""
    fn = load_builder(builder)
    given = _dataset_kwargs(fn, {"in_channels": in_channels, "num_classes": num_classes,
                                 "input_size": input_hw})
    if "num_classes" not in given:
        _log.warning("builder %s does not take num_classes: its output must already have "
                     "the dataset's %d classes", builder, num_classes)
    try:
        model = fn(**kwargs, **given)
    except Exception as exc:  # a user's builder may raise anything
        raise ArchsearchError(f"builder {builder} raised {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ArchsearchError(f"builder {builder} returned {type(model).__name__}, not an "
                              "nn.Module")
    return model


def _timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ArchsearchError(TIMM_MISSING) from None
    return timm


def check_timm(args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """A model timm knows, and no argument that archsearch sets itself."""
    name = args.get("name")
    if not isinstance(name, str):
        raise ArchsearchError("timm spaces need [model] name = \"<timm model name>\"")
    clash = sorted(set(args) & set(TIMM_OWN))
    if clash:
        raise ArchsearchError(f"[model] argument(s) {clash} of a timm space are set by "
                              "archsearch (classes and channels from the dataset, random init, "
                              "no download); leave them out")
    if not _timm().is_model(name):
        raise ArchsearchError(f"unknown timm model {name!r} (timm.list_models() names them)")
    return args


def build_timm(in_channels: int, num_classes: int, input_hw: int | None = None, *, name: str,
               **kwargs: Any) -> nn.Module:
    """A timm model with random weights (no download) for the dataset's shapes."""
    timm = _timm()
    if not timm.is_model(name):
        raise ArchsearchError(f"unknown timm model {name!r} (timm.list_models() names them)")
    cfg = timm.models.get_pretrained_cfg(name)
    if input_hw is not None and getattr(cfg, "fixed_input_size", False):
        kwargs.setdefault("img_size", input_hw)  # ViT, Swin, ...: positions fixed by the size
    return timm.create_model(name, pretrained=False, num_classes=num_classes,
                             in_chans=in_channels, **kwargs)

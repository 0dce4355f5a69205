"""Search spaces: declarative TOML files naming a base model, a channel divisor and minimums.

A space file lives in `search_spaces/NAME.toml` (or any folder listed in
`$ARCHSEARCH_SPACES`, separated by `os.pathsep`, or given as a path). Adding a space is a
file, not code.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.data import DatasetInfo, dataset_info
from archsearch.errors import ArchsearchError
from archsearch.models import FAMILIES, build_family, family_args

REPO_SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


@dataclass(frozen=True)
class Space:
    """A base model family with its arguments, plus how widths may be chosen."""

    name: str
    family: str
    args: dict[str, Any] = field(default_factory=dict)
    divisor: int = 1
    min_width: int = 1
    default_dataset: str = "fashion-mnist"
    description: str = ""
    path: str | None = None
    input_size: int | None = None  # [dataset] size: overrides the dataset's image size

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ArchsearchError(
                f"space {self.name!r}: unknown family {self.family!r}; "
                f"known: {', '.join(FAMILIES)}")
        if self.divisor < 1:
            raise ArchsearchError(f"space {self.name!r}: divisor must be >= 1, but got "
                                  f"divisor={self.divisor}")
        if self.input_size is not None and (
                isinstance(self.input_size, bool) or not isinstance(self.input_size, int)
                or not 1 <= self.input_size <= 4096):
            raise ArchsearchError(f"space {self.name!r}: the input size ([dataset] size or "
                                  f"--input-size) must be 1..4096 pixels, not {self.input_size!r}")
        if self.min_width < 1:
            raise ArchsearchError(f"space {self.name!r}: min_width must be >= 1, but got "
                                  f"min_width={self.min_width}")

    def build(self, info: DatasetInfo | str | None = None) -> nn.Module:
        """The base model (full width, fresh initialisation) for a dataset's shapes."""
        info = self.dataset(info)
        try:
            return build_family(self.family, info.channels, info.num_classes,
                                input_hw=info.size, **self.args)
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:
            where = self.path or self.name
            raise ArchsearchError(f"space {where}: cannot build its model: {exc}") from None

    def dataset(self, info: DatasetInfo | str | None) -> DatasetInfo:
        """A dataset's shapes (by name: at this space's input size, if it sets one)."""
        if isinstance(info, DatasetInfo):
            return info
        info = dataset_info(info or self.default_dataset)
        if self.input_size is not None and self.input_size != info.size:
            info = replace(info, size=self.input_size)
        return info

    def round_width(self, width: float, base: int) -> int:
        """Round to the divisor, at least the minimum (or the base, if smaller), at most base."""
        low = min(base, self.min_width)
        rounded = int(max(self.divisor, round(width / self.divisor) * self.divisor))
        return max(low, min(base, rounded))


def _space_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("ARCHSEARCH_SPACES", "").split(os.pathsep) if p]
    return [*extra, Path.cwd() / "search_spaces", REPO_SPACES]


def space_files() -> dict[str, Path]:
    """Every space reachable by name (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in _space_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def list_spaces() -> list[Space]:
    return [load_space(str(path)) for path in space_files().values()]


def load_space(name_or_path: str) -> Space:
    """A space by name (`resnet56`) or by path to its TOML file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ArchsearchError(f"space file not found: {name_or_path}")
        return _load_space_file(str(path.resolve()))
    files = space_files()
    if name_or_path not in files:
        raise ArchsearchError(
            f"unknown space {name_or_path!r}; known spaces: {', '.join(sorted(files)) or 'none'}")
    return _load_space_file(str(files[name_or_path].resolve()))


@lru_cache(maxsize=64)
def _load_space_file(path: str) -> Space:
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ArchsearchError(f"cannot read space file {path}: {exc}") from None
    except RecursionError:
        raise ArchsearchError(f"cannot read space file {path}: nested too deeply") from None
    unknown = set(doc) - {"description", "model", "search", "dataset"}
    if unknown:
        raise ArchsearchError(f"space file {path}: unknown section(s) {sorted(unknown)}")
    model = dict(_table(doc, "model", path))
    family = model.pop("family", None)
    if not isinstance(family, str):
        raise ArchsearchError(f"space file {path}: [model] needs a 'family' (a string)")
    search = _table(doc, "search", path)
    data = _table(doc, "dataset", path)
    unknown = (set(search) - {"divisor", "min_width"}) | (set(data) - {"default", "size"})
    if unknown:
        raise ArchsearchError(f"space file {path}: unknown key(s) {sorted(unknown)} in "
                              "[search] or [dataset]")
    description = doc.get("description", "")
    default = data.get("default", "fashion-mnist")
    if not isinstance(description, str) or not isinstance(default, str):
        raise ArchsearchError(f"space file {path}: 'description' and [dataset] 'default' "
                              "must be strings")
    dataset_info(default)  # an unknown default dataset is named now, not at first use
    try:
        model = family_args(family, model, Path(path).parent)
    except ArchsearchError as exc:
        raise ArchsearchError(f"space file {path}: {exc}"[:300]) from None
    return Space(name=Path(path).stem, family=family, args=model,
                 divisor=_positive_int(search, "divisor", path),
                 min_width=_positive_int(search, "min_width", path),
                 default_dataset=default, description=description, path=path,
                 input_size=_positive_int(data, "size", path) if "size" in data else None)


def _table(doc: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ArchsearchError(f"space file {path}: '{key}' must be a table ([{key}]), but got "
                              f"{type(value).__name__}")
    return value


def _positive_int(table: dict[str, Any], key: str, path: str) -> int:
    value = table.get(key, 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**20:
        raise ArchsearchError(f"space file {path}: {key} must be a whole number >= 1, but got "
                              f"{value!r}"[:200])
    return value

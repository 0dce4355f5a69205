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
from archsearch.models import FAMILIES, build_family

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
        return build_family(self.family, info.channels, info.num_classes, input_hw=info.size,
                            **self.args)

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
        raise ArchsearchError(f"cannot read space file {path}: {exc}") from exc
    name = Path(path).stem
    model = dict(doc.get("model", {}))
    if "family" not in model:
        raise ArchsearchError(f"space file {path}: [model] needs a 'family'")
    search = doc.get("search", {})
    data = doc.get("dataset", {})
    unknown = set(doc) - {"description", "model", "search", "dataset"}
    if unknown:
        raise ArchsearchError(f"space file {path}: unknown section(s) {sorted(unknown)}")
    return Space(
        name=name,
        family=model.pop("family"),
        args=model,
        divisor=int(search.get("divisor", 1)),
        min_width=int(search.get("min_width", 1)),
        default_dataset=str(data.get("default", "fashion-mnist")),
        input_size=data.get("size"),
        description=str(doc.get("description", "")),
        path=path,
    )

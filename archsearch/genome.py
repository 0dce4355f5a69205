"""Genome: the width spec of a pruned architecture, in one versioned JSON format.

```json
{"format": "archsearch.genome", "version": 1, "space": "resnet56", "dataset": "cifar10",
 "widths": {"layer1.stream": 12, "layer1.0.conv1": 9, ...},
 "blocks": {"layer1.0": true, "layer1.1": false, ...},
 "provenance": {"method": "slimming", "budget": "50%FLOPs", "seed": 0, "source_run": "..."},
 "cost": {"macs": 62500000, "params": 420000, "macs_ratio": 0.5, "params_ratio": 0.49},
 "input_size": 40}
```
`widths` maps channel groups to kept channels (groups left out keep their base width);
`blocks` maps removable residual blocks to kept (true) or removed (false); `input_size`
(present only when the genome was made at another image size than the dataset's) is the
image size its cost was counted at and its model is built and trained at; absent, the
space's default (its `[dataset] size`, else the dataset's).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsearch.errors import ArchsearchError
from archsearch.io import atomic_write_json

FORMAT = "archsearch.genome"
VERSION = 1
MAX_BYTES = 16 << 20
_KEYS = {"format", "version", "space", "dataset", "widths", "blocks", "provenance", "cost",
         "input_size"}
MAX_INPUT_SIZE = 4096


@dataclass
class Genome:
    """Widths per channel group and kept residual blocks, with provenance and cost."""

    space: str
    widths: dict[str, int]
    blocks: dict[str, bool] = field(default_factory=dict)
    dataset: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    input_size: int | None = None  # the image size it was made at (None: the default)

    def to_dict(self) -> dict[str, Any]:
        doc = {"format": FORMAT, "version": VERSION, "space": self.space,
               "dataset": self.dataset, "widths": dict(self.widths),
               "blocks": dict(self.blocks), "provenance": dict(self.provenance),
               "cost": dict(self.cost)}
        return with_input_size(doc, self.input_size)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "genome") -> Genome:
        check_header(doc, source, "genome", FORMAT, VERSION, _KEYS)
        widths = _typed_map(doc.get("widths"), int, "widths", source)
        blocks = _typed_map(doc.get("blocks", {}), bool, "blocks", source)
        for group, width in widths.items():
            if width < 1:
                raise ArchsearchError(f"{source}: width of group {_short(group)} must be >= 1, "
                                      f"but got {width}")
        return cls(doc["space"], widths, blocks, doc.get("dataset"), _provenance(doc, source),
                   _cost(doc, source), read_input_size(doc, source))

    @classmethod
    def load(cls, path: str | Path) -> Genome:
        doc = read_json(path, "genome")
        return cls.from_dict(doc, source=str(path))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    def removed_blocks(self) -> set[str]:
        return {name for name, kept in self.blocks.items() if not kept}


def check_header(doc: Any, source: str, kind: str, fmt: str, version: int,
                 keys: set[str]) -> None:
    """What every versioned JSON document of archsearch (a genome, a sparsity genome) checks
    first: an object of format `fmt` at `version`, no unknown keys, a space name, a dataset
    name or null. One line naming `source` and the `kind` of document when it is not."""
    if not isinstance(doc, Mapping):
        raise ArchsearchError(f"{source}: a {kind} is a JSON object, but got "
                              f"{type(doc).__name__}")
    if doc.get("format") != fmt:
        raise ArchsearchError(f"{source}: not an archsearch {kind} (format="
                              f"{_short(doc.get('format'))}, expected {fmt!r})")
    found = doc.get("version")
    if type(found) is not int or found != version:
        raise ArchsearchError(f"{source}: unsupported {kind} version {_short(found)} (this "
                              f"archsearch reads {version})")
    unknown = set(doc) - keys
    if unknown:
        raise ArchsearchError(f"{source}: unknown {kind} field(s) {sorted(unknown)}")
    if not isinstance(doc.get("space"), str) or not doc["space"]:
        raise ArchsearchError(f"{source}: 'space' must be a space name")
    dataset = doc.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise ArchsearchError(f"{source}: 'dataset' must be a string or null")


def read_input_size(doc: Mapping[str, Any], source: str) -> int | None:
    """A document's optional `input_size`: None when absent, else pixels in 1..4096."""
    size = doc.get("input_size")
    if size is None:
        return None
    if type(size) is not int or not 1 <= size <= MAX_INPUT_SIZE:
        raise ArchsearchError(f"{source}: 'input_size' must be an image size in "
                              f"1..{MAX_INPUT_SIZE} pixels, but got {_short(size)}")
    return size


def with_input_size(doc: dict[str, Any], size: int | None) -> dict[str, Any]:
    """`doc` with `input_size` when there is one (files at the default size are unchanged)."""
    if size is not None:
        doc["input_size"] = size
    return doc


def read_json(path: str | Path, kind: str) -> Any:
    """The JSON document of a `kind` file (a bounded read: /dev/zero is not a genome), or
    one line saying why it cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ArchsearchError(f"{path}: larger than {MAX_BYTES >> 20} MiB, which no "
                                  f"{kind} is")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ArchsearchError(f"{kind} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchsearchError(f"cannot read {kind} file {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchsearchError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno}, "
                              f"column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ArchsearchError(f"{path}: unreadable JSON ({exc})") from None
    except RecursionError:
        raise ArchsearchError(f"{path}: JSON nested too deeply to be a {kind}") from None


def _typed_map(value: Any, kind: type, what: str, source: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ArchsearchError(f"{source}: '{what}' must be an object mapping names to values")
    out: dict[str, Any] = {}
    for key, item in value.items():
        ok = isinstance(item, kind) and (kind is bool or not isinstance(item, bool))
        if not ok:
            raise ArchsearchError(f"{source}: {what}[{_short(key)}] must be {kind.__name__}, "
                                  f"but got {_short(item)}")
        out[str(key)] = item
    return out


def _object(doc: Mapping[str, Any], key: str, source: str, what: str) -> dict[str, Any]:
    """The optional JSON object `doc[key]` ({} when absent), or one line saying it is not."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ArchsearchError(f"{source}: '{key}' must be {what}, but got "
                              f"{type(value).__name__}")
    return dict(value)


def _provenance(doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    return _object(doc, "provenance", source, "an object")


def _cost(doc: Mapping[str, Any], source: str) -> dict[str, float]:
    value = _object(doc, "cost", source, "an object of numbers")
    for key, item in value.items():
        if isinstance(key, str) and key.endswith("_device") and isinstance(item, str):
            continue  # where a measured metric was priced (latency_device)
        number = isinstance(item, int | float) and not isinstance(item, bool)
        if not number or (isinstance(item, float) and not math.isfinite(item)) or item < 0:
            raise ArchsearchError(f"{source}: cost[{_short(key)}] must be a number >= 0, "
                                  f"but got {_short(item)}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    """repr of a user's value, cut to `limit` characters (it goes into a one-line error)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Open datasets: an image folder, or a dataset file naming one, becomes a `DatasetInfo`.

`--dataset DIR` where DIR holds `train/<class>/<image>` and `test/<class>/<image>` (or
`val/`) is a dataset with no code. What a folder cannot say goes in a dataset file (TOML,
like the space files), given as `--dataset FILE.toml` or placed in the folder as
`dataset.toml`:

```toml
name = "flowers"          # default: the folder's name
path = "images"           # the folder, relative to this file (default: the file's folder)
train = "train"           # the split folders (default: train, and test or val)
test = "test"
size = 64                 # images are resized to size×size (default: the most common size)
channels = 3              # 1 or 3 (default: 3 unless every image is grayscale)
mean = [0.5, 0.5, 0.5]    # default: computed once from the training images, cached
std = [0.25, 0.25, 0.25]
in_memory = true          # default: held in memory when the decoded images fit (2 GiB)

[augment]
pad = 4                   # pad-and-crop margin (default: size / 8)
flip = true               # horizontal flips (default: true)
```
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from archsearch.data._images import Scan, cached_stats, sampled_shape, scan
from archsearch.data._info import DATASETS, DatasetInfo, Files, known_dataset
from archsearch.errors import ArchsearchError

DATASET_FILE = "dataset.toml"
IN_MEMORY_BYTES = 2 << 30  # decoded images up to this size are held in memory
_KEYS = {"name", "path", "train", "test", "size", "channels", "mean", "std", "in_memory",
         "augment", "description"}
_AUGMENT_KEYS = {"pad", "flip"}


def dataset_info(name: str) -> DatasetInfo:
    """A dataset by name (case-insensitive), or by the path of an image folder or of a
    dataset file."""
    known = known_dataset(name)
    if known is not None:
        return known
    if looks_like_path(name):
        return open_dataset(name)
    raise ArchsearchError(
        f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}, or a folder of "
        "train/<class>/<image> and test/<class>/<image> (or a dataset .toml file)")


def looks_like_path(ref: str) -> bool:
    """Whether a --dataset value names a folder or a file rather than a known dataset."""
    return ref.endswith(".toml") or os.sep in ref or ref.startswith(".") or Path(ref).is_dir()


def open_dataset(ref: str) -> DatasetInfo:
    """The dataset of an image folder or a dataset file (see the module doc)."""
    path = Path(ref).expanduser()
    if path.suffix == ".toml":
        if not path.is_file():
            raise ArchsearchError(f"dataset file not found: {ref}")
        doc = _read(path)
        root = path.parent / str(doc.get("path", "."))
    elif path.is_dir():
        root = path
        doc = _read(path / DATASET_FILE) if (path / DATASET_FILE).is_file() else {}
        if "path" in doc:
            raise ArchsearchError(f"{path / DATASET_FILE}: 'path' belongs in a dataset file "
                                  "given as --dataset FILE.toml, not in the folder's own")
    else:
        raise ArchsearchError(f"dataset folder not found: {ref}")
    return folder_info(root.resolve(), doc, str(path.resolve()))


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ArchsearchError(f"cannot read dataset file {path}: {exc}") from None
    unknown = set(doc) - _KEYS
    augment = doc.get("augment", {})
    if not isinstance(augment, dict):
        raise ArchsearchError(f"dataset file {path}: [augment] must be a table")
    unknown |= {f"augment.{k}" for k in set(augment) - _AUGMENT_KEYS}
    if unknown:
        raise ArchsearchError(f"dataset file {path}: unknown key(s) {sorted(unknown)}; known: "
                              f"{', '.join(sorted(_KEYS))} (augment: pad, flip)")
    _check_types(doc, path)
    return doc


def _check_types(doc: dict[str, Any], path: Path) -> None:
    def bad(key: str, what: str) -> ArchsearchError:
        return ArchsearchError(f"dataset file {path}: {key} must be {what}, but got "
                               f"{doc.get(key, doc.get('augment', {}).get(key))!r}")

    for key in ("name", "path", "train", "test", "description"):
        if key in doc and (not isinstance(doc[key], str) or not doc[key]):
            raise bad(key, "a non-empty string")
    if "size" in doc and not (_is_int(doc["size"]) and 1 <= doc["size"] <= 4096):
        raise bad("size", "an image size in 1..4096 pixels")
    if "channels" in doc and doc["channels"] not in (1, 3) or isinstance(doc.get("channels"),
                                                                         bool):
        raise bad("channels", "1 or 3")
    for key in ("mean", "std"):
        value = doc.get(key)
        if value is not None and not (isinstance(value, list) and value and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise bad(key, "a list of numbers, one per channel")
    if any(v <= 0 for v in doc.get("std", [1])):
        raise bad("std", "positive")
    if "in_memory" in doc and not isinstance(doc["in_memory"], bool):
        raise bad("in_memory", "true or false")
    augment = doc.get("augment", {})
    if "pad" in augment and not (_is_int(augment["pad"]) and 0 <= augment["pad"] <= 512):
        raise bad("pad", "a margin in 0..512 pixels")
    if "flip" in augment and not isinstance(augment["flip"], bool):
        raise bad("flip", "true or false")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def folder_info(root: Path, doc: dict[str, Any], ref: str) -> DatasetInfo:
    """A folder's DatasetInfo: declared values first, the rest read from its files."""
    found = scan(root, doc.get("train", "train"), doc.get("test"))
    size, channels = doc.get("size"), doc.get("channels")
    if size is None or channels is None:
        seen_size, seen_channels = sampled_shape(found)
        size = size if size is not None else seen_size
        channels = channels if channels is not None else seen_channels
    mean, std = _stats(doc, found, size, channels)
    augment = doc.get("augment", {})
    name = doc.get("name") or root.name
    return DatasetInfo(
        name, channels, size, len(found.classes), mean, std,
        pad=augment.get("pad", max(1, round(size / 8))), flip=augment.get("flip", True),
        files=Files("images", str(root), (found.train.name,), (found.test.name,),
                    missing=f"dataset folder {root} is gone"),
        ref=ref, classes=found.classes, fingerprint=found.fingerprint,
        in_memory=doc.get("in_memory"))


def _stats(doc: dict[str, Any], found: Scan, size: int, channels: int
           ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Declared mean/std (one per channel), else those of an earlier decode, else none yet
    (the loader computes them from the training images)."""
    if "mean" in doc or "std" in doc:
        mean, std = tuple(doc.get("mean", [])), tuple(doc.get("std", []))
        if len(mean) != channels or len(std) != channels:
            raise ArchsearchError(f"dataset {found.root}: mean and std need {channels} value(s) "
                                  f"(one per channel), but got mean={list(mean)}, "
                                  f"std={list(std)}")
        return tuple(map(float, mean)), tuple(map(float, std))
    seen = cached_stats(found, size, channels)
    if seen is None:
        return (), ()
    return tuple(seen["mean"]), tuple(seen["std"])

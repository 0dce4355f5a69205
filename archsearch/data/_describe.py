"""A dataset described as plain data (for `archsearch datasets`): shapes, classes, counts,
statistics and where its files were read from. Loading it decodes (and caches) a folder."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from archsearch.data._folder import FolderSet
from archsearch.data._info import DATASETS, DatasetInfo
from archsearch.data._loaders import ImageSet, Splits, load_data
from archsearch.data._open import dataset_info

FOLDER_HELP = ("any image folder: --dataset DIR, where DIR holds train/<class>/<image> and "
               "test/<class>/<image> (or val/); an optional DIR/dataset.toml (or --dataset "
               "FILE.toml) declares name, size, channels, mean/std and augmentation")


def known_datasets() -> list[dict[str, Any]]:
    """The datasets known by name, each with its shapes and where its files come from."""
    return [{"name": info.name, "aliases": list(info.aliases), "size": info.size,
             "channels": info.channels, "classes": info.num_classes,
             "augment": _augment(info), "files": _where(info)}
            for info in DATASETS.values()]


def _augment(info: DatasetInfo) -> str:
    parts = [f"pad-crop {info.pad}"] if info.pad else []
    parts += ["flip"] if info.flip else []
    if info.files.reader == "folder":
        parts = ["random-resized crop", "flip"]
    return ", ".join(parts) or "none"


def _where(info: DatasetInfo) -> str:
    reader = info.files.reader
    if reader == "generated":
        return "generated (no files)"
    if reader == "idx":
        return f"IDX files ({info.files.system_root} or --data-root)"
    if reader == "cifar":
        return "--data-root: torchvision's pickles, or train/ + test/ image folders"
    return "--data-root: train/ + val/ image folders (streamed)"


def describe(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """Everything about one dataset's files: loads it (a folder's first load decodes it)."""
    info = dataset_info(name)
    start = time.perf_counter()
    splits = load_data(info, root, val_fraction=0.0)
    seconds = time.perf_counter() - start
    return {"name": info.name, "dataset": info.key, "size": info.size,
            "channels": info.channels, "classes": _classes(info, splits),
            "counts": {"train": _counts(splits.train, info), "test": _counts(splits.test, info)},
            "mean": list(splits.mean), "std": list(splits.std), "pad": splits.pad,
            "flip": splits.flip, "fingerprint": splits.fingerprint, "notes": list(splits.notes),
            "held": "in memory" if isinstance(splits.train, ImageSet) else "streamed",
            "load_s": round(seconds, 2)}


def _classes(info: DatasetInfo, splits: Splits) -> list[str]:
    return list(info.classes) or [str(i) for i in range(info.num_classes)]


def _counts(images: ImageSet | FolderSet, info: DatasetInfo) -> list[int]:
    if isinstance(images, ImageSet):
        labels = Counter(images.labels.tolist())
    else:
        labels = Counter(label for _, label in images.samples)
    return [labels.get(i, 0) for i in range(info.num_classes)]

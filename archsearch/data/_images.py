"""Image folders (`<split>/<class>/<image>`): scanned, fingerprinted, decoded once.

A folder is scanned in sorted order (classes are the sorted sub-folder names, as
torchvision's ImageFolder reads them). Its *fingerprint* hashes every image's relative path
and byte size, so a copy of the folder elsewhere has the same one and an added, removed or
resized file changes it. The decoded images (uint8, at one size and channel count) and the
training images' per-channel mean/std are cached outside the data folder (which may be
read-only), keyed by the fingerprint, the files' modification times and the decode shape:
the first read decodes every file (worker processes), later reads load one tensor file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archsearch.errors import ArchsearchError
from archsearch.io import atomic_torch_save, atomic_write_json, cache_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1
SAMPLE = 64  # images whose headers decide a folder's size and channels
POOL_MIN = 2000  # fewer images than this are decoded in-process
CHUNK = 512  # images one worker decodes at a time
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class Split:
    """One split of a folder: its image files (relative to the folder) and their labels."""

    name: str
    files: tuple[str, ...]
    labels: tuple[int, ...]
    sizes: tuple[int, ...]  # bytes per file
    mtimes: tuple[int, ...]


@dataclass(frozen=True)
class Scan:
    """A folder's classes and splits, and the fingerprint of its files."""

    root: Path
    classes: tuple[str, ...]
    train: Split
    test: Split

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for split in (self.train, self.test):
            for name, size in zip(split.files, split.sizes, strict=True):
                digest.update(f"{name}\t{size}\n".encode())
        return digest.hexdigest()[:16]

    @property
    def stamp(self) -> str:
        """The fingerprint plus the files' modification times: what the cache is keyed by."""
        digest = hashlib.sha256(self.fingerprint.encode())
        for split in (self.train, self.test):
            digest.update(",".join(map(str, split.mtimes)).encode())
        return digest.hexdigest()[:16]


def find_test_dir(root: Path) -> Path | None:
    """`test/`, else `val/`: the held-out split of a folder."""
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


_SCANS: dict[tuple[object, ...], Scan] = {}  # this process's scans, by folder state


def scan(root: Path, train_dir: str = "train", test_dir: str | None = None) -> Scan:
    """The classes and images of `root/<train_dir>` and `root/<test_dir>` (default: test/,
    else val/), checked: images in every class, the same classes in both splits. Within a
    process a folder whose directories are unchanged (no file added, removed or renamed)
    is not listed again."""
    state = _folder_state(root, train_dir, test_dir)
    if state in _SCANS:
        return _SCANS[state]
    found = _scan(root, train_dir, test_dir)
    if len(_SCANS) > 64:
        _SCANS.clear()
    _SCANS[state] = found
    return found


def _folder_state(root: Path, train_dir: str, test_dir: str | None) -> tuple[object, ...]:
    state: list[object] = [str(root.resolve()), train_dir, test_dir]
    for split in (root / train_dir, root / (test_dir or "test"), root / "val"):
        try:
            state.append(split.stat().st_mtime_ns)
            state += [(e.name, e.stat().st_mtime_ns) for e in os.scandir(split) if e.is_dir()]
        except OSError:
            state.append(None)
    return tuple(state)


def _scan(root: Path, train_dir: str, test_dir: str | None) -> Scan:
    if not root.is_dir():
        raise ArchsearchError(f"dataset folder not found: {root}")
    train_root = root / train_dir
    test_root = root / test_dir if test_dir else find_test_dir(root)
    if not train_root.is_dir() or test_root is None or not test_root.is_dir():
        raise ArchsearchError(f"{root} is not an image-folder dataset: it needs {train_dir}/"
                              "<class>/<image> and test/<class>/<image> (or val/)")
    classes = _classes(train_root)
    test_classes = _classes(test_root)
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise ArchsearchError(f"{root}: {train_root.name}/ and {test_root.name}/ have different "
                              f"classes (only in {train_root.name}/: {only_train or 'none'}; "
                              f"only in {test_root.name}/: {only_test or 'none'})")
    return Scan(root, classes, _split(root, train_root, classes),
                _split(root, test_root, classes))


def _classes(split_root: Path) -> tuple[str, ...]:
    classes = tuple(sorted(d.name for d in split_root.iterdir() if d.is_dir()))
    if not classes:
        raise ArchsearchError(f"{split_root} has no class folders (expected <class>/<image>)")
    return classes


def _split(root: Path, split_root: Path, classes: Sequence[str]) -> Split:
    files: list[str] = []
    labels: list[int] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    for label, name in enumerate(classes):
        entries = sorted((e for e in os.scandir(split_root / name)
                          if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)),
                         key=lambda e: e.name)
        if not entries:
            raise ArchsearchError(f"class folder {split_root / name} holds no images "
                                  f"({', '.join(IMAGE_SUFFIXES)})")
        for entry in entries:
            stat = entry.stat()
            files.append(os.path.relpath(entry.path, root))
            labels.append(label)
            sizes.append(stat.st_size)
            mtimes.append(stat.st_mtime_ns)
    return Split(split_root.name, tuple(files), tuple(labels), tuple(sizes), tuple(mtimes))


# -- shape of the images -------------------------------------------------------------------

def header(path: Path) -> tuple[tuple[int, int], str]:
    """An image's (width, height) and mode, read from its header; one line when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ArchsearchError(f"cannot read image {path}: {exc}") from None


def sampled_shape(found: Scan) -> tuple[int, int]:
    """The (size, channels) a folder's images are decoded at when its dataset file does not
    say: the most common size among evenly spaced training images (its shorter side, for
    non-square images) and 3 channels unless every sampled image is grayscale."""
    files = found.train.files
    step = max(1, len(files) // SAMPLE)
    heads = [header(found.root / f) for f in files[::step][:SAMPLE]]
    sizes = Counter(min(size) for size, _ in heads)
    size = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    channels = 1 if all(mode in GRAY_MODES for _, mode in heads) else 3
    return size, channels


# -- decoding ------------------------------------------------------------------------------

def _decode_chunk(job: tuple[str, list[str], int, int]) -> tuple[bytes, dict[str, int], str]:
    """Decode files to one uint8 block (N×C×S×S) in a worker; counts of what was converted."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    root, files, size, channels = job
    out = np.empty((len(files), size, size, channels), dtype=np.uint8)
    counts: Counter[str] = Counter()
    mode = "L" if channels == 1 else "RGB"
    for i, name in enumerate(files):
        path = os.path.join(root, name)
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode != mode:
                    counts[f"{img.mode}->{mode}"] += 1
                    img = img.convert(mode)  # noqa: PLW2901 (RGBA drops alpha, L repeats)
                if img.size != (size, size):
                    counts["resized"] += 1
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                out[i] = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            return b"", {}, f"cannot decode image {path}: {exc}"
    return out.tobytes(), dict(counts), ""


def decode(root: Path, files: Sequence[str], size: int, channels: int,
           workers: int | None = None) -> tuple[torch.Tensor, Counter[str]]:
    """Every file as uint8 N×C×S×S (converted to the channel count, resized when not
    S×S); what was converted, counted. One line naming the first file that cannot be read."""
    chunks = [list(files[i:i + CHUNK]) for i in range(0, len(files), CHUNK)]
    jobs = [(str(root), chunk, size, channels) for chunk in chunks]
    workers = workers or min(8, os.cpu_count() or 1)
    if len(files) < POOL_MIN or workers < 2:
        results: Iterable[tuple[bytes, dict[str, int], str]] = map(_decode_chunk, jobs)
        return _assemble(results, len(files), size, channels)
    with ProcessPoolExecutor(workers) as pool:
        return _assemble(pool.map(_decode_chunk, jobs), len(files), size, channels)


def _assemble(results: Iterable[tuple[bytes, dict[str, int], str]], n: int, size: int,
              channels: int) -> tuple[torch.Tensor, Counter[str]]:
    out = torch.empty((n, size, size, channels), dtype=torch.uint8)
    counts: Counter[str] = Counter()
    start = 0
    for raw, chunk_counts, error in results:
        if error:
            raise ArchsearchError(error)
        block = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, size, size,
                                                                         channels)
        out[start:start + len(block)] = block
        start += len(block)
        counts.update(chunk_counts)
    return out.permute(0, 3, 1, 2).contiguous(), counts


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (summed in float64)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return (tuple(round(float(v), 4) for v in mean),
            tuple(round(max(float(v), 1e-3), 4) for v in std))


# -- the cache -----------------------------------------------------------------------------

@dataclass
class Decoded:
    """A folder decoded: both splits' images and labels, the training statistics, notes."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    notes: tuple[str, ...]
    cached: bool = False


def cache_path(found: Scan, size: int, channels: int) -> Path:
    key = hashlib.sha256(f"{CACHE_VERSION}|{found.root.resolve()}|{found.stamp}|{size}|"
                         f"{channels}".encode()).hexdigest()[:20]
    return cache_dir() / "datasets" / f"{found.root.name}-{key}.pt"


def cached_stats(found: Scan, size: int, channels: int) -> dict[str, Any] | None:
    """The mean/std/notes of a folder decoded before at this shape (its cache's sidecar)."""
    meta = cache_path(found, size, channels).with_suffix(".json")
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == CACHE_VERSION else None


def load_decoded(found: Scan, size: int, channels: int) -> Decoded:
    """The folder's images at size×size with `channels`: from the cache, else decoded (and
    cached; a cache that cannot be written only costs the next run the decode)."""
    path = cache_path(found, size, channels)
    if path.is_file():
        try:
            doc = torch.load(path, weights_only=True, mmap=True)
            return Decoded(doc["train"], doc["train_labels"], doc["test"], doc["test_labels"],
                           tuple(doc["mean"]), tuple(doc["std"]), tuple(doc["notes"]), True)
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError):
            pass  # a damaged cache is decoded again
    train, train_counts = decode(found.root, found.train.files, size, channels)
    test, test_counts = decode(found.root, found.test.files, size, channels)
    mean, std = channel_stats(train)
    notes = conversion_notes(train_counts + test_counts, size, channels)
    out = Decoded(train, torch.tensor(found.train.labels), test, torch.tensor(found.test.labels),
                  mean, std, notes)
    try:
        atomic_torch_save(path, {"train": train, "train_labels": out.train_labels, "test": test,
                                 "test_labels": out.test_labels, "mean": list(mean),
                                 "std": list(std), "notes": list(notes)})
        atomic_write_json(path.with_suffix(".json"), {
            "version": CACHE_VERSION, "root": str(found.root), "fingerprint": found.fingerprint,
            "size": size, "channels": channels, "mean": list(mean), "std": list(std),
            "notes": list(notes)})
    except OSError:
        pass
    return out


def conversion_notes(counts: Counter[str], size: int, channels: int) -> tuple[str, ...]:
    """What decoding changed, for the run to say: converted modes and resized images."""
    notes = [f"{n} image(s) converted {what.replace('->', ' to ')}"
             for what, n in sorted(counts.items()) if what != "resized"]
    if counts.get("resized"):
        notes.append(f"{counts['resized']} image(s) resized to {size}×{size}")
    return tuple(notes)

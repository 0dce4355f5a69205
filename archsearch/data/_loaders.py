"""Dataset files → tensors: small datasets as in-memory uint8, ImageNet as a folder stream.

Where the files are looked for, in order: `--data-root` (the `root` argument), then
`$ARCHSEARCH_DATA`, then the system location (Debian's `/usr/share/datasets/...`). Nothing
is ever downloaded: a missing dataset is an `ArchsearchError` naming what to install or
which `--data-root` to pass.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.data._folder import FolderSet, scan_folder, subset_indices
from archsearch.data._formats import check_labelled, cifar_arrays, read_cifar_batch, read_idx
from archsearch.data._images import (
    Scan,
    Split,
    channel_stats,
    decode,
    find_test_dir,
    load_decoded,
    scan,
)
from archsearch.data._info import DATASETS, DatasetInfo
from archsearch.data._open import IN_MEMORY_BYTES, dataset_info
from archsearch.errors import ArchsearchError

# where a system package installs a dataset (the facts live on DatasetInfo.files)
SYSTEM_ROOTS = {info.name: Path(info.files.system_root) for info in DATASETS.values()
                if info.files.system_root}
RESIZE_CHUNK = 4096  # images resized at a time (bounds the float copy)
STATS_SAMPLE = 5000  # training images a streamed dataset's mean/std are computed from


@dataclass
class ImageSet:
    """Images as uint8 N×C×H×W with int64 labels, held in memory (CPU until moved)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("ImageSet.images must be uint8 N×C×H×W")
        if len(self.images) != len(self.labels):
            raise ValueError("ImageSet: images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, size: int | float | None, seed: int = 0) -> ImageSet:
        """A fixed random subset: `size` images (int) or a fraction of them (float)."""
        idx = subset_indices(len(self), size, seed, self.name)
        if idx is None:
            return self
        return ImageSet(self.images[idx], self.labels[idx], self.name)


@dataclass
class Splits:
    """train and val (disjoint, carved from the training files), test (the test files)."""

    info: DatasetInfo
    train: ImageSet | FolderSet
    val: ImageSet | FolderSet
    test: ImageSet | FolderSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0
    flip: bool = False
    fingerprint: str = ""  # of the files read (`DatasetInfo.fingerprint` for folders)
    notes: tuple[str, ...] = ()  # what loading changed (converted or resized images)

    def split(self, name: str) -> ImageSet | FolderSet:
        if name not in ("train", "val", "test"):
            raise ArchsearchError(f"unknown split {name!r}: train, val or test")
        return getattr(self, name)


def load_data(name: str | DatasetInfo, root: str | Path | None = None, *,
              val_fraction: float = 0.1, split_seed: int = 0, size: int | None = None
              ) -> Splits:
    """Load a dataset by name into memory, with a seeded validation split, its images at
    `info.size` (resized from the files' size when a space or --input-size asks for another).

    `size` (synthetic only) is the number of training images to generate.
    """
    info = name if isinstance(name, DatasetInfo) else dataset_info(name)
    if not 0 <= val_fraction < 1:
        raise ArchsearchError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if info.files.reader == "folder":
        return _imagenet(info, root, val_fraction, split_seed)
    if info.files.reader == "images":
        return load_folder(info, val_fraction, split_seed)
    if info.files.reader == "generated":
        train, test = _synthetic(info, size or 2048)
        return _carve(info, train, test, val_fraction, split_seed)
    return _READERS[info.files.reader](info, root, val_fraction, split_seed)


def _carve(info: DatasetInfo, train: ImageSet, test: ImageSet, val_fraction: float,
           split_seed: int, **extra: Any) -> Splits:
    """Splits with a seeded validation share carved from the training images (at the
    dataset's size); `extra` sets mean/std/fingerprint/notes beyond the DatasetInfo's."""
    train, test = resized(train, info.size), resized(test, info.size)
    n_val = val_count(val_fraction, len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = order[:n_val].sort()[0], order[n_val:].sort()[0]
    facts: dict[str, Any] = {"mean": info.mean, "std": info.std, "pad": info.pad,
                             "flip": info.flip, "fingerprint": info.fingerprint, **extra}
    return Splits(
        info,
        ImageSet(train.images[train_idx], train.labels[train_idx], f"{info.name}/train"),
        ImageSet(train.images[val_idx], train.labels[val_idx], f"{info.name}/val"),
        test, **facts)


def val_count(val_fraction: float, images: int) -> int:
    """Validation images carved from `images`: the fraction, at least one (when asked for
    and there are two or more), so a small dataset still has something to monitor."""
    if val_fraction <= 0 or images < 2:
        return 0
    return min(images - 1, max(1, round(val_fraction * images)))


def resized(images: ImageSet, size: int) -> ImageSet:
    """The images at `size`×`size` (bilinear, antialiased; unchanged when already so)."""
    if images.images.shape[-1] == size and images.images.shape[-2] == size:
        return images
    out = [torch.nn.functional.interpolate(
        chunk.float(), size=(size, size), mode="bilinear", antialias=True,
        align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        for chunk in images.images.split(RESIZE_CHUNK)]
    return ImageSet(torch.cat(out), images.labels, images.name)


def _roots(root: str | Path | None, name: str) -> list[Path]:
    out = []
    if root:
        out += [Path(root), Path(root) / name]
    env = os.environ.get("ARCHSEARCH_DATA")
    if env:
        out += [Path(env) / name, Path(env)]
    if name in SYSTEM_ROOTS:
        out.append(SYSTEM_ROOTS[name])
    return out


# -- IDX files (Fashion-MNIST), gzipped or not --------------------------------------------

def _idx(info: DatasetInfo, root: str | Path | None, val_fraction: float,
         split_seed: int) -> Splits:
    names = {"train": info.files.train, "test": info.files.test}
    for base in _roots(root, info.name):
        for folder in (base, base / "FashionMNIST" / "raw"):  # torchvision's layout too
            found = {k: [_find_idx(folder, f) for f in v] for k, v in names.items()}
            paths = [p for v in found.values() for p in v if p is not None]
            if len(paths) == 4:
                train, test = (_idx_set(paths[2 * i], paths[2 * i + 1], info,
                                        f"{info.name}/{split}")
                               for i, split in enumerate(names))
                return _carve(info, train, test, val_fraction, split_seed,
                              fingerprint=files_fingerprint(paths))
    raise ArchsearchError(info.files.missing)


def _idx_set(img: Path, lab: Path, info: DatasetInfo, name: str) -> ImageSet:
    images, labels = read_idx(img, 3), read_idx(lab, 1)
    check_labelled(images, labels, (info.file_size, info.file_size), info.num_classes,
                   f"{img.parent} ({img.name}, {lab.name})")
    return ImageSet(torch.from_numpy(images).unsqueeze(1),
                    torch.from_numpy(labels.astype(np.int64)), name)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# -- CIFAR: torchvision's python pickles ---------------------------------------------------

def _cifar(info: DatasetInfo, root: str | Path | None, val_fraction: float,
           split_seed: int) -> Splits:
    """CIFAR from torchvision's pickles, else from image folders (train/ and test/ of
    <class>/<image>, as the shared JPEG copy is laid out) with the same augmentation."""
    files = info.files
    roots = _roots(root, info.name)
    for base in roots:
        d = base / files.folder
        paths = [d / f for f in files.train + files.test]
        if all(p.is_file() for p in paths):
            return _carve(info, _cifar_files(d, info, files.train, f"{info.name}/train"),
                          _cifar_files(d, info, files.test, f"{info.name}/test"),
                          val_fraction, split_seed, fingerprint=files_fingerprint(paths))
    for base in roots:
        if (base / "train").is_dir() and find_test_dir(base) is not None:
            return _cifar_folder(info, base, val_fraction, split_seed)
    raise ArchsearchError(files.missing)


def _cifar_folder(info: DatasetInfo, base: Path, val_fraction: float, split_seed: int
                  ) -> Splits:
    found = scan(base)
    if len(found.classes) != info.num_classes or (info.classes and found.classes !=
                                                  info.classes):
        raise ArchsearchError(f"{base} is not {info.name}: its {len(found.classes)} class "
                              f"folders are not {info.name}'s {info.num_classes}"
                              + (f" ({', '.join(info.classes)})" if info.classes else ""))
    decoded = load_decoded(found, info.file_size, info.channels)
    return _carve(info, ImageSet(decoded.train, decoded.train_labels, f"{info.name}/train"),
                  ImageSet(decoded.test, decoded.test_labels, f"{info.name}/test"),
                  val_fraction, split_seed, fingerprint=found.fingerprint, notes=decoded.notes)


def files_fingerprint(paths: list[Path]) -> str:
    """The fingerprint of a dataset's files: their names and byte sizes."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


# -- an image folder of the user's ---------------------------------------------------------

def load_folder(info: DatasetInfo, val_fraction: float, split_seed: int) -> Splits:
    """An open dataset's folder: decoded once into memory (cached) when the images fit,
    else streamed (mean/std from a sample of the training images)."""
    root = Path(info.files.folder)
    found = scan(root, info.files.train[0], info.files.test[0])
    if found.fingerprint != info.fingerprint:
        info = replace(info, fingerprint=found.fingerprint)
    decoded_bytes = (len(found.train.files) + len(found.test.files)) * info.channels * \
        info.size ** 2
    if info.in_memory is False or (info.in_memory is None and decoded_bytes > IN_MEMORY_BYTES):
        return _streamed(info, found, val_fraction, split_seed)
    decoded = load_decoded(found, info.size, info.channels)
    return _carve(info, ImageSet(decoded.train, decoded.train_labels, f"{info.name}/train"),
                  ImageSet(decoded.test, decoded.test_labels, f"{info.name}/test"),
                  val_fraction, split_seed, mean=info.mean or decoded.mean,
                  std=info.std or decoded.std, notes=decoded.notes)


def _streamed(info: DatasetInfo, found: Scan, val_fraction: float, split_seed: int) -> Splits:
    """A folder too large for memory: decoded per batch by loader workers at the dataset's
    size and channels, augmented on the device like the in-memory sets."""
    mean, std, notes = info.mean, info.std, ()
    if not mean:
        step = max(1, len(found.train.files) // STATS_SAMPLE)
        sample, _ = decode(found.root, found.train.files[::step][:STATS_SAMPLE], info.size,
                           info.channels)
        mean, std = channel_stats(sample)
        notes = (f"mean/std computed from {len(sample)} of the {len(found.train.files)} "
                 "training images (streamed dataset)",)
    shape = (info.size, info.channels)

    def samples(split: Split) -> list[tuple[str, int]]:
        return [(str(found.root / f), y) for f, y in zip(split.files, split.labels,
                                                          strict=True)]

    train = samples(found.train)
    n_val = val_count(val_fraction, len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    return Splits(
        info, FolderSet([train[i] for i in train_idx], info.size, True, f"{info.name}/train",
                        plain=shape),
        FolderSet([train[i] for i in val_idx], info.size, False, f"{info.name}/val",
                  plain=shape),
        FolderSet(samples(found.test), info.size, False, f"{info.name}/test", plain=shape),
        mean, std, info.pad, info.flip, info.fingerprint, notes)


def _cifar_files(d: Path, info: DatasetInfo, files: tuple[str, ...], name: str) -> ImageSet:
    images, labels = [], []
    for f in files:
        data, labs = cifar_arrays(read_cifar_batch(d / f), info.files.label_key.encode(), d / f)
        images.append(data)
        labels.append(labs)
    all_images, all_labels = np.concatenate(images), np.concatenate(labels)
    check_labelled(all_images, all_labels, (info.channels, info.file_size, info.file_size),
                   info.num_classes, f"{d} ({name})")
    return ImageSet(torch.from_numpy(all_images), torch.from_numpy(all_labels), name)


_READERS = {"idx": _idx, "cifar": _cifar}


# -- synthetic: learnable class prototypes plus noise --------------------------------------

def _synthetic(info: DatasetInfo, size: int) -> tuple[ImageSet, ImageSet]:
    """Each class is a fixed random low-frequency pattern; images are pattern + noise."""
    g = torch.Generator().manual_seed(1234)
    c, s, k = info.channels, info.size, info.num_classes
    protos = torch.nn.functional.interpolate(torch.rand(k, c, 4, 4, generator=g), size=(s, s),
                                             mode="bilinear", align_corners=False)

    def make(n: int, seed: int, name: str) -> ImageSet:
        gen = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, k, (n,), generator=gen)
        x = protos[labels] + 0.25 * torch.randn(n, c, s, s, generator=gen)
        return ImageSet((x.clamp(0, 1) * 255).round().to(torch.uint8), labels, name)

    return make(size, 1, "synthetic/train"), make(max(size // 4, 64), 2, "synthetic/test")


# -- ImageNet: train/ and val/ image folders, streamed -------------------------------------

def _imagenet(info: DatasetInfo, root: str | Path | None, val_fraction: float,
              split_seed: int) -> Splits:
    (train_dir,), (test_dir,) = info.files.train, info.files.test
    for base in _roots(root, info.name):
        if (base / train_dir).is_dir() and (base / test_dir).is_dir():
            train = scan_folder(base / train_dir, info.size, True, f"{info.name}/train")
            classes = sorted(d.name for d in (base / train_dir).iterdir() if d.is_dir())
            test = scan_folder(base / test_dir, info.size, False, f"{info.name}/test", classes)
            n_val = val_count(val_fraction, len(train))
            order = torch.randperm(len(train),
                                   generator=torch.Generator().manual_seed(split_seed)).tolist()
            val = FolderSet([train.samples[i] for i in sorted(order[:n_val])], info.size,
                            False, f"{info.name}/val")
            train = FolderSet([train.samples[i] for i in sorted(order[n_val:])], info.size,
                              True, f"{info.name}/train")
            return Splits(info, train, val, test, info.mean, info.std)
    raise ArchsearchError(info.files.missing)

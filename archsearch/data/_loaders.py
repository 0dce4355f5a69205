"""Dataset files → tensors: small datasets as in-memory uint8, ImageNet as a folder stream.

Where the files are looked for, in order: `--data-root` (the `root` argument), then
`$ARCHSEARCH_DATA`, then the system location (Debian's `/usr/share/datasets/...`). Nothing
is ever downloaded: a missing dataset is an `ArchsearchError` naming what to install or
which `--data-root` to pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from archsearch.data._folder import FolderSet, scan_folder, subset_indices
from archsearch.data._formats import check_labelled, cifar_arrays, read_cifar_batch, read_idx
from archsearch.data._info import DATASETS, DatasetInfo, dataset_info
from archsearch.errors import ArchsearchError

# where a system package installs a dataset (the facts live on DatasetInfo.files)
SYSTEM_ROOTS = {info.name: Path(info.files.system_root) for info in DATASETS.values()
                if info.files.system_root}
RESIZE_CHUNK = 4096  # images resized at a time (bounds the float copy)


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
    if info.files.reader == "generated":
        train, test = _synthetic(info, size or 2048)
    else:
        train, test = _READERS[info.files.reader](info, root)
        train, test = resized(train, info.size), resized(test, info.size)
    n_val = round(val_fraction * len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = order[:n_val].sort()[0], order[n_val:].sort()[0]
    return Splits(
        info,
        ImageSet(train.images[train_idx], train.labels[train_idx], f"{info.name}/train"),
        ImageSet(train.images[val_idx], train.labels[val_idx], f"{info.name}/val"),
        test, info.mean, info.std, info.pad, info.flip)


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

def _idx(info: DatasetInfo, root: str | Path | None) -> tuple[ImageSet, ImageSet]:
    names = {"train": info.files.train, "test": info.files.test}
    for base in _roots(root, info.name):
        for folder in (base, base / "FashionMNIST" / "raw"):  # torchvision's layout too
            files = {k: [_find_idx(folder, f) for f in v] for k, v in names.items()}
            if all(p is not None for v in files.values() for p in v):
                return tuple(  # type: ignore[return-value]
                    _idx_set(img, lab, info, f"{info.name}/{split}")
                    for split, (img, lab) in files.items())
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

def _cifar(info: DatasetInfo, root: str | Path | None) -> tuple[ImageSet, ImageSet]:
    files = info.files
    for base in _roots(root, info.name):
        d = base / files.folder
        if all((d / f).is_file() for f in files.train + files.test):
            return (_cifar_files(d, info, files.train, f"{info.name}/train"),
                    _cifar_files(d, info, files.test, f"{info.name}/test"))
    raise ArchsearchError(files.missing)


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
            n_val = round(val_fraction * len(train))
            order = torch.randperm(len(train),
                                   generator=torch.Generator().manual_seed(split_seed)).tolist()
            val = FolderSet([train.samples[i] for i in sorted(order[:n_val])], info.size,
                            False, f"{info.name}/val")
            train = FolderSet([train.samples[i] for i in sorted(order[n_val:])], info.size,
                              True, f"{info.name}/train")
            return Splits(info, train, val, test, info.mean, info.std)
    raise ArchsearchError(info.files.missing)

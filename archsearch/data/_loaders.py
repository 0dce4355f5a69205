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

from archsearch.data._folder import FolderSet, scan_folder
from archsearch.data._formats import check_labelled, cifar_arrays, read_cifar_batch, read_idx
from archsearch.data._info import DatasetInfo, dataset_info
from archsearch.errors import ArchsearchError

SYSTEM_ROOTS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
MEAN_STD = {  # per-channel statistics of the training images, in [0, 1] units
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
PAD = {"fashion-mnist": 2, "cifar10": 4, "cifar100": 4, "synthetic": 4}  # pad-crop margin
FLIP = {"fashion-mnist": True, "cifar10": True, "cifar100": True, "synthetic": False}


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
        if size is None:
            return self
        n = round(size * len(self)) if isinstance(size, float) else int(size)
        if not 0 < n:
            raise ArchsearchError(f"a subset of {size} images of {self.name} is empty")
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx, _ = idx.sort()
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
    """Load a dataset by name into memory, with a seeded validation split.

    `size` (synthetic only) is the number of training images to generate.
    """
    info = name if isinstance(name, DatasetInfo) else dataset_info(name)
    if not 0 <= val_fraction < 1:
        raise ArchsearchError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if info.name == "fashion-mnist":
        train, test = _fashion_mnist(root)
    elif info.name in ("cifar10", "cifar100"):
        train, test = _cifar(info.name, root)
    elif info.name == "synthetic":
        train, test = _synthetic(info, size or 2048)
    else:
        return _imagenet(info, root, val_fraction, split_seed)
    n_val = round(val_fraction * len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = order[:n_val].sort()[0], order[n_val:].sort()[0]
    mean, std = MEAN_STD[info.name]
    return Splits(
        info,
        ImageSet(train.images[train_idx], train.labels[train_idx], f"{info.name}/train"),
        ImageSet(train.images[val_idx], train.labels[val_idx], f"{info.name}/val"),
        test, mean, std, PAD.get(info.name, 0), FLIP.get(info.name, False))


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


# -- Fashion-MNIST: IDX files, gzipped or not ---------------------------------------------

_FMNIST = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _fashion_mnist(root: str | Path | None) -> tuple[ImageSet, ImageSet]:
    info = dataset_info("fashion-mnist")
    for base in _roots(root, "fashion-mnist"):
        for folder in (base, base / "FashionMNIST" / "raw"):  # torchvision's layout too
            files = {k: [_find_idx(folder, f) for f in v] for k, v in _FMNIST.items()}
            if all(p is not None for v in files.values() for p in v):
                return tuple(  # type: ignore[return-value]
                    _idx_set(img, lab, info, f"fashion-mnist/{split}")
                    for split, (img, lab) in files.items())
    raise ArchsearchError(
        "Fashion-MNIST not found (looked in --data-root, $ARCHSEARCH_DATA and "
        "/usr/share/datasets/fashion-mnist): install Debian's package dataset-fashion-mnist "
        "(apt install dataset-fashion-mnist) or pass --data-root DIR holding the IDX files; "
        "archsearch never downloads")


def _idx_set(img: Path, lab: Path, info: DatasetInfo, name: str) -> ImageSet:
    images, labels = read_idx(img, 3), read_idx(lab, 1)
    check_labelled(images, labels, (info.size, info.size), info.num_classes,
                   f"{img.parent} ({img.name}, {lab.name})")
    return ImageSet(torch.from_numpy(images).unsqueeze(1),
                    torch.from_numpy(labels.astype(np.int64)), name)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# -- CIFAR: torchvision's python pickles ---------------------------------------------------

_CIFAR = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                      ["test_batch"], b"labels"),
          "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels")}


def _cifar(name: str, root: str | Path | None) -> tuple[ImageSet, ImageSet]:
    folder, train_files, test_files, key = _CIFAR[name]
    for base in _roots(root, name):
        d = base / folder
        if all((d / f).is_file() for f in train_files + test_files):
            return (_cifar_files(d, train_files, key, f"{name}/train"),
                    _cifar_files(d, test_files, key, f"{name}/test"))
    raise ArchsearchError(
        f"{name} not found: pass --data-root DIR (or set $ARCHSEARCH_DATA) where DIR/{folder} "
        "is torchvision's on-disk format (the python version of the dataset); archsearch "
        "never downloads")


def _cifar_files(d: Path, files: list[str], key: bytes, name: str) -> ImageSet:
    images, labels = [], []
    for f in files:
        data, labs = cifar_arrays(read_cifar_batch(d / f), key, d / f)
        images.append(data)
        labels.append(labs)
    info = dataset_info(name.split("/")[0])
    all_images, all_labels = np.concatenate(images), np.concatenate(labels)
    check_labelled(all_images, all_labels, (3, 32, 32), info.num_classes, f"{d} ({name})")
    return ImageSet(torch.from_numpy(all_images), torch.from_numpy(all_labels), name)


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
    for base in _roots(root, info.name):
        if (base / "train").is_dir() and (base / "val").is_dir():
            train = scan_folder(base / "train", info.size, True, f"{info.name}/train")
            classes = sorted(d.name for d in (base / "train").iterdir() if d.is_dir())
            test = scan_folder(base / "val", info.size, False, f"{info.name}/test", classes)
            n_val = round(val_fraction * len(train))
            order = torch.randperm(len(train),
                                   generator=torch.Generator().manual_seed(split_seed)).tolist()
            val = FolderSet([train.samples[i] for i in sorted(order[:n_val])], info.size,
                            False, f"{info.name}/val")
            train = FolderSet([train.samples[i] for i in sorted(order[n_val:])], info.size,
                              True, f"{info.name}/train")
            mean, std = MEAN_STD[info.name]
            return Splits(info, train, val, test, mean, std)
    raise ArchsearchError(
        f"{info.name} not found: pass --data-root DIR (or set $ARCHSEARCH_DATA) where DIR/train "
        "and DIR/val are image folders (<class>/<image>), as torchvision's ImageFolder reads "
        "them; archsearch never downloads")

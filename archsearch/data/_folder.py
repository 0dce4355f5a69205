"""ImageNet-style image folders (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`), streamed.

Too big to hold in memory: worker processes decode and augment (random-resized crop and
flip for training; resize + centre crop for evaluation) and hand uint8 batches to the
loop, which normalises them on the device like the in-memory sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from archsearch.errors import ArchsearchError


class _Decoded(Dataset):
    def __init__(self, samples: list[tuple[str, int]], size: int, train: bool,
                 plain: tuple[int, int] | None = None):
        from torchvision import transforms as T

        self.samples = samples
        self.mode = "RGB" if plain is None or plain[1] == 3 else "L"
        if plain is not None:  # an open dataset: resized, augmented later on the device
            crop = [T.Resize((plain[0], plain[0]))]
        elif train:
            crop = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
        else:
            crop = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
        self.transform = T.Compose([*crop, T.PILToTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert(self.mode)), label
        except (OSError, ValueError, SyntaxError) as exc:
            raise ArchsearchError(f"cannot decode image {path}: {exc}") from None


@dataclass
class FolderSet:
    """A streamed image folder: (path, label) samples, decoded by DataLoader workers.
    `plain` (size, channels): an open dataset's images, only resized and converted (the
    trainer augments them on the device); None: ImageNet's crops."""

    samples: list[tuple[str, int]]
    size: int
    train: bool
    name: str = ""
    workers: int = min(8, os.cpu_count() or 1)
    plain: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, size: int | float | None, seed: int = 0) -> FolderSet:
        idx = subset_indices(len(self), size, seed, self.name)
        if idx is None:
            return self
        return FolderSet([self.samples[i] for i in idx.tolist()], self.size, self.train,
                         self.name, self.workers, self.plain)

    def batches(self, order: torch.Tensor, batch_size: int, seed: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 batches of the samples in `order` (augmented when training)."""
        chosen = [self.samples[i] for i in order.tolist()]
        drop = self.train and len(chosen) >= batch_size
        loader = DataLoader(_Decoded(chosen, self.size, self.train, self.plain),
                            batch_size=batch_size,
                            shuffle=False, num_workers=self.workers, drop_last=drop,
                            pin_memory=torch.cuda.is_available(),
                            generator=torch.Generator().manual_seed(seed),
                            worker_init_fn=_seed_worker, persistent_workers=False)
        yield from loader


def subset_indices(length: int, size: int | float | None, seed: int, name: str
                   ) -> torch.Tensor | None:
    """The sorted indices of a fixed random subset of `size` images (int) or a fraction of
    them (float); None when it is all of them."""
    if size is None:
        return None
    n = round(size * length) if isinstance(size, float) else int(size)
    if n < 1:
        raise ArchsearchError(f"a subset of {size} images of {name} is empty")
    if n >= length:
        return None
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))[:n].sort()[0]


def _seed_worker(worker_id: int) -> None:
    import random

    seed = torch.initial_seed() % 2**32
    random.seed(seed)  # torchvision's random transforms draw from torch, and from here


def scan_folder(root: Path, size: int, train: bool, name: str,
                classes: list[str] | None = None) -> FolderSet:
    """The samples of `root/<class>/<image>` in sorted order (as torchvision's ImageFolder)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = classes or sorted(d.name for d in root.iterdir() if d.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    samples = [(str(p), index[c]) for c in classes if (root / c).is_dir()
               for p in sorted((root / c).iterdir()) if p.suffix.lower() in IMG_EXTENSIONS]
    if not samples:
        raise ArchsearchError(f"no images under {root}/<class>/ (expected an ImageFolder)")
    return FolderSet(samples, size, train, name)

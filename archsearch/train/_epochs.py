"""The training images, one epoch at a time.

Randomness is a function of (seed, epoch): the order and augmentation of epoch e come from a
generator seeded with both, so a resumed run sees exactly what an uninterrupted run would
have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from archsearch.data import FolderSet, ImageSet, Splits
from archsearch.errors import ArchsearchError
from archsearch.train._config import TrainConfig
from archsearch.train._device import Augment
from archsearch.train._dist import World

Batch = tuple[torch.Tensor, torch.Tensor]


class Epochs:
    """`config.train_subset` of `splits.train`, this rank's share of each epoch in batches of
    `batch_size / world size`, augmented and normalised on `device`. In-memory data lives
    on the device as uint8 (a batch is an index, augmentation a tensor op); a folder
    dataset is decoded and augmented by its loader workers."""

    def __init__(self, splits: Splits, config: TrainConfig, device: torch.device,
                 world: World):
        self.images: ImageSet | FolderSet = splits.train.subset(config.train_subset,
                                                                 seed=config.seed)
        if len(self.images) < world.size:
            raise ArchsearchError(f"the training split has {len(self.images)} images: too few")
        self.seed, self.device, self.world = config.seed, device, world
        self.augment = Augment(splits.mean, splits.std, splits.pad if config.augment else 0,
                               splits.flip and config.augment, device, config.channels_last)
        self.per_rank = max(1, config.batch_size // world.size)
        self.steps = len(self.images) // world.size // self.per_rank or 1
        self.on_device: tuple[torch.Tensor, torch.Tensor] | None = None
        if isinstance(self.images, ImageSet):
            self.on_device = (self.images.images.to(device), self.images.labels.to(device))

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """Epoch `epoch`'s (inputs, labels) on the device, in its (seed, epoch) order."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.images), generator=gen)
        order = order[self.world.rank::self.world.size]
        if self.on_device is not None:
            return self._in_memory(order, gen)
        return self._from_loader(order, epoch)

    def _in_memory(self, order: torch.Tensor, gen: torch.Generator) -> Iterator[Batch]:
        assert self.on_device is not None
        images, labels = self.on_device
        for s in range(self.steps):
            sel = order[s * self.per_rank:(s + 1) * self.per_rank].to(self.device)
            yield self.augment(images[sel], gen), labels[sel].to(self.device, non_blocking=True)

    def _from_loader(self, order: torch.Tensor, epoch: int) -> Iterator[Batch]:
        assert isinstance(self.images, FolderSet)
        batches = self.images.batches(order, self.per_rank, seed=self.seed * 1009 + epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for xb, yb in batches:
            xb = xb.to(self.device, non_blocking=True)
            if self.images.plain is not None:  # an open dataset: augmented here, as in memory
                yield self.augment(xb, gen), yb.to(self.device, non_blocking=True)
            else:
                yield self.augment.normalise(xb), yb.to(self.device, non_blocking=True)

"""Dataset shapes, known by name even when the files are absent."""

from __future__ import annotations

from dataclasses import dataclass

from archsearch.errors import ArchsearchError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset to be built: input shape and classes."""

    name: str
    channels: int
    size: int
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("fashion-mnist", 1, 28, 10),
        DatasetInfo("cifar10", 3, 32, 10),
        DatasetInfo("cifar100", 3, 32, 100),
        DatasetInfo("imagenet", 3, 224, 1000),
        DatasetInfo("synthetic", 3, 32, 10),
    )
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
            "cifar-100": "cifar100"}


def dataset_info(name: str) -> DatasetInfo:
    """The shape of a dataset by name (case-insensitive)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ArchsearchError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}"
        )
    return DATASETS[key]

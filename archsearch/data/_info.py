"""Every fact about a dataset, in one place: its shapes, its normalisation and augmentation,
and where its files are. Known by name even when the files are absent."""

from __future__ import annotations

from dataclasses import dataclass

NO_DOWNLOAD = "archsearch never downloads"


@dataclass(frozen=True)
class Files:
    """Where a dataset's files are and how they are read. `reader` names the loader
    ("idx", "cifar", "folder" (ImageNet, streamed), "images" (an image folder of the user's),
    or "generated": made up, no files); `folder` is looked for below each root (for
    "images": the folder itself); `train`/`test` are the file names (for "images": the
    split folders); `missing` says, when the files are not found, what to install or which
    --data-root to pass."""

    reader: str = "generated"
    folder: str = ""
    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    label_key: str = ""  # cifar: the pickle's key of the labels
    system_root: str | None = None  # where a system package installs them
    missing: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset: the input shape and classes a model is built for (`size` is the size the
    model sees; the loaders resize the images of the files, `stored_size`, to it), the
    per-channel statistics of its training images (in [0, 1] units), the training
    augmentation (pad-crop margin `pad`, horizontal `flip`) and its files."""

    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pad: int = 0
    flip: bool = False
    files: Files = Files()
    stored_size: int | None = None  # None: the files hold `size`-sized images
    aliases: tuple[str, ...] = ()
    ref: str = ""  # what a genome records to find it again: a folder's or file's path
    classes: tuple[str, ...] = ()  # class names, in label order (known for folders)
    fingerprint: str = ""  # of the files (folders: every image's path and byte size)
    in_memory: bool | None = None  # folders: held in memory (None: when they fit)

    @property
    def key(self) -> str:
        """The dataset as a genome and a run record it: its name, or its folder's path."""
        return self.ref or self.name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def file_size(self) -> int:
        """The image size in the files."""
        return self.size if self.stored_size is None else self.stored_size


_CIFAR_MISSING = ("{name} not found: pass --data-root DIR (or set $ARCHSEARCH_DATA) where "
                  "DIR/{folder} is torchvision's on-disk format (the python version of the "
                  "dataset), or DIR holds image folders train/<class>/ and test/<class>/; "
                  f"{NO_DOWNLOAD}")


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # label order of the official batches (sorted names)


def _cifar(name: str, classes: int, folder: str, train: tuple[str, ...], test: tuple[str, ...],
           key: str, mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetInfo:
    return DatasetInfo(name, 3, 32, classes, mean, std, pad=4, flip=True, stored_size=32,
                       aliases=(name.replace("cifar", "cifar-"),),
                       classes=CIFAR10_CLASSES if classes == 10 else (),
                       files=Files("cifar", folder, train, test, key,
                                   missing=_CIFAR_MISSING.format(name=name, folder=folder)))


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), pad=2, flip=True,
            stored_size=28, aliases=("fashion_mnist", "fmnist"),
            files=Files("idx", "", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                        system_root="/usr/share/datasets/fashion-mnist", missing=(
                "Fashion-MNIST not found (looked in --data-root, $ARCHSEARCH_DATA and "
                "/usr/share/datasets/fashion-mnist): install Debian's package "
                "dataset-fashion-mnist (apt install dataset-fashion-mnist) or pass "
                f"--data-root DIR holding the IDX files; {NO_DOWNLOAD}"))),
        _cifar("cifar10", 10, "cifar-10-batches-py",
               tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels",
               (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        _cifar("cifar100", 100, "cifar-100-python", ("train",), ("test",), "fine_labels",
               (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        DatasetInfo(
            "imagenet", 3, 224, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
            files=Files("folder", "", ("train",), ("val",), missing=(
                "imagenet not found: pass --data-root DIR (or set $ARCHSEARCH_DATA) where "
                "DIR/train and DIR/val are image folders (<class>/<image>), as torchvision's "
                f"ImageFolder reads them; {NO_DOWNLOAD}"))),
        DatasetInfo("synthetic", 3, 32, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), pad=4),
    )
}

_ALIASES = {alias: info.name for info in DATASETS.values() for alias in info.aliases}


def known_dataset(name: str) -> DatasetInfo | None:
    """A dataset known by name or alias (case-insensitive); None for any other name."""
    key = name.strip().lower()
    return DATASETS.get(_ALIASES.get(key, key))

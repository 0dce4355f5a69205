"""Datasets: real Fashion-MNIST files, seeded splits, clear errors, batched augmentation."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch.data import ImageSet, load_data
from archsearch.data import _loaders as loaders
from archsearch.errors import ArchsearchError
from archsearch.train._device import Augment

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(),
                                  reason="Debian package dataset-fashion-mnist not installed")


@pytest.fixture
def no_data_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv("ARCHSEARCH_DATA", raising=False)
    monkeypatch.setattr(loaders, "SYSTEM_ROOTS", {"fashion-mnist": tmp_path / "nothing"})
    return tmp_path


@needs_fmnist
def test_fashion_mnist_real_files_and_seeded_split():
    a = load_data("fashion-mnist", val_fraction=0.1, split_seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (54000, 6000, 10000)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (1, 28, 28)
    assert set(a.test.labels.unique().tolist()) == set(range(10))
    # all 60000 training images are used exactly once across train and val
    both = torch.cat([a.train.images.flatten(1), a.val.images.flatten(1)])
    assert both.float().sum() == pytest.approx(
        float(load_data("fashion-mnist", val_fraction=0.0).train.images.float().sum()))
    b = load_data("fashion-mnist", val_fraction=0.1, split_seed=0)
    c = load_data("fashion-mnist", val_fraction=0.1, split_seed=1)
    assert torch.equal(a.val.labels, b.val.labels)
    assert not torch.equal(a.val.images, c.val.images)


def test_missing_fashion_mnist_names_the_package(no_data_anywhere):
    with pytest.raises(ArchsearchError, match="dataset-fashion-mnist") as info:
        load_data("fashion-mnist", root=no_data_anywhere / "empty")
    assert "\n" not in str(info.value)


def test_missing_cifar_names_data_root(no_data_anywhere):
    with pytest.raises(ArchsearchError, match="--data-root"):
        load_data("cifar10", root=no_data_anywhere)


def test_idx_files_uncompressed_and_truncated(no_data_anywhere):
    root = no_data_anywhere / "fm"
    root.mkdir()
    imgs = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labs = np.array([1, 2, 3], dtype=np.uint8)

    def idx(arr: np.ndarray) -> bytes:
        head = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        return head + arr.tobytes()

    for split in ("train", "t10k"):
        (root / f"{split}-images-idx3-ubyte").write_bytes(idx(imgs))
        with gzip.open(root / f"{split}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(idx(labs))
    s = load_data("fashion-mnist", root=root, val_fraction=0.0)
    assert torch.equal(s.test.images[:, 0], torch.from_numpy(imgs))
    assert s.test.labels.tolist() == [1, 2, 3]
    (root / "t10k-images-idx3-ubyte").write_bytes(idx(imgs)[:-5])
    with pytest.raises(ArchsearchError, match="truncated"):
        load_data("fashion-mnist", root=root)


def test_cifar_on_disk_format(no_data_anywhere):
    d = no_data_anywhere / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(d / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": [0, 1, 2, 3]}, fh)
    s = load_data("cifar10", root=no_data_anywhere, val_fraction=0.25)
    assert (len(s.train), len(s.val), len(s.test)) == (15, 5, 4)
    assert s.train.images.shape[1:] == (3, 32, 32)
    assert (s.pad, s.flip) == (4, True)


def test_subset_is_seeded_and_sized():
    s = load_data("synthetic", size=200)
    a, b = s.train.subset(50, seed=3), s.train.subset(50, seed=3)
    assert len(a) == 50 and torch.equal(a.labels, b.labels)
    assert len(s.train.subset(0.5)) == round(0.5 * len(s.train))
    assert s.train.subset(10**6) is s.train


def test_augment_crops_and_flips_like_the_reference():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    aug = Augment((0.0,) * 3, (1 / 255,) * 3, pad=2, flip=True, device=torch.device("cpu"),
                  channels_last=False)
    out = aug(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order
    dy = torch.randint(0, 5, (16,), generator=g)
    dx = torch.randint(0, 5, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        ref = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        ref = ref.flip(2) if flip[i] else ref
        assert torch.equal(out[i], ref.float()), i
    assert 0 < int(flip.sum()) < 16


def test_imageset_rejects_wrong_dtype():
    with pytest.raises(ValueError):
        ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))


def test_imagenet_folder_streams_and_trains(no_data_anywhere):
    from PIL import Image

    from archsearch.budget import parse_budget
    from archsearch.build import bind
    from archsearch.train import TrainConfig, train

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("n01", "n02"):
            d = no_data_anywhere / "imagenet" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.JPEG")
    splits = load_data("imagenet", root=no_data_anywhere, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 4)
    assert {label for _, label in splits.test.samples} == {0, 1}
    x, y = next(splits.train.batches(torch.arange(4), 4, seed=0))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 224, 224) and y.shape == (4,)
    splits.train.workers = splits.test.workers = 0  # decode in-process: fast on 2 cores
    bound = bind("resnet18", "imagenet")
    model = bound.build(bound.uniform(parse_budget("2%FLOPs")))
    result = train(model, splits, TrainConfig(epochs=1, batch_size=4, lr=0.01),
                   progress=False)
    assert result.history[0]["train_loss"] > 0 and 0 <= result.test_acc <= 1


def test_missing_imagenet_names_data_root(no_data_anywhere):
    with pytest.raises(ArchsearchError, match="--data-root DIR.*train"):
        load_data("imagenet", root=no_data_anywhere)

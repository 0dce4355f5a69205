"""Hostile dataset files: crafted pickles run nothing, bad IDX/CIFAR files are refused
with one line before anything is trained or written."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from archsearch.cli.main import main
from archsearch.data import load_data
from archsearch.data._formats import read_cifar_batch
from archsearch.errors import ArchsearchError

CIFAR10 = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture
def no_data_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv("ARCHSEARCH_DATA", raising=False)
    monkeypatch.setattr("archsearch.data._loaders.SYSTEM_ROOTS", {})
    return tmp_path


def idx(arr: np.ndarray, dims: tuple[int, ...] | None = None, kind: int = 8) -> bytes:
    dims = arr.shape if dims is None else dims
    return bytes([0, 0, kind, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) \
        + arr.tobytes()


def write_fmnist(root, n_img=6, n_lab=6, labels=None, img_dims=None, gz=False):
    root.mkdir(exist_ok=True)
    imgs = np.random.default_rng(0).integers(0, 256, (n_img, 28, 28), dtype=np.uint8)
    labs = np.asarray(labels if labels is not None else np.arange(n_lab) % 10, np.uint8)
    for split in ("train", "t10k"):
        files = {f"{split}-images-idx3-ubyte": idx(imgs, img_dims),
                 f"{split}-labels-idx1-ubyte": idx(labs)}
        for name, data in files.items():
            if gz:
                with gzip.open(root / f"{name}.gz", "wb") as fh:
                    fh.write(data)
            else:
                (root / name).write_bytes(data)
    return root


def test_valid_fashion_mnist_files_load(no_data_anywhere):
    s = load_data("fashion-mnist", root=write_fmnist(no_data_anywhere / "fm", gz=True),
                  val_fraction=0.0)
    assert s.train.images.shape == (6, 1, 28, 28) and s.test.labels.tolist() == [0, 1, 2, 3,
                                                                                  4, 5]


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": [0, 1, 2, 3, 4, 10]}, r"labels must be in 0\.\.9, .* 0\.\.10"),
    ({"n_img": 6, "n_lab": 5}, "6 images but 5 labels"),
    ({"img_dims": (6, 28, 28, 1)}, "expected an IDX file with 3 dimension"),
    ({"img_dims": (6, 784)}, "expected an IDX file with 3 dimension"),
    ({"img_dims": (6, 14, 56)}, r"images must be uint8 N×28×28"),
    ({"img_dims": (60000, 28, 28)}, "truncated"),
    ({"img_dims": (3, 28, 28)}, "bytes past"),
])
def test_bad_idx_files_are_refused(no_data_anywhere, kwargs, match):
    root = write_fmnist(no_data_anywhere / "fm", **kwargs)
    with pytest.raises(ArchsearchError, match=match):
        load_data("fashion-mnist", root=root)


def test_idx_header_of_200_dimensions_and_other_types(no_data_anywhere):
    root = write_fmnist(no_data_anywhere / "fm")
    (root / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 200]) + b"\0\0\0\1" * 200)
    with pytest.raises(ArchsearchError, match="header says 200"):
        load_data("fashion-mnist", root=root)
    (root / "train-images-idx3-ubyte").write_bytes(idx(np.zeros((6, 28, 28), np.uint8),
                                                       kind=0x0D))
    with pytest.raises(ArchsearchError, match="not an IDX file of unsigned bytes"):
        load_data("fashion-mnist", root=root)
    (root / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + b"\xff" * 12)
    with pytest.raises(ArchsearchError, match="far more than a dataset"):
        load_data("fashion-mnist", root=root)
    (root / "train-images-idx3-ubyte").unlink()
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ArchsearchError, match="cannot read"):
        load_data("fashion-mnist", root=root)


# -- CIFAR ---------------------------------------------------------------------------------

class _Payload:
    """What an attacker puts in a pickle: on load, write a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote CIFAR (str as BINSTRING, numpy.core names)."""
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b

    def k(i: int) -> bytes:
        return b"K" + bytes([i]) if i < 256 else b"M" + struct.pack("<H", i)

    dtype = (b"cnumpy\ndtype\n" + s(b"u1") + k(0) + k(1) + b"\x87R(" + k(3) + s(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + k(0) + b"tb")
    arr = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + k(0) + b"\x85"
           + s(b"b") + b"\x87R(" + k(1) + k(data.shape[0]) + k(3072) + b"\x86" + dtype
           + b"\x89" + s(data.tobytes()) + b"tb")
    labs = b"](" + b"".join(k(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + arr + s(b"labels") + labs + b"u."


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_load(no_data_anywhere, protocol):
    d = no_data_anywhere / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in CIFAR10:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        batches[name] = data
        doc = {b"data": data, b"labels": [0, 1, 2, 9], b"batch_label": b"x"}
        (d / name).write_bytes(_py2_batch(data, [0, 1, 2, 9]) if protocol == "py2"
                               else pickle.dumps(doc, protocol=protocol))
    s = load_data("cifar10", root=no_data_anywhere, val_fraction=0.0)
    assert len(s.train) == 20 and s.test.labels.tolist() == [0, 1, 2, 9]
    assert np.array_equal(s.test.images.numpy().reshape(4, -1), batches["test_batch"])


def _cifar_dir(root, poison: object) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in CIFAR10:
        (d / name).write_bytes(pickle.dumps(poison if name == "data_batch_1" else good))


@pytest.mark.parametrize("poison", [
    lambda p: _Payload(p),
    lambda p: {b"data": _Payload(p), b"labels": [0]},
    lambda p: {b"data": np.array([_Payload(p)], dtype=object), b"labels": [0]},
])
def test_crafted_cifar_pickle_runs_nothing(no_data_anywhere, tmp_path, capsys, poison):
    marker = tmp_path / "pwned"
    _cifar_dir(no_data_anywhere / "data", poison(marker))
    with pytest.raises(ArchsearchError, match="refused, nothing was run|not allowed"):
        load_data("cifar10", root=no_data_anywhere / "data")
    assert not marker.exists()
    genome = tmp_path / "g.json"
    assert main(["show", "resnet20", "--dataset", "cifar10", "--budget", "50%FLOPs",
                 "--json"]) == 0
    genome.write_text(capsys.readouterr().out.split('"genome": ', 1)[1].rsplit("}", 1)[0])
    out = tmp_path / "run"
    code = main(["train", str(genome), "--dataset", "cifar10", "--epochs", "1",
                 "--data-root", str(no_data_anywhere / "data"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "data_batch_1" in err
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("doc, match", [
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must be in 0\.\.9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((2, 1000), np.uint8), b"labels": [0, 1]}, "N×3072"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "not allowed"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "integer labels"),
    ({b"labels": [0, 1]}, "b'data' must be"),
    ([1, 2, 3], "not a dict"),
])
def test_malformed_cifar_batches(no_data_anywhere, doc, match):
    _cifar_dir(no_data_anywhere, doc)
    with pytest.raises(ArchsearchError, match=match):
        load_data("cifar10", root=no_data_anywhere)


def test_truncated_and_garbage_cifar_batch(tmp_path):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:-40])
    with pytest.raises(ArchsearchError, match="not a CIFAR batch"):
        read_cifar_batch(path)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ArchsearchError, match="not a CIFAR batch"):
        read_cifar_batch(path)

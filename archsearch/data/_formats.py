"""Reading dataset files safely: every header, size, dtype and label is checked before a
tensor is made, and CIFAR's pickles are read without running anything they name.

CIFAR's "python version" is a pickle: a dict of bytes keys, a uint8 numpy array and lists
of ints. `read_cifar_batch` unpickles it with an allow-list of four callables, none of
them numpy's own: arrays and dtypes are rebuilt as inert records and turned into numpy
arrays only after their dtype, shape and byte count check out. Anything else (a crafted
file naming `os.system`, an object array, a codec other than latin-1) is refused.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.errors import ArchsearchError

IDX_UBYTE = 0x08
MAX_IDX_BYTES = 2**33  # 8 GiB: larger than any dataset this tool reads as IDX
_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"}


# -- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------

def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] != IDX_UBYTE:
                raise ArchsearchError(f"{path} is not an IDX file of unsigned bytes")
            if head[3] != ndim:
                raise ArchsearchError(f"{path}: expected an IDX file with {ndim} "
                                      f"dimension(s), but its header says {head[3]}")
            raw = fh.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise ArchsearchError(f"{path} is truncated inside its header")
            dims = [int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(ndim)]
            size = int(np.prod(dims, dtype=object))
            if size > MAX_IDX_BYTES:
                raise ArchsearchError(f"{path}: header claims {dims}, far more than a dataset")
            body = fh.read(size + 1)  # never more than the header promises (gzip bombs)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ArchsearchError(f"cannot read {path}: {exc}") from None
    if len(body) < size:
        raise ArchsearchError(f"{path} is truncated: the header promises {dims}")
    if len(body) > size:
        raise ArchsearchError(f"{path} has bytes past the {dims} its header promises")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def check_labelled(images: np.ndarray, labels: np.ndarray, shape: tuple[int, ...],
                   num_classes: int, source: str) -> None:
    """Images N×shape (uint8) and N labels in [0, num_classes)."""
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != shape:
        raise ArchsearchError(f"{source}: images must be uint8 N×{'×'.join(map(str, shape))}, "
                              f"but got {images.dtype} {'×'.join(map(str, images.shape))}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ArchsearchError(f"{source}: {len(images)} images but {labels.size} labels")
    if len(images) == 0:
        raise ArchsearchError(f"{source}: no images")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ArchsearchError(f"{source}: labels must be in 0..{num_classes - 1}, but the "
                              f"files hold labels {low}..{high}")


# -- CIFAR's pickles -----------------------------------------------------------------------

class _Dtype:
    """numpy.dtype(name, align, copy) as an inert record (BUILD sets its byte order)."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False) -> None:
        name = _text(name)
        if not isinstance(name, str) or name not in _DTYPES:
            raise pickle.UnpicklingError(f"array dtype {name!r} is not allowed")
        self.name, self.order = name, "|"

    def __setstate__(self, state: Any) -> None:
        order = _text(state[1]) if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError("malformed dtype state")
        self.order = order

    def numpy(self) -> np.dtype:
        return np.dtype(("<" if self.order == "|" else self.order) + self.name)


def _text(value: Any) -> Any:
    """Python 2 pickles read with encoding='bytes' give their str as bytes."""
    return value.decode("latin1") if isinstance(value, bytes) and len(value) < 16 else value


class _Array:
    """numpy's _reconstruct(ndarray, shape, dtype) + BUILD, as an inert record."""

    def __init__(self, subtype: Any = None, shape: Any = None, dtype: Any = None) -> None:
        if subtype is not _NDARRAY:
            raise pickle.UnpicklingError("only plain numpy arrays are allowed")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("malformed array state")
        _, shape, dtype, fortran, raw = state
        self.array = _array(raw, dtype, shape, "F" if fortran else "C")


_NDARRAY = object()  # what the allow-list hands out for numpy.ndarray


def _array(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if isinstance(raw, pickle.PickleBuffer | bytearray):  # protocol 5
        raw = bytes(raw)
    ok_shape = isinstance(shape, tuple) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    if not (isinstance(raw, bytes) and isinstance(dtype, _Dtype) and ok_shape
            and _text(order) in ("C", "F")):
        raise pickle.UnpicklingError("malformed array (only numeric arrays are allowed)")
    dt = dtype.numpy()
    if len(raw) != int(np.prod(shape, dtype=object)) * dt.itemsize:
        raise pickle.UnpicklingError(f"array data do not fill its shape {shape}")
    return np.frombuffer(raw, dtype=dt).reshape(shape, order=_text(order)).copy()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    record = _Array(_NDARRAY)
    record.array = _array(buf, dtype, shape, order)
    return record


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:  # _codecs.encode, protocol 2
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 text is allowed")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch "
                                         "never does (refused, nothing was run)") from None


def read_cifar_batch(path: Path) -> dict[bytes, Any]:
    """One CIFAR batch file: its dict with numpy arrays, read by the restricted unpickler."""
    try:
        data = path.read_bytes()
        doc = _Unpickler(io.BytesIO(data), encoding="bytes").load()
    except OSError as exc:
        raise ArchsearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, RecursionError, MemoryError) as exc:
        raise ArchsearchError(f"{path} is not a CIFAR batch: {exc}") from None
    if not isinstance(doc, dict):
        raise ArchsearchError(f"{path} is not a CIFAR batch (not a dict)")
    return {k: v.array if isinstance(v, _Array) else v for k, v in doc.items()}


def cifar_arrays(doc: dict[bytes, Any], key: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (N×3×32×32 uint8) and labels (N, int64) of a batch dict, checked."""
    data, labels = doc.get(b"data"), doc.get(key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ArchsearchError(f"{path}: b'data' must be a uint8 array N×3072, but got {got}")
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        out = labels.astype(np.int64)
    elif isinstance(labels, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and -2**62 < v < 2**62
            for v in labels):
        out = np.asarray(labels, dtype=np.int64).reshape(-1)
    else:
        raise ArchsearchError(f"{path}: {key!r} must be a list of integer labels")
    if len(out) != len(data):
        raise ArchsearchError(f"{path}: {len(data)} images but {len(out)} labels")
    return data.reshape(-1, 3, 32, 32), out

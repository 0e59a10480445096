"""CIFAR-10 and CIFAR-100 from their published "python version" files, read without unpickling.

The files (``cifar-10-batches-py/data_batch_1`` ... ``test_batch``, ``batches.meta``;
``cifar-100-python/train``, ``test``, ``meta``) are pickles of a dict of byte strings,
lists of ints and one ``uint8`` numpy array. ``pickle.load`` on such a file would run
whatever callables the file names, so a tampered download could execute code.
:func:`read_cifar_pickle` instead runs :class:`pickle.Unpickler` with a ``find_class`` that
refuses every global except numpy's array-rebuilding names, and maps those to inert
stand-ins defined here, which rebuild the array from its bytes with ``np.frombuffer``
(only plain numeric dtypes; no object arrays); ``_codecs.encode`` and ``bytes`` (how
protocol-2 pickles spell byte strings) get stand-ins that only encode a string. Anything else in the file is refused
with a message naming the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from funcnets.errors import FuncnetsError

__all__ = ["read_cifar_pickle", "CIFAR10", "CIFAR100"]

_NUMERIC = set("?bBhHiIlLqQefdg")  # dtype kinds we rebuild: bool, ints, floats


class _Refused(Exception):
    pass


class _DtypeStub:
    """Stands in for ``numpy.dtype(name, align, copy)``; ``__setstate__`` gets the byte order."""

    def __init__(self, name: Any, align: Any = 0, copy: Any = 0):
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        try:
            dt = np.dtype(name)
        except TypeError:
            raise _Refused(f"dtype {name!r}") from None
        if dt.char not in _NUMERIC:
            raise _Refused(f"dtype {name!r} (only numeric arrays are read)")
        self.dtype = dt

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        order = order.decode("latin1") if isinstance(order, bytes) else order
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


class _ArrayStub:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``; ``__setstate__``
    gets ``(version, shape, dtype, fortran, raw bytes)``."""

    def __init__(self, cls: Any = None, shape: Any = None, typecode: Any = None):
        if cls is not _NDARRAY:
            raise _Refused(f"an array of class {cls!r}")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _DtypeStub)):
            raise _Refused("an ndarray state that is not (version, shape, dtype, fortran, data)")
        _, shape, dt, fortran, raw = state
        if isinstance(raw, str):  # a Python 2 pickle read with encoding="latin1": the bytes as code points
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise _Refused("array data that is not raw bytes")
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64)) * dt.dtype.itemsize
        if len(raw) != n:
            raise _Refused(f"array data of {len(raw)} bytes for shape {shape} {dt.dtype} ({n} bytes)")
        self.array = np.frombuffer(bytes(raw), dt.dtype).reshape(shape, order="F" if fortran else "C").copy()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> "_ArrayStub":
    """Stands in for ``numpy.core.numeric._frombuffer`` (protocol 5 arrays)."""
    dt = dtype if isinstance(dtype, _DtypeStub) else None
    if dt is None:
        raise _Refused("an array without a plain dtype")
    stub = object.__new__(_ArrayStub)
    stub.array = None
    stub.__setstate__((1, shape, dt, order == "F", bytes(buf)))
    return stub


class _NDARRAY:  # the marker find_class returns for numpy.ndarray
    pass


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Stands in for ``_codecs.encode``, which Python 3's protocol-2 pickles use for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise _Refused(f"_codecs.encode of a {type(text).__name__} to {encoding!r}")
    return text.encode(encoding)


def _bytes(*args: Any) -> bytes:
    """Stands in for ``bytes()``, which protocol-2 pickles use for an empty byte string."""
    if args:
        raise _Refused("bytes() with arguments")
    return b""


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "bytes"): _bytes,
    ("builtins", "bytes"): _bytes,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"the global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id")


def _plain(obj: Any) -> Any:
    """Replace array stand-ins by their arrays and decode byte-string keys."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise _Refused("an array without data")
        return obj.array
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, (_DtypeStub, type)) or callable(obj):
        raise _Refused(f"a {type(obj).__name__} outside an array")
    return obj


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read one CIFAR python-format file (a pickled dict) without executing anything in it.

    Returns the dict with ``str`` keys (``"data"``, ``"labels"``/``"fine_labels"``,
    ``"label_names"``, ...), arrays as numpy arrays, byte strings as ``bytes``.

    Raises:
        FuncnetsError: naming the file, for a file that is not such a pickle or that
            names anything besides numpy's array rebuilding.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
        obj = _plain(obj)
    except FileNotFoundError:
        raise
    except _Refused as e:
        raise FuncnetsError(f"{path} is not a CIFAR python batch: it contains {e}, which funcnets refuses to "
                            f"unpickle (it could run code). Use the original cifar-*-python files.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as e:
        raise FuncnetsError(f"cannot read {path} as a CIFAR python batch ({type(e).__name__}: {e}): the file is "
                            f"truncated or not a pickle. Download or extract it again.") from None
    if not isinstance(obj, dict):
        raise FuncnetsError(f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR python batch.")
    return obj


class _CIFAR:
    base_folder = ""
    train_list: list[str] = []
    test_list: list[str] = []
    meta_file = ""
    meta_key = ""
    label_key = ""

    def __init__(self, root: str | os.PathLike, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None):
        root = Path(root)
        folder = root / self.base_folder if (root / self.base_folder).is_dir() else root
        files = self.train_list if train else self.test_list
        missing = [n for n in [*files, self.meta_file] if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} lacks {', '.join(missing)}. funcnets never downloads data: extract the "
                f"{self.base_folder} archive (python version) into {root}.")
        data, targets = [], []
        for name in files:
            d = read_cifar_pickle(folder / name)
            x, y = d.get("data"), d.get(self.label_key)
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
                raise FuncnetsError(f"{folder / name}: 'data' is {getattr(x, 'dtype', type(x).__name__)} "
                                    f"{getattr(x, 'shape', '')}; expected uint8 (N, 3072) (32x32 RGB, planar).")
            if not isinstance(y, list) or len(y) != len(x) or not all(isinstance(v, int) for v in y):
                raise FuncnetsError(f"{folder / name}: '{self.label_key}' must list one int label per image "
                                    f"({len(x)}); got {type(y).__name__} of length {len(y) if hasattr(y, '__len__') else '?'}.")
            data.append(x)
            targets += y
        self.data = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3) HWC
        self.targets = targets
        meta = read_cifar_pickle(folder / self.meta_file)
        names = meta.get(self.meta_key)
        if not isinstance(names, list):
            raise FuncnetsError(f"{folder / self.meta_file} has no '{self.meta_key}' list of class names.")
        self.classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        bad = [t for t in targets if not 0 <= t < len(self.classes)]
        if bad:
            raise FuncnetsError(f"{folder}: label {bad[0]} is outside 0..{len(self.classes) - 1}; the batches and "
                                f"{self.meta_file} are from different releases.")
        self.root, self.train, self.transform, self.target_transform = str(root), train, transform, target_transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={self.root!r}, train={self.train}, {len(self)} images)"


class CIFAR10(_CIFAR):
    """torchvision's ``CIFAR10``: ``root/cifar-10-batches-py`` (or that folder itself);
    ``data`` ``(N, 32, 32, 3)`` uint8, ``targets``, ``classes``; items are ``(PIL image, label)``."""

    base_folder = "cifar-10-batches-py"
    train_list = [f"data_batch_{i}" for i in range(1, 6)]
    test_list = ["test_batch"]
    meta_file, meta_key, label_key = "batches.meta", "label_names", "labels"


class CIFAR100(_CIFAR):
    """torchvision's ``CIFAR100`` (fine labels): ``root/cifar-100-python`` (or that folder itself)."""

    base_folder = "cifar-100-python"
    train_list = ["train"]
    test_list = ["test"]
    meta_file, meta_key, label_key = "meta", "fine_label_names", "fine_labels"

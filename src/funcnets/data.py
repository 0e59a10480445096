"""Real data with no downloads: scikit-learn's bundled digits, and local MNIST IDX files.

``load_digits`` gives the 1,797 real 8×8 handwritten digit scans that scikit-learn
ships, split deterministically into train and held-out sets and resized (bilinear) to
the size a model wants: ``(N, 1, 32, 32)`` for LeNet, ``(N, 3, 64, 64)`` for ResNet.
``read_idx`` reads MNIST-format IDX files (optionally gzipped) that a user has locally.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnets.errors import FuncnetsError

__all__ = ["Split", "load_digits", "read_idx", "load_mnist", "resize_images", "random_shift"]


class Split(NamedTuple):
    x_train: np.ndarray  # (N_train, C, H, W) float32 in [0, 1]
    y_train: np.ndarray  # (N_train,) int32 class indices
    x_test: np.ndarray
    y_test: np.ndarray


def resize_images(x: np.ndarray, size: int, channels: int = 1) -> np.ndarray:
    """``(N, C, h, w) -> (N, channels, size, size)``, bilinear; a single channel is
    repeated to ``channels``."""
    n, c = x.shape[:2]
    out = jax.image.resize(jnp.asarray(x, jnp.float32), (n, c, size, size), method="bilinear")
    out = np.asarray(out)
    return np.repeat(out, channels, axis=1) if channels != c else out


def load_digits(size: int = 32, channels: int = 1, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1,797 handwritten digits, stratified by class into train and test.

    Pixel values are scaled from 0..16 to [0, 1]. The split depends only on ``seed``.
    """
    from sklearn.datasets import load_digits as sk_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    d = sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8)
    y = d.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):  # stratified: every class in both sets in the same proportion
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: int(round(len(idx) * test_fraction))]] = True
    x = resize_images(x, size, channels) if size != 8 or channels != 1 else x
    train = rng.permutation(np.flatnonzero(~test))
    test_idx = np.flatnonzero(test)
    return Split(x[train], y[train], x[test_idx], y[test_idx])


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` is decompressed) into an array.

    Raises a clear error for missing, truncated or non-IDX files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no IDX file at {path}. funcnets never downloads data; put the MNIST files "
            f"(e.g. train-images-idx3-ubyte[.gz]) in a directory and pass it."
        )
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise FuncnetsError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}); expected 0x0000TTNN.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise FuncnetsError(
            f"{path} is truncated or corrupt: its header says shape {dims} ({expected} bytes of data) "
            f"but it holds {len(raw) - header} bytes."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(directory: str | os.PathLike, size: int = 32, channels: int = 1) -> Split:
    """MNIST from local IDX files in ``directory`` (``train-images-idx3-ubyte[.gz]`` etc.)."""
    directory = Path(directory)

    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (directory / name).is_file():
                return directory / name
        raise FileNotFoundError(f"{directory} has no {stem}[.gz]; expected the four MNIST IDX files there.")

    def images(stem):
        x = read_idx(find(stem)).astype(np.float32)[:, None] / 255.0
        return resize_images(x, size, channels) if x.shape[-1] != size or channels != 1 else x

    return Split(
        images("train-images-idx3-ubyte"),
        read_idx(find("train-labels-idx1-ubyte")).astype(np.int32),
        images("t10k-images-idx3-ubyte"),
        read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int32),
    )


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels in each direction (zero fill).

    ``x: (N, C, H, W) -> (N, C, H, W)``; the usual augmentation for digit images.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(h)[None]  # (N, H) source rows
    dx = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(w)[None]  # (N, W) source cols
    rows = padded[np.arange(n)[:, None, None], :, dy[:, :, None], dx[:, None, :]]  # (N, H, W, C)
    return np.ascontiguousarray(rows.transpose(0, 3, 1, 2))

"""Real data with no downloads: scikit-learn's bundled digits, and local MNIST IDX files.

``load_digits`` gives the 1,797 real 8×8 handwritten digit scans that scikit-learn
ships, split deterministically into train and held-out sets and resized (bilinear) to
the size a model wants: ``(N, 1, 32, 32)`` for LeNet, ``(N, 3, 64, 64)`` for ResNet.
``read_idx`` reads MNIST-format IDX files (optionally gzipped) that a user has locally;
``load_mnist`` validates what it reads (image and label counts agree, labels are class
indices below ``num_classes``, images are ``uint8`` and the same size in both splits), so
a bad file stops with a message naming it instead of training to NaN.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnets.errors import FuncnetsError

__all__ = ["Split", "load_digits", "read_idx", "load_mnist", "resize_images", "random_shift", "fingerprint",
           "make_digits_folder"]


class Split(NamedTuple):
    """A data set split into training and held-out arrays (images ``(N, C, H, W)``
    float32 in [0, 1], labels ``(N,)`` int32)."""

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

    Raises a :class:`~funcnets.errors.FuncnetsError` naming the file for unreadable,
    truncated, damaged or non-IDX files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no IDX file at {path}. funcnets never downloads data; put the MNIST files "
            f"(e.g. train-images-idx3-ubyte[.gz]) in a directory and pass it."
        )
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise FuncnetsError(
            f"cannot read {path} ({type(e).__name__}: {e}): the file is unreadable or a damaged gzip "
            f"archive. Copy or download it again."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise FuncnetsError(
            f"{path} is not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected 0x0000TTNN, "
            f"TT the element type). Pass the MNIST files themselves, e.g. train-images-idx3-ubyte[.gz]."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FuncnetsError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}. "
                            f"Copy or download it again.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(raw) - header != expected:
        raise FuncnetsError(
            f"{path} is truncated or corrupt: its header says shape {dims} ({expected} bytes of data) "
            f"but it holds {len(raw) - header} bytes. Copy or download it again."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(directory: str | os.PathLike, size: int = 32, channels: int = 1, num_classes: int = 10) -> Split:
    """MNIST from local IDX files in ``directory`` (``train-images-idx3-ubyte[.gz]`` etc.).

    Images ``(N, H, W)`` uint8 become ``(N, channels, size, size)`` float32 in [0, 1].
    Checked on read: each images file is ``uint8`` ``(N, H, W)``, its labels file holds
    ``N`` integer labels in ``[0, num_classes)``, and both splits have the same image size.
    """
    directory = Path(directory)

    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (directory / name).is_file():
                return directory / name
        raise FileNotFoundError(f"{directory} has no {stem}[.gz]; expected the four MNIST IDX files there.")

    def split(prefix: str) -> tuple[np.ndarray, np.ndarray, Path]:
        img_file, lab_file = find(f"{prefix}-images-idx3-ubyte"), find(f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(img_file), read_idx(lab_file)
        if images.ndim != 3 or images.dtype != np.uint8 or min(images.shape, default=0) == 0:
            raise FuncnetsError(
                f"{img_file} holds {images.dtype} {images.shape}; expected MNIST images, uint8 of shape "
                f"(N, height, width) with N >= 1. Pass the images file of the data set there."
            )
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise FuncnetsError(
                f"{lab_file} holds {labels.dtype} {labels.shape}; expected one integer class label per "
                f"image, shape (N,). Pass the labels file of the data set there."
            )
        if len(labels) != len(images):
            raise FuncnetsError(
                f"{img_file.name} holds {len(images)} images but {lab_file.name} holds {len(labels)} labels "
                f"(in {directory}); they must match one to one. Replace the file that does not belong "
                f"to the same release."
            )
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise FuncnetsError(
                f"{lab_file} holds label {int(labels[bad[0]])} at index {int(bad[0])} ({bad.size} labels "
                f"outside 0..{num_classes - 1}); expected class indices below num_classes={num_classes}. "
                f"Fix or replace the labels file."
            )
        return images, labels.astype(np.int32), img_file

    def prepare(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)[:, None] / 255.0
        return resize_images(x, size, channels) if x.shape[-2:] != (size, size) or channels != 1 else x

    x_train, y_train, train_file = split("train")
    x_test, y_test, test_file = split("t10k")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise FuncnetsError(
            f"{train_file.name} holds {x_train.shape[1]}x{x_train.shape[2]} images but {test_file.name} "
            f"holds {x_test.shape[1]}x{x_test.shape[2]} (in {directory}); both splits must have one image size."
        )
    return Split(prepare(x_train), y_train, prepare(x_test), y_test)


def fingerprint(split: Split) -> dict:
    """What identifies a data set for a resume: shapes, dtypes and a sha256 of all four
    arrays (a different file with the same shapes gives a different digest)."""
    h = hashlib.sha256()
    for a in split:
        h.update(np.ascontiguousarray(a).tobytes())
    return {
        "train": [len(split.x_train), *map(int, split.x_train.shape[1:])],
        "test": [len(split.x_test), *map(int, split.x_test.shape[1:])],
        "sha256": h.hexdigest(),
    }


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels in each direction (zero fill).

    ``x: (N, C, H, W) -> (N, C, H, W)``; the usual augmentation for digit images.
    ``max_shift`` must be in ``[0, min(H, W) - 1]`` (a larger one only moves every image
    out of its frame, after padding it to many times its size).
    """
    n, _, h, w = x.shape
    if not 0 <= max_shift < min(h, w):
        raise ValueError(f"max_shift must be in [0, {min(h, w) - 1}] for {h}x{w} images, got {max_shift}")
    if max_shift == 0:
        return x
    padded = np.pad(x, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(h)[None]  # (N, H) source rows
    dx = rng.integers(0, 2 * max_shift + 1, n)[:, None] + np.arange(w)[None]  # (N, W) source cols
    rows = padded[np.arange(n)[:, None, None], :, dy[:, :, None], dx[:, None, :]]  # (N, H, W, C)
    return np.ascontiguousarray(rows.transpose(0, 3, 1, 2))


def make_digits_folder(root: str | os.PathLike, per_class: int = 20, size: int = 32, image_format: str = "png",
                       seed: int = 0) -> Path:
    """Write scikit-learn's real digit scans as RGB image files in an ImageFolder tree.

    ``root/<digit>/<n>.png`` for digits 0..9, ``per_class`` images each (at most 174, the
    smallest class), upscaled from 8x8 to ``size`` x ``size`` (bicubic) and tinted with a
    random foreground colour per image so the three channels differ. A real, offline data
    set a test or an example builds in a second. Returns ``root``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits as sk_digits

    ext = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "bmp": "bmp", "webp": "webp"}.get(image_format.lower())
    if ext is None:
        raise ValueError(f"image_format must be png, jpeg, bmp or webp, got {image_format!r}")
    d = sk_digits()
    counts = np.bincount(d.target)
    if not 1 <= per_class <= counts.min():
        raise ValueError(f"per_class must be in [1, {counts.min()}] (the smallest digit class), got {per_class}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(np.flatnonzero(d.target == digit)[:per_class]):
            ink = d.images[i] / 16.0  # (8, 8) in [0, 1]
            colour = rng.uniform(0.4, 1.0, 3)
            rgb = np.round(255 * ink[..., None] * colour).astype(np.uint8)
            img = Image.fromarray(rgb, "RGB").resize((size, size), Image.BICUBIC)
            img.save(root / str(digit) / f"{n}.{ext}")
    return root

"""Bundled digits and the MNIST IDX reader (on small IDX files the tests write)."""

import gzip
import struct

import numpy as np
import pytest

from funcnets import FuncnetsError
from funcnets.data import load_digits, load_mnist, read_idx


def test_digits_split_is_deterministic_and_stratified():
    a, b = load_digits(), load_digits()
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1438, 1, 32, 32) and a.x_test.shape == (359, 1, 32, 32)
    assert a.x_train.dtype == np.float32 and 0 <= a.x_train.min() and a.x_train.max() <= 1
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 37  # ~20% of each class
    rgb = load_digits(size=64, channels=3)
    assert rgb.x_train.shape == (1438, 3, 64, 64)
    np.testing.assert_array_equal(rgb.x_train[:, 0], rgb.x_train[:, 2])
    assert not np.array_equal(load_digits(seed=1).y_test, a.y_test)


def _write_idx(path, arr, gz=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_read_idx_round_trips(tmp_path):
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a", img)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), img)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    _write_idx(tmp_path / "b.gz", f, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), f)


def test_read_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        read_idx(tmp_path / "nope")
    (tmp_path / "bad").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(FuncnetsError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "t", np.zeros((4, 2, 2), np.uint8))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(FuncnetsError, match="truncated"):
        read_idx(tmp_path / "t")


def test_load_mnist_directory(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), gz=False)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8), gz=True)
    d = load_mnist(tmp_path)
    assert d.x_train.shape == (5, 1, 32, 32) and d.x_test.shape == (3, 1, 32, 32) and d.y_train.dtype == np.int32
    with pytest.raises(FileNotFoundError, match="four MNIST IDX files"):
        load_mnist(tmp_path / "empty")

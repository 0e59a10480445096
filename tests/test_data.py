"""Bundled digits and the MNIST IDX reader (on small IDX files the tests write)."""

import gzip
import struct

import numpy as np
import pytest

from funcnets import FuncnetsError
from funcnets.data import fingerprint, load_digits, load_mnist, random_shift, read_idx


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


def _mnist(tmp_path, n_train=5, n_test=3, size=28, labels=None, image_dtype=np.uint8):
    rng = np.random.default_rng(0)
    tmp_path.mkdir(exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, size, size)).astype(image_dtype))
        y = labels if labels is not None and split == "train" else rng.integers(0, 10, n).astype(np.uint8)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", y)
    return tmp_path


@pytest.mark.parametrize("case,message", [
    ("counts", r"train-images-idx3-ubyte holds 5 images but train-labels-idx1-ubyte holds 4 labels"),
    ("label_range", r"holds label 200 at index 1 \(1 labels outside 0..9\); expected class indices below"),
    ("dtype", r"holds float32 \(5, 28, 28\); expected MNIST images, uint8 of shape \(N, height, width\)"),
    ("sizes", r"holds 28x28 images but t10k-images-idx3-ubyte holds 20x20"),
])
def test_load_mnist_validates_what_it_reads(tmp_path, case, message):
    if case == "counts":
        _mnist(tmp_path, labels=np.zeros(4, np.uint8))
    elif case == "label_range":
        _mnist(tmp_path, labels=np.array([1, 200, 3, 4, 5], np.uint8))
    elif case == "dtype":
        _mnist(tmp_path, image_dtype=np.float32)
    else:
        _mnist(tmp_path)
        _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(FuncnetsError, match=message):
        load_mnist(tmp_path)


def test_read_idx_damaged_files_name_the_file(tmp_path):
    _write_idx(tmp_path / "a.gz", np.zeros((4, 2, 2), np.uint8), gz=True)
    (tmp_path / "a.gz").write_bytes((tmp_path / "a.gz").read_bytes()[:-8])
    with pytest.raises(FuncnetsError, match=r"cannot read .*a.gz \(EOFError.*damaged gzip archive"):
        read_idx(tmp_path / "a.gz")
    (tmp_path / "h").write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))  # says 3 dims, has half of one
    with pytest.raises(FuncnetsError, match=r"h is truncated: its header needs 16 bytes, the file has 6"):
        read_idx(tmp_path / "h")


def test_random_shift_bounds():
    x = np.arange(2 * 1 * 5 * 5, dtype=np.float32).reshape(2, 1, 5, 5)
    assert random_shift(x, 0, np.random.default_rng(0)) is x
    shifted = random_shift(x, 1, np.random.default_rng(0))
    assert shifted.shape == x.shape
    for bad in (-3, 5, 10**6):
        with pytest.raises(ValueError, match=rf"max_shift must be in \[0, 4\] for 5x5 images, got {bad}"):
            random_shift(x, bad, np.random.default_rng(0))


def test_fingerprint_tells_data_sets_apart(tmp_path):
    a = load_mnist(_mnist(tmp_path / "a"))
    fp = fingerprint(a)
    assert fp["train"] == [5, 1, 32, 32] and fp["test"] == [3, 1, 32, 32] and fingerprint(a) == fp
    b = a._replace(y_train=(a.y_train + 1) % 10)
    assert fingerprint(b)["sha256"] != fp["sha256"]

"""funcnets.data's image sources (ImageFolder, ImageList, CIFAR), split, and the grain loader."""

from __future__ import annotations

import json
import os
import pickle
import pickletools

import numpy as np
import pytest
from PIL import Image

from funcnets import data
from funcnets.data import transforms as T
from funcnets.errors import FuncnetsError


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """The digits as RGB PNGs, plus one JPEG (upper-case extension), WebP, BMP, a greyscale
    and an RGBA PNG, and a non-image file that must be ignored."""
    root = data.make_digits_folder(tmp_path_factory.mktemp("digits"), per_class=4, size=16)
    src = Image.open(root / "3" / "0.png")
    src.save(root / "3" / "x_jpeg.JPG", quality=90)
    src.save(root / "4" / "x_webp.webp")
    src.save(root / "5" / "x_bmp.BMP")
    src.convert("L").save(root / "6" / "x_gray.png")
    src.convert("RGBA").save(root / "7" / "x_rgba.png")
    (root / "7" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_equals_torchvision(digits_root):
    from torchvision.datasets import ImageFolder as TVImageFolder

    ours, theirs = data.ImageFolder(digits_root), TVImageFolder(str(digits_root))
    assert ours.classes == theirs.classes == [str(d) for d in range(10)]
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples and len(ours) == 45
    for i in range(len(ours)):
        (a, ya), (b, yb) = ours[i], theirs[i]
        assert a.mode == "RGB" and ya == yb
        assert np.array_equal(np.asarray(a), np.asarray(b)), ours.samples[i][0]


def test_make_digits_folder_is_real_and_seeded(tmp_path):
    root = data.make_digits_folder(tmp_path / "a", per_class=2, size=8)
    again = data.make_digits_folder(tmp_path / "b", per_class=2, size=8)
    a = np.asarray(Image.open(root / "0" / "0.png"))
    assert a.shape == (8, 8, 3) and a.dtype == np.uint8 and a.max() > 100 and a.min() < 30
    assert np.array_equal(a, np.asarray(Image.open(again / "0" / "0.png")))
    with pytest.raises(ValueError, match="per_class"):
        data.make_digits_folder(tmp_path / "c", per_class=1000)


def test_image_folder_bad_input_messages(tmp_path, digits_root):
    with pytest.raises(FileNotFoundError, match="no folder at"):
        data.ImageFolder(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "a.png")
    with pytest.raises(FuncnetsError, match=r"Couldn't find any class folder.*a\.png.*one sub-folder per class"):
        data.ImageFolder(flat)
    (tmp_path / "some" / "cat").mkdir(parents=True)
    (tmp_path / "some" / "dog").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "some" / "cat" / "1.png")
    (tmp_path / "some" / "dog" / "readme.txt").write_text("x")
    with pytest.raises(FuncnetsError, match=r"class folder\(s\) with no image: .*dog.*allow_empty=True"):
        data.ImageFolder(tmp_path / "some")
    kept = data.ImageFolder(tmp_path / "some", allow_empty=True)
    assert kept.classes == ["cat", "dog"] and len(kept) == 1


def test_truncated_image_is_named_and_can_be_excluded(tmp_path):
    root = data.make_digits_folder(tmp_path / "d", per_class=2, size=16, image_format="jpeg")
    bad = root / "2" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    (root / "5" / "0.jpg").write_bytes(b"not a jpeg at all")
    folder = data.ImageFolder(root)
    i = [p for p, _ in folder.samples].index(str(bad))
    with pytest.raises(FuncnetsError, match=r"cannot decode image .*2/1\.jpg.*truncated.*verify_images"):
        folder[i]
    found = data.verify_images(folder)
    assert sorted(p for p, _ in found) == sorted([str(bad), str(root / "5" / "0.jpg")])
    clean = folder.exclude(p for p, _ in found)
    assert len(clean) == len(folder) - 2 and clean.classes == folder.classes
    assert data.verify_images(clean) == []


def test_image_list_csv_and_json(tmp_path, digits_root):
    folder = data.ImageFolder(digits_root)
    rel = [os.path.relpath(p, digits_root) for p, _ in folder.samples]
    csv_file = digits_root / "labels.csv"
    csv_file.write_text("path,label\n" + "".join(f"{p},{t}\n" for p, (_, t) in zip(rel, folder.samples)))
    lst = data.ImageList(csv_file)
    assert lst.samples == folder.samples and len(lst.classes) == 10
    assert np.array_equal(np.asarray(lst[5][0]), np.asarray(folder[5][0]))
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    json_file = tmp_path / "labels.json"
    json_file.write_text(json.dumps([{"path": os.path.join(str(digits_root), p), "label": names[t]}
                                     for p, (_, t) in zip(rel, folder.samples)]))
    by_name = data.ImageList(json_file)
    assert by_name.classes == sorted(names)
    assert [by_name.classes[t] for t in by_name.targets] == [names[t] for t in folder.targets]
    broken = tmp_path / "broken.csv"
    broken.write_text(f"{os.path.join(str(digits_root), rel[0])},1\nmissing/photo.jpg,2\n")
    with pytest.raises(FuncnetsError, match=r"broken\.csv line 2 names missing/photo\.jpg, but there is no file"):
        data.ImageList(broken)


def _cifar_bytes(d: dict, py2_names: bool) -> bytes:
    raw = pickle.dumps(d, protocol=2)
    if py2_names:  # what the published files (written by Python 2's numpy) reference
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return raw


def _write_cifar10(folder, rng, n=6, py2_names=True):
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        batch = {"batch_label": b"training batch", "labels": y, "data": x,
                 "filenames": [f"img_{k}.png".encode() for k in range(n)]}
        (folder / name).write_bytes(_cifar_bytes(batch, py2_names))
        if name != "test_batch":
            images.append(x)
            labels += y
    meta = {"label_names": [c for c in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                  "horse", "ship", "truck"]], "num_cases_per_batch": n}
    (folder / "batches.meta").write_bytes(_cifar_bytes(meta, py2_names))
    return np.concatenate(images), labels


def test_cifar10_and_100_read_safely_and_match_torchvision(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10 as TVCIFAR10

    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)  # md5s of the real files
    monkeypatch.setattr(TVCIFAR10, "_check_integrity", lambda self: True)

    rng = np.random.default_rng(0)
    images, labels = _write_cifar10(tmp_path / "cifar-10-batches-py", rng)
    ours = data.CIFAR10(tmp_path, train=True)
    assert ours.data.shape == (30, 32, 32, 3) and ours.targets == labels and ours.classes[0] == "airplane"
    theirs = TVCIFAR10(str(tmp_path), train=True, download=False)  # torchvision's own (unsafe) reader, as reference
    assert np.array_equal(ours.data, images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert np.array_equal(ours.data, theirs.data) and ours.targets == theirs.targets and ours.classes == theirs.classes
    img, y = ours[3]
    assert isinstance(img, Image.Image) and np.array_equal(np.asarray(img), theirs.data[3]) and y == labels[3]
    assert len(data.CIFAR10(tmp_path / "cifar-10-batches-py", train=False)) == 6

    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        (c100 / split).write_bytes(pickle.dumps({"data": x, "fine_labels": [0, 1, 2, 99], "coarse_labels": [0] * 4},
                                                protocol=4))
    (c100 / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=4))
    c = data.CIFAR100(tmp_path)
    assert c.targets == [0, 1, 2, 99] and np.array_equal(c.data, x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_reader_refuses_code_and_damaged_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder, np.random.default_rng(1))
    evil = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Evil()}, protocol=2)
    (folder / "data_batch_2").write_bytes(evil)
    assert any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in pickletools.genops(evil))
    with pytest.raises(FuncnetsError, match=r"data_batch_2 is not a CIFAR python batch: it contains the global "
                                            r"(posix|os)\.system, which funcnets refuses"):
        data.CIFAR10(tmp_path)
    objarr = pickle.dumps({b"data": np.array([object()], dtype=object), b"labels": [0]}, protocol=2)
    (folder / "data_batch_2").write_bytes(objarr)
    with pytest.raises(FuncnetsError, match="refuses"):
        data.CIFAR10(tmp_path)
    good = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(FuncnetsError, match=r"data_batch_2 .*truncated or not a pickle"):
        data.CIFAR10(tmp_path)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(FuncnetsError, match=r"expected uint8 \(N, 3072\)"):
        data.CIFAR10(tmp_path)
    (folder / "data_batch_2").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_2.*never downloads"):
        data.CIFAR10(tmp_path)


def test_train_val_split_fraction_seed_stratified(digits_root):
    folder = data.ImageFolder(digits_root)
    train, val = data.train_val_split(folder, val_fraction=0.25, seed=3)
    assert len(train) + len(val) == len(folder) and not set(train.indices) & set(val.indices)
    assert sorted(set(val.targets)) == list(range(10))  # every class in validation
    again = data.train_val_split(folder, val_fraction=0.25, seed=3)
    assert again[1].indices == val.indices and data.train_val_split(folder, 0.25, seed=4)[1].indices != val.indices
    assert val.classes == folder.classes and val[0][1] == folder[val.indices[0]][1]
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(folder, 1.0)


# --------------------------------------------------------------------------- loader

TF = T.Compose([T.RandomResizedCrop(8), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)])


def _all(it):
    return [(x.copy(), y.copy()) for x, y in it]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_loader_batches_order_epochs_and_resume(digits_root):
    folder = data.ImageFolder(digits_root)
    ld = data.loader(folder, TF, batch_size=8, shuffle=True, seed=7, num_epochs=2)
    assert len(ld) == 2 * 6 and ld.batches_per_epoch == 6
    batches = _all(ld)
    assert len(batches) == 12
    x, y = batches[0]
    assert x.shape == (8, 3, 8, 8) and x.dtype == np.float32 and y.dtype == np.int32
    assert batches[5][0].shape[0] == 45 - 5 * 8  # each epoch ends with its own partial batch
    epoch = [np.concatenate([b[1] for b in batches[:6]]), np.concatenate([b[1] for b in batches[6:]])]
    assert sorted(epoch[0]) == sorted(folder.targets) == sorted(epoch[1])
    assert not np.array_equal(epoch[0], epoch[1])  # reshuffled
    assert _same(batches, _all(data.loader(folder, TF, batch_size=8, seed=7, num_epochs=2)))  # same seed
    assert not _same(batches, _all(data.loader(folder, TF, batch_size=8, seed=8, num_epochs=2)))
    # exact resume: state after 4 batches, JSON round trip, a new iterator continues identically
    it = iter(ld)
    for _ in range(4):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    assert _same(_all(ld.iterator(state)), batches[4:])
    # no shuffle: the source order; drop_remainder: whole batches only
    plain = _all(data.loader(folder, T.ToTensor(), batch_size=10, shuffle=False, drop_remainder=True))
    assert len(plain) == 4 and np.array_equal(np.concatenate([b[1] for b in plain]), folder.targets[:40])
    assert np.array_equal(plain[0][0][1], T.to_tensor(folder[1][0]))


def test_loader_workers_give_the_same_batches_and_resume(digits_root):
    folder = data.ImageFolder(digits_root)
    ref = _all(data.loader(folder, TF, batch_size=8, seed=1))
    ld = data.loader(folder, TF, batch_size=8, seed=1, num_workers=2)
    it = iter(ld)
    first = [tuple(a.copy() for a in next(it)) for _ in range(3)]
    state = it.get_state()
    rest = _all(it)
    assert _same(first + rest, ref)
    assert _same(_all(ld.iterator(state)), ref[3:])


def test_loader_errors_name_the_problem(tmp_path, digits_root):
    folder = data.ImageFolder(digits_root)
    mixed = tmp_path / "mixed"
    for name, size in [("a", (6, 4)), ("b", (4, 4))]:
        (mixed / name).mkdir(parents=True)
        Image.new("RGB", size).save(mixed / name / "0.png")
    with pytest.raises(ValueError, match=r"different shapes.*Resize"):
        _all(data.loader(data.ImageFolder(mixed), T.ToTensor(), batch_size=2))
    with pytest.raises(ValueError, match="drop_remainder=True with 45 samples"):
        data.loader(folder, T.ToTensor(), batch_size=64, drop_remainder=True)
    with pytest.raises(ValueError, match=r"Required crop size \(40, 40\).*pad_if_needed"):
        _all(data.loader(folder, T.RandomCrop(40), batch_size=4))

"""Checkpoints: exact resume, atomic saves, pruning, verification, fallback, file modes;
the resume rules of recipes (setting differences, the extension schedule)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import FuncnetsError, nn, optim, recipes, train
from funcnets._io import atomic_write_bytes, json_bytes, umask
from funcnets.checkpoint import (
    CorruptCheckpointError,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    remove_temporary,
    save_checkpoint,
)
from funcnets.models import LeNet

SMALL_BN = nn.Sequential(
    nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2), nn.Flatten(),
    nn.Linear(2 * 4 * 4, 3),
)


def _setup(model, opt, seed=0):
    params, state = model.init(jax.random.PRNGKey(seed))
    return train.create_train_state(params, state, opt, jax.random.PRNGKey(seed + 1))


@pytest.fixture(scope="module")
def small():
    """A tiny BatchNorm/Dropout model, its optimizer and a state (shared: saving is what is tested)."""
    opt = optim.sgd(0.05, momentum=0.9, dampening=0.1)
    return SMALL_BN, opt, _setup(SMALL_BN, opt)


def _rehash(path, fname):
    """Update manifest.json for a file changed on purpose (a corruption the hashes cannot see)."""
    import hashlib

    manifest = json.loads((path / "manifest.json").read_text())
    data = (path / fname).read_bytes()
    manifest["files"][fname] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_checkpoint_resume_is_bit_exact(tmp_path, small):
    model, opt, _ = small
    step = train.make_train_step(train.supervised_loss(model), opt, donate=False)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((5, 3, 1, 8, 8)), jnp.float32)
    ys = jnp.asarray(rng.integers(0, 3, (5, 3)), jnp.int32)
    ts = _setup(model, opt)
    for i in range(5):
        ts, _ = step(ts, (xs[i], ys[i]))
    uninterrupted = ts
    ts = _setup(model, opt)
    for i in range(3):
        ts, _ = step(ts, (xs[i], ys[i]))
    save_checkpoint(tmp_path, ts, run={"epoch": 3})
    resumed = load_checkpoint(tmp_path, like=_setup(model, opt))
    assert int(resumed.step) == 3 and read_checkpoint(tmp_path / "step_00000003").epoch == 3
    for i in range(3, 5):
        resumed, _ = step(resumed, (xs[i], ys[i]))
    for a, b in zip(jax.tree_util.tree_leaves(uninterrupted), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_weights_load_in_torch(tmp_path):
    import safetensors.torch

    from helpers import TorchNet

    path = save_checkpoint(tmp_path, _setup(LeNet(), optim.sgd(0.1)))
    TorchNet().load_state_dict(safetensors.torch.load_file(path / "weights.safetensors"), strict=True)


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch, small):
    _, _, ts = small
    first = save_checkpoint(tmp_path, ts)
    import funcnets.checkpoint as ck

    def crash(*a, **k):
        raise KeyboardInterrupt  # the process is interrupted mid-save

    monkeypatch.setattr(ck, "serialization", type("S", (), {"to_bytes": staticmethod(crash)}))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, ts._replace(step=ts.step + 1))
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", first.name]
    load_checkpoint(tmp_path, like=ts)


def test_corrupt_or_mismatched_checkpoints_are_refused(tmp_path, small):
    model, opt, ts = small
    path = save_checkpoint(tmp_path, ts, run={"epoch": 0})
    with pytest.raises(FuncnetsError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere" / "step_00000001", like=ts)
    with pytest.raises(FuncnetsError, match="optimizer state .* does not fit"):
        load_checkpoint(path, like=_setup(model, optim.adam(1e-3)))
    with pytest.raises(FuncnetsError, match="does not match this model's params"):
        load_checkpoint(path, like=_setup(LeNet(num_classes=5), opt))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["step"] == 0 and "0.weight" in manifest["params"]
    assert set(manifest["files"]) == {"weights.safetensors", "train.msgpack", "run.json"}  # run info is hashed too
    for fname in ("weights.safetensors", "run.json"):
        original = (path / fname).read_bytes()
        data = bytearray(original)
        data[-2] ^= 0xFF
        (path / fname).write_bytes(bytes(data))
        with pytest.raises(CorruptCheckpointError, match=f"{fname} does not match the size and sha256"):
            load_checkpoint(path, like=ts)
        (path / fname).write_bytes(original)
    # damaged files whose hashes were updated too: still the house's error, naming the file
    (path / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    _rehash(path, "weights.safetensors")
    with pytest.raises(CorruptCheckpointError, match="weights.safetensors cannot be read .*SafetensorError"):
        read_checkpoint(path)
    save_checkpoint(tmp_path, ts)  # the same step again: replaces it
    (path / "train.msgpack").write_bytes(b"\xc1\xc1garbage")
    _rehash(path, "train.msgpack")
    with pytest.raises(CorruptCheckpointError, match=r"train.msgpack \(the optimizer state\) cannot be read"):
        load_checkpoint(path, like=ts)
    (path / "manifest.json").write_text("{")
    with pytest.raises(CorruptCheckpointError, match="manifest.json is unreadable"):
        read_checkpoint(path)


def test_keeps_only_the_newest_checkpoints(tmp_path, small):
    _, _, ts = small
    for s in range(5):
        save_checkpoint(tmp_path, ts._replace(step=jnp.int32(s)), keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000003", "step_00000004"]
    assert os.path.basename(latest_checkpoint(tmp_path)) == "step_00000004"


def test_keeps_only_the_newest_written_never_the_one_just_saved(tmp_path, small):
    """Pruning is by save time: a lower step written last survives, higher old steps go."""
    _, _, ts = small
    for s in (300, 200, 100):
        save_checkpoint(tmp_path, ts._replace(step=jnp.int32(s)), keep=0)
    save_checkpoint(tmp_path, ts._replace(step=jnp.int32(44)), keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000044", "step_00000100"]
    assert latest_checkpoint(tmp_path).name == "step_00000044"


def test_find_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, small):
    _, _, ts = small
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, ts._replace(step=jnp.int32(s)), run={"epoch": s})
    (tmp_path / "step_00000003" / "train.msgpack").write_bytes(b"torn")
    warnings = []
    info = find_checkpoint(tmp_path, warn=warnings.append)
    assert info.path.name == "step_00000002" and info.epoch == 2
    assert "step_00000003 is unusable: train.msgpack does not match" in warnings[0]
    assert "resuming from step_00000002, the newest intact checkpoint (epoch 2)" in warnings[-1]
    with pytest.raises(CorruptCheckpointError, match="step_00000003 is unusable"):
        find_checkpoint(tmp_path, 3)  # chosen explicitly: an error, not a fallback
    with pytest.raises(FuncnetsError, match="has no checkpoint for step 7; it has steps 1, 2, 3"):
        find_checkpoint(tmp_path, 7)
    assert find_checkpoint(tmp_path, tmp_path / "step_00000001").step == 1
    (tmp_path / "latest").write_text("")
    warnings.clear()
    assert find_checkpoint(tmp_path, warn=warnings.append).step == 2
    assert "latest is empty (expected the name of a step_* folder)" in warnings[-1]
    (tmp_path / "step_00000002" / "manifest.json").unlink()
    (tmp_path / "step_00000001" / "run.json").write_text("[")
    with pytest.raises(CorruptCheckpointError, match=r"no intact checkpoint .*\(3 found, all unreadable"):
        find_checkpoint(tmp_path, warn=warnings.append)
    with pytest.raises(FuncnetsError, match="found no checkpoint in"):
        find_checkpoint(tmp_path / "empty")


def test_leftover_temporaries_are_removed(tmp_path, small):
    _, _, ts = small
    save_checkpoint(tmp_path, ts)
    (tmp_path / ".tmp-step-abc123").mkdir()
    (tmp_path / ".tmp-step-abc123" / "weights.safetensors").write_bytes(b"half")
    (tmp_path / ".latest.xyz.tmp").write_bytes(b"step_")
    (tmp_path / "notes.txt").write_text("mine")
    removed = remove_temporary(tmp_path)
    assert sorted(p.name for p in removed) == [".latest.xyz.tmp", ".tmp-step-abc123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "notes.txt", "step_00000000"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_and_folders_respect_the_umask(tmp_path, small, mask):
    _, _, ts = small
    old = os.umask(mask)
    try:
        assert umask() == mask
        path = save_checkpoint(tmp_path / "ck", ts)
        out = atomic_write_bytes(tmp_path / "out" / "history.json", b"[]")
    finally:
        os.umask(old)
    for f in [*path.iterdir(), path.parent / "latest", out]:
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f
    assert path.stat().st_mode & 0o777 == 0o777 & ~mask


def test_history_json_is_always_valid_json():
    text = json_bytes([{"loss": float("nan"), "acc": float("inf"), "ok": 1.5}]).decode()
    assert json.loads(text) == [{"loss": None, "acc": None, "ok": 1.5}]


def test_setting_differences_allow_only_extension():
    saved = {"lr": 0.002, "betas": [0.9, 0.999], "epochs": [3], "batch_size": 64}
    assert recipes.setting_differences(saved, {**saved, "betas": (0.9, 0.999)}) == []
    assert recipes.setting_differences(saved, {**saved, "epochs": [3, 5]}) == []
    assert recipes.setting_differences(saved, {**saved, "epochs": [5]}) == [("epochs", [3], [5])]
    assert recipes.setting_differences(saved, {**saved, "batch_size": 32, "seed": 1}) == [
        ("batch_size", 64, 32), ("seed", None, 1)]


def test_extension_schedule_keeps_the_original_and_adds_a_cycle():
    """--resume --epochs N: the original cosine for its steps, then a new cosine cycle."""
    lr = 0.1
    original = recipes.lr_schedule(lr, "cosine", 30)
    extended = recipes.lr_schedule(lr, "cosine", [30, 40])
    steps = np.arange(45)
    want = np.where(steps < 30, lr / 2 * (1 + np.cos(np.pi * np.minimum(steps, 30) / 30)),
                    lr / 2 * (1 + np.cos(np.pi * np.clip(steps - 30, 0, 10) / 10)))
    np.testing.assert_allclose([float(extended(s)) for s in steps], want, rtol=1e-5, atol=1e-8)  # float32
    np.testing.assert_array_equal([float(extended(s)) for s in range(30)], [float(original(s)) for s in range(30)])
    assert float(extended(30)) == pytest.approx(lr) and recipes.lr_schedule(lr, "constant", [30, 40]) == lr
    for bad in ([30, 30], [0], None):
        with pytest.raises(ValueError, match="cycle ends"):
            recipes.lr_schedule(lr, "cosine", bad)
    with pytest.raises(ValueError, match="at most 4,194,304 steps"):
        recipes.lr_schedule(lr, "cosine", 10**8)


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": math.nan}, "lr must be a finite number greater than 0, got nan"),
    ({"lr": math.inf}, "lr must be a finite number greater than 0, got inf"),
    ({"lr": 0.0}, "lr must be a finite number greater than 0, got 0.0"),
    ({"lr": 0.1, "momentum": math.nan}, "momentum must be a finite number in"),
    ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay must be a finite number"),
])
def test_make_optimizer_rejects_non_finite_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        recipes.make_optimizer("sgd", **kwargs)

"""The AOT cache of compiled train steps (funcnets.aot): a new process loads the step
without tracing and computes bitwise the same; a changed shape, model or optimizer
setting misses; corrupt or mismatched entries are ignored with a warning; writes are
atomic. A small MLP with BatchNorm keeps the compiles short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnets import aot, nn, optim, recipes, train
from funcnets.nn import _onednn, _onednn_rnn, _patches
from funcnets.nn import functional as F
from funcnets.losses import cross_entropy
from helpers import ON_X86_LINUX

def build(width: int = 16, lr: float = 0.1, batch: int = 3):
    """A fresh train step (a new step object), its state and a batch."""
    model = nn.Sequential(nn.Linear(8, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.sgd(lr, momentum=0.9)
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (batch, 8))
    y = jnp.arange(batch, dtype=jnp.int32) % 3
    return train.make_train_step(train.supervised_loss(model), opt), ts, (x, y)


def build_custom_calls():
    """A channels-last CNN whose step calls funcnets' FFI targets: oneDNN's convolution
    (8×8 maps) and the GEMM convolution's im2col (4×4), forward and backward."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(128, 3))
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.sgd(0.1, momentum=0.9)
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 3))
    step = train.make_train_step(train.supervised_loss(model), opt)

    def channels_last_step(ts, batch):
        with F.channels_last():
            return step(ts, batch)

    return channels_last_step, ts, (x, jnp.arange(2, dtype=jnp.int32))


def build_lstm():
    """Plain gradient steps through oneDNN's LSTM (its FFI targets), as a CachedJit
    keyed by the layer (the step function is this file's: the test keeps it fixed)."""
    lstm = nn.LSTM(4, 8, batch_first=True)
    params, _ = lstm.init(jax.random.PRNGKey(0))

    def step(params, x):
        grads = jax.grad(lambda p: jnp.sum(lstm(p, {}, x)[0][0] ** 2))(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), {}

    return aot.CachedJit(jax.jit(step), closure=(lstm,), what="LSTM step"), params, jnp.ones((2, 5, 4))


def two_steps(step, ts, batch) -> list[np.ndarray]:
    ts, m1 = step(ts, batch)
    ts, m2 = step(ts, batch)
    return [np.asarray(v) for v in jax.tree_util.tree_leaves((ts, m1, m2))]


# a new process: the same build and steps (imported from this file); reports whether JAX
# traced anything during the steps
CHILD = textwrap.dedent("""
    import importlib.util, json, os, sys
    import jax, numpy as np
    from funcnets import aot, config
    sys.path.insert(0, os.path.dirname(sys.argv[3]))  # for its `import helpers`
    spec = importlib.util.spec_from_file_location("aot_test", sys.argv[3])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    config.enable_compilation_cache(sys.argv[1])
    traced = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: traced.append(event) if event == "/jax/core/compile/jaxpr_trace_duration" else None)
    step, ts, batch = getattr(mod, sys.argv[4])()
    jax.block_until_ready((ts, batch))
    traced.clear()
    out = mod.two_steps(step, ts, batch)
    np.savez(sys.argv[2], *out)
    print(json.dumps({"stats": aot.stats, "traced_during_steps": len(traced)}))
""")


def _child(cache: str, out: str, builder: str = "build", **extra_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FUNCNETS_AOT_CACHE", "FUNCNETS_COMPILATION_CACHE")}
    env.update(extra_env)
    res = subprocess.run([sys.executable, "-c", CHILD, cache, out, __file__, builder], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _entries(d):
    return sorted(p.name for p in (d).iterdir() if p.suffix == ".step")


def test_an_executable_from_jax_cache_is_not_saved(tmp_path):
    # XLA:CPU serialises an executable JAX read from its persistent cache without its
    # kernels (a later load failed at the first step: "Function ... not found"), so only
    # fresh compiles are saved; the step still runs, bitwise the same.
    cache = tmp_path / "jax"
    _child(str(cache), str(tmp_path / "a.npz"), FUNCNETS_AOT_CACHE="0")  # fills JAX's cache only
    hit = _child(str(cache), str(tmp_path / "b.npz"))
    assert hit["stats"]["traced"] == 1 and hit["stats"]["saved"] == 0, hit
    assert not (cache / "funcnets-aot").exists() or _entries(cache / "funcnets-aot") == []
    again = _child(str(cache), str(tmp_path / "c.npz"))
    assert again["stats"]["loaded"] == 0 and again["stats"]["saved"] == 0, again
    for name in ("b", "c"):
        with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / f"{name}.npz") as b:
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k])


def test_new_process_loads_without_tracing_and_matches_bitwise(tmp_path, monkeypatch):
    cache = tmp_path / "jax"
    first = _child(str(cache), str(tmp_path / "a.npz"))
    assert first["stats"]["traced"] == 1 and first["stats"]["saved"] == 1 and first["traced_during_steps"] >= 1
    assert len(_entries(cache / "funcnets-aot")) == 1
    second = _child(str(cache), str(tmp_path / "b.npz"))
    # loaded from the AOT cache: nothing traced (JAX's own trace event never fired)
    assert second["stats"]["loaded"] == 1 and second["stats"]["traced"] == 0, second
    assert second["traced_during_steps"] == 0, second
    # the plain jitted step in this process (the cache off): the same bits
    monkeypatch.setenv("FUNCNETS_AOT_CACHE", "0")
    step, ts, batch = build()
    ref = two_steps(step, ts, batch)
    assert aot.cache_dir() is None and step._jitted._off
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert len(a.files) == len(ref) > 10
    for i, r in enumerate(ref):
        np.testing.assert_array_equal(a[f"arr_{i}"], r)
        np.testing.assert_array_equal(b[f"arr_{i}"], r)


@pytest.mark.parametrize("builder", ["build_custom_calls", "build_lstm"])
def test_loaded_step_finds_funcnets_custom_calls(tmp_path, builder):
    """A step that calls funcnets' FFI targets (oneDNN's convolution and im2col; oneDNN's
    LSTM) loads in a new process, which has not traced anything that would register them,
    and runs: the key's computation registers every extension's targets first."""
    # checked here, not in a skipif: the child imports this file, and error() registers
    if not ON_X86_LINUX:
        pytest.skip("funcnets' extensions are built on x86-64 Linux only")
    assert [m.error() for m in (_onednn, _onednn_rnn, _patches)] == [None] * 3
    cache = tmp_path / "jax"
    first = _child(str(cache), str(tmp_path / "a.npz"), builder)
    assert first["stats"]["saved"] == 1, first
    second = _child(str(cache), str(tmp_path / "b.npz"), builder)
    assert second["stats"]["loaded"] == 1 and second["stats"]["rejected"] == 0, second
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCNETS_AOT_CACHE", str(tmp_path / "aot"))
    return tmp_path / "aot"


def _stats_delta(before):
    return {k: aot.stats[k] - before[k] for k in before}


def test_same_key_loads_changed_shape_model_optimizer_miss(cache):
    before = dict(aot.stats)
    ref = two_steps(*build())
    assert _entries(cache) and len(_entries(cache)) == 1
    again = two_steps(*build())  # a new step object with the same key: loaded from disk
    assert _stats_delta(before) == {"traced": 1, "loaded": 1, "saved": 1, "rejected": 0, "unkeyable": 0}
    for r, g in zip(ref, again):
        np.testing.assert_array_equal(r, g)
    for kwargs in ({"batch": 4}, {"width": 12}, {"lr": 0.05}):
        b = dict(aot.stats)
        two_steps(*build(**kwargs))
        assert _stats_delta(b)["traced"] == 1 and _stats_delta(b)["loaded"] == 0, kwargs
    assert len(_entries(cache)) == 4  # one entry per program
    # the same step called with another batch size: a second program, the first kept
    step, ts, batch = build()
    batch4 = build(batch=4)[2]
    b = dict(aot.stats)
    ts, _ = step(ts, batch)
    ts, _ = step(ts, batch4)
    ts, _ = step(ts, batch)
    assert _stats_delta(b) == {"traced": 0, "loaded": 2, "saved": 0, "rejected": 0, "unkeyable": 0}


def test_fingerprint_is_sound_for_closures():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    fp = aot.fingerprint
    assert fp((train.supervised_loss(model), optim.sgd(0.1, momentum=0.9))) == fp(
        (train.supervised_loss(nn.Sequential(nn.Linear(8, 16), nn.ReLU())), optim.sgd(0.1, momentum=0.9)))
    assert fp(optim.sgd(0.1, momentum=0.9)) != fp(optim.sgd(0.1, momentum=0.8))
    assert fp(optim.sgd(0.1, momentum=0.9)) != fp(optim.sgd(0.1, momentum=0.9, nesterov=True))
    assert fp(optim.adam(1e-3)) != fp(optim.adamw(1e-3))
    assert fp(train.supervised_loss(model)) != fp(train.supervised_loss(nn.Sequential(nn.Linear(8, 17), nn.ReLU())))
    smooth = partial(cross_entropy, label_smoothing=0.1)
    assert fp(train.supervised_loss(model, smooth)) != fp(train.supervised_loss(model))
    cosine = partial(recipes.lr_schedule, 0.1, "cosine")
    assert fp(optim.sgd(cosine(100))) == fp(optim.sgd(cosine(100))) != fp(optim.sgd(cosine(200)))
    assert fp(optim.GradScaler().wrap(optim.sgd(0.1))) != fp(optim.sgd(0.1))
    assert fp(jnp.arange(3.0)) != fp(jnp.arange(3.0) + 1)
    assert fp(np.float32(1)) != fp(np.float64(1)) and fp(1.0) != fp(1)
    # your own code can change under the same name: never keyed
    for unkeyable in (lambda p, s, b, k: 0.0, train.supervised_loss(model, lambda a, b: jnp.sum(a)),
                      optim.sgd(lambda count: 0.1), object()):
        with pytest.raises(aot.Unkeyable):
            fp(unkeyable)


def test_user_lambda_falls_back_to_jit(cache):
    model = nn.Sequential(nn.Linear(8, 4))
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.sgd(0.1)
    step = train.make_train_step(train.supervised_loss(model, lambda a, b: jnp.mean(a ** 2)), opt)
    before = dict(aot.stats)
    ts, m = step(train.create_train_state(params, state, opt, jax.random.PRNGKey(0)), (jnp.ones((2, 8)), jnp.zeros(2, jnp.int32)))
    assert np.isfinite(m["loss"])
    assert _stats_delta(before)["unkeyable"] == 1 and _stats_delta(before)["traced"] == 0
    assert not cache.exists() or not _entries(cache)


@pytest.mark.parametrize("damage", ["flip", "truncate", "other-key", "garbage"])
def test_corrupt_or_mismatched_entry_is_ignored_with_a_warning(cache, damage):
    ref = two_steps(*build())
    (entry,) = [cache / n for n in _entries(cache)]
    data = entry.read_bytes()
    if damage == "flip":
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
    elif damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "garbage":
        data = b"\x00" * 100
    else:  # another program's (valid) entry under this key's name
        two_steps(*build(width=12))
        (other,) = [cache / n for n in _entries(cache) if cache / n != entry]
        data = other.read_bytes()
    entry.write_bytes(data)
    before = dict(aot.stats)
    with pytest.warns(aot.AOTCacheWarning, match="ignoring the AOT cache entry"):
        out = two_steps(*build())
    assert _stats_delta(before) == {"traced": 1, "loaded": 0, "saved": 1, "rejected": 1, "unkeyable": 0}
    for r, g in zip(ref, out):
        np.testing.assert_array_equal(r, g)
    b = dict(aot.stats)  # rewritten: the next step loads it
    two_steps(*build())
    assert _stats_delta(b)["loaded"] == 1


def test_write_is_atomic(cache, monkeypatch):
    calls = []
    real_replace = os.replace

    def replace(src, dst):
        calls.append((str(src), str(dst)))
        assert os.path.getsize(src) > 1000 and not os.path.exists(dst)  # complete before it appears
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    two_steps(*build())
    ((src, dst),) = calls
    assert os.path.dirname(src) == os.path.dirname(dst) == str(cache) and src != dst
    assert os.listdir(cache) == [os.path.basename(dst)]

    def crash(src, dst):  # the process dies between writing and renaming
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.warns(aot.AOTCacheWarning, match="could not write"):
        out = two_steps(*build(width=12))
    assert len(out) > 10 and os.listdir(cache) == [os.path.basename(dst)]  # no partial entry, no temp file


def test_off_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCNETS_AOT_CACHE", "0")
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    try:
        assert aot.cache_dir() is None
        monkeypatch.delenv("FUNCNETS_AOT_CACHE")
        assert aot.cache_dir() == tmp_path / "funcnets-aot"
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
    assert aot.cache_dir() is None  # off by default without the compilation cache

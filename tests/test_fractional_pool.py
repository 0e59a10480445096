"""Fractional max pooling (nn/pooling.py: fractional_max_pool2d/3d, FractionalMaxPool2d/3d)
against torch 2.14.1: given torch's ``_random_samples`` the windows, values, indices and input
gradients are torch's exactly (float64 and float32); the layer draws its samples with
``key``; torch's errors. torch's functional forms are the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import funcnets
from funcnets.convert.modules import convert_module
from funcnets import ShapeError, nn
from funcnets.nn import functional as F

DTYPES = {np.float64: torch.float64, np.float32: torch.float32}
# jitted: op by op, every small operation compiles on its own (seconds per test)
_STATIC = ("kernel_size", "output_size", "output_ratio", "return_indices")
pool2d = jax.jit(F.fractional_max_pool2d, static_argnames=_STATIC)
pool3d = jax.jit(F.fractional_max_pool3d, static_argnames=_STATIC)
# The values are selections (exact); the gradient is a sum of output gradients into each
# winner, whose order may differ in float32
GRAD_TOL = {np.float64: 1e-12, np.float32: 1e-6}


def _torch(n, x, kernel_size, output_size, output_ratio, samples):
    """torch's values, indices and the input gradient of sum(y · w)."""
    tx = torch.tensor(x, requires_grad=True)
    fn = TF.fractional_max_pool2d if n == 2 else TF.fractional_max_pool3d
    if isinstance(output_ratio, float):  # torch's 2-D functional form takes a tuple only (len(0.7) fails)
        output_ratio = (output_ratio,) * n
    y, idx = fn(tx, kernel_size, output_size, output_ratio, return_indices=True, _random_samples=samples)
    w = torch.tensor(np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(x.dtype))
    (y * w).sum().backward()
    return y.detach().numpy(), idx.numpy(), tx.grad.numpy(), w.numpy()


def _ours(n, x, kernel_size, output_size, output_ratio, samples, w, jit=True):
    fn = F.fractional_max_pool2d if n == 2 else F.fractional_max_pool3d

    def f(x, s, w):
        def loss(x):
            y, idx = fn(x, kernel_size, output_size, output_ratio, True, s)
            return (y * w).sum(), (y, idx)

        grad, (y, idx) = jax.grad(loss, has_aux=True)(x)
        return y, idx, grad

    if jit:  # one compilation per case (op by op, each small op compiles on its own)
        f = jax.jit(f)
    return tuple(np.asarray(a) for a in f(jnp.asarray(x), jnp.asarray(samples.numpy()), jnp.asarray(w)))


def _check(n, shape, kernel_size, output_size=None, output_ratio=None, dtype=np.float64, x=None, seed=0, jit=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype) if x is None else x.astype(dtype)
    batch = shape[0] if len(shape) == n + 2 else 1
    torch.manual_seed(seed)
    samples = torch.rand(batch, shape[-n - 1], n, dtype=DTYPES[dtype])
    ty, ti, tg, w = _torch(n, x, kernel_size, output_size, output_ratio, samples)
    with jax.enable_x64(dtype == np.float64):
        y, idx, grad = _ours(n, x, kernel_size, output_size, output_ratio, samples, w, jit)
        assert y.dtype == dtype and y.shape == ty.shape
        assert idx.dtype == (np.int64 if dtype == np.float64 else np.int32)
    np.testing.assert_array_equal(y, ty)  # NaN where torch has NaN
    np.testing.assert_array_equal(idx, ti)
    np.testing.assert_allclose(grad, tg, rtol=0, atol=GRAD_TOL[dtype] * max(1.0, np.abs(tg).max()))
    return y, idx


CASES_2D = [
    ((2, 3, 10, 11), 2, (5, 4), None),  # batched, square kernel
    ((2, 3, 10, 11), (3, 2), (4, 7), None),  # rectangular kernel, overlapping windows
    ((3, 9, 8), 2, (4, 7), None),  # unbatched (C, H, W)
    ((2, 2, 13, 9), (3, 2), None, (0.5, 0.6)),  # output_ratio: int(13·0.5), int(9·0.6)
    ((1, 2, 9, 10), 2, None, 0.7),  # one ratio for both axes
    ((2, 2, 6, 7), (3, 4), 1, None),  # output size 1: the one window at L - k
    ((2, 2, 6, 7), (1, 3), (1, 5), None),  # 1 and kernel = input - output + 1 (last window at the end)
    ((2, 2, 8, 9), (3, 4), (6, 6), None),  # kernel = input - output + 1: every window fits exactly
    ((2, 2, 8, 9), 1, (8, 9), None),  # kernel 1, output = input: the identity
]
CASES_3D = [
    ((2, 3, 7, 8, 9), 2, (3, 4, 5), None),
    ((2, 6, 7, 8), (2, 3, 1), (3, 4, 5), None),  # unbatched (C, T, H, W)
    ((1, 2, 6, 9, 7), (2, 3, 2), None, (0.5, 0.4, 0.75)),
    ((2, 1, 6, 7, 5), (5, 2, 2), (1, 5, 3), None),  # output 1; kernel = input - output, the most torch's 3-D allows
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, k, out, ratio", CASES_2D)
def test_fractional_max_pool2d_matches_torch(dtype, shape, k, out, ratio):
    _check(2, shape, k, out, ratio, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, k, out, ratio", CASES_3D)
def test_fractional_max_pool3d_matches_torch(dtype, shape, k, out, ratio):
    _check(3, shape, k, out, ratio, dtype)


@pytest.mark.parametrize("seed", range(3))
def test_random_geometry_matches_torch(seed):
    """Random sizes, kernels and samples, 2-D and 3-D."""
    rng = np.random.default_rng(100 + seed)
    n = 2 + seed % 2
    k = tuple(int(v) for v in rng.integers(1, 4, n))
    sizes = tuple(int(ki + v) for ki, v in zip(k, rng.integers(0 if n == 2 else 1, 9, n)))
    outs = tuple(int(rng.integers(1, L - ki + (2 if n == 2 else 1))) for L, ki in zip(sizes, k))
    _check(n, (2, 2) + sizes, k, outs, None, np.float32 if seed % 2 else np.float64, seed=seed)


def test_float32_windows_follow_float32_rounding(x64):
    """ATen computes alpha and (i + u)·alpha in the input's scalar type: for these float32
    samples float64 arithmetic would start windows one element earlier (H: 4 of them, W:
    window 5), so the windows must come from float32 arithmetic to match torch. (Run with x64
    on, where float64 arithmetic on the float32 samples would be possible.)"""
    x = np.arange(17 * 15, dtype=np.float32).reshape(1, 1, 17, 15)  # the maximum is a window's last element
    samples = torch.tensor([[[0.8333330154418945, 0.7499999403953552]]])  # (width, height), float32

    def starts(u, L, k, o, dt):
        alpha = dt(L - k) / dt(o - 1)
        return [int((dt(i) + dt(u)) * alpha) - int(dt(u) * alpha) for i in range(o - 1)] + [L - k]

    # the float64 windows differ, so matching torch below tells the two apart
    assert starts(0.7499999403953552, 17, 1, 5, np.float32) != starts(0.7499999403953552, 17, 1, 5, np.float64)
    assert starts(0.8333330154418945, 15, 3, 8, np.float32) != starts(0.8333330154418945, 15, 3, 8, np.float64)
    ty, ti = TF.fractional_max_pool2d(torch.tensor(x), (1, 3), (5, 8), return_indices=True, _random_samples=samples)
    y, idx = pool2d(jnp.asarray(x), kernel_size=(1, 3), output_size=(5, 8), return_indices=True,
                    _random_samples=jnp.asarray(samples.numpy()))
    np.testing.assert_array_equal(np.asarray(idx), ti.numpy())
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    assert (ti.numpy()[0, 0, :, 0] // 15).tolist() == starts(0.7499999403953552, 17, 1, 5, np.float32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_nan_and_minus_inf(dtype):
    """Ties go to the window's first maximum, the last NaN of a window wins, an all -inf
    window returns its first element; the gradient goes to the index returned."""
    rng = np.random.default_rng(3)
    x = rng.choice(np.array([-np.inf, 0.0, 1.0, np.nan]), (2, 3, 9, 10), p=[0.4, 0.25, 0.25, 0.1])
    x[0, 0, :3, :3] = -np.inf  # an all -inf window at the top left
    y, idx = _check(2, x.shape, 3, (4, 5), None, dtype, x=x)
    assert np.isnan(y).any() and np.isneginf(y).any()
    x3 = rng.choice(np.array([0.0, 1.0, np.nan]), (1, 2, 5, 6, 7), p=[0.45, 0.45, 0.1])
    _check(3, x3.shape, 2, (3, 3, 4), None, dtype, x=x3)


def test_indices_feed_max_unpool():
    """The indices are flat positions in each (N, C) plane, as max_unpool2d reads them."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    s = jax.random.uniform(jax.random.key(0), (2, 3, 2))
    y, idx = pool2d(x, kernel_size=2, output_size=(5, 5), return_indices=True, _random_samples=s)
    back = jax.jit(F.max_unpool2d, static_argnums=(2, 3))(y, idx, 4, 1)  # (5 - 1)·1 + 4 = 8: the input's size
    want = np.zeros((6, 64))
    np.put_along_axis(want, np.asarray(idx).reshape(6, 25), np.asarray(y).reshape(6, 25), axis=1)
    np.testing.assert_array_equal(np.asarray(back).reshape(6, 64), want)
    np.testing.assert_array_equal(want[want != 0], np.asarray(x).reshape(6, 64)[want != 0])


def test_key_draws_uniform_samples_in_the_input_dtype():
    """Without _random_samples the samples are jax.random.uniform(key, (N, C, n), dtype):
    the same key gives the same windows, another key (almost surely) others."""
    # 17 -> 8 (alpha = 15/7): an integer alpha (16 -> 8, kernel 2) would fix the windows
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 17, 17)), jnp.float32)
    key = jax.random.key(7)
    y, idx = pool2d(x, kernel_size=2, output_ratio=0.5, return_indices=True, key=key)
    want = pool2d(x, kernel_size=2, output_size=(8, 8), return_indices=True,
                  _random_samples=jax.random.uniform(key, (2, 4, 2), jnp.float32))
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(want[1]))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(want[0]))
    other = pool2d(x, kernel_size=2, output_ratio=0.5, return_indices=True, key=jax.random.key(8))[1]
    assert (np.asarray(other) != np.asarray(idx)).any()
    # samples given: the key is not used
    s = jnp.full((2, 4, 2), 0.5, jnp.float32)
    a = pool2d(x, kernel_size=2, output_size=(8, 8), _random_samples=s, key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(pool2d(x, kernel_size=2, output_size=(8, 8), _random_samples=s)))


def test_layer_takes_key_and_runs_under_jit():
    m = nn.FractionalMaxPool3d((2, 2, 1), output_size=(3, 3, 4), return_indices=True)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 6, 7)), jnp.float32)
    (y, idx), state = jax.jit(lambda x, k: m.apply({}, {}, x, key=k))(x, jax.random.key(0))
    assert state == {} and y.shape == idx.shape == (2, 3, 3, 3, 4)
    want = pool3d(x, kernel_size=(2, 2, 1), output_size=(3, 3, 4), return_indices=True,
                  _random_samples=jax.random.uniform(jax.random.key(0), (2, 3, 3)))
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(want[1]))
    # random in eval too, as torch: no key is an error that says what to pass
    with pytest.raises(ValueError, match="needs a PRNG key: pass key=jax.random.key"):
        m.apply({}, {}, x)
    # in a Sequential, the container's key is split to it
    seq = nn.Sequential(nn.FractionalMaxPool2d(2, output_size=4), nn.ReLU())
    y1, _ = jax.jit(seq.apply)({}, {}, x[:, :, 0], key=jax.random.key(1))
    y2, _ = jax.jit(seq.apply)({}, {}, x[:, :, 0], key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert repr(seq[0]) == "FractionalMaxPool2d(kernel_size=(2, 2), output_size=(4, 4))"
    assert hash(nn.FractionalMaxPool2d(2, output_ratio=[0.5, 0.5])) == hash(nn.FractionalMaxPool2d(2, output_ratio=0.5))


def test_layer_matches_torch_module_given_its_samples():
    """torch's module draws torch.rand(N, C, 2) per call: with the same generator state the
    samples it used can be drawn again and passed to funcnets, and then the output is
    torch's. (funcnets' own draw, from a jax key, gives other windows: it cannot replay
    torch's generator.)"""
    tm = tnn.FractionalMaxPool2d((2, 3), output_ratio=(0.5, 0.7), return_indices=True).double()
    m = convert_module(tm)
    assert (m.kernel_size, m.output_ratio, m.output_size, m.return_indices) == ((2, 3), (0.5, 0.7), None, True)
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    torch.manual_seed(5)
    ty, ti = tm(x)
    torch.manual_seed(5)
    samples = torch.rand(2, 3, 2, dtype=torch.float64)
    with jax.enable_x64(True):
        y, idx = pool2d(jnp.asarray(x.numpy()), kernel_size=m.kernel_size, output_size=m.output_size,
                        output_ratio=m.output_ratio, return_indices=m.return_indices,
                        _random_samples=jnp.asarray(samples.numpy()))
        (ly, lidx), _ = jax.jit(m.apply)({}, {}, jnp.asarray(x.numpy()), key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(idx), ti.numpy())
    assert ly.shape == ty.shape and lidx.dtype == np.int64


def test_from_torch_converts_a_model_with_fractional_pooling(x64):
    torch.manual_seed(0)
    tmodel = tnn.Sequential(
        tnn.Conv2d(2, 4, 3), tnn.FractionalMaxPool2d(2, output_ratio=0.5), tnn.ReLU(),
        tnn.FractionalMaxPool3d((1, 2, 2), output_size=(3, 2, 2)),
    ).double().eval()
    model, params, state = funcnets.from_torch(tmodel)
    x = torch.randn(3, 2, 11, 12, dtype=torch.float64)
    y, _ = jax.jit(model.apply)(params, state, jnp.asarray(x.numpy()), key=jax.random.key(0))
    with torch.no_grad():
        ty = tmodel(x)
    assert y.shape == ty.shape == (3, 3, 2, 2)  # the 3-D pool takes (3, 4, 4, 5) as unbatched (C, T, H, W)
    # with fixed samples (torch's _random_samples buffer) the converted model is torch's exactly
    s2, s3 = torch.rand(3, 4, 2, dtype=torch.float64), torch.rand(1, 3, 3, dtype=torch.float64)
    tmodel[1] = tnn.FractionalMaxPool2d(2, output_ratio=0.5, _random_samples=s2)
    tmodel[3] = tnn.FractionalMaxPool3d((1, 2, 2), output_size=(3, 2, 2), _random_samples=s3)
    model, params, state = funcnets.from_torch(tmodel)
    assert set(state["1"]) == {"_random_samples"} and set(state["3"]) == {"_random_samples"}
    y, _ = jax.jit(model.apply)(params, state, jnp.asarray(x.numpy()))  # no key needed
    with torch.no_grad():
        ty = tmodel(x)
    np.testing.assert_allclose(np.asarray(y), ty.numpy(), rtol=1e-12, atol=1e-12)


def test_empty_batch_and_zero_output_size():
    s = jnp.zeros((2, 3, 2))
    for out in ((0, 3), (2, 0)):
        ty, ti = TF.fractional_max_pool2d(torch.zeros(2, 3, 5, 6), 2, out, return_indices=True,
                                          _random_samples=torch.zeros(2, 3, 2))
        y, idx = F.fractional_max_pool2d(jnp.zeros((2, 3, 5, 6)), 2, out, return_indices=True, _random_samples=s)
        assert y.shape == idx.shape == tuple(ty.shape) == tuple(ti.shape)
    y = F.fractional_max_pool3d(jnp.zeros((0, 2, 5, 5, 5)), 2, 3, key=jax.random.key(0))
    assert y.shape == tuple(TF.fractional_max_pool3d(torch.zeros(0, 2, 5, 5, 5), 2, 3).shape) == (0, 2, 3, 3, 3)


def test_errors():
    x = jnp.zeros((1, 2, 7, 9))
    s = jnp.zeros((1, 2, 2))
    f = F.fractional_max_pool2d
    with pytest.raises(ShapeError, match=r"pool height 5 too large relative to input height 7"):
        f(x, 5, (4, 3), _random_samples=s)  # torch: the same words
    with pytest.raises(ShapeError, match=r"pool width 5 too large relative to input width 9"):
        f(x, 5, (3, 6), _random_samples=s)
    with pytest.raises(ShapeError, match=r"pool time 5 too large relative to input time 6"):
        F.fractional_max_pool3d(jnp.zeros((1, 1, 6, 7, 8)), (5, 2, 2), 3, _random_samples=jnp.zeros((1, 1, 3)))
    with pytest.raises(ShapeError, match=r"pool width 3 too large relative to input width 8"):
        # 3-D refuses output + kernel - 1 == input (torch's strict check), 2-D allows it
        F.fractional_max_pool3d(jnp.zeros((1, 1, 6, 7, 8)), (2, 2, 3), (4, 5, 6), _random_samples=jnp.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="kernel size should be greater than zero, but got 0x0"):
        f(x, 0, 3, _random_samples=s)
    with pytest.raises(ValueError, match="requires specifying either an output_size or an output_ratio"):
        f(x, 2, _random_samples=s)
    with pytest.raises(ValueError, match="output_size must be non-negative"):
        f(x, 2, (-1, 3), _random_samples=s)
    with pytest.raises(ValueError, match="kernel_size must be an int or a tuple of 2"):
        f(x, (2, 2, 2), 3, _random_samples=s)
    with pytest.raises(ValueError, match="output_ratio must be a number or a tuple of 2"):
        f(x, 2, output_ratio=(0.5, 0.5, 0.5), _random_samples=s)
    # torch's checks of the samples
    with pytest.raises(ValueError, match="same dtype as input"):
        f(x, 2, 3, _random_samples=s.astype(jnp.float16))
    with pytest.raises(ShapeError, match="3 dimensions"):
        f(x, 2, 3, _random_samples=s[0])
    with pytest.raises(ShapeError, match=r"must be \(N, C, 2\) = \(1, 2, 2\)"):
        f(x, 2, 3, _random_samples=jnp.zeros((1, 2, 3)))
    with pytest.raises(ShapeError, match=r"must be \(N, C, 2\) = \(2, 2, 2\)"):
        f(jnp.zeros((2, 2, 7, 9)), 2, 3, _random_samples=s)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        f(x, 2, 3)
    # input rank, dtype and empty channels
    with pytest.raises(ShapeError, match=r"expected input \(N, C, H, W\) or unbatched \(C, H, W\)"):
        f(jnp.zeros((7, 9)), 2, 3, key=jax.random.key(0))
    with pytest.raises(ShapeError, match="floating-point"):
        f(jnp.zeros((1, 2, 7, 9), jnp.int32), 2, 3, key=jax.random.key(0))
    with pytest.raises(ShapeError, match="non-zero channel and spatial sizes"):
        f(jnp.zeros((1, 0, 7, 9)), 2, 3, key=jax.random.key(0))
    with pytest.raises(ShapeError, match="layout"), F.channels_last():
        f(jnp.zeros((1, 7, 9, 2)), 2, 3, key=jax.random.key(0))
    # the layers' constructor checks are torch's
    with pytest.raises(ValueError, match="FractionalMaxPool2d requires specifying either an output size"):
        nn.FractionalMaxPool2d(2)
    with pytest.raises(ValueError, match="only one of output_size and output_ratio"):
        nn.FractionalMaxPool2d(2, 3, 0.5)
    with pytest.raises(ValueError, match=r"output_ratio must be between 0 and 1 \(got 1.0\)"):
        nn.FractionalMaxPool2d(2, output_ratio=1.0)
    with pytest.raises(ValueError, match=r"output_ratio must be between 0 and 1"):
        nn.FractionalMaxPool3d(2, output_ratio=(0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="kernel_size must be greater than 0, but got 0"):
        nn.FractionalMaxPool3d(0, 3)
    # torch raises the same for each (checked here, so the messages above stay torch's)
    tx, ts = torch.zeros(1, 2, 7, 9), torch.zeros(1, 2, 2)
    for call in (lambda: TF.fractional_max_pool2d(tx, 5, (4, 3), _random_samples=ts),
                 lambda: TF.fractional_max_pool2d(tx, 0, 3, _random_samples=ts),
                 lambda: TF.fractional_max_pool3d(torch.zeros(1, 1, 6, 7, 8), (2, 2, 3), (4, 5, 6),
                                                  _random_samples=torch.zeros(1, 1, 3)),
                 lambda: TF.fractional_max_pool2d(tx, 2, 3, _random_samples=ts.double()),
                 lambda: tnn.FractionalMaxPool2d(2, output_ratio=1.0),
                 lambda: tnn.FractionalMaxPool3d(0, 3)):
        with pytest.raises((RuntimeError, ValueError)):
            call()

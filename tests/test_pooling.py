"""Pooling (nn/pooling.py): torch parity over random geometry (hypothesis) for values,
indices and input gradients; unpooling, ties, NaN and -inf, layouts, transformations,
reprs and errors. torch's functional forms are the reference throughout."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from funcnets import ShapeError, nn
from funcnets.nn import functional as F
from helpers import assert_close, to_np

# (values, gradients) relative to the largest reference value
TOL = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-4)}
HYP = settings(max_examples=20, deadline=None)


def _data(draw, shape, dtype, special=False):
    """Normal data, or with ``special`` sometimes data from {-inf, 0, 1, NaN}: ties
    everywhere, NaN and windows whose input elements are all -inf."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if special and draw(st.booleans()):
        return rng.choice(np.array([-np.inf, 0.0, 1.0, np.nan], dtype), shape, p=[0.4, 0.25, 0.25, 0.1]), rng
    return rng.standard_normal(shape).astype(dtype), rng


def _geometry(draw, n, dilation):
    """kernel, stride (or None), padding <= kernel // 2, dilation and spatial sizes no
    smaller than the dilated kernel (so that every window holds an input element)."""
    k = tuple(draw(st.integers(1, 3 if n == 3 else 4)) for _ in range(n))
    s = draw(st.none() | st.tuples(*[st.integers(1, 3)] * n))
    p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    d = tuple(draw(st.integers(1, 2)) for _ in range(n)) if dilation else (1,) * n
    top = 2 if n == 3 else 5
    sizes = tuple(di * (ki - 1) + 1 + draw(st.integers(0, top)) for ki, di in zip(k, d))
    return k, s, p, d, sizes


def _short(t):
    """An int where all entries agree and are odd, so that both spellings are exercised."""
    return t[0] if t is not None and len(set(t)) == 1 and t[0] % 2 else t


def _shape(draw, c, sizes):
    return ((2, c) if draw(st.booleans()) else (c,)) + tuple(sizes)


def _torch_run(fn, x, rng):
    """torch's output(s) for ``x``, a random cotangent ``g`` for the first output, and
    torch's input gradient for it."""
    tx = torch.tensor(x, requires_grad=True)
    out = fn(tx)
    y = out[0] if isinstance(out, tuple) else out
    g = rng.standard_normal(tuple(y.shape)).astype(x.dtype)
    y.backward(torch.tensor(g))
    return (tuple(to_np(o) for o in out) if isinstance(out, tuple) else to_np(out)), g, to_np(tx.grad)


def _jax_run(fn, x, g):
    """funcnets' output(s) and input gradient, jitted (one program per example)."""

    @jax.jit
    def run(x, g):
        out = fn(x)
        first = (lambda x: fn(x)[0]) if isinstance(out, tuple) else fn
        _, pull = jax.vjp(first, x)
        return out, pull(g)[0]

    return run(jnp.asarray(x), jnp.asarray(g))


def _x64(dtype):
    return jax.enable_x64(dtype == np.float64)


def _index_dtype(dtype):
    return np.int64 if dtype == np.float64 else np.int32  # x64 on for float64 cases only


# ------------------------------------------------------------------ max pooling
@HYP
@given(data=st.data())
def test_max_pool_matches_torch(data):
    """Values, indices and input gradients equal torch's over random 1-, 2- and 3-D
    geometry (kernel, stride, padding, dilation, ceil_mode, batched or not) and data
    (continuous, or full of ties, NaN and -inf)."""
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    k, s, p, d, sizes = _geometry(draw, n, dilation=True)
    ceil = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x, rng = _data(draw, _shape(draw, 3, sizes), dtype, special=True)
    args = (_short(k), _short(s), _short(p), _short(d), ceil)
    tfn, ffn = getattr(TF, f"max_pool{n}d"), getattr(F, f"max_pool{n}d")
    (ty, ti), g, tgrad = _torch_run(lambda t: tfn(t, *args, return_indices=True), x, rng)
    with _x64(dtype):
        (y, idx), grad = _jax_run(lambda x: (ffn(x, *args), ffn(x, *args, return_indices=True)[1]), x, g)
        assert idx.dtype == _index_dtype(dtype)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(idx, ti)
    assert_close(grad, tgrad, TOL[dtype][1], "max_pool input gradient")


@pytest.mark.parametrize("n,k,s,p,order", [(1, 3, 2, 1, 2), (3, 2, 1, 1, 1)])
def test_max_pool_forward_mode_and_second_order(x64, n, k, s, p, order):
    """The N-d custom JVP for overlapping windows, in both modes (and composed, 1-D),
    against finite differences."""
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 1) + (5 if n == 1 else 3,) * n))
    f = getattr(F, f"max_pool{n}d")
    check_grads(jax.jit(lambda x: f(x, k, s, p) ** 2), (x,), order=order, modes=("fwd", "rev"), eps=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda f, x: f.max_pool1d(x, 3, 2, 1),  # overlapping windows (the custom JVP)
        lambda f, x: f.max_pool1d(x, 2),  # disjoint windows (autodiff of the chain)
        lambda f, x: f.max_pool3d(x.reshape(1, 1, 2, 2, 4), 2, 1, 1),
        lambda f, x: f.adaptive_max_pool1d(x, 3),  # overlapping bins: [0, 6), [5, 11), [10, 16)
        lambda f, x: f.adaptive_max_pool2d(x.reshape(1, 4, 4), (3, 2)),
    ],
)
def test_gradient_at_ties_goes_to_the_first_element(call):
    """All-equal inputs: every window is a tie. torch gives the whole gradient to the
    window's first element; so does funcnets (not split between the ties)."""
    x = torch.zeros(1, 1, 16, requires_grad=True)
    out = call(TF, x)
    out.sum().backward()
    g = jax.jit(jax.grad(lambda x: jnp.sum(call(F, x))))(jnp.zeros((1, 1, 16)))
    np.testing.assert_array_equal(g, to_np(x.grad))
    assert float(jnp.sum(g)) == out.numel() and float(jnp.max(g)) >= 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda f, x: f.max_pool1d(x, 3, 2, 1, return_indices=True),
        lambda f, x: f.max_pool1d(x, 2, 2, 1, 1, True, return_indices=True),  # disjoint, padded
        lambda f, x: f.max_pool2d(x.reshape(1, 4, 4), 3, 1, 1, return_indices=True),
        lambda f, x: f.max_pool3d(x.reshape(1, 2, 2, 4), 2, 1, 1, 1, True, return_indices=True),
        lambda f, x: f.adaptive_max_pool1d(x, 3, return_indices=True),
        lambda f, x: f.adaptive_max_pool2d(x.reshape(1, 4, 4), (3, 2), return_indices=True),
    ],
)
@pytest.mark.parametrize("special", ["nan", "-inf"])
def test_nan_and_minus_inf_like_torch(call, special):
    """NaN propagates and the window's last NaN is the index (torch's kernels); a window
    whose input elements are all -inf points at its first input element, never at the
    -inf padding, and so does the gradient."""
    x = np.arange(16.0).reshape(1, 16)
    if special == "nan":
        x[0, [1, 2, 9]] = np.nan
    else:
        x[0, :] = -np.inf
        x[0, 5] = 3.0
    tx = torch.tensor(x, requires_grad=True)
    ty, ti = call(TF, tx)
    ty.backward(torch.ones_like(ty))
    run = jax.jit(lambda x: (call(F, x), jax.grad(lambda x: jnp.sum(call(F, x)[0]))(x)))
    (y, i), g = run(jnp.asarray(x, jnp.float32))
    np.testing.assert_array_equal(y, to_np(ty))
    np.testing.assert_array_equal(i, to_np(ti))
    np.testing.assert_array_equal(g, to_np(tx.grad))


# ------------------------------------------------------------------ average pooling
@HYP
@given(data=st.data())
def test_avg_pool_matches_torch(data):
    """Values and input gradients over random geometry, ceil_mode, count_include_pad and
    divisor_override (2-D and 3-D)."""
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    k, s, p, _, sizes = _geometry(draw, n, dilation=False)
    ceil, cip = draw(st.booleans()), draw(st.booleans())
    div = draw(st.none() | st.integers(1, 5)) if n > 1 else None
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x, rng = _data(draw, _shape(draw, 3, sizes), dtype)
    args = (_short(k), _short(s), _short(p), ceil, cip) + ((div,) if n > 1 else ())
    tfn, ffn = getattr(TF, f"avg_pool{n}d"), getattr(F, f"avg_pool{n}d")
    ty, g, tgrad = _torch_run(lambda t: tfn(t, *args), x, rng)
    with _x64(dtype):
        y, grad = _jax_run(lambda x: ffn(x, *args), x, g)
    assert y.shape == ty.shape
    assert_close(y, ty, TOL[dtype][0], "avg_pool")
    assert_close(grad, tgrad, TOL[dtype][1], "avg_pool input gradient")


# ------------------------------------------------------------------ adaptive pooling
@HYP
@given(data=st.data())
def test_adaptive_pools_match_torch(data):
    """Adaptive max (values, indices, gradients) and average (values, gradients) for
    any output size, divisible or not (torch's overlapping bins), larger than the
    input, and None entries (keep that size)."""
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    sizes = tuple(draw(st.integers(1, 4 if n == 3 else 9)) for _ in range(n))
    outs = tuple(draw(st.integers(1, L + 2) | (st.none() if n > 1 else st.nothing())) for L in sizes)
    out = outs[0] if n == 1 else outs
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x, rng = _data(draw, _shape(draw, 2, sizes), dtype)
    tmax, tavg = getattr(TF, f"adaptive_max_pool{n}d"), getattr(TF, f"adaptive_avg_pool{n}d")
    fmax, favg = getattr(F, f"adaptive_max_pool{n}d"), getattr(F, f"adaptive_avg_pool{n}d")
    (ty, ti), g, tgrad = _torch_run(lambda t: tmax(t, out, return_indices=True), x, rng)
    ty_avg, g_avg, tgrad_avg = _torch_run(lambda t: tavg(t, out), x, rng)

    @jax.jit
    def run(x, g, g_avg):  # both poolings in one program: one compilation per example
        y_max, pull_max = jax.vjp(lambda x: fmax(x, out), x)
        y_avg, pull_avg = jax.vjp(lambda x: favg(x, out), x)
        return y_max, fmax(x, out, return_indices=True)[1], y_avg, pull_max(g)[0], pull_avg(g_avg)[0]

    with _x64(dtype):
        y, i, y_avg, grad, grad_avg = run(jnp.asarray(x), jnp.asarray(g), jnp.asarray(g_avg))
    assert i.dtype == _index_dtype(dtype) and y_avg.shape == ty_avg.shape
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(i, ti)
    assert_close(grad, tgrad, TOL[dtype][1], "adaptive_max_pool input gradient")
    assert_close(y_avg, ty_avg, TOL[dtype][0], "adaptive_avg_pool")
    assert_close(grad_avg, tgrad_avg, TOL[dtype][1], "adaptive_avg_pool input gradient")


def test_adaptive_output_size_zero_is_empty_as_in_torch():
    x = jnp.zeros((1, 2, 4, 4))
    assert F.adaptive_avg_pool2d(x, (0, 3)).shape == tuple(TF.adaptive_avg_pool2d(torch.zeros(1, 2, 4, 4), (0, 3)).shape)
    y, i = F.adaptive_max_pool1d(x[0], 0, return_indices=True)
    assert y.shape == i.shape == (2, 4, 0)


# ------------------------------------------------------------------ power-average pooling
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_lp_pool_matches_torch(data):
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    k, s, _, _, sizes = _geometry(draw, n, dilation=False)
    norm = draw(st.sampled_from([1, 2, 3, 1.5, math.inf]))
    ceil = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x, rng = _data(draw, _shape(draw, 2, sizes), dtype)
    if norm in (1.5, 3):
        x = np.abs(x)  # a fractional power of a negative (sum of) power(s) is NaN in both
    kk = k[0] if n == 1 else _short(k)
    tfn, ffn = getattr(TF, f"lp_pool{n}d"), getattr(F, f"lp_pool{n}d")
    ty, g, tgrad = _torch_run(lambda t: tfn(t, norm, kk, _short(s), ceil), x, rng)
    with _x64(dtype):
        y, grad = _jax_run(lambda x: ffn(x, norm, kk, _short(s), ceil), x, g)
    assert_close(y, ty, TOL[dtype][0], "lp_pool")
    assert_close(grad, tgrad, TOL[dtype][1], "lp_pool input gradient")


def test_lp_pool_gradient_of_an_all_zero_window_is_zero():
    x = np.zeros((1, 2, 6))
    x[0, 1, 3:] = [1.0, -2.0, 0.5]
    tx = torch.tensor(x, requires_grad=True)
    TF.lp_pool1d(tx, 2, 3).sum().backward()
    grad = jax.jit(jax.grad(lambda x: jnp.sum(F.lp_pool1d(x, 2, 3))))(jnp.asarray(x, jnp.float32))
    tgrad = to_np(tx.grad)
    assert (tgrad[0, 0] == 0).all()
    assert np.isfinite(grad).all()
    assert_close(grad, tgrad, 1e-6, "lp_pool zero window")


# ------------------------------------------------------------------ unpooling
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_max_unpool_round_trip_matches_torch(data):
    """max_pool (indices) then max_unpool: values and the gradient of the unpooling's
    input equal torch's, with overlapping windows (repeated indices) and output_size."""
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 3]))
    k, s, p, _, sizes = _geometry(draw, n, dilation=False)
    s = s or k
    x, rng = _data(draw, _shape(draw, 2, sizes), np.float64)
    pooled, idx = getattr(TF, f"max_pool{n}d")(torch.tensor(x), k, s, p, return_indices=True)
    default = [(m - 1) * si + ki - 2 * pi for m, si, ki, pi in zip(pooled.shape[-n:], s, k, p)]
    if all(dflt - si < L < dflt + si for dflt, si, L in zip(default, s, sizes)):
        # the usual call: output_size=input.size() (or its spatial part)
        size = x.shape if x.ndim == n + 2 and draw(st.booleans()) else sizes
    else:  # the default size: valid when every index falls inside its plane
        size = None
        assume(int(idx.max()) < math.prod(default))
    tfn, ffn = getattr(TF, f"max_unpool{n}d"), getattr(F, f"max_unpool{n}d")
    tp, ip = to_np(pooled), to_np(idx)
    ty, g, tgrad = _torch_run(lambda t: tfn(t, idx, k, s, p, size), tp, rng)
    with jax.enable_x64(True):
        y, grad = _jax_run(lambda v: ffn(v, jnp.asarray(ip), k, s, p, size), tp, g)
    np.testing.assert_array_equal(y, ty)
    assert_close(grad, tgrad, 1e-12, "max_unpool input gradient")


def test_max_unpool_forward_mode_and_layer(x64):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 3, 6, 4)))
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    (v, i), _ = pool({}, {}, x)
    check_grads(lambda v: F.max_unpool2d(v, i, 2, output_size=x.shape) ** 2, (v,), order=1, modes=("fwd", "rev"))
    y, _ = unpool({}, {}, v, i, output_size=x.shape)
    seq = nn.Sequential(pool, unpool)  # the (values, indices) output feeds the unpooling
    y_seq, _ = seq({}, {}, x)
    np.testing.assert_array_equal(y, y_seq)
    np.testing.assert_array_equal(jnp.where(y != 0, x, 0), y)


# ------------------------------------------------------------------ layers and transformations
LAYERS = [
    (nn.MaxPool1d(3, 2, 1), tnn.MaxPool1d(3, 2, 1), (3, 9)),
    (nn.MaxPool2d((3, 2), 1, (1, 0), 1, True), tnn.MaxPool2d((3, 2), 1, (1, 0), 1, True), (3, 7, 6)),
    (nn.MaxPool3d(2, ceil_mode=True), tnn.MaxPool3d(2, ceil_mode=True), (2, 5, 4, 5)),
    (nn.AvgPool1d(3, 2, 1, True, False), tnn.AvgPool1d(3, 2, 1, True, False), (3, 8)),
    (nn.AvgPool2d(3, 2, 1, divisor_override=4), tnn.AvgPool2d(3, 2, 1, divisor_override=4), (3, 7, 6)),
    (nn.AvgPool3d((2, 3, 2), (1, 2, 2)), tnn.AvgPool3d((2, 3, 2), (1, 2, 2)), (2, 4, 5, 5)),
    (nn.AdaptiveMaxPool1d(4, True), tnn.AdaptiveMaxPool1d(4, True), (3, 9)),
    (nn.AdaptiveMaxPool2d((None, 3)), tnn.AdaptiveMaxPool2d((None, 3)), (3, 5, 7)),
    (nn.AdaptiveMaxPool3d(2), tnn.AdaptiveMaxPool3d(2), (2, 3, 4, 5)),
    (nn.AdaptiveAvgPool1d(4), tnn.AdaptiveAvgPool1d(4), (3, 9)),
    (nn.AdaptiveAvgPool2d((3, None)), tnn.AdaptiveAvgPool2d((3, None)), (3, 7, 5)),
    (nn.AdaptiveAvgPool3d((1, 2, 3)), tnn.AdaptiveAvgPool3d((1, 2, 3)), (2, 3, 4, 5)),
    (nn.LPPool1d(2, 3), tnn.LPPool1d(2, 3), (3, 9)),
    (nn.LPPool2d(2.0, (2, 3), 1, True), tnn.LPPool2d(2.0, (2, 3), 1, True), (3, 6, 7)),
    (nn.LPPool3d(1, 2), tnn.LPPool3d(1, 2), (2, 4, 4, 5)),
    (nn.MaxUnpool1d(2), tnn.MaxUnpool1d(2), None),
    (nn.MaxUnpool2d((2, 3), 1, (0, 1)), tnn.MaxUnpool2d((2, 3), 1, (0, 1)), None),
    (nn.MaxUnpool3d(2, padding=1), tnn.MaxUnpool3d(2, padding=1), None),
]


@pytest.mark.parametrize("ours,theirs", [(a, b) for a, b, _ in LAYERS], ids=lambda m: repr(m)[:40])
def test_repr_and_no_parameters_like_torch(ours, theirs):
    assert repr(ours) == str(theirs)
    params, state = ours.init(jax.random.PRNGKey(0))
    assert params == {} and state == {} and list(theirs.state_dict()) == []
    assert ours.param_names() == () and ours.buffer_names() == ()
    hash(ours)  # a static jit argument


@pytest.mark.parametrize("ours,theirs,shape", [c for c in LAYERS if c[2] is not None], ids=lambda m: repr(m)[:40])
def test_layers_batched_unbatched_jit_and_per_sample_gradients(x64, ours, theirs, shape):
    """Each layer, jitted (it is a static argument), on a batch and on one unbatched
    sample equals torch's layer; per-sample input gradients under jax.vmap equal torch's
    gradient of the batch (the samples are independent)."""
    x = np.random.default_rng(3).standard_normal((2,) + shape)
    tx = torch.tensor(x, requires_grad=True)
    tout = theirs(tx)
    ty = tout[0] if isinstance(tout, tuple) else tout
    (ty**2).sum().backward()

    def first(y):
        return y[0] if isinstance(y, tuple) else y

    @partial(jax.jit, static_argnums=1)
    def run(x, m):
        per_sample = jax.vmap(jax.grad(lambda xi: jnp.sum(first(m({}, {}, xi)[0]) ** 2)))(x)
        return first(m({}, {}, x)[0]), first(m({}, {}, x[1])[0]), per_sample

    y, y1, per_sample = run(jnp.asarray(x), ours)
    assert_close(y, to_np(ty), 1e-12, "batched")
    assert_close(y1, to_np(ty[1]), 1e-12, "unbatched")
    assert_close(per_sample, to_np(tx.grad), 1e-10, "per-sample gradients")


# ------------------------------------------------------------------ layouts
LAYOUT_CASES = [
    lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True),
    lambda x: F.max_pool2d(x, (2, 3), 1, (1, 0), (2, 1), True),
    lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
    lambda x: F.adaptive_max_pool2d(x, (3, 4), return_indices=True),
    lambda x: F.adaptive_avg_pool2d(x, (4, None)),
    lambda x: F.lp_pool2d(x, 2, 2, 1),
    lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2, output_size=x.shape),
]


@pytest.mark.parametrize("ctx,perm", [(F.channels_last, (0, 2, 3, 1)), (F.batch_last, (1, 2, 3, 0))])
def test_2d_forms_in_layout_blocks_equal_nchw(x64, ctx, perm):
    """The 2-D forms in channels_last()/batch_last() equal torch's layout, indices and
    gradients included; the layers also take an unbatched image there."""
    x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 3, 7, 6)))
    inv = tuple(int(a) for a in np.argsort(perm))
    unbatched = [p - 1 for p in perm if p]  # (H, W, C) or (C, H, W)

    def in_layout(fn, x):  # fn traced in the layout block on x moved into it, moved back
        with ctx():
            out = fn(x.transpose(perm))
        return jax.tree.map(lambda o: o.transpose(inv), out)

    def first(o):
        return o[0] if isinstance(o, tuple) else o

    @jax.jit
    def run(x):  # every case in one program: one compilation
        out = []
        for fn in LAYOUT_CASES:
            for f in (fn, partial(in_layout, fn)):
                out.append((f(x), jax.grad(lambda x: jnp.sum(first(f(x)) ** 2))(x)))
        layer = nn.MaxPool2d(3, 2, 1)
        with ctx():
            y = layer({}, {}, x[0].transpose(unbatched))[0]
        return out, (y, layer({}, {}, x)[0][0].transpose(unbatched))

    out, (y, y_ref) = run(x)
    for (ref, g_ref), (got, g) in zip(out[::2], out[1::2]):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert_close(a, b, 0 if jnp.issubdtype(a.dtype, jnp.integer) else 1e-12, "value in a layout block")
        assert_close(g, g_ref, 1e-12, "gradient in a layout block")
    np.testing.assert_array_equal(y, y_ref)


def test_1d_and_3d_forms_refuse_layout_blocks():
    with F.channels_last():
        with pytest.raises(ShapeError, match=r"MaxPool1d\(.*\) takes torch's layout \(N, C, L\) only.*outside"):
            nn.MaxPool1d(2)({}, {}, jnp.zeros((2, 3, 8)))
        with pytest.raises(ShapeError, match=r"avg_pool3d takes torch's layout \(N, C, D, H, W\) only"):
            F.avg_pool3d(jnp.zeros((2, 3, 4, 4, 4)), 2)
    with F.batch_last(), pytest.raises(ShapeError, match=r"adaptive_max_pool1d .* batch_last\(\)"):
        F.adaptive_max_pool1d(jnp.zeros((2, 3, 8)), 2)


# ------------------------------------------------------------------ errors
def test_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2.*padding \(2, 2\) must be .* at most half of kernel_size \(2, 2\).*lower the padding"):
        nn.MaxPool2d(2, 1, 2)({}, {}, jnp.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"avg_pool1d: padding \(2,\) must be"):
        F.avg_pool1d(jnp.zeros((1, 1, 6)), 3, 1, 2)
    with pytest.raises(ShapeError, match=r"MaxPool3d\(kernel_size=3.*input of spatial size \(2, 5, 5\) is too small.*output would be \(0, 1, 1\).*larger input"):
        nn.MaxPool3d(3)({}, {}, jnp.zeros((1, 2, 5, 5)))
    with pytest.raises(ShapeError, match=r"AvgPool2d\(kernel_size=2.*expected input \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(2, 3, 4, 4, 4\): a 3-D signal needs the 3d form"):
        nn.AvgPool2d(2)({}, {}, jnp.zeros((2, 3, 4, 4, 4)))
    with pytest.raises(ShapeError, match=r"AdaptiveAvgPool1d\(output_size=2\) expected input \(N, C, L\) or unbatched \(C, L\), got shape \(8,\)"):
        nn.AdaptiveAvgPool1d(2)({}, {}, jnp.zeros(8))
    with pytest.raises(ShapeError, match=r"LPPool1d\(.*floating-point input, got dtype int32.*astype"):
        nn.LPPool1d(2, 2)({}, {}, jnp.zeros((1, 2, 4), jnp.int32))
    with pytest.raises(ValueError, match="stride must be greater than zero"):
        F.max_pool1d(jnp.zeros((1, 1, 6)), 2, 0)
    with pytest.raises(ValueError, match="kernel_size must be an int or a tuple of 2 ints"):
        F.max_pool2d(jnp.zeros((1, 1, 6, 6)), (2, 2, 2))
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        F.avg_pool2d(jnp.zeros((1, 1, 4, 4)), 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be non-negative"):
        F.adaptive_avg_pool2d(jnp.zeros((1, 1, 4, 4)), (2, -1))
    with pytest.raises(ValueError, match="norm_type must be a non-zero value"):
        nn.LPPool2d(0, 2)


def test_unpool_errors():
    v, i = F.max_pool2d(jnp.zeros((1, 2, 6, 6)), 2, return_indices=True)
    with pytest.raises(ShapeError, match=r"MaxUnpool2d\(.*indices must be integers of the input's shape \(1, 2, 3, 3\).*return_indices=True"):
        nn.MaxUnpool2d(2)({}, {}, v, i[..., :2])
    with pytest.raises(ShapeError, match=r"needs the indices of the pooling"):
        nn.MaxUnpool2d(2)({}, {}, v)
    with pytest.raises(ValueError, match=r'invalid output_size "\(8, 6\)" \(dim 0 must be between 4 and 8'):
        F.max_unpool2d(v, i, 2, output_size=(8, 6))
    with pytest.raises(ValueError, match="output_size should be a sequence of 2 or 4 sizes"):
        F.max_unpool2d(v, i, 2, output_size=(2, 6, 6))

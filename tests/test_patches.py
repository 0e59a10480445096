"""im2col as one FFI call (funcnets.nn._patches), channels-last and channels-first: the
same patch matrix as XLA's slices, its transpose, every transformation, and the GEMM
convolution through it against torch."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnets.nn import _conv, _patches
from funcnets.nn import functional as F
from helpers import ON_X86_LINUX, assert_close, to_np



def _geometry(data):
    kernel = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    stride = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    dilation = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    pads = data.draw(st.tuples(*[st.tuples(st.integers(0, 3), st.integers(0, 3))] * 2))
    size = tuple(d * (k - 1) + data.draw(st.integers(1, 5)) for k, d in zip(kernel, dilation))
    return kernel, stride, pads, dilation, size


@pytest.mark.skipif(not ON_X86_LINUX, reason="the extension is built on x86-64 Linux only")
def test_extension_is_built_and_used():
    """CI builds the extension, and a GEMM convolution's program calls it (forward and
    backward, either layout) instead of XLA's slices; another dtype (bfloat16) takes the slices."""
    assert _patches.error() is None

    def loss(x, w):
        with F.channels_last():
            return jnp.sum(F.conv2d(x, w, None, 1, 1) ** 2)

    def loss_nchw(x, w):
        return jnp.sum(F.conv2d(x.transpose(0, 3, 1, 2), w, None, 1, 1) ** 2)

    x, w = jnp.ones((2, 4, 4, 3)), jnp.ones((5, 3, 3, 3))
    for f in (loss, loss_nchw):
        hlo = jax.jit(jax.grad(f)).lower(x, w).as_text()
        assert 'funcnets_im2col' in hlo and 'funcnets_col2im' in hlo
        hlo16 = jax.jit(jax.grad(f)).lower(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)).as_text()
        assert 'funcnets_im2col' not in hlo16 and 'funcnets_col2im' not in hlo16


@settings(max_examples=20, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), last=st.booleans(), data=st.data())
def test_patches_and_transpose_equal_xla_ops(dtype, last, data):
    """For any kernel, stride, dilation and (asymmetric) padding, channels last or first: the patches equal XLA's
    slices exactly, their transpose (the vjp) equals the transpose of XLA's slices (float64
    1e-12, float32 1e-6: only the order of the sums differs), and jvp, vmap over a
    non-leading axis and vmap of the vjp agree too."""
    kernel, stride, pads, dilation, (h, w) = _geometry(data)
    geometry = (kernel, stride, pads, dilation, last)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    tol = 1e-12 if dtype == np.float64 else 1e-6
    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(rng.standard_normal((2, h, w, 3) if last else (2, 3, h, w)).astype(dtype))

        def ours(x):
            return _patches.patches(x, kernel, stride, pads, dilation, channels_last=last)

        want = _patches._im2col_xla(x, geometry)
        got = jax.jit(ours)(x)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        np.testing.assert_array_equal(np.asarray(jax.jvp(ours, (x,), (2 * x,))[1]), 2 * np.asarray(want))

        ct = jnp.asarray(rng.standard_normal(want.shape).astype(dtype))
        back = jax.jit(lambda ct: jax.vjp(ours, x)[1](ct)[0])
        ref = _patches._col2im_xla(ct, geometry, x.shape)
        assert_close(back(ct), np.asarray(ref), tol, "transpose")

        xs = jnp.stack([x, -x], axis=1)  # mapped axis 1
        mapped = jax.jit(jax.vmap(ours, in_axes=1))(xs)
        np.testing.assert_array_equal(np.asarray(mapped), np.stack([want, -want]))
        cts = jnp.stack([ct, 3 * ct], axis=-1)
        mapped_back = jax.jit(jax.vmap(lambda c: jax.vjp(ours, x)[1](c)[0], in_axes=-1))(cts)
        assert_close(mapped_back, np.stack([ref, 3 * ref]), tol, "vmapped transpose")


@settings(max_examples=15, deadline=None)
@given(last=st.booleans(), data=st.data())
def test_gemm_conv_matches_torch(last, data):
    """Conv2d on channels-last or channels-first input through the GEMM lowering (patches
    from the FFI call) against torch: output, input and weight gradients in float64 to
    1e-10, and the weight's Hessian-vector product against XLA's own convolution."""
    kernel, stride, pads, dilation, size = _geometry(data)
    padding = tuple(p[0] for p in pads)  # torch's symmetric padding
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal((2, 3, *size))
    w = rng.standard_normal((4, 3, *kernel))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ref = torch.nn.functional.conv2d(tx, tw, None, stride, padding, dilation)
    g = rng.standard_normal(tuple(ref.shape))
    ref.backward(torch.tensor(g))

    def conv(x, w, lowering="gemm"):
        with _conv.conv_lowering(lowering):
            if not last:
                return F.conv2d(x, w, None, stride, padding, dilation)
            with F.channels_last():
                return F.conv2d(x.transpose(0, 2, 3, 1), w, None, stride, padding, dilation).transpose(0, 3, 1, 2)

    with jax.enable_x64(True):
        xj, wj, gj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(g)
        y, pull = jax.vjp(jax.jit(conv), xj, wj)
        dx, dw = pull(gj)
        for got, want, what in [(y, ref, "output"), (dx, tx.grad, "input gradient"), (dw, tw.grad, "weight gradient")]:
            assert_close(got, to_np(want), 1e-10, what)

        v = jnp.asarray(rng.standard_normal(w.shape))

        def hvp(lowering):
            def f(w):
                return jnp.sum(jnp.sin(conv(xj, w, lowering)))
            return jax.jit(lambda v: jax.jvp(jax.grad(f), (wj,), (v,))[1])(v)

        assert_close(hvp("gemm"), np.asarray(hvp("xla")), 1e-10, "Hessian-vector product")

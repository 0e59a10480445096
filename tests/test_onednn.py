"""oneDNN's convolutions behind XLA's FFI (funcnets.nn._onednn): built where they can be,
equal to torch's convolution, differentiable under every JAX transformation, and used
exactly where ``conv2d`` says.

Tolerances (float32, relative to the largest magnitude): 1e-5 for values and first
derivatives against torch and against XLA's convolution; higher derivatives (oneDNN's
kernels too: the three are primitives transposed into each other) the same 1e-5 against
XLA's.
"""

import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnets import nn, optim, train
from funcnets.models import resnet18
from funcnets.nn import _onednn
from funcnets.nn import functional as F

from helpers import assert_close, to_np

ON_X86_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"
needs_onednn = pytest.mark.skipif(not ON_X86_LINUX, reason="oneDNN's extension is built on x86-64 Linux only")

# (N, H, W, C_in, C_out, k, stride, padding, dilation): ResNet's stem and 3×3 stages, and
# odd shapes (a batch that does not split evenly over the threads, batch 1, non-square,
# dilation, a 1×1 stride-2 downsample, padding beyond the kernel's reach)
GEOMETRIES = [
    (8, 32, 32, 3, 16, 7, 2, 3, 1),
    (8, 16, 16, 64, 64, 3, 1, 1, 1),
    (5, 15, 13, 7, 9, 3, 2, 1, 1),
    (1, 12, 12, 4, 6, 3, 1, 2, 2),
    (3, 9, 9, 8, 16, 1, 2, 0, 1),
    (2, 6, 7, 3, 5, 2, 1, 3, 1),
]


def test_built_and_loaded_on_x86_64_linux():
    """CI runs on x86-64 Linux: a failed build must fail here, not fall back silently."""
    if ON_X86_LINUX:
        assert nn.onednn_error() is None, nn.onednn_error()
    else:
        assert "XLA's convolutions are used" in nn.onednn_error()


def _case(geometry, seed=0):
    n, h, w, c, o, k, s, p, d = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    return x, wt, ((s, s), (p, p), (d, d))


@needs_onednn
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_values_and_gradients_match_torch(geometry):
    x, w, (stride, padding, dilation) = _case(geometry)

    def f(x, w):
        return _onednn.conv2d(x, w, stride, padding, dilation)

    y, vjp = jax.vjp(jax.jit(f), jnp.asarray(x), jnp.asarray(w))
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx, dw = vjp(jnp.asarray(dy))

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=padding, dilation=dilation)
    ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    assert_close(y, to_np(ty).transpose(0, 2, 3, 1), 1e-5, "value")
    assert_close(dx, to_np(tx.grad).transpose(0, 2, 3, 1), 1e-5, "input gradient")
    assert_close(dw, to_np(tw.grad), 1e-5, "weight gradient")


@needs_onednn
def test_every_transformation_matches_xla():
    x, w, geometry = _case((3, 9, 9, 4, 5, 3, 2, 1, 1))
    x, w = jnp.asarray(x), jnp.asarray(w)

    def conv(x, w):
        return _onednn.conv2d(x, w, *geometry)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)))

    def both(check):
        check(conv, lambda x, w: _onednn._xla(x, w, *geometry))

    def grads(f, ref):
        for a, b in zip(jax.grad(loss(f), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
            assert_close(a, b, 1e-5, "grad")

    def rev_over_rev(f, ref):  # a gradient penalty: the gradients are differentiated again
        def penalty(f):
            return lambda x, w: jnp.sum(jax.grad(loss(f), 1)(x, w) ** 2)

        for a, b in zip(jax.grad(penalty(f), (0, 1))(x, w), jax.grad(penalty(ref), (0, 1))(x, w)):
            assert_close(a, b, 1e-5, "reverse over reverse")

    def per_example(f, ref):
        xs = jnp.stack([x, 2 * x])
        assert_close(jax.vmap(jax.grad(loss(f), 1), (0, None))(xs, w),
                     jax.vmap(jax.grad(loss(ref), 1), (0, None))(xs, w), 1e-5, "vmap of grad")

    both(grads)
    both(rev_over_rev)
    both(per_example)
    t = (jnp.ones_like(x), jnp.cos(w))
    ref = lambda x, w: _onednn._xla(x, w, *geometry)  # noqa: E731
    assert_close(jax.jvp(conv, (x, w), t)[1], jax.jvp(ref, (x, w), t)[1], 1e-5, "jvp")
    hvp = lambda f: jax.jvp(jax.grad(loss(f), 1), (x, w), t)[1]  # noqa: E731
    assert_close(hvp(conv), hvp(ref), 1e-5, "Hessian-vector product (forward over reverse)")
    ws = jnp.stack([w, jnp.cos(w)])  # a batch of weights: one oneDNN call per weight
    assert_close(jax.grad(lambda ws: loss(jax.vmap(conv, (None, 0)))(x, ws))(ws),
                 jax.grad(lambda ws: loss(jax.vmap(ref, (None, 0)))(x, ws))(ws), 1e-5, "grad of vmap over weights")
    # every derivative of the first and second order runs oneDNN's kernels, none XLA's
    for f in (jax.grad(loss(conv), (0, 1)), lambda x, w: jax.jvp(conv, (x, w), t)[1],
              lambda x, w: jax.grad(penalty_of(conv, loss), (0, 1))(x, w)):
        hlo = _hlo(f, x, w)
        assert "funcnets_conv_" in hlo and "convolution(" not in hlo, hlo[:2000]


def penalty_of(conv, loss):
    return lambda x, w: jnp.sum(jax.grad(loss(conv), 1)(x, w) ** 2)


def _hlo(f, *args) -> str:
    """The lowered program, traced afresh (jit caches traces by function)."""
    return jax.jit(lambda *a: f(*a)).lower(*args).as_text()


@needs_onednn
def test_where_conv2d_uses_onednn():
    """Channels-last float32 maps above the GEMM threshold take oneDNN; float64, small
    maps, NCHW, groups and ``conv_lowering("xla")`` do not."""
    conv = nn.Conv2d(8, 16, 3, padding=1)
    params, _ = conv.init(jax.random.PRNGKey(0))
    x = jnp.ones((2, 8, 8, 8))

    def apply(p, x):
        with F.channels_last():
            return conv(p, {}, x)[0]

    assert "funcnets_conv_forward" in _hlo(apply, params, x)
    with nn.conv_lowering("xla"):
        assert "funcnets_conv" not in _hlo(apply, params, x)
    assert "funcnets_conv" not in _hlo(apply, params, x[:, :4, :4])  # 16 output pixels: the GEMM
    assert "funcnets_conv" not in _hlo(lambda p, x: conv(p, {}, x)[0], params, x)  # NCHW
    grouped = nn.Conv2d(8, 16, 3, padding=1, groups=2)
    gparams, _ = grouped.init(jax.random.PRNGKey(0))
    with F.channels_last():
        assert "funcnets_conv" not in _hlo(lambda p, x: grouped(p, {}, x)[0], gparams, x)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        assert "funcnets_conv" not in _hlo(apply, p64, x.astype(jnp.float64))


@needs_onednn
def test_train_step_takes_gradients_from_onednn_and_torch_keeps_its_threads():
    model = resnet18(num_classes=10)
    params, state = model.init(jax.random.PRNGKey(0))
    opt = optim.sgd(0.01, momentum=0.9)
    step = train.make_train_step(train.supervised_loss(model), opt)
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(1))
    batch = (jnp.ones((2, 3, 32, 32)), jnp.zeros(2, jnp.int32))
    hlo = step.lower(ts, batch).as_text()
    for target in ("forward", "backward_data", "backward_weights"):
        assert f"funcnets_conv_{target}" in hlo, target
    threads = torch.get_num_threads()
    step(ts, batch)  # oneDNN runs single-threaded in XLA's threads and puts OpenMP's setting back
    assert torch.get_num_threads() == threads

"""oneDNN's convolutions behind XLA's FFI (funcnets.nn._onednn): built where they can be,
equal to torch's convolution, differentiable under every JAX transformation, and used
exactly where ``conv2d`` says.

Tolerances (float32, relative to the largest magnitude): 1e-5 for values and first
derivatives against torch and against XLA's convolution; higher derivatives (oneDNN's
kernels too: the three are primitives transposed into each other) the same 1e-5 against
XLA's.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnets import nn, optim, train
from funcnets.models import resnet18
from funcnets.nn import _onednn
from funcnets.nn import functional as F

from helpers import ON_X86_LINUX, assert_close, to_np

needs_onednn = pytest.mark.skipif(not ON_X86_LINUX, reason="oneDNN's extension is built on x86-64 Linux only")

# (N, spatial size, C_in, C_out, k, stride, padding, dilation): ResNet's stem and 3×3
# stages, and odd shapes (a batch that does not split evenly over the threads, batch 1,
# non-square, dilation, a 1×1 stride-2 downsample, padding beyond the kernel's reach);
# Conv1d and Conv3d ones
GEOMETRIES = [
    (8, (32, 32), 3, 16, 7, 2, 3, 1),
    (8, (16, 16), 64, 64, 3, 1, 1, 1),
    (5, (15, 13), 7, 9, 3, 2, 1, 1),
    (1, (12, 12), 4, 6, 3, 1, 2, 2),
    (3, (9, 9), 8, 16, 1, 2, 0, 1),
    (2, (6, 7), 3, 5, 2, 1, 3, 1),
    (5, (37,), 6, 7, 3, 2, 1, 1),
    (3, (20,), 8, 8, 5, 1, 4, 2),
    (3, (6, 7, 5), 3, 4, 3, 1, 1, 1),
    (2, (5, 6, 5), 4, 6, 2, 2, 1, 1),
]


def test_built_and_loaded_on_x86_64_linux():
    """CI runs on x86-64 Linux: a failed build must fail here, not fall back silently."""
    if ON_X86_LINUX:
        assert nn.onednn_error() is None, nn.onednn_error()
    else:
        assert "XLA's convolutions are used" in nn.onednn_error()


def _case(geometry, channels_last=True, seed=0):
    """x in the layout, the (O, I, *K) weight, and (stride, pads, dilation, channels_last)."""
    n, size, c, o, k, s, p, d = geometry
    rng = np.random.default_rng(seed)
    r = len(size)
    x = rng.standard_normal((n, c, *size)).astype(np.float32)
    wt = (rng.standard_normal((o, c, *(k,) * r)) / np.sqrt(c * k**r)).astype(np.float32)
    return _layout(x, channels_last), wt, ((s,) * r, ((p, p),) * r, (d,) * r, channels_last)


def _layout(a, channels_last):
    """An (N, C, *S) array in the layout; self-inverse with ``_torch_layout``."""
    return np.moveaxis(a, 1, -1) if channels_last else a


def _torch_layout(a, channels_last):
    return np.moveaxis(a, -1, 1) if channels_last else a


@needs_onednn
@pytest.mark.parametrize("bias", [False, True], ids=["", "bias"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "channels_first"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, (g[0], *g[1], *g[2:]))))
def test_values_and_gradients_match_torch(geometry, channels_last, bias):
    x, w, (stride, pads, dilation, last) = _case(geometry, channels_last)
    b = np.random.default_rng(2).standard_normal(w.shape[0]).astype(np.float32) if bias else None

    def f(x, w, b):
        return _onednn.conv(x, w, stride, pads, dilation, last, b)

    y, vjp = jax.vjp(jax.jit(f), jnp.asarray(x), jnp.asarray(w), b)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx, dw, db = vjp(jnp.asarray(dy))

    tx = torch.tensor(_torch_layout(x, last), requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    conv = (None, torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[w.ndim - 2]
    ty = conv(tx, tw, tb, stride=stride, padding=[p for p, _ in pads], dilation=dilation)
    ty.backward(torch.tensor(_torch_layout(dy, last)))
    assert_close(y, _layout(to_np(ty), last), 1e-5, "value")
    assert_close(dx, _layout(to_np(tx.grad), last), 1e-5, "input gradient")
    assert_close(dw, to_np(tw.grad), 1e-5, "weight gradient")
    if bias:
        assert_close(db, to_np(tb.grad), 1e-5, "bias gradient")
        assert "funcnets_conv_forward_bias" in _hlo(f, x, w, b)


@needs_onednn
@pytest.mark.parametrize("geometry,channels_last", [((3, (9, 9), 4, 5, 3, 2, 1, 1), True),
                                                    ((3, (11,), 4, 5, 3, 2, 1, 1), False)], ids=["NHWC", "NCW"])
def test_every_transformation_matches_xla(geometry, channels_last):
    x, w, geometry = _case(geometry, channels_last)
    x, w = jnp.asarray(x), jnp.asarray(w)

    def conv(x, w):
        return _onednn.conv(x, w, *geometry)

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


@needs_onednn
@pytest.mark.parametrize("geometry,channels_last", [((3, (9, 9), 4, 5, 3, 2, 1, 1), True),
                                                    ((3, (11,), 4, 5, 3, 2, 1, 1), False)], ids=["NHWC", "NCW"])
def test_every_transformation_with_a_bias_matches_xla(geometry, channels_last):
    """The bias added inside oneDNN's forward kernel (one primitive of x, w and b): its
    derivatives are the trio's and XLA's sum over the bias, under every transformation."""
    x, w, geometry = _case(geometry, channels_last)
    x, w = jnp.asarray(x), jnp.asarray(w)
    b = jnp.linspace(-1, 1, w.shape[0], dtype=jnp.float32)
    c_axis = -1 if channels_last else 1

    def conv(x, w, b):
        return _onednn.conv(x, w, *geometry, bias=b)

    def ref(x, w, b):
        return _onednn._xla(x, w, *geometry) + jnp.expand_dims(b, [a for a in range(x.ndim) if a != c_axis % x.ndim])

    def loss(f):
        return lambda x, w, b: jnp.sum(jnp.sin(f(x, w, b)))

    args = (x, w, b)
    assert_close(conv(*args), ref(*args), 1e-5, "value")
    for a, r in zip(jax.grad(loss(conv), (0, 1, 2))(*args), jax.grad(loss(ref), (0, 1, 2))(*args)):
        assert_close(a, r, 1e-5, "grad")

    def penalty(f):  # gradients differentiated again
        return lambda x, w, b: jnp.sum(jax.grad(loss(f), 1)(x, w, b) ** 2) + jnp.sum(jax.grad(loss(f), 2)(x, w, b) ** 2)

    for a, r in zip(jax.grad(penalty(conv), (0, 1, 2))(*args), jax.grad(penalty(ref), (0, 1, 2))(*args)):
        assert_close(a, r, 1e-5, "reverse over reverse")
    cases = {"x batched (folded into the batch)": ((0, None, None), (jnp.stack([x, 2 * x]), w, b)),
             "x and b batched": ((0, None, 0), (jnp.stack([x, 2 * x]), w, jnp.stack([b, jnp.cos(b)]))),
             "w batched": ((None, 0, None), (x, jnp.stack([w, jnp.cos(w)]), b))}
    for name, (axes, batch) in cases.items():
        for a, r in zip(jax.vmap(jax.grad(loss(conv), (1, 2)), axes)(*batch),
                        jax.vmap(jax.grad(loss(ref), (1, 2)), axes)(*batch)):
            assert_close(a, r, 1e-5, f"vmap of grad, {name}")
    t = (jnp.ones_like(x), jnp.cos(w), jnp.sin(b))
    assert_close(jax.jvp(conv, args, t)[1], jax.jvp(ref, args, t)[1], 1e-5, "jvp")
    hvp = lambda f: jax.jvp(jax.grad(loss(f), (1, 2)), args, t)[1]  # noqa: E731
    for a, r in zip(hvp(conv), hvp(ref)):
        assert_close(a, r, 1e-5, "Hessian-vector product (forward over reverse)")
    for f in (conv, jax.grad(loss(conv), (0, 1, 2)), jax.grad(penalty(conv), (0, 1, 2))):
        hlo = _hlo(f, *args)
        assert "funcnets_conv_forward_bias" in hlo and "convolution(" not in hlo, hlo[:2000]


def penalty_of(conv, loss):
    return lambda x, w: jnp.sum(jax.grad(loss(conv), 1)(x, w) ** 2)


def _hlo(f, *args) -> str:
    """The lowered program, traced afresh (jit caches traces by function)."""
    return jax.jit(lambda *a: f(*a)).lower(*args).as_text()


@needs_onednn
def test_where_conv2d_uses_onednn():
    """Float32 maps above the GEMM threshold take oneDNN, channels-last or NCHW (read as
    it is, no transposes), and so do float32 Conv1d and Conv3d; float64, small maps,
    groups and ``conv_lowering("xla")`` do not."""
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
    nchw = _hlo(lambda p, x: conv(p, {}, x)[0], params, x)
    assert "funcnets_conv_forward" in nchw and "transpose" not in nchw
    for layer, shape in [(nn.Conv1d(8, 16, 3), (2, 8, 40)), (nn.Conv3d(4, 8, 3), (2, 4, 6, 6, 6))]:
        p, _ = layer.init(jax.random.PRNGKey(0))
        hlo = _hlo(lambda p, x: layer(p, {}, x)[0], p, jnp.ones(shape))
        assert "funcnets_conv_forward" in hlo and "transpose" not in hlo, type(layer).__name__
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

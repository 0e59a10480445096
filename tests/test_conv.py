"""Convolutions against torch: Conv1d/2d/3d and ConvTranspose1d/2d/3d, their functional forms
and their lowerings (depthwise shifted multiply-adds, sub-pixel transposed convolutions).

The option space (stride, padding incl. 'same'/'valid', dilation, groups incl. depthwise
with channel multipliers, bias, padding_mode, output_padding, output_size, unbatched
inputs) is drawn by hypothesis; each case runs the same weights, input and cotangent
through torch and funcnets and compares the output and the input, weight and bias
gradients: float64 within 1e-10, float32 within 1e-5 (values) and 1e-4 (gradients),
relative to the largest reference value.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from funcnets import ShapeError, nn
from funcnets.nn import _conv
from funcnets.nn._gemm import times_weight
from funcnets.nn import functional as F
from helpers import assert_close, to_np

DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**31 - 1)
TOL = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-4)}  # (values, gradients)
OURS = {(1, False): nn.Conv1d, (2, False): nn.Conv2d, (3, False): nn.Conv3d,
        (1, True): nn.ConvTranspose1d, (2, True): nn.ConvTranspose2d, (3, True): nn.ConvTranspose3d}
THEIRS = {(1, False): torch.nn.Conv1d, (2, False): torch.nn.Conv2d, (3, False): torch.nn.Conv3d,
          (1, True): torch.nn.ConvTranspose1d, (2, True): torch.nn.ConvTranspose2d, (3, True): torch.nn.ConvTranspose3d}
SIZES = {1: (7,), 2: (6, 5), 3: (4, 5, 3)}  # small, uneven spatial sizes


@partial(jax.jit, static_argnums=(0, 4, 5))
def _forward_backward(layer, params, x, g, output_size, trace_context):
    """``trace_context`` (the lowering contexts in force) keys jit's cache: the contexts
    choose the lowering while tracing, which jit's cache does not see."""
    y, pull = jax.vjp(lambda p, x: layer(p, {}, x, **({"output_size": output_size} if output_size else {}))[0], params, x)
    return y, *pull(g)


def _compare(layer, tlayer, x, rng, dtype, output_size=None):
    """The same weights, input and cotangent through both layers: output and gradients."""
    rtol_v, rtol_g = TOL[dtype]
    tlayer = tlayer.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for p in tlayer.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape))))
    params = {n: jnp.asarray(to_np(p)) for n, p in tlayer.named_parameters()}
    assert [n for n, _ in layer.named_parameters(params)] == [n for n, _ in tlayer.named_parameters()]
    xt = torch.tensor(x, requires_grad=True)
    yt = tlayer(xt, output_size=list(output_size)) if output_size else tlayer(xt)
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(g))
    trace_context = _conv._LOWERING.get()
    y, dp, dx = _forward_backward(layer, params, jnp.asarray(x), jnp.asarray(g), output_size, trace_context)
    what = repr(layer)
    assert y.shape == tuple(yt.shape) and y.dtype == dtype, what
    assert_close(y, to_np(yt), rtol_v, f"{what}: output")
    assert_close(dx, to_np(xt.grad), rtol_g, f"{what}: input gradient")
    for n, p in tlayer.named_parameters():
        assert_close(dp[n], to_np(p.grad), rtol_g, f"{what}: {n} gradient")


# ------------------------------------------------------------------ parity, hypothesis
@st.composite
def conv_options(draw):
    n = draw(st.sampled_from([1, 2, 3]))
    c_in = draw(st.sampled_from([1, 2, 3, 4]))
    groups = draw(st.sampled_from([g for g in (1, 2, c_in) if c_in % g == 0]))  # c_in: depthwise
    c_out = groups * draw(st.integers(1, 2))  # 2·groups with groups == c_in: channel multiplier 2
    ints = lambda lo, hi: draw(st.one_of(st.integers(lo, hi), st.tuples(*[st.integers(lo, hi)] * n)))  # noqa: E731
    kernel, dilation = ints(1, 3), ints(1, 2)
    padding = draw(st.sampled_from(["same", "valid", "int"]))
    stride = 1 if padding == "same" else ints(1, 2)
    if padding == "int":
        padding = ints(0, 2)
    return dict(n=n, in_channels=c_in, out_channels=c_out, kernel_size=kernel, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=draw(st.booleans()),
                padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@settings(max_examples=20, deadline=None)
@given(opts=conv_options(), unbatched=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(opts=dict(n=2, in_channels=3, out_channels=6, kernel_size=3, stride=2, padding=1, dilation=1, groups=3,
                   bias=True, padding_mode="zeros"), unbatched=False, dtype=np.float64, seed=0)  # depthwise ×2
@example(opts=dict(n=2, in_channels=2, out_channels=4, kernel_size=(2, 4), stride=1, padding="same",
                   dilation=(1, 2), groups=2, bias=False, padding_mode="circular"), unbatched=True, dtype=np.float64, seed=1)
@example(opts=dict(n=1, in_channels=4, out_channels=2, kernel_size=4, stride=1, padding="same", dilation=1,
                   groups=2, bias=True, padding_mode="zeros"), unbatched=False, dtype=np.float32, seed=2)
@example(opts=dict(n=3, in_channels=2, out_channels=2, kernel_size=(1, 2, 3), stride=(2, 1, 1), padding=(1, 0, 1),
                   dilation=1, groups=2, bias=True, padding_mode="reflect"), unbatched=False, dtype=np.float64, seed=3)
def test_conv_matches_torch(opts, unbatched, dtype, seed):
    opts = dict(opts)
    n = opts.pop("n")
    rng = np.random.default_rng(seed)
    with jax.enable_x64(dtype == np.float64):
        layer, tlayer = OURS[n, False](**opts), THEIRS[n, False](**opts)
        assert repr(layer) == repr(tlayer)
        shape = (opts["in_channels"],) + tuple(s + 2 for s in SIZES[n])  # big enough for kernel 3, dilation 2
        x = rng.standard_normal(shape if unbatched else (2,) + shape).astype(dtype)
        _compare(layer, tlayer, x, rng, dtype)


@st.composite
def transposed_options(draw):
    n = draw(st.sampled_from([1, 2, 3]))
    c_in = draw(st.sampled_from([1, 2, 4]))
    groups = draw(st.sampled_from([g for g in (1, 2, c_in) if c_in % g == 0]))
    c_out = groups * draw(st.integers(1, 2))
    stride = draw(st.tuples(*[st.integers(1, 3)] * n))
    dilation = draw(st.tuples(*[st.integers(1, 2)] * n))
    kernel = draw(st.tuples(*[st.integers(1, 4)] * n))
    # at most d·(k - 1), and small enough for a nonempty output from SIZES (torch's rule)
    padding = tuple(draw(st.integers(0, min(d * (k - 1), ((L - 1) * s + d * (k - 1)) // 2)))
                    for k, d, s, L in zip(kernel, dilation, stride, SIZES[n]))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    return dict(n=n, in_channels=c_in, out_channels=c_out, kernel_size=kernel, stride=stride, padding=padding,
                output_padding=output_padding, groups=groups, bias=draw(st.booleans()), dilation=dilation)


@settings(max_examples=20, deadline=None)
@given(opts=transposed_options(), use_output_size=st.booleans(), unbatched=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(opts=dict(n=2, in_channels=4, out_channels=2, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                   output_padding=(0, 0), groups=1, bias=True, dilation=(1, 1)),
         use_output_size=False, unbatched=False, dtype=np.float64, seed=0)  # the ×2 upsampling
@example(opts=dict(n=2, in_channels=2, out_channels=4, kernel_size=(3, 4), stride=(2, 3), padding=(1, 2),
                   output_padding=(1, 0), groups=2, bias=True, dilation=(2, 1)),
         use_output_size=True, unbatched=True, dtype=np.float64, seed=1)
@example(opts=dict(n=1, in_channels=2, out_channels=4, kernel_size=(3,), stride=(2,), padding=(1,),
                   output_padding=(1,), groups=2, bias=False, dilation=(1,)),
         use_output_size=False, unbatched=False, dtype=np.float32, seed=2)
@example(opts=dict(n=2, in_channels=1, out_channels=1, kernel_size=(1, 2), stride=(1, 1), padding=(0, 0),
                   output_padding=(1, 0), groups=1, bias=False, dilation=(2, 1)),
         use_output_size=False, unbatched=False, dtype=np.float32, seed=0)  # output_padding >= stride (< dilation)
def test_conv_transpose_matches_torch(opts, use_output_size, unbatched, dtype, seed):
    """Every option, and ``output_size`` (any size in torch's range) instead of ``output_padding``."""
    opts = dict(opts)
    n = opts.pop("n")
    rng = np.random.default_rng(seed)
    shape = (opts["in_channels"],) + SIZES[n]
    output_size = None
    if use_output_size:
        lo = [(L - 1) * s - 2 * p + d * (k - 1) + 1
              for L, s, p, d, k in zip(SIZES[n], opts["stride"], opts["padding"], opts["dilation"], opts["kernel_size"])]
        output_size = tuple(int(m + rng.integers(0, s)) for m, s in zip(lo, opts["stride"]))
        opts["output_padding"] = 0  # output_size overrides it; 0 is valid for every stride
    with jax.enable_x64(dtype == np.float64):
        layer, tlayer = OURS[n, True](**opts), THEIRS[n, True](**opts)
        assert repr(layer) == repr(tlayer)
        x = rng.standard_normal(shape if unbatched else (2,) + shape).astype(dtype)
        _compare(layer, tlayer, x, rng, dtype, output_size)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_functional_forms_match_torch(x64, n):
    """F.conv{1,2,3}d and F.conv_transpose{1,2,3}d (torch's argument order), batched and not."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, 4) + SIZES[n])
    w, wt, b = rng.standard_normal((6, 2) + (3,) * n), rng.standard_normal((4, 3) + (2,) * n), rng.standard_normal(6)
    ours = {1: (F.conv1d, F.conv_transpose1d), 2: (F.conv2d, F.conv_transpose2d), 3: (F.conv3d, F.conv_transpose3d)}[n]
    theirs = {1: (torch.nn.functional.conv1d, torch.nn.functional.conv_transpose1d),
              2: (torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d),
              3: (torch.nn.functional.conv3d, torch.nn.functional.conv_transpose3d)}[n]
    T = torch.tensor
    for xx in (x, x[0]):
        ref = theirs[0](T(xx), T(w), T(b), 1, "same", 1, 2)
        assert_close(ours[0](jnp.asarray(xx), jnp.asarray(w), jnp.asarray(b), 1, "same", 1, 2), to_np(ref), 1e-12, "conv")
        ref = theirs[1](T(xx), T(wt), T(b), 2, 1, 1, 2, 1)  # stride, padding, output_padding, groups, dilation
        got = ours[1](jnp.asarray(xx), jnp.asarray(wt), jnp.asarray(b), 2, 1, 1, 2, 1)
        assert_close(got, to_np(ref), 1e-12, "conv_transpose")


# ------------------------------------------------------------------ lowerings
@pytest.mark.parametrize("lowering", ["auto", "xla"])
@pytest.mark.parametrize("stride,dilation,multiplier", [(1, 1, 1), (2, 1, 2), (1, 2, 1)])
def test_depthwise_lowerings_match_torch(x64, lowering, stride, dilation, multiplier):
    """Depthwise Conv2d: the shifted multiply-adds (auto on CPU, with the one-pass weight
    gradient) and XLA's grouped convolution both equal torch, values and gradients, under jit."""
    rng = np.random.default_rng(stride + 3 * dilation)
    layer = nn.Conv2d(3, 3 * multiplier, 3, stride=stride, padding=1, dilation=dilation, groups=3)
    shape = (2, 3, 7, 8)
    assert _conv.use_depthwise(shape, (3 * multiplier, 1, 3, 3), 3) == (jax.default_backend() == "cpu")
    with nn.conv_lowering(lowering):
        _compare(layer, torch.nn.Conv2d(3, 3 * multiplier, 3, stride=stride, padding=1, dilation=dilation, groups=3),
                 rng.standard_normal(shape), rng, np.float64)
        hlo = jax.jit(lambda x, w: layer({"weight": w}, {}, x)[0]).lower(jnp.zeros(shape), jnp.zeros((3 * multiplier, 1, 3, 3))).as_text()
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: layer({"weight": w}, {}, jnp.ones(shape))[0].sum()))(
            jnp.ones((3 * multiplier, 1, 3, 3))))
    assert ("feature_group_count = 3" in hlo) == (lowering == "xla" or jax.default_backend() != "cpu")
    # the weight gradient is the one-pass primitive (one variadic reduction over the 9 taps)
    assert ("funcnets_depthwise_backward_weights" in jaxpr) == (lowering == "auto" and jax.default_backend() == "cpu")


@pytest.mark.parametrize("lowering", ["auto", "xla"])
def test_grouped_lowerings_match_torch(x64, lowering):
    """A grouped (not depthwise) Conv2d: one convolution per group on CPU, XLA's grouped
    convolution under conv_lowering("xla"); both equal torch."""
    rng = np.random.default_rng(5)
    layer, tlayer = nn.Conv2d(6, 4, 3, padding=1, groups=2), torch.nn.Conv2d(6, 4, 3, padding=1, groups=2)
    with nn.conv_lowering(lowering):
        _compare(layer, tlayer, rng.standard_normal((2, 6, 5, 6)), rng, np.float64)
        hlo = jax.jit(lambda x, w: layer({"weight": w, "bias": jnp.zeros(4)}, {}, x)[0]).lower(
            jnp.zeros((2, 6, 5, 6)), jnp.zeros((4, 3, 3, 3))).as_text()
    assert ("feature_group_count = 2" in hlo) == (lowering == "xla" or jax.default_backend() != "cpu")


@pytest.mark.parametrize("lowering", ["auto", "xla"])
@pytest.mark.parametrize("n", [1, 3])
def test_conv1d_conv3d_lowerings_match_torch(x64, lowering, n):
    """1-D and 3-D convolutions: 2-D channels-last ones on CPU (a 1-pixel-high image; one
    per depth tap), XLA's own under conv_lowering("xla"); both equal torch."""
    rng = np.random.default_rng(n)
    kwargs = dict(stride=2, padding=(2,) + (1,) * (n - 1), dilation=(2,) + (1,) * (n - 1), groups=2)
    layer, tlayer = OURS[n, False](4, 6, 3, **kwargs), THEIRS[n, False](4, 6, 3, **kwargs)
    shape = (2, 4) + SIZES[n]
    with nn.conv_lowering(lowering):
        _compare(layer, tlayer, rng.standard_normal(shape), rng, np.float64)
        hlo = jax.jit(lambda x, w: layer({"weight": w, "bias": jnp.zeros(6)}, {}, x)[0]).lower(
            jnp.zeros(shape), jnp.zeros((6, 2) + (3,) * n)).as_text()
    nd_conv = "[b, f, 0]x" if n == 1 else "[b, f, 0, 1, 2]x"
    assert (nd_conv in hlo) == (lowering == "xla" or jax.default_backend() != "cpu")


@pytest.mark.parametrize("lowering", ["auto", "xla"])
def test_transposed_lowerings_match_torch_float32(lowering):
    """Float32 on CPU: oneDNN's deconvolution, or one GEMM for k2 s2 (auto), and XLA's
    input-dilated convolution; the sub-pixel decomposition is the float64 tests' lowering."""
    rng = np.random.default_rng(0)
    for k, s, p, op in [(2, 2, 0, 0), (4, 2, 1, 0), (3, 2, 1, 1), (3, 3, 0, 2)]:
        layer, tlayer = nn.ConvTranspose2d(4, 3, k, s, p, op), torch.nn.ConvTranspose2d(4, 3, k, s, p, op)
        with nn.conv_lowering(lowering):
            _compare(layer, tlayer, rng.standard_normal((2, 4, 5, 6)).astype(np.float32), rng, np.float32)
            hlo = jax.jit(lambda x, w: F.conv_transpose2d(x, w, None, s, p, op)).lower(
                jnp.zeros((2, 4, 5, 6)), jnp.zeros((4, 3, k, k))).as_text()
        assert (f"lhs_dilate = [{s}, {s}]" in hlo) == (lowering == "xla" or jax.default_backend() != "cpu")


def test_transposed_onednn():
    """On CPU a 2-D float32 transposed convolution with groups=1 is oneDNN's deconvolution
    (where oneDNN is built), with oneDNN's gradients: torch's numbers, float32 tolerances."""
    rng = np.random.default_rng(0)
    for k, s, p, op, d in [(4, 2, 1, 0, 1), (3, 3, 2, 2, 2)]:
        layer, tlayer = nn.ConvTranspose2d(5, 3, k, s, p, op, dilation=d), torch.nn.ConvTranspose2d(5, 3, k, s, p, op, dilation=d)
        _compare(layer, tlayer, rng.standard_normal((2, 5, 6, 7)).astype(np.float32), rng, np.float32)
        hlo = jax.jit(lambda x, w: F.conv_transpose2d(x, w, None, s, p, op, 1, d)).lower(
            jnp.zeros((2, 5, 6, 7)), jnp.zeros((5, 3, k, k))).as_text()
        assert ("funcnets_conv_backward_data" in hlo) == (nn.onednn_error() is None and jax.default_backend() == "cpu")
    # channels-last: oneDNN's own layout, no transposes around it
    x = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    g = rng.standard_normal((2, 3, 12, 14)).astype(np.float32)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ref = torch.nn.functional.conv_transpose2d(tx, tw, None, 2, 1)
    ref.backward(torch.tensor(g))

    def cl(x, w):
        with F.channels_last():
            return F.conv_transpose2d(x.transpose(0, 2, 3, 1), w, None, 2, 1).transpose(0, 3, 1, 2)

    y, pull = jax.vjp(cl, jnp.asarray(x), jnp.asarray(w))
    dx, dw = pull(jnp.asarray(g))
    for got, want, what in [(y, ref, "output"), (dx, tx.grad, "input gradient"), (dw, tw.grad, "weight gradient")]:
        assert_close(got, to_np(want), 1e-5 if what == "output" else 1e-4, f"channels-last {what}")


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from([1, 2, 3]), layout=st.sampled_from(["NCHW", "NHWC"]), data=st.data())
def test_depthwise_input_gradient_is_the_transpose(n, layout, data):
    """The depthwise input gradient (the flipped-kernel correlation of the stride-dilated
    ``g``) equals ``jax.linear_transpose`` of the forward for any stride, dilation and
    (asymmetric, also negative) padding, channels first or last, in float64."""
    kernel = data.draw(st.tuples(*[st.integers(1, 4)] * n))
    stride = data.draw(st.tuples(*[st.integers(1, 3)] * n))
    dilation = data.draw(st.tuples(*[st.integers(1, 2)] * n))
    pads = data.draw(st.tuples(*[st.tuples(st.integers(-1, 3), st.integers(-1, 3))] * n))
    size = tuple(max(7, d * (k - 1) + 3) for k, d in zip(kernel, dilation))
    c = 3
    shape = (2, c, *size) if layout == "NCHW" else (2, *size, c)
    rng = np.random.default_rng(data.draw(SEEDS))
    with jax.enable_x64(True):
        x, w = jnp.asarray(rng.standard_normal(shape)), jnp.asarray(rng.standard_normal((c, 1, *kernel)))
        geometry = (stride, pads, dilation, layout)
        y = _conv._depthwise(x, w, *geometry)
        g = jnp.asarray(rng.standard_normal(y.shape))
        ref = jax.linear_transpose(lambda x: _conv._depthwise(x, w, *geometry), x)(g)[0]
        got = _conv._depthwise_input_grad(g, w, shape, *geometry)
        assert_close(got, np.asarray(ref), 1e-12, "input gradient")


@pytest.mark.parametrize("m,k,o", [(3, 5, 7), (7, 5, 3), (4, 6, 4)])
def test_times_weight_in_either_form_is_the_product(m, k, o):
    """The product of the GEMM convolutions and F.linear, ``p @ wk.T``, computed as
    ``(wk @ p.T).T`` for few rows (m < o here): value, jvp, vjp, a Hessian and vmap equal
    the plain product's in float64 (1e-12), and so does a zero tangent for either operand."""
    rng = np.random.default_rng(m)
    with jax.enable_x64(True):
        p, wk = jnp.asarray(rng.standard_normal((m, k))), jnp.asarray(rng.standard_normal((o, k)))
        tp, twk, g = (jnp.asarray(rng.standard_normal(s)) for s in ((m, k), (o, k), (m, o)))

        def each(f):
            return (f(p, wk), jax.jvp(f, (p, wk), (tp, twk))[1], jax.vjp(f, p, wk)[1](g),
                    jax.grad(lambda wk: jnp.sum(f(p, wk) ** 2))(wk), jax.grad(lambda p: jnp.sum(f(p, wk) ** 2))(p),
                    jax.hessian(lambda wk: jnp.sum(f(p, wk) ** 3))(wk), jax.vmap(f, (0, None))(jnp.stack([p, -p]), wk))

        got, want = each(times_weight), each(lambda p, wk: p @ wk.T)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            assert_close(a, np.asarray(b), 1e-12, "product")


def test_phase_taps_cover_every_tap_once():
    """The sub-pixel tables hold each kernel tap exactly once, in the phase t·d mod s."""
    for k, s, d in [(3, 2, 1), (4, 2, 1), (5, 3, 2), (1, 3, 1), (2, 2, 2)]:
        e, table = _conv._phase_taps(k, s, d)
        assert table.shape == (s, e + 1)
        taps = sorted(int(t) for t in table.reshape(-1) if t < k)
        assert taps == list(range(k))
        for phase, m in zip(*np.nonzero(table < k)):
            t = table[phase, m]
            assert t * d % s == phase and e - t * d // s == m


LAYOUTS = {"channels_last": (F.channels_last, (0, 2, 3, 1), (0, 3, 1, 2)),
           "batch_last": (F.batch_last, (1, 2, 3, 0), (3, 0, 1, 2))}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("layer", [
    nn.Conv2d(4, 8, 3, padding=1, groups=4),  # depthwise, multiplier 2
    nn.Conv2d(4, 6, (2, 3), padding="same", dilation=(2, 1)),  # asymmetric 'same'
    nn.Conv2d(4, 4, 3, stride=2, padding=2, padding_mode="reflect", groups=2),
    nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular"),
], ids=repr)
def test_conv2d_options_in_layouts_equal_nchw(x64, layout, layer):
    """Conv2d's new options follow F.channels_last()/F.batch_last(): the NCHW numbers, transposed."""
    block, to_layout, to_nchw = LAYOUTS[layout]
    rng = np.random.default_rng(0)
    params, _ = layer.init(jax.random.PRNGKey(0))
    x = jnp.asarray(rng.standard_normal((2, 4, 7, 6)))

    def in_layout(p, x):
        with block():
            return layer(p, {}, x.transpose(to_layout))[0].transpose(to_nchw)

    @jax.jit
    def both(p, x, g):
        (y0, pull0), (y1, pull1) = jax.vjp(lambda p, x: layer(p, {}, x)[0], p, x), jax.vjp(in_layout, p, x)
        return y0, y1, pull0(g), pull1(g)

    g = jnp.asarray(rng.standard_normal(jax.eval_shape(lambda p, x: layer(p, {}, x)[0], params, x).shape))
    y0, y1, grads0, grads1 = both(params, x, g)
    assert_close(y1, y0, 1e-12, "output")
    for a, b in zip(jax.tree_util.tree_leaves(grads1), jax.tree_util.tree_leaves(grads0)):
        assert_close(a, b, 1e-12, "gradient")


# ------------------------------------------------------------------ transformations
def test_per_sample_gradients_with_vmap(x64):
    """jax.vmap over single samples (unbatched inputs) gives per-sample gradients equal to
    one sample at a time, for a depthwise convolution and a transposed one."""
    rng = np.random.default_rng(0)
    for layer, shape in [(nn.Conv2d(3, 6, 3, padding=1, groups=3), (4, 3, 5, 5)),
                         (nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1), (4, 2, 6))]:
        params, _ = layer.init(jax.random.PRNGKey(1))
        x = jnp.asarray(rng.standard_normal(shape))

        def loss(p, xi):
            return jnp.sum(layer(p, {}, xi)[0] ** 2)

        per_sample = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, x)
        one_grad = jax.jit(jax.grad(loss))
        for i in range(shape[0]):
            one = one_grad(params, x[i])
            for name in params:
                assert_close(per_sample[name][i], one[name], 1e-12, f"{layer!r} sample {i} {name}")


# ------------------------------------------------------------------ init, repr, errors
@pytest.mark.parametrize("layer,tlayer", [
    (nn.Conv1d(6, 40, 5, groups=2), torch.nn.Conv1d(6, 40, 5, groups=2)),
    (nn.Conv3d(4, 30, (2, 3, 3)), torch.nn.Conv3d(4, 30, (2, 3, 3))),
    (nn.ConvTranspose2d(40, 12, 3, groups=2), torch.nn.ConvTranspose2d(40, 12, 3, groups=2)),
    (nn.ConvTranspose1d(20, 8, 4, stride=2), torch.nn.ConvTranspose1d(20, 8, 4, stride=2)),
], ids=repr)
def test_default_init_distributions(layer, tlayer):
    """U(±1/√fan_in) for weight and bias with torch's fan_in = weight.shape[1]·prod(k)
    (C_out/groups·prod(k) for transposed convolutions); shapes and names are torch's."""
    params, _ = layer.init(jax.random.PRNGKey(0))
    tw = to_np(tlayer.weight)
    bound = 1 / math.sqrt(tw.shape[1] * math.prod(tw.shape[2:]))
    assert {n: tuple(p.shape) for n, p in params.items()} == {n: tuple(p.shape) for n, p in tlayer.named_parameters()}
    w, b = np.asarray(params["weight"]), np.asarray(params["bias"])
    assert np.abs(b).max() <= bound and bound >= np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound and abs(w.mean()) < 0.05 * bound
    assert abs(tw.std() - bound / math.sqrt(3)) < 0.05 * bound and np.abs(tw).max() <= bound  # torch's, same law


def test_reprs_match_torch():
    cases = [
        ("Conv1d", (3, 4, 3), dict(padding="valid", padding_mode="reflect")),
        ("Conv2d", (3, 4, 3), dict(padding="same")),
        ("Conv2d", (4, 8, (1, 2)), dict(stride=2, padding=(1, 0), dilation=(2, 1), groups=4, bias=False)),
        ("Conv3d", (3, 6, (1, 2, 3)), dict(stride=2, padding=(1, 0, 1), groups=3, bias=False, padding_mode="circular")),
        ("ConvTranspose1d", (4, 6, 3), {}),
        ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2, dilation=2)),
        ("ConvTranspose3d", (2, 2, 2), dict(stride=(1, 2, 2), bias=False)),
    ]
    for name, args, kwargs in cases:
        assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))
    seq = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.ConvTranspose2d(3, 1, 2, 2))
    assert repr(seq) == repr(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, groups=3), torch.nn.ConvTranspose2d(3, 1, 2, 2)))


def test_constructor_errors():
    with pytest.raises(ValueError, match="in_channels .* must be divisible by groups"):
        nn.Conv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="out_channels .* must be divisible by groups"):
        nn.ConvTranspose1d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        nn.Conv1d(4, 6, 3, groups=0)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(4, 6, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="Invalid padding string 'full'"):
        nn.Conv1d(4, 6, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(4, 6, 3, padding_mode="zero")
    with pytest.raises(ValueError, match='Only "zeros" padding mode is supported for ConvTranspose2d'):
        nn.ConvTranspose2d(4, 6, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="kernel_size must be an int or a tuple of 3 ints"):
        nn.Conv3d(4, 6, (3, 3))


def test_call_errors_name_the_layer_and_the_fix():
    conv = nn.Conv1d(3, 4, 3)
    p = {"weight": jnp.zeros((4, 3, 3)), "bias": jnp.zeros(4)}
    with pytest.raises(ShapeError, match=r"Conv1d\(3, 4, .*expected input \(N, 3, L\), got \(2, 5, 9\): "
                                         r"the input has 5 channels.*in_channels=5"):
        conv(p, {}, jnp.zeros((2, 5, 9)))
    with pytest.raises(ShapeError, match=r"expected input \(N, 3, L\), got \(2, 3, 4, 9\): .* one sample \(3, L\)"):
        conv(p, {}, jnp.zeros((2, 3, 4, 9)))
    with pytest.raises(ShapeError, match=r"smaller than the kernel \(5,\)"):
        nn.Conv1d(3, 4, 3, dilation=2)(p, {}, jnp.zeros((2, 3, 4)))
    with pytest.raises(ShapeError, match="floating-point input"):
        conv(p, {}, jnp.zeros((2, 3, 9), jnp.int32))
    with pytest.raises(ShapeError, match=r"Conv2d\(2, 2, .*padding_mode=reflect\) on an input of shape \(1, 2, 2, 5\): "
                                         r"pad: reflect padding must be less than"):
        layer = nn.Conv2d(2, 2, 3, padding=2, padding_mode="reflect")
        layer({"weight": jnp.zeros((2, 2, 3, 3)), "bias": jnp.zeros(2)}, {}, jnp.zeros((1, 2, 2, 5)))
    up = nn.ConvTranspose2d(4, 2, 3, stride=2)
    p = {"weight": jnp.zeros((4, 2, 3, 3)), "bias": jnp.zeros(2)}
    with pytest.raises(ValueError, match="output padding must be smaller than either stride or dilation"):
        nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=2)(p, {}, jnp.zeros((1, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"valid sizes range from \[5, 5\] to \[6, 6\]"):
        up(p, {}, jnp.zeros((1, 4, 2, 2)), output_size=(7, 7))
    with pytest.raises(ValueError, match="output_size must have 2 or 4 elements"):
        up(p, {}, jnp.zeros((1, 4, 2, 2)), output_size=(5,))
    with pytest.raises(ShapeError, match=r"negative output size"):
        nn.ConvTranspose2d(4, 2, 3, padding=3)(p, {}, jnp.zeros((1, 4, 2, 2)))
    with pytest.raises(ShapeError, match=r"ConvTranspose2d\(4, 2, .*expected input \(N, 4, H, W\), got \(1, 2, 3, 3\)"):
        up(p, {}, jnp.zeros((1, 2, 3, 3)))
    with pytest.raises(ShapeError, match=r"conv2d expected input \(N, 6, H, W\), got \(1, 4, 5, 5\)"):
        F.conv2d(jnp.zeros((1, 4, 5, 5)), jnp.zeros((2, 3, 3, 3)), groups=2)


def test_layout_contexts_refused_where_unsupported():
    """Only the 2-D convolutions follow the layout contexts (the transposed one only
    channels_last); the others say so instead of computing on the wrong axes."""
    for layer, shape in [(nn.Conv1d(3, 4, 3), (2, 3, 8)), (nn.Conv3d(3, 4, 1), (2, 3, 2, 2, 2))]:
        p = jax.eval_shape(layer.init, jax.random.PRNGKey(0))[0]  # the check comes before any arithmetic
        for block in (F.channels_last, F.batch_last):
            with block(), pytest.raises(ShapeError, match=r"does not run inside F.channels_last\(\)/F.batch_last\(\)"):
                layer(p, {}, jnp.zeros(shape))
    with F.batch_last(), pytest.raises(ShapeError, match=r"ConvTranspose2d\(3, 4, .*does not run inside F.batch_last\(\)"):
        nn.ConvTranspose2d(3, 4, 2, 2)({"weight": jnp.zeros((3, 4, 2, 2))}, {}, jnp.zeros((3, 4, 4, 2)))
    with F.batch_last(), pytest.raises(ShapeError, match="conv_transpose2d takes torch's layout"):
        F.conv_transpose2d(jnp.zeros((3, 4, 4, 1)), jnp.zeros((3, 2, 2, 2)))


@pytest.mark.parametrize("unbatched", [False, True])
def test_conv_transpose2d_channels_last_equals_nchw(x64, unbatched):
    """ConvTranspose2d inside F.channels_last() takes and returns (N, H, W, C): NCHW's
    numbers and gradients, transposed; output_size in the layout's order works too."""
    rng = np.random.default_rng(1)
    layer = nn.ConvTranspose2d(4, 6, (3, 4), stride=(2, 3), padding=(1, 2), groups=2, dilation=(2, 1))
    params, _ = layer.init(jax.random.PRNGKey(0))
    x = jnp.asarray(rng.standard_normal((2, 4, 5, 6)))
    if unbatched:
        x = x[0]
    to_l, to_n = ((1, 2, 0), (2, 0, 1)) if unbatched else ((0, 2, 3, 1), (0, 3, 1, 2))
    size_nchw = (12, 16) if unbatched else (2, 6, 12, 16)
    size_l = (12, 16) if unbatched else (2, 12, 16, 6)

    @jax.jit
    def both(p, x, g):
        def in_layout(p, x):
            with F.channels_last():
                return layer(p, {}, x.transpose(to_l), output_size=size_l)[0].transpose(to_n)

        (y0, pull0), (y1, pull1) = jax.vjp(lambda p, x: layer(p, {}, x, output_size=size_nchw)[0], p, x), jax.vjp(in_layout, p, x)
        return y0, y1, pull0(g), pull1(g)

    g = jnp.asarray(rng.standard_normal(((6,) if unbatched else (2, 6)) + (12, 16)))
    y0, y1, grads0, grads1 = both(params, x, g)
    assert y0.shape == g.shape
    assert_close(y1, y0, 1e-12, "output")
    for a, b in zip(jax.tree_util.tree_leaves(grads1), jax.tree_util.tree_leaves(grads0)):
        assert_close(a, b, 1e-12, "gradient")

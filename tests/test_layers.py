"""Layers: hand-computed cases, torch parity over option grids, gradients, errors, repr."""

import itertools
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from jax.test_util import check_grads

from funcnets import ShapeError, nn
from funcnets.nn import _conv
from funcnets.nn import functional as F
from funcnets.nn._layout import _pair
from helpers import ON_X86_LINUX, TorchNet, assert_close, to_np

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ hand-computed
def test_linear_arange():
    layer = nn.Linear(3, 2)
    params = {"weight": jnp.arange(6.0).reshape(2, 3), "bias": jnp.array([10.0, 20.0])}
    y, _ = layer(params, {}, jnp.array([[1.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(y, [[0 + 1 + 2 + 10, 3 + 4 + 5 + 20]])


def test_conv2d_arange():
    x = jnp.arange(16.0).reshape(1, 1, 4, 4)
    w = jnp.ones((1, 1, 2, 2))
    y = F.conv2d(x, w, jnp.array([1.0]), stride=2)
    np.testing.assert_array_equal(y[0, 0], [[0 + 1 + 4 + 5 + 1, 2 + 3 + 6 + 7 + 1], [8 + 9 + 12 + 13 + 1, 10 + 11 + 14 + 15 + 1]])


def test_flatten_is_chw_order():
    x = jnp.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(F.flatten(x), np.arange(24.0).reshape(2, 12))


def test_lenet_sizes():
    # 32 -> conv 30 -> pool 15 -> conv 13 -> pool 6; 16*6*6 = 576
    x = jnp.zeros((1, 16, 13, 13))
    assert F.max_pool2d(x, 2).shape == (1, 16, 6, 6)
    assert F.max_pool2d(jnp.zeros((1, 6, 30, 30)), (2, 2)).shape == (1, 6, 15, 15)


# ------------------------------------------------------------------ torch parity grids
@pytest.mark.parametrize(
    "stride,padding,dilation,groups,bias",
    [(1, 0, 1, 1, True), (2, 1, 1, 1, False), (1, 2, 2, 1, True), (2, 1, 1, 2, True), (3, 0, 1, 4, False), ((1, 2), (0, 1), (2, 1), 1, True)],
)
def test_conv2d_matches_torch(x64, stride, padding, dilation, groups, bias):
    x = RNG.standard_normal((2, 4, 9, 11))
    w = RNG.standard_normal((8, 4 // groups, 3, 2))
    b = RNG.standard_normal(8) if bias else None
    ref = TF.conv2d(torch.tensor(x), torch.tensor(w), None if b is None else torch.tensor(b), stride, padding, dilation, groups)
    got = F.conv2d(jnp.asarray(x), jnp.asarray(w), None if b is None else jnp.asarray(b), stride, padding, dilation, groups)
    assert_close(got, to_np(ref), 1e-12, "conv2d")
    # jitted: check_grads evaluates each function many times at one shape
    check_grads(jax.jit(lambda x, w: F.conv2d(x, w, None, stride, padding, dilation, groups)), (jnp.asarray(x), jnp.asarray(w)), order=1, modes=["rev"])
    if groups == 1:  # both lowerings, whichever the shape picks, with gradients
        pair = lambda v: _pair(v, "")  # noqa: E731
        args = (pair(stride), pair(padding), pair(dilation))
        gemm = _conv.conv2d_gemm(jnp.asarray(x), jnp.asarray(w), *args)
        assert_close(gemm, to_np(ref) - (0 if b is None else b[None, :, None, None]), 1e-12, "gemm lowering")
        check_grads(jax.jit(lambda x, w: _conv.conv2d_gemm(x, w, *args)), (jnp.asarray(x), jnp.asarray(w)), order=1, modes=["rev"])


@pytest.mark.parametrize("shape,k,stride,padding", [((4, 64, 2, 2), 3, 1, 1), ((4, 32, 4, 4), 3, 2, 1), ((2, 16, 9, 9), 1, 2, 0), ((2, 3, 20, 20), 7, 2, 3)])
def test_conv_lowerings_agree_float32(shape, k, stride, padding):
    """float32: the GEMM and XLA lowerings agree with torch to rounding."""
    x = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal((shape[1] * 2, shape[1], k, k)).astype(np.float32)
    ref = to_np(TF.conv2d(torch.tensor(x), torch.tensor(w), None, stride, padding))
    args = ((stride, stride), (padding, padding), (1, 1))

    @jax.jit
    def lowerings(x, w):  # the three in one compiled program
        return (_conv.conv2d_gemm(x, w, *args), _conv.conv2d_xla(x, w, *args, 1),
                _conv.conv2d_batch_last(x.transpose(1, 2, 3, 0), w, *args).transpose(3, 0, 1, 2))

    gemm, xla, batch_last = lowerings(jnp.asarray(x), jnp.asarray(w))
    assert gemm.dtype == xla.dtype == batch_last.dtype == jnp.float32
    assert_close(gemm, ref, 1e-5, "gemm")
    assert_close(xla, ref, 1e-5, "xla")
    assert_close(batch_last, ref, 1e-5, "batch-last gemm")


POOL_CASES = [
    (k, s, p, d, c)
    for k, s, p, d, c in itertools.product([2, 3], [None, 1, 2, 3], [0, 1], [1, 2], [False, True])
    if p <= (d * (k - 1) + 1) // 2
]


@lru_cache(maxsize=None)
def _max_pool2d_grid():
    """Every POOL_CASES case's input, cotangent, output and input gradient, float64, from
    one compiled program (op by op, or one program a case, the compiles took the time)."""
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, 3, 9, 8)) for _ in POOL_CASES]
    with jax.enable_x64(True):
        shapes = [jax.eval_shape(lambda x: F.max_pool2d(x, k, s, p, d, c), jnp.asarray(x)).shape
                  for (k, s, p, d, c), x in zip(POOL_CASES, xs)]
        gs = [rng.standard_normal(shape) for shape in shapes]

        @jax.jit
        def run(xs, gs):
            out = []
            for (k, s, p, d, c), x, g in zip(POOL_CASES, xs, gs):
                y, pull = jax.vjp(lambda x: F.max_pool2d(x, k, s, p, d, c), x)
                out.append((y, pull(g)[0]))
            return out

        got = run([jnp.asarray(x) for x in xs], [jnp.asarray(g) for g in gs])
    return {case: (x, g, y, grad) for case, x, g, (y, grad) in zip(POOL_CASES, xs, gs, got)}


@pytest.mark.parametrize("k,s,p,d,ceil", POOL_CASES)
def test_max_pool2d_matches_torch(k, s, p, d, ceil):
    x, g, got, grad = _max_pool2d_grid()[k, s, p, d, ceil]
    assert got.dtype == jnp.float64
    tx = torch.tensor(x, requires_grad=True)
    ref = TF.max_pool2d(tx, k, s, p, d, ceil_mode=ceil)
    assert got.shape == tuple(ref.shape)
    np.testing.assert_array_equal(got, to_np(ref))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(grad, to_np(tx.grad), atol=1e-12)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool2d_forward_mode_and_second_order(x64, k, s, p):
    # forward mode, reverse mode and their compositions agree with finite differences
    from jax.test_util import check_grads

    x = jnp.asarray(RNG.standard_normal((2, 3, 9, 8)))
    # jitted: check_grads evaluates the function and its derivatives many times at one shape
    check_grads(jax.jit(lambda x: F.max_pool2d(x, k, s, p) ** 2), (x,), order=2, modes=("fwd", "rev"), eps=1e-6)


def test_max_pool2d_with_more_than_127_window_positions(x64):
    """The winner index outgrows int8: a 12×12 window (144 positions), overlapping."""
    x = RNG.standard_normal((1, 2, 14, 14))
    tx = torch.tensor(x, requires_grad=True)
    ref = TF.max_pool2d(tx, 12, 1)
    ref.sum().backward()
    # one program: op by op, the 144 window positions' slices took 10 s of compiles
    y, g = jax.jit(lambda x: (F.max_pool2d(x, 12, 1), jax.grad(lambda x: jnp.sum(F.max_pool2d(x, 12, 1)))(x)))(jnp.asarray(x))
    assert y.dtype == jnp.float64
    np.testing.assert_array_equal(y, to_np(ref))
    np.testing.assert_array_equal(g, to_np(tx.grad))


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1)])  # disjoint and overlapping windows
def test_max_pool2d_gradient_at_ties_goes_to_one_element(k, s, p):
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)  # every window is a tie
    out = TF.max_pool2d(x, k, s, p)
    out.sum().backward()
    (g,) = jax.jit(jax.grad(lambda x: jnp.sum(F.max_pool2d(x, k, s, p)), argnums=(0,)))(jnp.zeros((1, 1, 4, 4)))
    np.testing.assert_array_equal(g, to_np(x.grad))
    assert float(jnp.sum(g)) == out.numel() and float(jnp.max(g)) >= 1.0  # not split between ties


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1)])
def test_max_pool2d_propagates_nan_like_torch(k, s, p):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    ref = TF.max_pool2d(tx, k, s, p)
    y, g = jax.jit(lambda x: (F.max_pool2d(x, k, s, p), jax.grad(lambda x: jnp.sum(F.max_pool2d(x, k, s, p)))(x)))(jnp.asarray(x))
    np.testing.assert_array_equal(y, to_np(ref))
    assert np.isnan(to_np(ref)[0, 0, 0, 0])
    ref.sum().backward()
    np.testing.assert_array_equal(g, to_np(tx.grad))


@pytest.mark.parametrize(
    "k,s,p,ceil,cip",
    [(2, None, 0, False, True), (3, 2, 1, False, True), (3, 2, 1, False, False), (3, 2, 1, True, True), (3, 2, 1, True, False), (2, 3, 1, True, True), ((3, 2), (2, 1), (1, 0), True, False)],
)
def test_avg_pool2d_matches_torch(x64, k, s, p, ceil, cip):
    x = RNG.standard_normal((2, 3, 8, 7))
    ref = TF.avg_pool2d(torch.tensor(x), k, s, p, ceil_mode=ceil, count_include_pad=cip)
    got = F.avg_pool2d(jnp.asarray(x), k, s, p, ceil, cip)
    assert got.shape == tuple(ref.shape)
    assert_close(got, to_np(ref), 1e-12, "avg_pool2d")
    np.testing.assert_allclose(F.avg_pool2d(jnp.asarray(x), 2, divisor_override=3), to_np(TF.avg_pool2d(torch.tensor(x), 2, divisor_override=3)))


@pytest.mark.parametrize("out", [(1, 1), (2, 3), (3, 3), 4])
def test_adaptive_avg_pool2d_matches_torch(x64, out):
    x = RNG.standard_normal((2, 3, 7, 9))
    ref = TF.adaptive_avg_pool2d(torch.tensor(x), out)
    assert_close(F.adaptive_avg_pool2d(jnp.asarray(x), out), to_np(ref), 1e-12, "adaptive")


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm2d_train_and_eval_match_torch(x64, momentum):
    x = RNG.standard_normal((4, 3, 5, 5)) * 3 + 1
    tbn = torch.nn.BatchNorm2d(3, momentum=momentum).double()
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(RNG.standard_normal(3)))
        tbn.bias.copy_(torch.tensor(RNG.standard_normal(3)))
    bn = nn.BatchNorm2d(3, momentum=momentum)
    params = {"weight": jnp.asarray(to_np(tbn.weight)), "bias": jnp.asarray(to_np(tbn.bias))}
    _, state = bn.init(jax.random.PRNGKey(0))
    for _ in range(3):  # three train steps: running stats and the counter evolve
        ref = tbn.train()(torch.tensor(x))
        y, state = bn(params, state, jnp.asarray(x), train=True)
        assert_close(y, to_np(ref), 1e-12, "train output")
        x = x * 0.5 + 0.2
    assert_close(state["running_mean"], to_np(tbn.running_mean), 1e-12, "running_mean")
    assert_close(state["running_var"], to_np(tbn.running_var), 1e-12, "running_var (unbiased)")
    assert int(state["num_batches_tracked"]) == int(tbn.num_batches_tracked) == 3
    assert state["num_batches_tracked"].dtype == jnp.int64
    y, same = bn(params, state, jnp.asarray(x), train=False)
    assert_close(y, to_np(tbn.eval()(torch.tensor(x))), 1e-12, "eval output")
    assert same is state


def test_batchnorm_gradients_and_errors(x64):
    x = jnp.asarray(RNG.standard_normal((3, 2, 4, 4)))
    w, b = jnp.array([1.5, -0.5]), jnp.array([0.1, 0.2])
    # the normalisation has a closed-form custom JVP: check it, its transpose (the
    # backward) and second order, through the output and the running statistics
    def f(x, w, b):
        y, rm, rv = F.batch_norm(x, jnp.zeros(2), jnp.ones(2), w, b, training=True)
        return jnp.sin(y), rm, rv

    def grouped(x, w, b):  # the groups are read while tracing: inside the jitted function
        with F.batch_norm_groups(3):
            return f(x, w, b)

    # jitted: check_grads evaluates each function many times at one shape
    check_grads(jax.jit(f), (x, w, b), order=2, modes=["fwd", "rev"])
    check_grads(jax.jit(grouped), (x, w, b), order=1, modes=["fwd", "rev"])
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(jnp.ones((1, 2, 1, 1)), None, None, training=True)


def test_dropout():
    x = jnp.ones((200, 100))
    y = F.dropout(x, 0.3, True, jax.random.PRNGKey(0))
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
    assert F.dropout(x, 0.3, False) is x
    with pytest.raises(ValueError, match="needs a PRNG key"):
        F.dropout(x, 0.3, True)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_sequential_threads_state_and_names():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    params, state = model.init(jax.random.PRNGKey(0))
    assert [n for n, _ in model.named_parameters(params)] == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert [n for n, _ in model.named_buffers(state)] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    y, new = model(params, state, jnp.ones((2, 1, 5, 5)), train=True)
    assert y.shape == (2, 3) and int(new["1"]["num_batches_tracked"]) == 1
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(100, 3))
    assert repr(model) == repr(ref)


def test_default_init_distributions():
    params, _ = nn.Linear(400, 300).init(jax.random.PRNGKey(0))
    bound = 1 / np.sqrt(400)
    w = np.asarray(params["weight"])
    assert w.shape == (300, 400) and np.abs(w).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound  # U(-b, b) has std b/sqrt(3)
    conv, _ = nn.Conv2d(8, 16, 3, groups=2).init(jax.random.PRNGKey(1))
    assert conv["weight"].shape == (16, 4, 3, 3) and np.abs(conv["bias"]).max() <= 1 / np.sqrt(36)


# ------------------------------------------------------------------ errors and listing
def test_shape_errors_name_the_layer():
    from funcnets.models import LeNet

    model = LeNet()
    params, state = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ShapeError, match=r"fc1: Linear\(in_features=576.*expected input \(\.\.\., 576\), got \(64, 400\): the image is 28×28, LeNet expects 32×32"):
        model(params, state, jnp.zeros((64, 1, 28, 28)))
    with pytest.raises(ShapeError, match=r"conv1: Conv2d\(1, 6.*expected input \(N, 1, H, W\), got \(2, 3, 32, 32\)"):
        model(params, state, jnp.zeros((2, 3, 32, 32)))
    with pytest.raises(ShapeError, match="floating-point input, got dtype int32"):
        model(params, state, jnp.zeros((2, 1, 32, 32), jnp.int32))
    with pytest.raises(ShapeError, match=r"smaller than the kernel"):
        nn.Conv2d(1, 1, 5)({"weight": jnp.ones((1, 1, 5, 5))}, {}, jnp.ones((1, 1, 3, 3)))


def test_lenet_listing_matches_torch():
    from funcnets.models import LeNet

    model = LeNet()
    ref = TorchNet()
    assert repr(model).splitlines()[1:] == repr(ref).splitlines()[1:]
    params, _ = model.init(jax.random.PRNGKey(0))
    assert [(n, tuple(a.shape)) for n, a in model.named_parameters(params)] == [
        (n, tuple(p.shape)) for n, p in ref.named_parameters()
    ]
    assert len(model.parameters(params)) == 10
    assert "81,194 trainable parameters" in model.summary(params)
    # order is the model's even after a jax transformation sorts the dict keys
    sorted_params = jax.tree_util.tree_map(lambda a: a, params)
    assert [n for n, _ in model.named_parameters(sorted_params)][:2] == ["conv1.weight", "conv1.bias"]


def _lenet_trunk_vs_nchw(x, rtol, layout):
    """LeNet's CPU trunk takes ``layout`` for ``x`` and gives the NCHW trunk's logits,
    gradients and Hessian-vector products (to ``rtol``); a conv swapped in with
    nn.replace keeps the trunk NCHW."""
    from funcnets.models import LeNet

    class NCHWLeNet(LeNet):
        def _trunk_layout(self, x, params):
            return "NCHW"

    model = LeNet()
    params, state = model.init(jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda a: a.astype(x.dtype), params)
    assert model._trunk_layout(x, params) == (layout if jax.default_backend() == "cpu" else "NCHW")

    @partial(jax.jit, static_argnums=0)
    def grads(m):
        loss = lambda p: jnp.sum(m(p, state, x)[0] * jnp.arange(10.0, dtype=x.dtype))  # noqa: E731
        return jax.value_and_grad(loss)(params), jax.jvp(jax.grad(loss), (params,), (params,))[1]

    got, ref = grads(model), grads(NCHWLeNet())
    for what, a, b in (("loss", got[0][0], ref[0][0]), ("grads", got[0][1], ref[0][1]), ("hessian-vector", got[1], ref[1])):
        leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        assert len(leaves_a) == len(leaves_b) == (1 if what == "loss" else 10)
        for u, v in zip(leaves_a, leaves_b):
            assert u.dtype == x.dtype
            assert_close(u, v, rtol, what)

    class Conv2dNCHW(nn.Conv2d):  # a user's conv: it assumes NCHW
        pass

    custom, cparams, cstate = nn.replace(model, params, state, "conv2", Conv2dNCHW(6, 16, 3), jax.random.PRNGKey(1))
    assert custom._trunk_layout(x, cparams) == "NCHW"
    assert custom(cparams, cstate, x)[0].shape == (5, 10)


def test_lenet_batch_last_trunk_equals_nchw_and_swapped_convs_keep_nchw(x64):
    """float64 (no oneDNN): LeNet's CPU trunk runs batch-last, the NCHW numbers to 1e-10."""
    _lenet_trunk_vs_nchw(jnp.asarray(RNG.standard_normal((5, 1, 32, 32))), 1e-10, "CHWN")


def test_lenet_channels_last_trunk_on_onednn_equals_nchw():
    """float32 with funcnets' oneDNN extension (built on x86-64 Linux): the trunk runs
    channels-last on oneDNN's convolutions, the NCHW numbers to float32 precision (2e-5),
    also under the "loop" lowering (a scanned epoch's); under the GEMM lowering it stays
    batch-last."""
    from funcnets.nn import _onednn

    if ON_X86_LINUX:
        assert _onednn.error() is None
    x = jnp.asarray(RNG.standard_normal((5, 1, 32, 32)).astype(np.float32))
    _lenet_trunk_vs_nchw(x, 2e-5, "NHWC" if _onednn.error() is None else "CHWN")
    with _conv.conv_lowering("loop"):
        _lenet_trunk_vs_nchw(x, 2e-5, "NHWC" if _onednn.error() is None else "CHWN")
    with _conv.conv_lowering("gemm"):
        _lenet_trunk_vs_nchw(x, 2e-5, "CHWN")


def test_replace_layer_one_liner():
    from funcnets.models import resnet18

    model = resnet18()
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    model2, params2, _ = nn.replace(model, params, state, "fc", nn.Linear(512, 10), jax.random.PRNGKey(1))
    assert model2.fc == nn.Linear(512, 10) and params2["fc"]["weight"].shape == (10, 512)
    assert params["fc"]["weight"].shape == (1000, 512)  # the original is untouched
    model3, params3, state3 = nn.replace(model, params, state, "layer1.0.bn1", nn.BatchNorm2d(64, momentum=0.5), jax.random.PRNGKey(2))
    assert model3.layer1[0].bn1.momentum == 0.5 and state3["layer1"]["0"]["bn1"]["running_var"].shape == (64,)
    with pytest.raises(KeyError, match="no submodule 'head'"):
        nn.replace(model, params, state, "head", nn.Linear(512, 10), jax.random.PRNGKey(1))


def test_conv_lowering_context_forces_and_resets():
    x = jnp.asarray(RNG.standard_normal((2, 4, 12, 12)), jnp.float32)
    w = jnp.asarray(RNG.standard_normal((8, 4, 3, 3)), jnp.float32)
    shape_args = (x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1)
    assert not _conv.use_gemm(*shape_args)  # 144 output pixels: XLA's conv by default
    with nn.conv_lowering("gemm"):
        assert _conv.use_gemm(*shape_args)
        forced = jax.jit(lambda x, w: F.conv2d(x, w, padding=1))(x, w)
    assert not _conv.use_gemm(*shape_args)
    assert_close(forced, F.conv2d(x, w, padding=1), 1e-5, "forced gemm")
    with nn.conv_lowering("xla"):
        assert not _conv.use_gemm((2, 512, 2, 2), (512, 512, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="must be 'auto', 'loop', 'gemm' or 'xla'"):
        with nn.conv_lowering("fast"):
            pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loop_lowering_is_auto_without_xla_convolution(dtype):
    """conv_lowering("loop") (make_train_epoch's on CPU): oneDNN's convolution where it
    takes the shape (float32, extension built), the GEMM where "auto" would pick XLA's
    convolution (pathological in a loop body): the same numbers as "auto"."""
    from funcnets.nn import _onednn

    with jax.enable_x64(dtype == np.float64):
        x = jnp.asarray(RNG.standard_normal((2, 4, 12, 12)), dtype)  # 144 output pixels: not GEMM-sized
        w = jnp.asarray(RNG.standard_normal((8, 4, 3, 3)), dtype)
        loss = lambda x, w: jnp.sum(F.conv2d(x, w, padding=1) ** 2)  # noqa: E731
        got = {}
        for mode in ("auto", "loop"):
            with nn.conv_lowering(mode):
                f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
                hlo = f.lower(x, w).as_text()
                got[mode] = f(x, w)
            onednn = "funcnets_conv_" in hlo
            if jax.default_backend() == "cpu":
                assert onednn == (dtype == np.float32 and _onednn.error() is None), mode
                assert ("convolution(" in hlo or "stablehlo.convolution" in hlo) == (mode == "auto" and not onednn), mode
    if ON_X86_LINUX and dtype == np.float32:
        assert _onednn.error() is None
    for a, b in zip(jax.tree_util.tree_leaves(got["auto"]), jax.tree_util.tree_leaves(got["loop"])):
        assert_close(a, b, 1e-5 if dtype == np.float32 else 1e-12, "loop vs auto")


LAYOUT_CASES = [
    (nn.Conv2d(4, 6, 3, padding=1), (2, 4, 9, 9)),  # XLA's convolution channels-last; GEMM batch-last
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2), (2, 4, 7, 7)),  # GEMM (≤16 output pixels)
    (nn.Conv2d(4, 6, 1, stride=2, bias=False), (2, 4, 6, 6)),
    (nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 9, 8)),
    (nn.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 7)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 3, 8, 9)),
    (nn.AdaptiveAvgPool2d((1, 1)), (2, 3, 4, 4)),
    (nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 8, 7)),  # uneven bins
    (nn.BatchNorm2d(3), (4, 3, 5, 5)),
]


# layout: (context, NCHW -> layout axes, layout -> NCHW axes)
LAYOUTS = {
    "channels_last": (F.channels_last, (0, 2, 3, 1), (0, 3, 1, 2)),
    "batch_last": (F.batch_last, (1, 2, 3, 0), (3, 0, 1, 2)),
}


@lru_cache(maxsize=None)
def _layouts_of(layer, shape):
    """``layer`` on a random input of ``shape``, train and eval, in NCHW and inside each
    layout block (input moved in, output moved back): outputs, buffers and the gradients
    for one random cotangent, float64, from one compiled program a layer."""
    rng = np.random.default_rng(LAYOUT_CASES.index((layer, shape)))
    with jax.enable_x64(True):
        params, state = layer.init(jax.random.PRNGKey(0))
        params = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.asarray(rng.standard_normal(p.shape)), params)
        x = jnp.asarray(rng.standard_normal(shape))

        def in_layout(p, x, train, layout):
            if layout == "nchw":
                return layer.apply(p, state, x, train=train)
            block, to_layout, to_nchw = LAYOUTS[layout]
            with block():  # read while tracing
                y, s = layer.apply(p, state, x.transpose(to_layout), train=train)
            return y.transpose(to_nchw), s

        @jax.jit
        def run(p, x, key):
            out = {}
            for train in (True, False):
                for layout in ("nchw", *LAYOUTS):
                    (y, s), pull = jax.vjp(partial(in_layout, train=train, layout=layout), p, x)
                    g = jax.random.normal(key, y.shape, y.dtype)  # the same cotangent in each layout
                    out[f"{layout} {train}"] = (y, s, pull((g, jax.tree_util.tree_map(jnp.zeros_like, s))))
            return out

        return run(params, x, jax.random.PRNGKey(1))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layer,shape", LAYOUT_CASES, ids=lambda v: repr(v) if isinstance(v, nn.Module) else None)
def test_layouts_equal_nchw(layer, shape, train, layout):
    """Inside F.channels_last() a layer takes and returns (N, H, W, C), inside
    F.batch_last() (C, H, W, N): the same numbers, buffers and gradients as NCHW,
    transposed."""
    out = _layouts_of(layer, shape)
    (y0, s0, g0), (y1, s1, g1) = out[f"nchw {train}"], out[f"{layout} {train}"]
    assert y1.dtype == jnp.float64
    assert_close(y1, y0, 1e-12, "output")
    for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s0)):
        assert_close(a, b, 1e-12, "buffers")
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
        assert_close(a, b, 1e-12, "gradient")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_per_device_batch_norm_in_layouts(x64, layout):
    block, to_layout, to_nchw = LAYOUTS[layout]
    x = jnp.asarray(RNG.standard_normal((4, 3, 5, 5)))
    with F.batch_norm_groups(2):
        y0, m0, v0 = F.batch_norm(x, jnp.zeros(3), jnp.ones(3), training=True)
        with block():
            y1, m1, v1 = F.batch_norm(x.transpose(to_layout), jnp.zeros(3), jnp.ones(3), training=True)
    assert_close(y1.transpose(to_nchw), y0, 1e-12, "per-device batch_norm")
    assert_close(m1, m0, 1e-12, "running_mean")
    assert_close(v1, v0, 1e-12, "running_var")


def test_channels_last_errors():
    x = jnp.asarray(RNG.standard_normal((4, 3, 5, 5)))
    conv = nn.Conv2d(3, 4, 3)
    params, state = conv.init(jax.random.PRNGKey(0))
    with F.channels_last(), pytest.raises(ShapeError, match=r"expected input \(N, H, W, 3\) \(channels_last\), got \(4, 3, 5, 5\)"):
        conv.apply(params, state, x)
    assert not F.is_channels_last()


def test_batch_last_unbatched_conv_and_errors(x64):
    x = jnp.asarray(RNG.standard_normal((4, 3, 5, 5)))
    conv = nn.Conv2d(3, 4, 3)
    params, state = conv.init(jax.random.PRNGKey(0))
    with F.batch_last():  # an unbatched image is (C, H, W) in every layout
        assert F.is_batch_last() and not F.is_channels_last()
        y, _ = conv.apply(params, state, x[0])
        with pytest.raises(ShapeError, match=r"expected input \(3, H, W, N\) \(batch_last\), got \(4, 5, 5, 3\)"):
            conv.apply(params, state, x.transpose(0, 2, 3, 1))
        with pytest.raises(ValueError, match=r"expand_dims\(x, -1\)"):
            F.max_pool2d(x[0], 2)
    assert_close(y, conv.apply(params, state, x[0])[0], 1e-12, "unbatched conv")
    assert not F.is_batch_last()


@pytest.mark.parametrize("lowering", ["auto", "gemm", "xla"])
@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 0), (2, 1))])
def test_batch_last_conv_lowerings_and_derivatives(x64, lowering, stride, padding, dilation):
    """Each lowering of the batch-last convolution equals NCHW's, and so do its first and
    second derivatives in both modes ("auto" on CPU: GEMM value and input gradient, XLA's
    convolution for the weight gradient, joined by a custom JVP)."""
    x = jnp.asarray(RNG.standard_normal((3, 4, 9, 8)))
    w = jnp.asarray(RNG.standard_normal((5, 4, 3, 2)))
    args = dict(stride=stride, padding=padding, dilation=dilation)

    def conv(x, w):
        with nn.conv_lowering(lowering), F.batch_last():
            return F.conv2d(x.transpose(1, 2, 3, 0), w, **args).transpose(3, 0, 1, 2)

    assert_close(conv(x, w), F.conv2d(x, w, **args), 1e-12, "batch-last conv")
    check_grads(jax.jit(conv), (x, w), order=2, modes=["fwd", "rev"])  # jitted: many calls at one shape

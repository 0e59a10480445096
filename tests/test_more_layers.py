"""nn.Bilinear / F.bilinear, nn.ChannelShuffle / F.channel_shuffle and nn.CrossMapLRN2d
against torch 2.14.1: values and gradients (float64 to 1e-12 relative, float32 to 1e-5),
edge shapes, torch's error messages, and funcnets.from_torch on models using each layer.

CrossMapLRN2d's gradient is jax's derivative of torch's forward. torch's hand-written
backward is not that derivative (gradcheck fails on it), so the gradients are compared
with torch autograd through a differentiable rewrite of torch's forward, checked against
torch's forward here, and with torch's own backward only where that one is right (C <= size // 2).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from jax.test_util import check_grads

from funcnets import from_torch, nn
from funcnets.errors import ShapeError
from funcnets.nn import functional as F
from helpers import assert_close, to_np

RNG = np.random.default_rng(0)


def _t(a):
    return torch.tensor(np.asarray(a), requires_grad=True)


def _torch_message(fn) -> str:
    with pytest.raises(Exception) as e:
        fn()
    return str(e.value).split("\n")[0]


# ============================================================================ Bilinear
def _bilinear_case(lead, in1, in2, out, dtype, bias=True):
    x1 = RNG.standard_normal((*lead, in1)).astype(dtype)
    x2 = RNG.standard_normal((*lead, in2)).astype(dtype)
    w = RNG.standard_normal((out, in1, in2)).astype(dtype)
    b = RNG.standard_normal((out,)).astype(dtype) if bias else None
    g = RNG.standard_normal((*lead, out)).astype(dtype)
    return x1, x2, w, b, g


def _bilinear_both(x1, x2, w, b, g):
    """(funcnets, torch) output and gradients wrt x1, x2, weight[, bias] of sum(y * g)."""
    args = [x1, x2, w] + ([] if b is None else [b])
    ts = [_t(a) for a in args]
    ty = TF.bilinear(ts[0], ts[1], ts[2], ts[3] if b is not None else None)
    tg = torch.autograd.grad(ty, ts, torch.tensor(g))

    def f(*a):
        return F.bilinear(a[0], a[1], a[2], a[3] if len(a) > 3 else None)

    y, vjp = jax.vjp(f, *(jnp.asarray(a) for a in args))
    return (y, vjp(jnp.asarray(g))), (to_np(ty), [to_np(t) for t in tg])


@pytest.mark.parametrize("lead", [(), (5,), (2, 3), (2, 1, 3), (0,)])
@pytest.mark.parametrize("bias", [True, False])
def test_bilinear_float64_parity(x64, lead, bias):
    (y, grads), (ty, tgrads) = _bilinear_both(*_bilinear_case(lead, 3, 4, 2, np.float64, bias))
    assert y.shape == (*lead, 2) and y.dtype == jnp.float64
    if not y.size:
        return
    assert_close(y, ty, 1e-12, "bilinear float64 output")
    for name, a, b in zip(("x1", "x2", "weight", "bias"), grads, tgrads):
        assert_close(a, b, 1e-12, f"bilinear float64 d/d{name}")


def test_bilinear_float32_parity():
    (y, grads), (ty, tgrads) = _bilinear_both(*_bilinear_case((4, 3), 7, 5, 6, np.float32))
    assert y.dtype == jnp.float32
    assert_close(y, ty, 1e-5, "bilinear float32 output")
    for name, a, b in zip(("x1", "x2", "weight", "bias"), grads, tgrads):
        assert_close(a, b, 1e-5, f"bilinear float32 d/d{name}")


def test_bilinear_hand_computed():
    w = jnp.arange(12.0).reshape(2, 2, 3)  # y[o] = x1^T w[o] x2
    x1, x2 = jnp.array([1.0, -1.0]), jnp.array([1.0, 2.0, 3.0])
    y = F.bilinear(x1, x2, w, jnp.array([10.0, 20.0]))
    # x1^T w[0] = [0,1,2] - [3,4,5] = [-3,-3,-3], · x2 = -18, + 10; w[1] = w[0] + 6 gives the same x1^T w[1]
    assert y.tolist() == [-8.0, 2.0]


def test_bilinear_layer_init_and_torch_names():
    m = nn.Bilinear(4, 3, 5)
    params, state = m.init(jax.random.key(0))
    t = tnn.Bilinear(4, 3, 5)
    assert {k: v.shape for k, v in params.items()} == {k: tuple(v.shape) for k, v in t.state_dict().items()}
    assert state == {} and repr(m) == repr(t)
    bound = 1 / np.sqrt(4)  # torch's U(-1/sqrt(in1_features), +) for weight and bias
    for v in params.values():
        assert float(jnp.abs(v).max()) <= bound and float(jnp.abs(v).max()) > 0.6 * bound
    assert float(params["weight"].std()) == pytest.approx(bound / np.sqrt(3), rel=0.25)
    assert list(nn.Bilinear(4, 3, 5, bias=False).init(jax.random.key(0))[0]) == ["weight"]
    assert repr(nn.Bilinear(4, 3, 5, bias=False)) == repr(tnn.Bilinear(4, 3, 5, bias=False))
    with pytest.raises(ValueError, match=r"in1_features must be > 0, but got \(in1_features=0\)"):
        nn.Bilinear(0, 3, 5)
    _torch_message(lambda: tnn.Bilinear(0, 3, 5))  # torch refuses it too


def test_bilinear_layer_apply_two_inputs_and_tuple():
    m = nn.Bilinear(3, 2, 4)
    params, state = m.init(jax.random.key(1))
    x1, x2 = jnp.asarray(RNG.standard_normal((5, 3)), jnp.float32), jnp.asarray(RNG.standard_normal((5, 2)), jnp.float32)
    y, _ = jax.jit(m.apply)(params, state, x1, x2)
    assert_close(y, F.bilinear(x1, x2, params["weight"], params["bias"]), 1e-6, "jit apply")
    assert_close(m(params, state, (x1, x2))[0], y, 1e-6, "tuple input")
    tm = tnn.Bilinear(3, 2, 4)
    tm.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in params.items()})
    assert_close(y, to_np(tm(torch.tensor(np.asarray(x1)), torch.tensor(np.asarray(x2)))), 1e-5, "vs torch layer")
    with pytest.raises(ShapeError, match="takes two inputs"):
        m.apply(params, state, x1)
    with pytest.raises(ShapeError, match="floating-point"):
        m.apply(params, state, x1.astype(jnp.int32), x2)


# (input1 shape, input2 shape, weight shape, bias shape or None)
_BILINEAR_ERRORS = [
    ((5, 3), (2,), (4, 3, 2), (4,)),       # input dimensions do not match
    ((5, 3), (6, 2), (4, 3, 2), (4,)),     # batch dimensions at dim 0
    ((2, 1, 3), (2, 4, 2), (4, 3, 2), (4,)),  # batch dimensions at dim 1 (no broadcasting)
    ((5, 4), (5, 2), (4, 3, 2), (4,)),     # input1 size
    ((5, 3), (5, 5), (4, 3, 2), (4,)),     # input2 size
    ((5, 3), (5, 2), (4, 3, 2), (3,)),     # bias size
]


@pytest.mark.parametrize("s1,s2,sw,sb", _BILINEAR_ERRORS)
def test_bilinear_errors_match_torch(s1, s2, sw, sb):
    args = [np.zeros(s, np.float32) for s in (s1, s2, sw, sb)]
    expected = _torch_message(lambda: TF.bilinear(*(torch.tensor(a) for a in args)))
    with pytest.raises(ShapeError) as e:
        F.bilinear(*(jnp.asarray(a) for a in args))
    assert expected in str(e.value), (expected, str(e.value))
    # the layer says which layer it is, then torch's words
    m = nn.Bilinear(sw[1], sw[2], sw[0])
    p = {"weight": jnp.asarray(args[2]), "bias": jnp.asarray(args[3])}
    with pytest.raises(ShapeError) as e:
        m.apply(p, {}, jnp.asarray(args[0]), jnp.asarray(args[1]))
    assert str(e.value).startswith(repr(m)) and expected.replace("bilinear(): ", "") in str(e.value)


def test_bilinear_scalar_inputs_refused():
    with pytest.raises(ShapeError, match=r"expected inputs \(\*, in1_features\) and \(\*, in2_features\)"):
        F.bilinear(jnp.zeros(()), jnp.zeros(()), jnp.zeros((4, 1, 1)))
    with pytest.raises(ShapeError, match=r"expected weight \(out_features, in1_features, in2_features\)"):
        F.bilinear(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((3, 3)))


class _TwoTower(tnn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = tnn.Linear(3, 4), tnn.Linear(2, 5)
        self.bil = tnn.Bilinear(4, 5, 3)
        self.nobias = tnn.Bilinear(3, 3, 2, bias=False)

    def forward(self, a, b):
        h = self.bil(torch.tanh(self.a(a)), self.b(b))
        return self.nobias(h, h * 2)


def _from_torch_parity(m, xs, rtol, grads=True):
    model, params, state = from_torch(m, *xs)
    tw = torch.randn_like(m(*xs))
    ts = [x.clone().requires_grad_(True) for x in xs]
    m.zero_grad()
    out = m(*ts)
    (out * tw).sum().backward()

    def loss(p, jx):
        y, _ = model.apply(p, state, jx[0] if len(jx) == 1 else tuple(jx))
        return jnp.sum(y * jnp.asarray(to_np(tw))), y

    (_, y), (gp, gx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, [jnp.asarray(to_np(x)) for x in xs])
    assert_close(y, to_np(out), rtol, "from_torch output")
    if not grads:
        return model
    flat = dict(model.named_parameters(gp))
    assert set(flat) == {n for n, _ in m.named_parameters()}
    for n, p in m.named_parameters():
        assert_close(flat[n], to_np(p.grad), rtol, f"from_torch d/d{n}")
    for a, t in zip(gx, ts):
        assert_close(a, to_np(t.grad), rtol, "from_torch d/dinput")
    return model


def test_from_torch_bilinear(x64):
    torch.manual_seed(0)
    m = _TwoTower().double()
    model = _from_torch_parity(m, [torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)], 1e-12)
    assert "Bilinear(in1_features=4, in2_features=5, out_features=3, bias=True)" in repr(model)
    assert "Bilinear(in1_features=3, in2_features=3, out_features=2, bias=False)" in repr(model)


# ============================================================================ ChannelShuffle
@pytest.mark.parametrize("shape,groups", [
    ((2, 6, 3, 2), 1), ((2, 6, 3, 2), 2), ((2, 6, 3, 2), 3), ((2, 6, 3, 2), 6),
    ((2, 6, 5), 2), ((1, 8, 2, 1, 2), 4), ((0, 6, 3), 3), ((2, 0, 3), 3),
])
def test_channel_shuffle_parity(x64, shape, groups):
    x = RNG.standard_normal(shape)
    g = RNG.standard_normal(shape)
    tx = _t(x)
    ty = TF.channel_shuffle(tx, groups)
    y, vjp = jax.vjp(lambda a: F.channel_shuffle(a, groups), jnp.asarray(x))
    # a permutation: exactly equal, and so is its gradient
    np.testing.assert_array_equal(np.asarray(y), to_np(ty))
    if ty.numel():
        (tgx,) = torch.autograd.grad(ty, tx, torch.tensor(g))
        np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(g))[0]), to_np(tgx))
    m = nn.ChannelShuffle(groups)
    np.testing.assert_array_equal(np.asarray(m.apply({}, {}, jnp.asarray(x))[0]), to_np(ty))
    if groups in (1, shape[1]):  # one group, or groups of one channel: nothing moves
        np.testing.assert_array_equal(np.asarray(y), x)


def test_channel_shuffle_hand_computed_float32_and_ints():
    y = F.channel_shuffle(jnp.arange(6.0, dtype=jnp.float32).reshape(1, 6, 1), 2)
    assert y.dtype == jnp.float32 and y.ravel().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    yi = F.channel_shuffle(jnp.arange(24).reshape(1, 6, 4), 3)
    np.testing.assert_array_equal(np.asarray(yi), to_np(TF.channel_shuffle(torch.arange(24).reshape(1, 6, 4), 3)))
    assert repr(nn.ChannelShuffle(3)) == repr(tnn.ChannelShuffle(3)) == "ChannelShuffle(groups=3)"


@pytest.mark.parametrize("shape,groups", [((1, 6, 2, 2), 4), ((1, 6, 2, 2), 0), ((1, 6, 2, 2), -1), ((6,), 2), ((2, 6), 2)])
def test_channel_shuffle_errors_match_torch(shape, groups):
    expected = _torch_message(lambda: TF.channel_shuffle(torch.zeros(shape), groups))
    with pytest.raises(ValueError) as e:  # ShapeError is a ValueError
        F.channel_shuffle(jnp.zeros(shape), groups)
    assert expected in str(e.value), (expected, str(e.value))
    m = nn.ChannelShuffle(groups)
    with pytest.raises(ValueError) as e:
        m.apply({}, {}, jnp.zeros(shape))
    assert str(e.value).startswith(repr(m)) and expected.removeprefix("channel_shuffle ") in str(e.value)


def test_channel_shuffle_in_channels_last_and_batch_last():
    x = jnp.asarray(RNG.standard_normal((2, 6, 3, 4)), jnp.float32)
    ref = nn.ChannelShuffle(3).apply({}, {}, x)[0]
    with F.channels_last():
        y = nn.ChannelShuffle(3).apply({}, {}, x.transpose(0, 2, 3, 1))[0]
    np.testing.assert_array_equal(np.asarray(y.transpose(0, 3, 1, 2)), np.asarray(ref))
    with F.batch_last():
        y = F.channel_shuffle(x.transpose(1, 2, 3, 0), 3)
    np.testing.assert_array_equal(np.asarray(y.transpose(3, 0, 1, 2)), np.asarray(ref))


def test_from_torch_channel_shuffle(x64):
    torch.manual_seed(1)
    m = tnn.Sequential(tnn.Conv2d(2, 6, 3, groups=2), tnn.ChannelShuffle(2), tnn.Conv2d(6, 4, 1, groups=2)).double()
    model = _from_torch_parity(m, [torch.randn(2, 2, 5, 5, dtype=torch.float64)], 1e-12)
    assert "ChannelShuffle(groups=2)" in repr(model)


# ============================================================================ CrossMapLRN2d
def _torch_lrn_ref(x, size, alpha, beta, k):
    """torch's CrossMapLRN2d forward written with differentiable torch ops (the running sum
    of torch/nn/modules/_functions.py as windows), for torch autograd's true gradient."""
    c, p = x.shape[1], int((size - 1) / 2 + 1)
    sq = x * x
    cols = []
    for i in range(c):
        lo, hi = max(0, i - p + 1), min(c - 1, i + p - 1)
        s = sq[:, lo:hi + 1].sum(1)
        if lo > 0:  # channel 0 is never dropped from the running sum
            s = s + sq[:, 0]
        cols.append(x[:, i] * (k + alpha / size * s) ** -beta)
    return torch.stack(cols, 1)


_LRN_PARAMS = dict(alpha=0.7, beta=0.8, k=1.3)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
def test_cross_map_lrn2d_float64_forward_and_grad(x64, size):
    for c in (1, 2, 3, 5, 8):  # border channels: windows clipped on one side, both sides, neither
        x = RNG.standard_normal((2, c, 3, 2))
        g = RNG.standard_normal(x.shape)
        tx = _t(x)
        ty = tnn.CrossMapLRN2d(size, **_LRN_PARAMS)(tx)
        tref = _torch_lrn_ref(tx, size, **_LRN_PARAMS)
        assert_close(to_np(tref), to_np(ty), 1e-13, f"reference vs torch, size {size} C {c}")
        m = nn.CrossMapLRN2d(size, **_LRN_PARAMS)
        y, vjp = jax.vjp(lambda a: m.apply({}, {}, a)[0], jnp.asarray(x))
        assert y.dtype == jnp.float64
        assert_close(y, to_np(ty), 1e-12, f"forward, size {size} C {c}")
        (tg,) = torch.autograd.grad(tref, tx, torch.tensor(g))
        (gx,) = vjp(jnp.asarray(g))
        assert_close(gx, to_np(tg), 1e-12, f"gradient, size {size} C {c}")
        if c <= size // 2:  # both its windows span every channel: torch's backward is right
            (tg_own,) = torch.autograd.grad(ty, tx, torch.tensor(g))
            assert_close(gx, to_np(tg_own), 1e-12, f"gradient vs torch's backward, size {size} C {c}")


def test_cross_map_lrn2d_grad_is_the_derivative_of_torchs_forward(x64):
    """Where torch's backward is off (size 3, 5 channels) ours is the finite difference of
    torch's own forward; torch's backward is not (if torch fixes it, compare with it above)."""
    x = RNG.standard_normal((1, 5, 2, 2))
    g = RNG.standard_normal(x.shape)
    tm = tnn.CrossMapLRN2d(3, **_LRN_PARAMS)

    def f_torch(a):
        return float((tm(torch.tensor(a)) * torch.tensor(g)).sum())

    eps, num = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        num[i] = (f_torch(x + d) - f_torch(x - d)) / (2 * eps)
    m = nn.CrossMapLRN2d(3, **_LRN_PARAMS)
    ours = jax.grad(lambda a: jnp.sum(m.apply({}, {}, a)[0] * g))(jnp.asarray(x))
    assert_close(ours, num, 1e-8, "jax.grad vs finite differences of torch's forward")
    tx = _t(x)
    (torch_own,) = torch.autograd.grad(tm(tx), tx, torch.tensor(g))
    assert np.abs(to_np(torch_own) - num).max() > 1e-3 * np.abs(num).max()
    check_grads(lambda a: m.apply({}, {}, a)[0], (jnp.asarray(x),), order=2, modes=("rev",))


def test_cross_map_lrn2d_float32_and_hand_computed():
    x = (RNG.standard_normal((2, 7, 4, 3)) * 3).astype(np.float32)
    for size, kw in ((5, {}), (4, dict(alpha=1e-2, beta=0.5, k=2.0))):
        tx = _t(x)
        ty = tnn.CrossMapLRN2d(size, **kw)(tx)
        y = nn.CrossMapLRN2d(size, **kw).apply({}, {}, jnp.asarray(x))[0]
        assert y.dtype == jnp.float32
        assert_close(y, to_np(ty), 1e-6, f"float32 forward size {size}")
        g = RNG.standard_normal(x.shape).astype(np.float32)
        gx = jax.grad(lambda a: jnp.sum(nn.CrossMapLRN2d(size, **kw).apply({}, {}, a)[0] * g))(jnp.asarray(x))
        (tg,) = torch.autograd.grad(_torch_lrn_ref(tx, size, **{**_LRN_PARAMS, **dict(alpha=1e-4, beta=0.75, k=1),
                                                                 **kw}), tx, torch.tensor(g))
        assert_close(gx, to_np(tg), 1e-5, f"float32 gradient size {size}")
    # windows {0,1}, {0,1,2}, {0,1,2,3}, {0,2,3} (channel 0 kept): 1 / (1 + alpha/size · n)
    y = nn.CrossMapLRN2d(3, alpha=3.0, beta=1.0, k=1.0).apply({}, {}, jnp.ones((1, 4, 1, 1)))[0]
    np.testing.assert_allclose(np.asarray(y).ravel(), [1 / 3, 1 / 4, 1 / 5, 1 / 4], rtol=1e-6)
    # an even size sums size - 1 channels but still divides by size: LocalResponseNorm differs
    y2 = nn.CrossMapLRN2d(2, alpha=2.0, beta=1.0, k=1.0).apply({}, {}, jnp.ones((1, 1, 1, 1)))[0]
    assert float(y2.ravel()[0]) == pytest.approx(0.5)


def test_cross_map_lrn2d_errors_repr_layouts():
    expected = _torch_message(lambda: tnn.CrossMapLRN2d(3)(torch.zeros(2, 3, 4)))
    m = nn.CrossMapLRN2d(3)
    with pytest.raises(ValueError) as e:
        m.apply({}, {}, jnp.zeros((2, 3, 4)))
    assert expected.replace("CrossMapLRN2d: ", "") in str(e.value) and str(e.value).startswith(repr(m))
    with pytest.raises(ValueError, match="size must be a positive"):
        nn.CrossMapLRN2d(0).apply({}, {}, jnp.zeros((1, 3, 2, 2)))
    with pytest.raises(ShapeError, match="C > 0"):
        m.apply({}, {}, jnp.zeros((1, 0, 2, 2)))
    with pytest.raises(ShapeError, match="floating-point"):
        m.apply({}, {}, jnp.zeros((1, 3, 2, 2), jnp.int32))
    assert m.apply({}, {}, jnp.zeros((0, 3, 2, 2)))[0].shape == (0, 3, 2, 2)
    assert repr(m) == repr(tnn.CrossMapLRN2d(3)) == "CrossMapLRN2d(3, alpha=0.0001, beta=0.75, k=1)"
    x = jnp.asarray(RNG.standard_normal((2, 5, 3, 4)), jnp.float32)
    ref = m.apply({}, {}, x)[0]
    with F.channels_last():
        y = m.apply({}, {}, x.transpose(0, 2, 3, 1))[0]
    assert_close(y.transpose(0, 3, 1, 2), ref, 1e-6, "channels_last")


def test_from_torch_cross_map_lrn2d(x64):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    # 6 channels after the conv, size 3: forward only (torch's backward is not the derivative here)
    m = tnn.Sequential(tnn.Conv2d(3, 6, 3), tnn.CrossMapLRN2d(3, alpha=0.5, beta=0.75, k=1)).double()
    model = _from_torch_parity(m, [x], 1e-12, grads=False)
    assert "CrossMapLRN2d(3, alpha=0.5, beta=0.75, k=1)" in repr(model)
    # 2 channels, size 5: the window spans every channel and torch's backward is right, so gradients too
    m2 = tnn.Sequential(tnn.Conv2d(3, 2, 3), tnn.CrossMapLRN2d(5, alpha=2.0, beta=0.6, k=1.5)).double()
    _from_torch_parity(m2, [x], 1e-12)

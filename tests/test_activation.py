"""Activations against torch: randomized options and inputs with exact kink points
(hypothesis, f32 and f64), the gradient torch takes on each tie, PReLU's parameter,
the softmax family's dim rule, reprs, errors and transformations."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnets import ShapeError, nn
from funcnets.nn import functional as F
from helpers import assert_close, to_np

RNG = np.random.default_rng(0)
TOL = {np.float32: (1e-5, 1e-4), np.float64: (1e-10, 1e-10)}  # (values, gradients)
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
NONE = st.just({})


def _num(lo, hi):
    """A float option; float32-subnormal ones become 0 (XLA:CPU flushes subnormals, torch does not)."""
    return st.floats(lo, hi).map(lambda v: 0.0 if abs(v) < np.finfo(np.float32).tiny else v)


def _hardtanh_opts():
    return st.tuples(_num(-3, 0.5), _num(0.05, 3)).map(lambda t: {"min_val": t[0], "max_val": t[0] + t[1]})


# name -> (options strategy, the kink points of those options)
ACTIVATIONS = {
    "relu": (NONE, lambda o: [0.0]),
    "relu6": (NONE, lambda o: [0.0, 6.0]),
    "leaky_relu": (st.fixed_dictionaries({"negative_slope": _num(-2, 2)}), lambda o: [0.0]),
    "elu": (st.fixed_dictionaries({"alpha": _num(0.1, 3)}), lambda o: [0.0]),
    "selu": (NONE, lambda o: [0.0]),
    "celu": (st.fixed_dictionaries({"alpha": _num(0.1, 3)}), lambda o: [0.0]),
    "gelu": (st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}), lambda o: [0.0]),
    "silu": (NONE, lambda o: [0.0]),
    "mish": (NONE, lambda o: [0.0]),
    "hardswish": (NONE, lambda o: [-3.0, 3.0]),
    "hardsigmoid": (NONE, lambda o: [-3.0, 3.0]),
    "hardtanh": (_hardtanh_opts(), lambda o: [o["min_val"], o["max_val"]]),
    "sigmoid": (NONE, lambda o: [0.0]),
    "tanh": (NONE, lambda o: [0.0]),
    "softsign": (NONE, lambda o: [0.0]),
    "softplus": (
        st.fixed_dictionaries({"beta": st.sampled_from([0.5, 1.0, 2.0, 0.7]), "threshold": _num(-2, 8)}),
        lambda o: [o["threshold"] / o["beta"]],
    ),
    "threshold": (st.fixed_dictionaries({"threshold": _num(-2, 2), "value": _num(-3, 3)}), lambda o: [o["threshold"]]),
}


@functools.lru_cache(maxsize=None)
def _jitted_vjp(name, static=()):
    """``jit((x, cot, options) -> (F.name(x, **options), x's gradient for cot))``; numeric
    options are traced, so hypothesis' examples share one compilation per dtype."""

    def run(x, cot, opts):
        y, pull = jax.vjp(lambda a: getattr(F, name)(a, **opts, **dict(static)), x)
        return y, pull(cot)[0]

    return jax.jit(run)


def _compare(name, opts, x, cot, tols, what=""):
    """Ours (jitted, traced options) against torch: values and input gradients."""
    dtype = x.dtype.type
    static = tuple((k, v) for k, v in opts.items() if isinstance(v, (str, int)))  # approximate, dim
    traced = {k: np.asarray(v, dtype) for k, v in opts.items() if isinstance(v, float)}
    tx = torch.tensor(x, requires_grad=True)
    yt = getattr(TF, name)(tx, **opts)
    yt.backward(torch.tensor(cot))
    with jax.enable_x64(dtype == np.float64):
        yj, gj = _jitted_vjp(name, static)(x, cot, traced)
    assert yj.dtype == dtype and gj.dtype == dtype
    assert_close(yj, to_np(yt), tols[0], f"{what}{name}{opts} value")
    assert_close(gj, to_np(tx.grad), tols[1], f"{what}{name}{opts} grad")
    return np.asarray(gj), to_np(tx.grad)


@st.composite
def activation_case(draw, name):
    opts_strategy, kinks = ACTIVATIONS[name]
    opts = draw(opts_strategy)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    special = [*kinks(opts), 0.0, -0.0, 30.0, -30.0]
    values = draw(st.lists(st.one_of(st.floats(-8, 8), st.sampled_from(special)), min_size=12, max_size=12))
    values[:2] = [1.0, -1.0]  # realistic activations have O(1) entries: the scale of the relative error
    x = np.array(values, dtype).reshape(2, 6)
    x[np.abs(x) < np.finfo(dtype).tiny] = 0.0  # XLA:CPU flushes subnormals to zero (relu6(1e-39) = 0, gradient 0)
    cot = draw(st.lists(st.floats(0.25, 2), min_size=12, max_size=12))
    return opts, x, np.array(cot, dtype).reshape(2, 6)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_activation_matches_torch(name, data):
    """Values and input gradients equal torch's over random options and inputs that
    include the exact kink points (a wrong tie-break is an O(1) gradient error)."""
    opts, x, cot = data.draw(activation_case(name))
    _compare(name, opts, x, cot, TOL[x.dtype.type])


# (function, options, the exact ties); torch's gradient there is the reference
KINKS = [
    ("relu", {}, [0.0]),
    ("relu6", {}, [0.0, 6.0]),
    ("leaky_relu", {"negative_slope": 0.2}, [0.0]),
    ("hardtanh", {"min_val": -2.0, "max_val": 3.0}, [-2.0, 3.0]),
    ("hardtanh", {"min_val": 0.5, "max_val": 0.5}, [0.5]),  # torch's F.hardtanh allows min == max
    ("hardswish", {}, [-3.0, 3.0]),
    ("hardsigmoid", {}, [-3.0, 3.0]),
    ("threshold", {"threshold": 0.5, "value": -1.0}, [0.5]),
    ("softplus", {"beta": 2.0, "threshold": 3.0}, [1.5]),
    ("elu", {"alpha": 0.5}, [0.0]),
    ("celu", {"alpha": 0.5}, [0.0]),
    ("selu", {}, [0.0]),
    ("softsign", {}, [0.0]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_at_exact_ties(dtype):
    """On each tie the gradient is the one torch's backward formula picks (e.g. hardtanh
    0 at its bounds, hardswish 0 at -3 and 1 at +3, leaky_relu the slope at 0)."""
    for name, opts, ties in KINKS:
        x = np.array(ties + [1.0], dtype)  # 1.0: the scale
        gj, gt = _compare(name, opts, x, np.ones_like(x), (1e-6, 1e-6), "tie: ")
        np.testing.assert_allclose(gj[:-1], gt[:-1], rtol=1e-6, atol=0, err_msg=f"{name} at {ties}")


def test_kink_gradients_hand_computed():
    """The tie-breaks, stated: torch's numbers written out."""
    cases = [
        (F.relu6, [0.0, 6.0, 3.0], [0, 0, 1]),
        (lambda x: F.hardtanh(x, -2.0, 3.0), [-2.0, 3.0, 0.0], [0, 0, 1]),
        (F.hardswish, [-3.0, 3.0, 0.0], [0, 1, 0.5]),
        (F.hardsigmoid, [-3.0, 3.0, 0.0], [0, 0, 1 / 6]),
        (lambda x: F.leaky_relu(x, 0.2), [0.0, -1.0, 1.0], [0.2, 0.2, 1]),
        (lambda x: F.elu(x, 0.5), [0.0, 1.0, 2.0], [0.5, 1, 1]),
        (F.selu, [0.0, 1.0, 2.0], [1.0507009873554805 * 1.6732632423543772, 1.0507009873554805, 1.0507009873554805]),
        (lambda x: F.threshold(x, 0.5, -1.0), [0.5, 0.6, 0.0], [0, 1, 0]),
    ]
    grads = jax.jit(lambda xs: [jax.vmap(jax.grad(f))(x) for (f, _, _), x in zip(cases, xs)])([jnp.array(c[1]) for c in cases])
    for (_, x, want), got in zip(cases, grads):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=str(x))


def test_large_inputs_give_finite_gradients():
    """Unselected branches see safe arguments: no inf·0 = nan where exp overflows (f64 > 709)."""
    x = np.array([-800.0, -50.0, 50.0, 800.0, 1.0])
    for name, opts in [("elu", {}), ("selu", {}), ("celu", {"alpha": 0.5}), ("softplus", {}), ("mish", {}), ("silu", {}), ("gelu", {})]:
        gj, _ = _compare(name, opts, x, np.ones_like(x), (1e-12, 1e-12), "large: ")
        assert np.isfinite(gj).all(), name


def test_hyperparameters_may_be_traced():
    """Options are ordinary values to JAX: vmap over a slope, differentiate by alpha."""
    x = jnp.array([-2.0, -0.5, 0.0, 1.5])
    slopes = jnp.array([0.01, 0.1, 0.3])
    np.testing.assert_allclose(jax.vmap(lambda s: F.leaky_relu(x, s))(slopes), [to_np(TF.leaky_relu(torch.tensor(x), float(s))) for s in slopes], rtol=1e-6)
    h = 1e-3
    for name in ("elu", "celu"):
        d = jax.grad(lambda a: getattr(F, name)(x, a).sum())(1.5)
        fd = (getattr(F, name)(x, 1.5 + h).sum() - getattr(F, name)(x, 1.5 - h).sum()) / (2 * h)
        np.testing.assert_allclose(d, fd, rtol=1e-4)


# ------------------------------------------------------------------ the softmax family
SOFTMAXES = ("softmax", "log_softmax", "softmin")


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(SOFTMAXES),
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
)
def test_softmax_family_matches_torch(name, dtype, shape, data):
    """A random dim of a random shape, f32 and f64: values and input gradients."""
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1), label="seed"))
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    x.flat[0] = x.flat[-1]  # a tie inside a slice
    _compare(name, {"dim": dim}, x, rng.uniform(0.25, 2, shape).astype(dtype), TOL[dtype])


def _user_warnings(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in got if issubclass(w.category, UserWarning)]


def test_softmax_implicit_dim_follows_torch():
    """dim=None: torch's deprecated implicit choice (0 for 0-, 1-, 3-D, else 1) and its warning."""
    from funcnets.nn.activation import _softmax_dim

    for ndim in range(6):
        x = jnp.zeros((2,) * ndim)
        dim, mine = _user_warnings(lambda: _softmax_dim("softmax", x, None, 2))
        want, theirs = _user_warnings(lambda: TF._get_softmax_dim("softmax", ndim, 2))
        assert dim == want and mine == theirs and "Implicit dimension choice" in mine[0]
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)  # 3-D: torch takes it as unbatched (C, H, W)
    for name, layer, ref in zip(SOFTMAXES, (nn.Softmax(), nn.LogSoftmax(), nn.Softmin()), (torch.nn.Softmax(), torch.nn.LogSoftmax(), torch.nn.Softmin())):
        (y, mine) = _user_warnings(lambda: getattr(F, name)(jnp.asarray(x)))
        (yt, theirs) = _user_warnings(lambda: getattr(TF, name)(torch.tensor(x)))
        assert mine == theirs and len(mine) == 1
        assert_close(y, to_np(yt), 1e-6, name)
        with pytest.warns(UserWarning, match="Implicit dimension choice") as rec:
            yl, _ = layer({}, {}, jnp.asarray(x))
        assert rec[0].filename == __file__  # the warning points at the caller's line, as torch's does
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            yt = ref(torch.tensor(x))
        assert_close(yl, to_np(yt), 1e-6, repr(layer))


def test_softmax_dtype_errors_and_layout():
    x = jnp.array([[1, 2, 3]])
    y = F.softmax(x, 1, dtype=jnp.float32)  # torch casts before the operation
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, to_np(TF.softmax(torch.tensor([[1, 2, 3]]), 1, dtype=torch.float32)), rtol=1e-6)
    with pytest.raises(ShapeError, match="floating-point input, got dtype int32"):
        F.softmax(x, 1)
    with pytest.raises(ShapeError, match=r"softmax got dim=2 for an input of shape \(1, 3\): dim must be in \[-2, 1\]"):
        F.softmax(jnp.ones((1, 3)), 2)
    with pytest.raises(ShapeError, match=r"LogSoftmax\(dim=-3\) got dim=-3"):
        nn.LogSoftmax(-3)({}, {}, jnp.ones((1, 3)))
    np.testing.assert_allclose(F.softmax(jnp.array(3.0), 0), 1.0)  # 0-D, as torch
    np.testing.assert_allclose(F.log_softmax(jnp.array(3.0), -1), 0.0)
    with F.channels_last(), pytest.raises(ShapeError, match=r"Softmax\(dim=1\) reduces over a dim .*channels_last\(\)"):
        nn.Softmax(1)({}, {}, jnp.ones((2, 3, 4, 5)))
    with F.batch_last(), pytest.raises(ShapeError, match=r"batch_last\(\)"):
        F.softmin(jnp.ones((2, 3, 4, 5)), 1)


# -------------------------------------------------------------------------------- PReLU
PRELU_SHAPES = [((2, 3), 3), ((2, 3, 4, 5), 3), ((2, 3, 4, 5), 1), ((4,), 1), ((), 1), ((3, 2, 2, 2, 2), 2)]


@jax.jit
def _prelu_vjp(params, x, cot):
    y, pull = jax.vjp(lambda p, a: nn.PReLU(params["weight"].shape[0])(p, {}, a)[0], params, x)
    return y, *pull(cot)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,c", PRELU_SHAPES)
def test_prelu_matches_torch(shape, c, dtype):
    """Same weights (copied from torch): values, input and weight gradients; exact zeros included."""
    ref = torch.nn.PReLU(c).to(TORCH_DTYPE[dtype])
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(RNG.uniform(-1, 1, c)))
    x = RNG.standard_normal(shape).astype(dtype)
    x.flat[: max(1, x.size // 4)] = 0.0  # ties: input gradient = weight, weight gradient = 0
    x.flat[-1] = 1.0 if x.size > 1 else x.flat[-1]
    cot = RNG.uniform(0.25, 2, shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ref(tx).backward(torch.tensor(cot))
    with jax.enable_x64(dtype == np.float64):
        y, gp, gx = _prelu_vjp({"weight": to_np(ref.weight)}, x, cot)
    vtol, gtol = TOL[dtype]
    assert y.dtype == dtype
    assert_close(y, to_np(ref(torch.tensor(x))), vtol, "value")
    assert_close(gx, to_np(tx.grad), gtol, "input grad")
    assert_close(gp["weight"], to_np(ref.weight.grad), gtol, "weight grad")


def test_prelu_init_names_repr_and_errors():
    for c, init in [(1, 0.25), (4, 0.1)]:
        layer, ref = nn.PReLU(c, init=init), torch.nn.PReLU(c, init=init)
        params, state = layer.init(jax.random.PRNGKey(0))
        assert state == {} and repr(layer) == repr(ref)
        assert [n for n, _ in layer.named_parameters(params)] == list(dict(ref.named_parameters()))
        np.testing.assert_array_equal(params["weight"], to_np(ref.weight))  # constant init: exactly torch's
    params = {"weight": jnp.full((3,), 0.25)}
    with pytest.raises(ShapeError, match=r"PReLU\(num_parameters=3\) expected input \(N, 3, \*\) .*got \(2, 4\)"):
        nn.PReLU(3)(params, {}, jnp.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"got \(3,\)"):  # unbatched 1-D: one channel, as torch
        nn.PReLU(3)(params, {}, jnp.ones((3,)))
    with pytest.raises(ShapeError, match=r"prelu: weight has 3 parameters but the input \(2, 4\) has 4 channels"):
        F.prelu(jnp.ones((2, 4)), params["weight"])
    with pytest.raises(ShapeError, match="floating-point input"):
        nn.PReLU(3)(params, {}, jnp.ones((2, 3), jnp.int32))
    with F.channels_last(), pytest.raises(ShapeError, match=r"PReLU\(num_parameters=3\) reads channels from dim 1"):
        nn.PReLU(3)(params, {}, jnp.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="num_parameters >= 1"):
        nn.PReLU(0)


def test_prelu_per_sample_gradients_vmap(x64):
    """jax.vmap(jax.grad(...)) gives each sample's weight gradient, as a torch loop does."""
    layer = nn.PReLU(3)
    w = RNG.uniform(-1, 1, 3)
    xs = RNG.standard_normal((4, 3, 5))
    xs[0, 0, 0] = 0.0

    def loss(p, x):
        return jnp.sum(layer(p, {}, x[None])[0] ** 2)

    got = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))({"weight": jnp.asarray(w)}, jnp.asarray(xs))["weight"]
    ref = torch.nn.PReLU(3).double()
    for i in range(4):
        ref.zero_grad()
        with torch.no_grad():
            ref.weight.copy_(torch.tensor(w))
        (ref(torch.tensor(xs[i : i + 1])) ** 2).sum().backward()
        assert_close(got[i], to_np(ref.weight.grad), 1e-10, f"sample {i}")


# ------------------------------------------------------------------------- the layers
LAYERS = [
    (nn.ReLU(), torch.nn.ReLU()),
    (nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
    (nn.ReLU6(True), torch.nn.ReLU6(True)),
    (nn.LeakyReLU(), torch.nn.LeakyReLU()),
    (nn.LeakyReLU(0.2, True), torch.nn.LeakyReLU(0.2, True)),
    (nn.ELU(0.5), torch.nn.ELU(0.5)),
    (nn.ELU(inplace=True), torch.nn.ELU(inplace=True)),
    (nn.SELU(), torch.nn.SELU()),
    (nn.CELU(2.0, inplace=True), torch.nn.CELU(2.0, inplace=True)),
    (nn.GELU(), torch.nn.GELU()),
    (nn.GELU("tanh"), torch.nn.GELU("tanh")),
    (nn.SiLU(inplace=True), torch.nn.SiLU(inplace=True)),
    (nn.Mish(), torch.nn.Mish()),
    (nn.Hardswish(inplace=True), torch.nn.Hardswish(inplace=True)),
    (nn.Hardsigmoid(True), torch.nn.Hardsigmoid(True)),
    (nn.Hardtanh(), torch.nn.Hardtanh()),
    (nn.Hardtanh(-2, 3.5, True), torch.nn.Hardtanh(-2, 3.5, True)),
    (nn.Sigmoid(), torch.nn.Sigmoid()),
    (nn.Tanh(), torch.nn.Tanh()),
    (nn.Softplus(), torch.nn.Softplus()),
    (nn.Softplus(2, 5), torch.nn.Softplus(2, 5)),
    (nn.Softsign(), torch.nn.Softsign()),
    (nn.Threshold(0.1, 20), torch.nn.Threshold(0.1, 20)),
    (nn.Threshold(1, -2.5, True), torch.nn.Threshold(1, -2.5, True)),
    (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
    (nn.LogSoftmax(-1), torch.nn.LogSoftmax(-1)),
    (nn.Softmin(0), torch.nn.Softmin(0)),
]


def test_layer_reprs_match_torch():
    for layer, ref in LAYERS:
        assert repr(layer) == repr(ref)
        assert layer.param_names() == () and layer.init_own(jax.random.PRNGKey(0)) == ({}, {})


def test_layers_match_torch_under_jit(x64):
    """Every layer through the module API, in one jitted program: values and input gradients."""
    x = 3 * RNG.standard_normal((2, 3, 4))
    x[0, 0, :3] = [0.0, 1.0, -1.0]
    cot = RNG.uniform(0.25, 2, x.shape)

    @jax.jit
    def run(x, cot):
        out = []
        for layer, _ in LAYERS:
            y, pull = jax.vjp(lambda a: layer({}, {}, a)[0], x)
            out.append((y, pull(cot)[0]))
        return out

    for (layer, ref), (y, g) in zip(LAYERS, run(x, cot)):
        tx = torch.tensor(x, requires_grad=True)
        yt = ref(tx.clone() if getattr(ref, "inplace", False) else tx)  # torch's in-place needs a non-leaf
        yt.backward(torch.tensor(cot))
        assert_close(y, to_np(yt), 1e-10, f"{layer!r} value")
        assert_close(g, to_np(tx.grad), 1e-10, f"{layer!r} grad")


def test_sequential_of_activations_names_repr_and_batch_of_jacobians(x64):
    """A Sequential with PReLU: torch's parameter names and repr; jax.vmap of the Jacobian."""
    model = nn.Sequential(nn.Linear(4, 3), nn.PReLU(3), nn.GELU("tanh"), nn.Linear(3, 2), nn.LogSoftmax(1))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.PReLU(3), torch.nn.GELU("tanh"), torch.nn.Linear(3, 2), torch.nn.LogSoftmax(1)).double()
    assert repr(model) == repr(ref)
    params, _ = model.init(jax.random.PRNGKey(0))
    assert [n for n, _ in model.named_parameters(params)] == list(dict(ref.named_parameters()))
    params = {k: {n: jnp.asarray(to_np(t)) for n, t in ref.get_submodule(k).named_parameters()} for k in params}
    x = RNG.standard_normal((5, 4))
    tx = torch.tensor(x, requires_grad=True)
    ref(tx)[:, 0].sum().backward()
    jac = jax.jit(jax.vmap(jax.jacrev(lambda a: model(params, {}, a[None])[0][0])))(jnp.asarray(x))  # (5, 2, 4)
    assert_close(jac[:, 0], to_np(tx.grad), 1e-10, "per-sample input gradients")


def test_dtypes_and_constructor_errors():
    # torch has integer kernels for relu/relu6/hardtanh/threshold (the result stays integer)
    # and promotes integers to float in sigmoid/tanh/softsign; the rest reject integers
    xi = jnp.array([-2, 0, 3, 7])
    for layer, ref in [(nn.ReLU(), torch.nn.ReLU()), (nn.ReLU6(), torch.nn.ReLU6()), (nn.Hardtanh(-1, 2), torch.nn.Hardtanh(-1, 2)), (nn.Threshold(1, 5), torch.nn.Threshold(1, 5))]:
        y, _ = layer({}, {}, xi)
        assert jnp.issubdtype(y.dtype, jnp.integer)
        np.testing.assert_array_equal(y, to_np(ref(torch.tensor([-2, 0, 3, 7]))))
    for layer in (nn.Sigmoid(), nn.Tanh(), nn.Softsign()):
        assert jnp.issubdtype(layer({}, {}, xi)[0].dtype, jnp.floating)
    for layer in (nn.LeakyReLU(), nn.ELU(), nn.GELU(), nn.Softplus(), nn.Hardswish(), nn.Mish(), nn.Softmax(0)):
        with pytest.raises(ShapeError, match=rf"{type(layer).__name__}\(.*\) expected a floating-point input, got dtype int32"):
            layer({}, {}, xi)
    with pytest.raises(ValueError, match="approximate argument must be either none or tanh"):
        nn.GELU("exact")
    with pytest.raises(ValueError, match="approximate argument must be either none or tanh"):
        F.gelu(jnp.ones(2), "erf")
    with pytest.raises(ValueError, match=r"max_val \(0\) must be greater than min_val \(1\)"):
        nn.Hardtanh(1, 0)
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        F.hardtanh(jnp.ones(2), 1.0, 0.0)
    with pytest.warns(FutureWarning, match="`min_value` is deprecated"):
        layer = nn.Hardtanh(min_value=-2.0)
    assert repr(layer) == "Hardtanh(min_val=-2.0, max_val=1.0)" and layer == nn.Hardtanh(-2.0)
    with pytest.raises(ValueError, match="alpha cannot be 0"):
        nn.CELU(0.0)
    assert (nn.ReLU6.min_val, nn.ReLU6.max_val) == (torch.nn.ReLU6().min_val, torch.nn.ReLU6().max_val)


def test_elementwise_layers_work_in_any_layout(x64):
    layers = (nn.ReLU6(), nn.GELU(), nn.Hardswish(), nn.LeakyReLU(0.1), nn.PReLU())
    params = {"weight": jnp.array([0.3])}  # PReLU(1): one shared slope is element-wise

    @jax.jit
    def both(x):
        nchw = [layer(params, {}, x)[0] for layer in layers]
        with F.channels_last():
            nhwc = [layer(params, {}, x.transpose(0, 2, 3, 1))[0].transpose(0, 3, 1, 2) for layer in layers]
        return nchw, nhwc

    for a, b in zip(*both(jnp.asarray(RNG.standard_normal((2, 3, 4, 5))))):
        np.testing.assert_array_equal(a, b)

"""Regressions found by a torch-parity hunt over nn layers and functional ops: each test
runs the same input through torch and funcnets (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from funcnets import nn
from funcnets.nn import functional as F


def test_pairwise_distance_negative_p_with_a_zero_difference(x64):
    # torch: a zero entry contributes 0**p = inf for p < 0, so the norm is 0; we used to
    # skip zero entries (the norm of the rest: 1.0 for p=-1 below)
    a = np.array([[1.0, 2.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 3.0, 0.5]])
    b = np.zeros_like(a)
    for p in (-1.0, -2.5):
        ta = torch.tensor(a, requires_grad=True)
        t = TF.pairwise_distance(ta, torch.tensor(b), p, 0.0)
        ct = np.arange(1.0, 4.0)
        (tg,) = torch.autograd.grad(t, ta, torch.tensor(ct))
        y, vjp = jax.vjp(lambda v: F.pairwise_distance(v, jnp.asarray(b), p, 0.0), jnp.asarray(a))
        np.testing.assert_allclose(np.asarray(y), t.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(ct))[0]), tg.numpy(), rtol=1e-12, atol=1e-12)


def test_hardswish_at_infinities(x64):
    # torch's x·min(max(x + 3, 0), 6)/6: NaN at -inf (we gave 0); gradients 1 at +inf and
    # 0 at -inf (the middle branch's NaN gradient leaked through the where)
    x = np.array([np.inf, -np.inf, np.nan, 0.0, 1.0, -3.0, 3.0, -5.0])
    tx = torch.tensor(x, requires_grad=True)
    t = TF.hardswish(tx)
    (tg,) = torch.autograd.grad(t.sum(), tx)
    y, g = jax.value_and_grad(lambda v: F.hardswish(v).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(F.hardswish(jnp.asarray(x))), t.detach().numpy())
    np.testing.assert_array_equal(np.asarray(g), tg.numpy())


@pytest.mark.parametrize("n", [2, 3])
def test_max_unpool_indices_outside_the_output_raise(n):
    # an odd-sized input unpooled without output_size: torch raises ("Found an invalid max
    # index"), we silently dropped the values
    x = torch.arange(2.0 * 5**n).reshape((1, 2) + (5,) * n)  # each window's max is its last
    y, idx = getattr(TF, f"max_pool{n}d")(x, 2, 2, return_indices=True)
    with pytest.raises(RuntimeError, match="invalid max index"):
        getattr(TF, f"max_unpool{n}d")(y, idx, 2, 2)
    unpool = getattr(F, f"max_unpool{n}d")
    with pytest.raises(ValueError, match="invalid max index .* pass output_size"):
        unpool(jnp.asarray(y.numpy()), jnp.asarray(idx.numpy()), 2, 2)
    # with output_size, as in torch
    t = getattr(TF, f"max_unpool{n}d")(y, idx, 2, 2, output_size=x.shape[2:])
    ours = unpool(jnp.asarray(y.numpy()), jnp.asarray(idx.numpy()), 2, 2, output_size=x.shape[2:])
    np.testing.assert_array_equal(np.asarray(ours), t.numpy())


@pytest.mark.parametrize("op", ["adaptive_avg_pool2d", "adaptive_max_pool2d"])
def test_adaptive_pool_empty_spatial_dim_raises(op):
    # torch raises; we returned NaN (avg) or failed inside argmax (max)
    with pytest.raises(RuntimeError, match="non-zero size for non-batch dimensions"):
        getattr(TF, op)(torch.zeros(1, 1, 0, 4), 2)
    with pytest.raises(ValueError, match=f"{op}: expected input to have non-zero size"):
        getattr(F, op)(jnp.zeros((1, 1, 0, 4)), 2)


_X = np.array([[-3.0, -0.5, 0.0, 0.5, 0.25, -0.25], [2.0, -1e-3, 7.0, -40.0, 40.0, 1.5]])


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize(
    "name, torch_fn, ours",
    [
        ("logsigmoid", TF.logsigmoid, F.logsigmoid),
        ("hardshrink", lambda t: TF.hardshrink(t, 0.5), lambda v: F.hardshrink(v, 0.5)),
        ("softshrink", lambda t: TF.softshrink(t, 0.25), lambda v: F.softshrink(v, 0.25)),
        ("tanhshrink", TF.tanhshrink, F.tanhshrink),
        ("glu", lambda t: TF.glu(t, 1), lambda v: F.glu(v, 1)),
        ("glu0", lambda t: TF.glu(t, 0), lambda v: F.glu(v, 0)),
        ("rrelu_eval", lambda t: TF.rrelu(t, 0.1, 0.3, training=False), lambda v: F.rrelu(v, 0.1, 0.3)),
        ("softmax2d", lambda t: torch.nn.Softmax2d()(t[None]), lambda v: nn.Softmax2d()({}, {}, v[None])[0]),
    ],
)
def test_missing_activations_match_torch(x64, name, torch_fn, ours, dtype, tol):
    # these torch.nn activations were absent (AttributeError); values and gradients, ties included
    x = _X.astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    t = torch_fn(tx)
    ct = np.linspace(-1.0, 2.0, t.numel()).reshape(t.shape).astype(dtype)
    (tg,) = torch.autograd.grad(t, tx, torch.tensor(ct))
    y, vjp = jax.vjp(ours, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), t.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(ct))[0]), tg.numpy(), rtol=tol, atol=tol)


def test_missing_activation_layers_and_errors():
    assert repr(nn.Hardshrink(0.3)) == repr(torch.nn.Hardshrink(0.3))
    assert repr(nn.RReLU(0.1, 0.2)) == repr(torch.nn.RReLU(0.1, 0.2))
    assert repr(nn.GLU(1)) == repr(torch.nn.GLU(1))
    x = jnp.asarray(_X)
    y, _ = nn.RReLU(0.1, 0.3)({}, {}, x, train=True, key=jax.random.PRNGKey(0))
    with np.errstate(invalid="ignore"):
        slope = np.asarray(y) / _X
    assert np.all(slope[_X > 0] == 1) and np.all((slope[_X < 0] >= 0.1) & (slope[_X < 0] <= 0.3))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        nn.RReLU()({}, {}, x, train=True)
    with pytest.raises(ValueError, match="halving dimension must be even"):
        F.glu(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="lambda must be greater or equal to 0"):
        F.softshrink(x, -1.0)

"""Elementwise losses against torch (hypothesis): smooth-L1/Huber, BCE (with logits),
soft margins, KL, Poisson and Gaussian NLL; values and input gradients in f32 and f64,
torch's edge cases (probabilities exactly 0 and 1, variances below eps, ties at β/δ),
every reduction, and torch's errors as clear funcnets errors."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from funcnets import losses
from funcnets.errors import ShapeError
from test_losses import check_parity, dtypes, reductions

seeds = st.integers(0, 2**31 - 1)
shapes = st.sampled_from([(4,), (2, 3)])


def _grid_or_normal(rng, shape, dtype, grid):
    """Standard normal values, or multiples of 0.5 in [-2, 2] (exact ties with the options)."""
    x = rng.integers(-4, 5, shape) * 0.5 if grid else rng.standard_normal(shape)
    return x.astype(dtype)


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, shape=shapes, grid=st.booleans(),
       beta=st.sampled_from([0.0, 0.5, 1.0, 1.7]), weighted=st.booleans())
def test_smooth_l1_and_huber(dtype, reduction, seed, shape, grid, beta, weighted):
    rng = np.random.default_rng(seed)
    x, t = _grid_or_normal(rng, shape, dtype, grid), _grid_or_normal(rng, shape, dtype, grid)
    check_parity(
        lambda a, b: losses.smooth_l1_loss(a, b, reduction=reduction, beta=beta),
        lambda a, b: TF.smooth_l1_loss(a, b, reduction=reduction, beta=beta),
        [x, t], diff=(0, 1), what=f"smooth_l1 beta={beta}",
    )
    delta = beta or 0.25
    w = rng.uniform(0, 2, shape).astype(dtype) if weighted else None
    check_parity(
        lambda a, b, c: losses.huber_loss(a, b, reduction=reduction, delta=delta, weight=c),
        lambda a, b, c: TF.huber_loss(a, b, reduction=reduction, delta=delta, weight=c),
        [x, t, w], diff=(0, 1), what=f"huber delta={delta} weighted={weighted}",
    )


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, shape=shapes, edges=st.booleans(),
       weight=st.sampled_from([None, "full", "last"]))
def test_binary_cross_entropy(dtype, reduction, seed, shape, edges, weight):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, shape).astype(dtype)
    t = rng.uniform(0, 1, shape).astype(dtype)
    if edges:  # probabilities of exactly 0 and 1: torch clamps each log at -100
        x.flat[:2] = [0.0, 1.0]
        t.flat[:2] = [1.0, 0.0]
        x.flat[-1], t.flat[-1] = 1.0, 1.0
    w = {None: None, "full": rng.uniform(0.2, 2, shape), "last": rng.uniform(0.2, 2, shape[-1:])}[weight]
    w = None if w is None else w.astype(dtype)
    check_parity(
        lambda a, b, c: losses.binary_cross_entropy(a, b, c, reduction=reduction),
        lambda a, b, c: TF.binary_cross_entropy(a, b, c, reduction=reduction),
        [x, t, w], diff=(0,), what=f"bce edges={edges}",
    )
    if not edges:  # the target's gradient, -logit(x), is infinite at 0 and 1
        check_parity(
            lambda a, b: losses.binary_cross_entropy(a, b, reduction=reduction),
            lambda a, b: TF.binary_cross_entropy(a, b, reduction=reduction),
            [x, t], diff=(1,), what="bce target gradient",
        )


def test_binary_cross_entropy_clamp_by_hand():
    x, t = jnp.array([0.0, 1.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(losses.binary_cross_entropy(x, t, reduction="none"), [100, 100, 0, 0])
    g = jax.grad(lambda a: losses.binary_cross_entropy(a, t, reduction="sum"))(x)
    assert np.all(np.isfinite(g)) and g[0] < -1e11 and g[1] > 1e11 and g[2] == 0 and g[3] == 0


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, shape=shapes,
       weighted=st.booleans(), pos=st.sampled_from([None, "last", "full"]), scale=st.sampled_from([1.0, 30.0]))
def test_binary_cross_entropy_with_logits(dtype, reduction, seed, shape, weighted, pos, scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)  # scale 30: exp(-x) overflows a naive formula
    t = rng.uniform(0, 1, shape).astype(dtype)
    w = rng.uniform(0.2, 2, shape).astype(dtype) if weighted else None
    pw = {None: None, "last": rng.uniform(0.2, 3, shape[-1:]), "full": rng.uniform(0.2, 3, shape)}[pos]
    pw = None if pw is None else pw.astype(dtype)
    check_parity(
        lambda a, b, c, d: losses.binary_cross_entropy_with_logits(a, b, c, reduction=reduction, pos_weight=d),
        lambda a, b, c, d: TF.binary_cross_entropy_with_logits(a, b, c, reduction=reduction, pos_weight=d),
        [x, t, w, pw], diff=(0, 1), what=f"bce_with_logits pos={pos}",
    )


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, shape=shapes, weighted=st.booleans())
def test_soft_margin_losses(dtype, reduction, seed, shape, weighted):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.choice([-1.0, 1.0], shape).astype(dtype)
    check_parity(
        lambda a, b: losses.soft_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.soft_margin_loss(a, b, reduction=reduction),
        [x, y], diff=(0,), what="soft_margin",
    )
    t = rng.integers(0, 2, shape).astype(dtype)
    w = rng.uniform(0.2, 2, shape[-1:]).astype(dtype) if weighted else None
    check_parity(
        lambda a, b, c: losses.multilabel_soft_margin_loss(a, b, c, reduction=reduction),
        lambda a, b, c: TF.multilabel_soft_margin_loss(a, b, c, reduction=reduction),
        [x, t, w], diff=(0, 1), what="multilabel_soft_margin",
    )


def test_soft_margin_loss_does_not_overflow():
    # torch's log1p(exp(800)) is inf with a NaN gradient; the loss is 800
    x = jnp.array([-800.0, 800.0])
    with jax.enable_x64(True):
        x = jnp.asarray(x, jnp.float64)
        np.testing.assert_allclose(losses.soft_margin_loss(x, jnp.ones(2), reduction="none"), [800.0, 0.0])
        np.testing.assert_allclose(jax.grad(lambda a: losses.soft_margin_loss(a, jnp.ones(2), "sum"))(x), [-1.0, 0.0])


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=st.sampled_from(["none", "mean", "sum", "batchmean"]), seed=seeds, shape=shapes,
       log_target=st.booleans())
def test_kl_div(dtype, reduction, seed, shape, log_target):
    rng = np.random.default_rng(seed)
    x = np.log(rng.dirichlet(np.ones(shape[-1]), shape[:-1] or None)).astype(dtype)
    q = rng.dirichlet(np.ones(shape[-1]), shape[:-1] or None)
    q.flat[0] = 0.0  # 0·log 0 = 0
    t = (np.log(q + 0.05) if log_target else q).astype(dtype)
    with pytest.warns(UserWarning, match="batchmean") if reduction == "mean" else contextlib.nullcontext():
        check_parity(
            lambda a, b: losses.kl_div(a, b, reduction=reduction, log_target=log_target),
            lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target),
            [x, t], diff=(0, 1) if log_target else (0,), what=f"kl_div {reduction}",
        )


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, shape=shapes, log_input=st.booleans(), full=st.booleans())
def test_poisson_nll_loss(dtype, reduction, seed, shape, log_input, full):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) if log_input else rng.uniform(0.0, 3.0, shape)).astype(dtype)
    t = rng.poisson(2.0, shape).astype(dtype)
    t.flat[0] = 1.0  # the Stirling term starts above 1
    check_parity(
        lambda a, b: losses.poisson_nll_loss(a, b, log_input=log_input, full=full, reduction=reduction),
        lambda a, b: TF.poisson_nll_loss(a, b, log_input=log_input, full=full, reduction=reduction),
        [x, t], diff=(0,), what=f"poisson log_input={log_input} full={full}",
    )


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, full=st.booleans(),
       var_shape=st.sampled_from(["same", "drop_last", "one", "float"]))
def test_gaussian_nll_loss(dtype, reduction, seed, full, var_shape):
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal((2, 3)).astype(dtype)
    var = {"same": (2, 3), "drop_last": (2,), "one": (2, 1)}.get(var_shape)
    if var is None:
        var = 0.7
        arrays, diff = [x, t], (0, 1)
    else:
        var = rng.uniform(0.1, 2.0, var).astype(dtype)
        var.flat[0] = 1e-8  # below eps: clamped, and the gradient passes as if it were not
        arrays, diff = [x, t, var], (0, 1, 2)
    check_parity(
        lambda a, b, v=var: losses.gaussian_nll_loss(a, b, v, full=full, reduction=reduction),
        lambda a, b, v=var: TF.gaussian_nll_loss(a, b, v, full=full, reduction=reduction),
        arrays, diff=diff, what=f"gaussian_nll var {var_shape}",
    )


def test_custom_derivatives_check_grads(x64):
    """BCE's and the Gaussian NLL's hand-written derivatives are true derivatives where
    torch's formulas are smooth (inside (0, 1); variances above eps), to second order."""
    rng = np.random.default_rng(0)
    x, t = jnp.asarray(rng.uniform(0.1, 0.9, (2, 3))), jnp.asarray(rng.uniform(0, 1, (2, 3)))
    check_grads(lambda a, b: losses.binary_cross_entropy(a, b), (x, t), order=2, modes=("rev",))
    check_grads(lambda a, b: losses.binary_cross_entropy(a, b), (x, t), order=1, modes=("fwd",))
    var = jnp.asarray(rng.uniform(0.5, 2.0, (2, 3)))
    check_grads(lambda a, v: losses.gaussian_nll_loss(a, t, v), (x, var), order=1, modes=("fwd", "rev"))


def test_pointwise_losses_under_jit_and_vmap():
    rng = np.random.default_rng(1)
    x, t = jnp.asarray(rng.uniform(0.1, 0.9, (3, 2, 4)), jnp.float32), jnp.asarray(rng.uniform(0, 1, (3, 2, 4)), jnp.float32)
    cases = {
        "bce": lambda a, b: losses.binary_cross_entropy(a, b),
        "bce_logits": lambda a, b: losses.binary_cross_entropy_with_logits(a, b, pos_weight=jnp.full(4, 2.0)),
        "smooth_l1": lambda a, b: losses.smooth_l1_loss(a, b, beta=0.3),
        "huber": lambda a, b: losses.huber_loss(a, b, delta=0.3),
        "kl": lambda a, b: losses.kl_div(jnp.log(a), b, reduction="batchmean"),
        "poisson": lambda a, b: losses.poisson_nll_loss(a, b, full=True),
        "gaussian": lambda a, b: losses.gaussian_nll_loss(a, b, a * 0.5),
        "soft_margin": lambda a, b: losses.soft_margin_loss(a, 2 * b - 1),
        "multilabel_soft_margin": lambda a, b: losses.multilabel_soft_margin_loss(a, b),
    }
    for name, fn in cases.items():
        eager = [jax.value_and_grad(fn)(x[i], t[i]) for i in range(3)]
        value, g = jax.jit(jax.vmap(jax.value_and_grad(fn)))(x, t)
        np.testing.assert_allclose(value, [v for v, _ in eager], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(g, np.stack([g for _, g in eager]), rtol=1e-5, atol=1e-7, err_msg=name)


def test_pointwise_loss_errors():
    x = jnp.full((2, 3), 0.5)
    with pytest.raises(ShapeError, match=r"target must have the shape of input \(2, 3\), got \(3,\)"):
        losses.binary_cross_entropy(x, jnp.full(3, 0.5))
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1.*with_logits"):
        losses.binary_cross_entropy(x.at[0, 0].set(1.5), x)
    with pytest.raises(ValueError, match="all elements of target should be between 0 and 1"):
        losses.binary_cross_entropy(x, x.at[0, 0].set(-0.5))
    with pytest.raises(ValueError, match="all elements of target should be between 0 and 1"):
        jax.grad(losses.binary_cross_entropy)(x, x + 1)  # a known target is checked under grad too
    with pytest.raises(ValueError, match="input should be between 0 and 1.*and NaN"):
        losses.binary_cross_entropy(x.at[0, 0].set(jnp.nan), x)
    with pytest.raises(ShapeError, match=r"input \(2, 3\), weight \(2,\) do not broadcast together"):
        losses.binary_cross_entropy(x, x, weight=jnp.ones(2))
    with pytest.raises(ShapeError, match=r"weight \(4, 2, 3\) must broadcast to the input's shape \(2, 3\)"):
        losses.binary_cross_entropy(x, x, weight=jnp.ones((4, 2, 3)))
    with pytest.raises(ShapeError, match="must have the shape of input"):
        losses.binary_cross_entropy_with_logits(x, jnp.zeros((3, 2)))
    with pytest.raises(ShapeError, match=r"pos_weight \(2,\) do not broadcast"):
        losses.binary_cross_entropy_with_logits(x, x, pos_weight=jnp.ones(2))
    with pytest.raises(ValueError, match="negative values for beta"):
        losses.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="non-positive values for delta"):
        losses.huber_loss(x, x, delta=0.0)
    with pytest.raises(ShapeError, match="Weights and input must have the same size"):
        losses.huber_loss(x, x, weight=jnp.ones(3))
    with pytest.raises(ValueError, match="var has negative entry.*softplus"):
        losses.gaussian_nll_loss(x, x, x.at[1, 1].set(-1.0))
    with pytest.raises(ValueError, match="var has negative entry"):
        losses.gaussian_nll_loss(x, x, -1.0)
    with pytest.raises(ShapeError, match=r"var is of incorrect size: input \(2, 3\), var \(3,\)"):
        losses.gaussian_nll_loss(x, x, jnp.ones(3))
    with pytest.raises(ShapeError, match="do not broadcast"):
        losses.poisson_nll_loss(x, jnp.ones(2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.kl_div(x, x, reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.binary_cross_entropy_with_logits(x, x, reduction="batchmean")
    with pytest.warns(UserWarning, match="different to the input size"):
        losses.smooth_l1_loss(jnp.zeros((4, 1)), jnp.zeros(4))

"""Losses against torch on randomized cases (hypothesis): values and gradients, f32 and f64.

This file holds the parity harness (``check_parity``) that the other ``test_losses_*``
files use, and the regression and cross-entropy losses' tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnets import losses
from helpers import assert_close, to_np

TOL = {np.float32: 1e-5, np.float64: 1e-10}  # relative to the largest reference value
dtypes = st.sampled_from([np.float32, np.float64])
reductions = st.sampled_from(["none", "mean", "sum"])


def assert_close_nonfinite(a, b, rtol: float, what: str = "") -> None:
    """``assert_close`` where ``b`` may hold inf/NaN: ``a`` must have them at the same places.
    Where ``b`` is all zeros (no scale to be relative to), ``|a| <= rtol``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: NaN at other places than torch ({a} vs {b})"
    fin = np.isfinite(b)
    assert np.array_equal(a[~fin & ~np.isnan(b)], b[~fin & ~np.isnan(b)]), f"{what}: infinities differ ({a} vs {b})"
    if fin.any() and np.abs(b[fin]).max() == 0:  # e.g. the gradient of a cosine at parallel vectors
        assert np.abs(a[fin]).max() <= rtol, f"{what}: {np.abs(a[fin]).max():.3e} where torch has exact zeros"
    elif fin.any():
        assert_close(a[fin], b[fin], rtol, what)


def check_parity(ours, theirs, arrays, diff=(0,), what="", tol=None, grad_tol=None):
    """``ours(*jax arrays)`` against ``theirs(*torch tensors)`` on the same numpy
    ``arrays``: the value, its dtype, and the gradients of its sum with respect to
    ``arrays[i]`` for ``i in diff``, relative to the largest reference value (TOL by
    dtype unless given). float64 arrays run with ``jax_enable_x64``."""
    dtype = next(a.dtype.type for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    tol = TOL[dtype] if tol is None else tol
    grad_tol = tol if grad_tol is None else grad_tol
    tts = [torch.tensor(a, requires_grad=i in diff) if isinstance(a, np.ndarray) else a for i, a in enumerate(arrays)]
    out_t = theirs(*tts)
    if diff:
        out_t.sum().backward()
    with jax.enable_x64(dtype == np.float64):
        js = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]

        def f(*d):
            full = list(js)
            for i, v in zip(diff, d):
                full[i] = v
            return ours(*full)

        out_j, pull = jax.vjp(f, *[js[i] for i in diff])
        grads = pull(jnp.ones_like(out_j))
        assert out_j.dtype == dtype, f"{what}: dtype {out_j.dtype}, expected {dtype}"
        assert_close_nonfinite(out_j, to_np(out_t), tol, f"{what} value")
        for i, g in zip(diff, grads):
            assert_close_nonfinite(g, to_np(tts[i].grad), grad_tol, f"{what} grad of argument {i}")


def _grad_pair(fn_jax, fn_torch, x):
    tx = torch.tensor(x, requires_grad=True)
    out_t = fn_torch(tx)
    out_t.sum().backward()
    out_j, pull = jax.vjp(fn_jax, jnp.asarray(x))
    (g,) = pull(jnp.ones_like(out_j))
    return out_j, to_np(out_t), g, to_np(tx.grad)


@settings(max_examples=25, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(5,), (3, 4), (2, 3, 4)]))
def test_mse_and_l1(dtype, reduction, seed, shape):
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    t.flat[0] = x.flat[0]  # an exact tie: l1's gradient there is 0 in torch
    with jax.enable_x64(dtype == np.float64):
        for ours, theirs in ((losses.mse_loss, TF.mse_loss), (losses.l1_loss, TF.l1_loss)):
            oj, ot, gj, gt = _grad_pair(
                lambda a: ours(a, jnp.asarray(t), reduction), lambda a: theirs(a, torch.tensor(t), reduction=reduction), x
            )
            assert oj.dtype == dtype
            assert_close(oj, ot, TOL[dtype], f"{ours.__name__} value")
            assert_close(gj, gt, TOL[dtype], f"{ours.__name__} grad")
            w = rng.uniform(0.0, 2.0, shape).astype(dtype)  # torch's weighted mean divides by sum(w)
            check_parity(
                lambda a, b, c: ours(a, b, reduction, weight=c), lambda a, b, c: theirs(a, b, reduction=reduction, weight=c),
                [x, t, w], diff=(0, 1), what=f"weighted {ours.__name__}",
            )


@st.composite
def ce_case(draw):
    n_classes = draw(st.integers(2, 6))
    spatial = draw(st.sampled_from([(), (3,), (2, 3)]))
    batch = draw(st.sampled_from([None, 1, 4]))
    probs = draw(st.booleans())
    return dict(
        n_classes=n_classes, spatial=spatial if batch else (), batch=batch, probs=probs,
        weighted=draw(st.booleans()), ignore=draw(st.booleans()) and not probs,
        smoothing=draw(st.sampled_from([0.0, 0.1, 0.35])), reduction=draw(reductions),
        dtype=draw(dtypes), seed=draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=20, deadline=None)
@given(case=ce_case())
def test_cross_entropy_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    c, dtype = case["n_classes"], case["dtype"]
    shape = ((case["batch"], c) if case["batch"] else (c,)) + case["spatial"]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    tshape = shape[:1] + shape[2:] if case["batch"] else ()
    if case["probs"]:
        t = rng.dirichlet(np.ones(c), size=int(np.prod(tshape, dtype=int))).astype(dtype)
        t = np.moveaxis(t.reshape(tshape + (c,)), -1, 1 if case["batch"] else 0)
        tt, tj = torch.tensor(t), t
    else:
        t = rng.integers(0, c, size=tshape)
        if case["ignore"] and t.size > 1:
            t.flat[0] = -100
            if case["seed"] % 2:
                t.flat[-1] = 1  # keep at least one target counted
        tt, tj = torch.tensor(t), t.astype(np.int32)
    w = rng.uniform(0.2, 2.0, c).astype(dtype) if case["weighted"] else None
    kw = dict(reduction=case["reduction"], label_smoothing=case["smoothing"])
    with jax.enable_x64(dtype == np.float64):
        oj, ot, gj, gt = _grad_pair(
            lambda a: losses.cross_entropy(a, jnp.asarray(tj), None if w is None else jnp.asarray(w), **kw),
            lambda a: TF.cross_entropy(a, tt, None if w is None else torch.tensor(w), **kw),
            x,
        )
        if np.all(np.isnan(ot)):  # every target ignored under mean: 0/0 in both
            assert np.all(np.isnan(np.asarray(oj)))
            return
        assert_close(oj, ot, TOL[dtype], f"cross_entropy value {case}")
        assert_close(gj, gt, TOL[dtype] * 10, f"cross_entropy grad {case}")
        if not case["probs"] and case["smoothing"] == 0:
            lp = jax.nn.log_softmax(jnp.asarray(x), axis=1 if case["batch"] else 0)
            nl = losses.nll_loss(lp, jnp.asarray(tj), None if w is None else jnp.asarray(w), reduction=case["reduction"])
            assert_close(nl, ot, TOL[dtype], "nll_loss")


def test_cross_entropy_hand_computed():
    x = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    t = jnp.array([0, 1])
    np.testing.assert_allclose(losses.cross_entropy(x, t), -(np.log(0.5) + np.log(0.8)) / 2, rtol=1e-6)
    w = jnp.array([1.0, 3.0, 1.0])
    np.testing.assert_allclose(losses.cross_entropy(x, t, w), -(np.log(0.5) + 3 * np.log(0.8)) / 4, rtol=1e-6)
    np.testing.assert_allclose(losses.cross_entropy(x, jnp.array([0, -100])), -np.log(0.5), rtol=1e-6)


def test_loss_errors_like_torch():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        losses.cross_entropy(x, jnp.full((2, 3), 1 / 3), ignore_index=1)
    with pytest.raises(ValueError, match="Target 5 is out of bounds"):
        losses.cross_entropy(x, jnp.array([0, 5]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"target must have shape \(2,\)"):
        losses.cross_entropy(x, jnp.array([0, 1, 2]))
    with pytest.raises(TypeError, match="must be integers"):
        losses.nll_loss(x, jnp.array([0.0, 1.0]))
    with pytest.warns(UserWarning, match="different to the input size"):
        losses.mse_loss(jnp.zeros((4, 1)), jnp.zeros(4))

"""Margin losses against torch (hypothesis): cosine embedding, margin ranking, hinge
embedding, triplet, multi-margin and multi-label margin; values and input gradients in
f32 and f64, every reduction, and exact ties on the margin (inputs on a 0.5 grid), where
torch passes no gradient; torch's errors as clear funcnets errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from funcnets import losses
from funcnets.errors import ShapeError
from test_losses import check_parity, dtypes, reductions

seeds = st.integers(0, 2**31 - 1)
margins = st.sampled_from([0.0, 0.5, 1.0])


def _values(rng, shape, dtype, grid):
    """Standard normal, or multiples of 0.5 in [-1.5, 1.5]: ties with the margins."""
    x = rng.integers(-3, 4, shape) * 0.5 if grid else rng.standard_normal(shape)
    return x.astype(dtype)


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, grid=st.booleans(), margin=st.sampled_from([-0.5, 0.0, 0.5]),
       batched=st.booleans())
def test_cosine_embedding_loss(dtype, reduction, seed, grid, margin, batched):
    rng = np.random.default_rng(seed)
    shape = (4, 3) if batched else (3,)
    x1, x2 = _values(rng, shape, dtype, grid), _values(rng, shape, dtype, grid)
    if batched:  # an exact tie at margin 0: orthogonal vectors, target -1
        x1[0], x2[0] = [1.0, 0.5, 0.0], [-0.5, 1.0, 0.5]
    y = rng.choice([-1, 1], shape[:-1]).astype(dtype)
    if batched:
        y[0] = -1
    check_parity(
        lambda a, b, c: losses.cosine_embedding_loss(a, b, c, margin=margin, reduction=reduction),
        lambda a, b, c: TF.cosine_embedding_loss(a, b, c, margin=margin, reduction=reduction),
        [x1, x2, y], diff=(0, 1), what=f"cosine_embedding margin={margin}",
    )


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, grid=st.booleans(), margin=margins)
def test_margin_ranking_and_hinge_embedding(dtype, reduction, seed, grid, margin):
    rng = np.random.default_rng(seed)
    x1, x2 = _values(rng, (6,), dtype, grid), _values(rng, (6,), dtype, grid)
    y = rng.choice([-1, 1], 6).astype(dtype)
    check_parity(
        lambda a, b, c: losses.margin_ranking_loss(a, b, c, margin=margin, reduction=reduction),
        lambda a, b, c: TF.margin_ranking_loss(a, b, c, margin=margin, reduction=reduction),
        [x1, x2, y], diff=(0, 1), what=f"margin_ranking margin={margin}",
    )
    check_parity(
        lambda a, c: losses.hinge_embedding_loss(a, c, margin=margin, reduction=reduction),
        lambda a, c: TF.hinge_embedding_loss(a, c, margin=margin, reduction=reduction),
        [np.abs(x1), y], diff=(0,), what=f"hinge_embedding margin={margin}",
    )


@settings(max_examples=15, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, grid=st.booleans(), margin=st.sampled_from([0.5, 1.0]),
       p=st.sampled_from([1, 2, 3, 1.5, math.inf]), eps=st.sampled_from([1e-6, 0.0]), swap=st.booleans(),
       batched=st.booleans())
def test_triplet_margin_loss(dtype, reduction, seed, grid, margin, p, eps, swap, batched):
    rng = np.random.default_rng(seed)
    shape = (3, 4) if batched else (4,)
    a, pos, neg = (_values(rng, shape, dtype, grid) for _ in range(3))
    kw = dict(margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)
    check_parity(
        lambda x, y, z: losses.triplet_margin_loss(x, y, z, **kw),
        lambda x, y, z: TF.triplet_margin_loss(x, y, z, **kw),
        [a, pos, neg], diff=(0, 1, 2), what=f"triplet {kw}",
    )


@settings(max_examples=12, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, grid=st.booleans(), margin=margins, p=st.sampled_from([1, 2]),
       weighted=st.booleans(), batched=st.booleans())
def test_multi_margin_loss(dtype, reduction, seed, grid, margin, p, weighted, batched):
    rng = np.random.default_rng(seed)
    n, c = 3, 4
    x = _values(rng, (n, c) if batched else (c,), dtype, grid)
    y = np.asarray(rng.integers(0, c, n if batched else ()))
    w = rng.uniform(0.2, 2, c).astype(dtype) if weighted else None
    kw = dict(p=p, margin=margin, reduction=reduction)
    check_parity(
        lambda a, t, v: losses.multi_margin_loss(a, t, weight=v, **kw),
        lambda a, t, v: TF.multi_margin_loss(a, t, weight=v, **kw),
        [x, y, w], diff=(0,), what=f"multi_margin {kw}",
    )


@settings(max_examples=12, deadline=None)
@given(dtype=dtypes, reduction=reductions, seed=seeds, grid=st.booleans(), batched=st.booleans())
def test_multilabel_margin_loss(dtype, reduction, seed, grid, batched):
    rng = np.random.default_rng(seed)
    n, c = 3, 4
    x = _values(rng, (n, c), dtype, grid)
    # lists of class indices (repeats allowed, counted twice), ended by -1, anything after
    t = rng.integers(0, c, (n, c))
    stop = rng.integers(0, c + 1, n)
    for i in range(n):
        if stop[i] < c:
            t[i, stop[i]] = -1
            t[i, stop[i] + 1 :] = rng.integers(-1, c, c - stop[i] - 1)
    if not batched:
        x, t = x[0], t[0]
    check_parity(
        lambda a, b: losses.multilabel_margin_loss(a, b, reduction=reduction),
        lambda a, b: TF.multilabel_margin_loss(a, b, reduction=reduction),
        [x, t], diff=(0,), what="multilabel_margin",
    )


def test_margin_ties_pass_no_gradient():
    """Hand-made exact ties: torch gives 0 (not jnp.maximum's ½) at margin - gap == 0."""
    one = jnp.ones(1)
    g = jax.grad(lambda a: losses.margin_ranking_loss(a, one, one, margin=0.0))(one)
    assert g.tolist() == [0.0]
    g = jax.grad(lambda a: losses.hinge_embedding_loss(a, -one))(one)
    assert g.tolist() == [0.0]
    g = jax.grad(lambda a: losses.multi_margin_loss(a, jnp.array([0])))(jnp.array([[1.0, 0.0, 2.0]]))
    np.testing.assert_allclose(g, [[-1 / 3, 0.0, 1 / 3]])  # class 1 sits exactly on the margin
    tg = torch.tensor([[1.0, 0.0, 2.0]], requires_grad=True)
    TF.multi_margin_loss(tg, torch.tensor([0])).backward()
    np.testing.assert_allclose(g, tg.grad.numpy())


def test_margin_losses_under_jit_and_vmap():
    rng = np.random.default_rng(2)
    x1, x2, x3 = (jnp.asarray(rng.standard_normal((2, 3, 4)), jnp.float32) for _ in range(3))
    y = jnp.array([1.0, -1.0, 1.0])
    idx = jnp.array([0, 3, 1])
    lists = jnp.array([[0, 2, -1, 0], [3, -1, 1, 1], [1, 1, 2, 0]])
    cases = {
        "cosine": lambda a, b, c: losses.cosine_embedding_loss(a, b, y, margin=0.1),
        "ranking": lambda a, b, c: losses.margin_ranking_loss(a[:, 0], b[:, 0], y),
        "hinge": lambda a, b, c: losses.hinge_embedding_loss(jnp.abs(a), jnp.ones(4)),
        "triplet": lambda a, b, c: losses.triplet_margin_loss(a, b, c, p=1.5, swap=True),
        "multi_margin": lambda a, b, c: losses.multi_margin_loss(a, idx, p=2, weight=jnp.arange(1.0, 5.0)),
        "multilabel_margin": lambda a, b, c: losses.multilabel_margin_loss(a, lists),
    }
    for name, fn in cases.items():
        eager = [jax.value_and_grad(fn)(x1[i], x2[i], x3[i]) for i in range(2)]
        value, g = jax.jit(jax.vmap(jax.value_and_grad(fn)))(x1, x2, x3)
        np.testing.assert_allclose(value, [v for v, _ in eager], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(g, np.stack([g for _, g in eager]), rtol=1e-5, atol=1e-7, err_msg=name)


def test_margin_loss_errors():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"Target 3 is out of bounds: class indices must be in \[0, 3\)"):
        losses.multi_margin_loss(x, jnp.array([0, 3]))
    with pytest.raises(ShapeError, match=r"one class index per sample, shape \(2,\).*got \(3,\)"):
        losses.multi_margin_loss(x, jnp.array([0, 1, 2]))
    with pytest.raises(TypeError, match="must be integers"):
        losses.multi_margin_loss(x, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="only p == 1 and p == 2 supported"):
        losses.multi_margin_loss(x, jnp.array([0, 1]), p=3)
    with pytest.raises(ShapeError, match=r"weight must have shape \(3,\)"):
        losses.multi_margin_loss(x, jnp.array([0, 1]), weight=jnp.ones(2))
    with pytest.raises(ShapeError, match=r"expected a non-empty input \(C,\) or \(N, C\).*reshape"):
        losses.multi_margin_loss(jnp.zeros((2, 3, 4)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"Target -2 is out of bounds.*or -1 to end the list"):
        losses.multilabel_margin_loss(x, jnp.array([[0, -2, 1], [0, 1, 2]]))
    with pytest.raises(ShapeError, match=r"target must have the input's shape \(2, 3\)"):
        losses.multilabel_margin_loss(x, jnp.array([0, 1]))
    with pytest.raises(ShapeError, match="0D or 1D target tensor expected"):
        losses.cosine_embedding_loss(x, x, jnp.ones((2, 1)))
    with pytest.raises(ShapeError, match=r"a 1D target expects 2D inputs \(N, D\), got \(2, 3\) and \(3,\)"):
        losses.cosine_embedding_loss(x, x[0], jnp.ones(2))
    with pytest.raises(ShapeError, match=r"input1 \(2, 3\), input2 \(2, 4\) do not broadcast"):
        losses.cosine_embedding_loss(x, jnp.zeros((2, 4)), jnp.ones(2))
    with pytest.raises(ShapeError, match="All input tensors should have same dimension"):
        losses.margin_ranking_loss(x[0], x[0], jnp.ones((1, 3)))
    with pytest.raises(ShapeError, match="anchor 2D, positive 1D, and negative 2D"):
        losses.triplet_margin_loss(x, x[0], x)
    with pytest.raises(ShapeError, match=r"anchor \(2, 3\), positive \(2, 4\).*do not broadcast"):
        losses.triplet_margin_loss(x, jnp.zeros((2, 4)), x)
    with pytest.raises(ValueError, match="margin must be greater than 0, got 0"):
        losses.triplet_margin_loss(x, x, x, margin=0)

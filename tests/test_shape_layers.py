"""PixelShuffle/Unshuffle, Flatten/Unflatten, Fold/Unfold, CosineSimilarity,
PairwiseDistance and F.pdist against torch: values and input gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnets.nn as nn
import funcnets.nn.functional as F
from funcnets.errors import ShapeError
from helpers import assert_close, to_np


def _check(fj, ft, xs, tol=(1e-10, 1e-10), seed=0):
    """Values and the gradients of every input of fj(*xs) against ft on torch tensors."""
    ts = [torch.as_tensor(x).requires_grad_() for x in xs]
    ty = ft(*ts)
    g = np.random.default_rng(seed).standard_normal(tuple(ty.shape)).astype(xs[0].dtype)
    (ty * torch.as_tensor(g)).sum().backward()
    y, vjp = jax.vjp(fj, *[jnp.asarray(x) for x in xs])
    assert y.shape == tuple(ty.shape)
    assert_close(y, to_np(ty), tol[0], "values")
    for i, (gj, t) in enumerate(zip(vjp(jnp.asarray(g)), ts)):
        if t.grad is None:  # torch: no gradient (p=0 norm); ours is zero
            assert not np.any(np.asarray(gj)), f"grad {i}"
        else:
            assert_close(gj, to_np(t.grad), tol[1], f"grad {i}")


def test_reprs():
    pairs = [
        (nn.PixelShuffle(2), torch.nn.PixelShuffle(2)), (nn.PixelUnshuffle(3), torch.nn.PixelUnshuffle(3)),
        (nn.Unflatten(1, (2, 3)), torch.nn.Unflatten(1, (2, 3))), (nn.Unflatten(-1, [2, -1]), torch.nn.Unflatten(-1, [2, -1])),
        (nn.Fold((4, 5), 2), torch.nn.Fold((4, 5), 2)),
        (nn.Unfold((2, 3), dilation=2, padding=(1, 0), stride=2), torch.nn.Unfold((2, 3), dilation=2, padding=(1, 0), stride=2)),
        (nn.CosineSimilarity(dim=0), torch.nn.CosineSimilarity(dim=0)),
        (nn.PairwiseDistance(p=3.0, keepdim=True), torch.nn.PairwiseDistance(p=3.0, keepdim=True)),
    ]
    for f, t in pairs:
        assert repr(f) == repr(t)


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 2), 2), ((3, 2, 9, 1, 2), 3), ((4, 2, 2), 2)])
def test_pixel_shuffle(x64, shape, r):
    x = np.random.default_rng(0).standard_normal(shape)
    _check(lambda a: nn.PixelShuffle(r)({}, {}, a)[0], lambda a: torch.nn.functional.pixel_shuffle(a, r), [x])
    y = np.random.default_rng(1).standard_normal(shape[:-3] + (shape[-3], shape[-2] * r, shape[-1] * r))
    _check(lambda a: nn.PixelUnshuffle(r)({}, {}, a)[0], lambda a: torch.nn.functional.pixel_unshuffle(a, r), [y])
    np.testing.assert_array_equal(F.pixel_unshuffle(F.pixel_shuffle(jnp.asarray(x), r), r), x)


def test_flatten_unflatten(x64):
    x = np.random.default_rng(0).standard_normal((2, 12, 3))
    for dim, sizes in ((1, (3, 4)), (1, (2, -1, 2)), (-1, (3, 1)), (0, (1, 2))):
        _check(lambda a: nn.Unflatten(dim, sizes)({}, {}, a)[0], lambda a: torch.nn.Unflatten(dim, sizes)(a), [x])
    for s, e in ((1, -1), (0, 1), (-2, -1)):
        _check(lambda a: nn.Flatten(s, e)({}, {}, a)[0], lambda a: torch.nn.Flatten(s, e)(a), [x])
    with pytest.raises(ShapeError, match=r"Unflatten\(dim=1, unflattened_size=\(5, 2\)\).*does not multiply to the size 12"):
        nn.Unflatten(1, (5, 2))({}, {}, jnp.asarray(x))


@settings(max_examples=8, deadline=None)
@given(
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)), d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    p=st.tuples(st.integers(0, 2), st.integers(0, 1)), s=st.tuples(st.integers(1, 3), st.integers(1, 2)),
    hw=st.tuples(st.integers(3, 7), st.integers(3, 6)), batched=st.booleans(), seed=st.integers(0, 2**16),
)
def test_fold_unfold_match_torch(k, d, p, s, hw, batched, seed):
    oh = (hw[0] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (hw[1] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    if oh <= 0 or ow <= 0:
        with pytest.raises(ShapeError, match="does not fit"):
            F.unfold(jnp.ones((1, 2, *hw)), k, d, p, s)
        return
    rng = np.random.default_rng(seed)
    lead = (2,) if batched else ()
    with jax.enable_x64(True):
        x = rng.standard_normal(lead + (2, *hw))
        _check(lambda a: nn.Unfold(k, d, p, s)({}, {}, a)[0], lambda a: torch.nn.functional.unfold(a, k, d, p, s), [x])
        cols = rng.standard_normal(lead + (2 * k[0] * k[1], oh * ow))
        _check(lambda a: nn.Fold(hw, k, d, p, s)({}, {}, a)[0], lambda a: torch.nn.functional.fold(a, hw, k, d, p, s), [cols])


def test_fold_errors_and_float32():
    with pytest.raises(ShapeError, match=r"Fold\(output_size=\(4, 5\).*calculated number of sliding blocks 3 \* 4 = 12, but got input.size\(2\)=10"):
        nn.Fold((4, 5), 2)({}, {}, jnp.zeros((1, 4, 10)))
    with pytest.raises(ShapeError, match="expected a 4-D input"):
        F.unfold(jnp.zeros((4, 5)), 2)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5)).astype(np.float32)
    _check(jax.jit(lambda a: F.unfold(a, 3, padding=1, stride=2)),
           lambda a: torch.nn.functional.unfold(a, 3, padding=1, stride=2), [x], (1e-6, 1e-6))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cosine_similarity(dtype):
    tol = (1e-10, 1e-10) if dtype == "float64" else (1e-5, 1e-4)
    with jax.enable_x64(dtype == "float64"):
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
        a[0, :, 0] = 0.0  # a zero vector: torch's gradient there is finite (the clamp has none)
        b[1, :, 2] = 1e-9  # a norm under eps: clamped
        for dim in (1, -1, 0):
            _check(lambda x, y: nn.CosineSimilarity(dim)({}, {}, x, y)[0],
                   lambda x, y: torch.nn.CosineSimilarity(dim)(x, y), [a, b], tol)
        # broadcasting
        _check(lambda x, y: F.cosine_similarity(x, y, dim=-1), lambda x, y: torch.nn.functional.cosine_similarity(x, y, dim=-1),
               [a, b[:1, :1]], tol)


@pytest.mark.parametrize("p", [2.0, 1.0, 0.5, float("inf"), 0.0])
def test_pairwise_distance_and_pdist(x64, p):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 4, 5))
    b[0, :3] = a[0, :3] + 1e-6  # differences cancelled by eps (exactly, or nearly)
    keep = p == 2.0
    _check(lambda x, y: nn.PairwiseDistance(p, keepdim=keep)({}, {}, (x, y))[0],
           lambda x, y: torch.nn.PairwiseDistance(p, keepdim=keep)(x, y), [a, b])
    c = a.copy()
    c[2] = c[1]  # two equal rows
    _check(lambda x: F.pdist(x, p), lambda x: torch.nn.functional.pdist(x, p), [c])


def test_distance_vmap_and_errors(x64):
    a, b = np.random.default_rng(2).standard_normal((2, 3, 6))
    per = jax.vmap(jax.grad(lambda x, y: nn.CosineSimilarity(0)({}, {}, x, y)[0]))(jnp.asarray(a), jnp.asarray(b))
    full = jax.grad(lambda x: jnp.sum(F.cosine_similarity(x, jnp.asarray(b), dim=1)))(jnp.asarray(a))
    assert_close(per, full, 1e-12, "vmap per-sample")
    with pytest.raises(ShapeError, match=r"PairwiseDistance\(\): the inputs \(3, 6\) and \(4, 6\) do not broadcast"):
        nn.PairwiseDistance()({}, {}, jnp.ones((3, 6)), jnp.ones((4, 6)))
    with pytest.raises(ShapeError, match="takes two inputs"):
        nn.CosineSimilarity()({}, {}, jnp.ones((3, 6)))
    with pytest.raises(ShapeError, match="divisible by the square of upscale_factor"):
        nn.PixelShuffle(2)({}, {}, jnp.ones((1, 3, 2, 2)))

"""Embedding, EmbeddingBag, F.embedding/embedding_bag/one_hot against torch."""

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

NUM, DIM = 7, 4


def _torch_grads(tlayer, args, g):
    out = tlayer(*args)
    (out * torch.as_tensor(g)).sum().backward()
    return to_np(out), to_np(tlayer.weight.grad)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"padding_idx": 2},
        {"padding_idx": -1, "scale_grad_by_freq": True},
        {"max_norm": 1.0},
        {"max_norm": 1.5, "norm_type": 1.0, "padding_idx": 0},
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_embedding_parity(kw, dtype):
    with jax.enable_x64(dtype == "float64"):
        rng = np.random.default_rng(0)
        idx = rng.integers(0, NUM, (3, 5))
        idx[0, :3] = 2  # repeats, for scale_grad_by_freq
        idx[1, 0] = NUM - 1
        idx[2, 1] = 0
        layer = nn.Embedding(NUM, DIM, **kw)
        t = torch.nn.Embedding(NUM, DIM, **kw).to(getattr(torch, dtype))
        w = to_np(t.weight).copy()
        g = rng.standard_normal((3, 5, DIM)).astype(dtype)
        params = {"weight": jnp.asarray(w)}

        def loss(p):
            y, _ = layer(p, {}, jnp.asarray(idx))
            return jnp.sum(y * g), y

        (_, y), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        ty, tg = _torch_grads(t, (torch.as_tensor(idx),), g)
        tol_v, tol_g = (1e-10, 1e-10) if dtype == "float64" else (1e-5, 1e-4)
        assert_close(y, ty, tol_v, "values")
        assert_close(grads["weight"], tg, tol_g, "weight grad")
        if "max_norm" in kw:  # torch changed its weight in place; embedding_renorm gives the same
            new = F.embedding_renorm(params["weight"], idx, kw["max_norm"], kw.get("norm_type", 2.0))
            assert_close(new, to_np(t.weight), tol_v, "renormalised weight")
            assert not np.allclose(w, to_np(t.weight))  # the case really renormalised rows
        if "padding_idx" in kw:
            assert np.all(np.asarray(grads["weight"])[layer.padding_idx] == 0)


def test_embedding_functional_and_vmap(x64):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((NUM, DIM))
    idx = rng.integers(0, NUM, (3, 4))
    ty = torch.nn.functional.embedding(torch.as_tensor(idx), torch.as_tensor(w), padding_idx=1)
    assert_close(F.embedding(jnp.asarray(idx), jnp.asarray(w), padding_idx=1), to_np(ty), 1e-12, "F.embedding")
    layer = nn.Embedding(NUM, DIM, padding_idx=1)
    # per-sample gradients: one sequence per example
    per = jax.vmap(jax.grad(lambda p, i: jnp.sum(layer(p, {}, i)[0] ** 2)), in_axes=(None, 0))(
        {"weight": jnp.asarray(w)}, jnp.asarray(idx)
    )
    for b in range(3):
        t = torch.as_tensor(w).requires_grad_()
        (torch.nn.functional.embedding(torch.as_tensor(idx[b]), t, padding_idx=1) ** 2).sum().backward()
        assert_close(per["weight"][b], to_np(t.grad), 1e-12, f"per-sample grad {b}")


def test_embedding_init_and_repr():
    layer = nn.Embedding(400, 50, padding_idx=-3)
    assert layer.padding_idx == 397
    w = np.asarray(layer.init(jax.random.PRNGKey(0))[0]["weight"])
    assert w.shape == (400, 50) and np.all(w[397] == 0)
    rest = np.delete(w, 397, axis=0)
    assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1) < 0.02  # N(0, 1), as torch.nn.init.normal_
    for kw in [{}, {"padding_idx": -3}, {"max_norm": 2.0, "norm_type": 1.0, "scale_grad_by_freq": True, "sparse": True}]:
        assert repr(nn.Embedding(10, 3, **kw)) == repr(torch.nn.Embedding(10, 3, **kw))
    for kw in [{}, {"mode": "max", "padding_idx": 2}, {"max_norm": 1.0, "norm_type": 3.0, "mode": "sum",
                                                        "scale_grad_by_freq": True, "include_last_offset": True}]:
        assert repr(nn.EmbeddingBag(10, 3, **kw)) == repr(torch.nn.EmbeddingBag(10, 3, **kw))
    assert [n for n, _ in nn.Embedding(3, 2).named_parameters(nn.Embedding(3, 2).init(jax.random.PRNGKey(0))[0])] == ["weight"]


def test_embedding_errors():
    layer = nn.Embedding(5, 2)
    params, _ = layer.init(jax.random.PRNGKey(0))
    with pytest.raises(IndexError, match="index 5 is out of range for 5 embeddings"):
        layer(params, {}, jnp.array([0, 5]))
    with pytest.raises(ShapeError, match="Embedding\\(5, 2\\) expected integer indices"):
        layer(params, {}, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(5, 2, padding_idx=5)
    # under jit an out-of-range index cannot raise: it reads NaN, never another row
    y = jax.jit(lambda i: layer(params, {}, i)[0])(jnp.array([0, 9]))
    assert np.all(np.isnan(np.asarray(y[1]))) and np.all(np.isfinite(np.asarray(y[0])))
    bag = nn.EmbeddingBag(5, 2)
    with pytest.raises(ValueError, match="offsets has to be a 1D Tensor but got None"):
        bag(params, {}, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="offsets\\[0\\] has to be 0"):
        bag(params, {}, jnp.array([0, 1]), jnp.array([1]))
    with pytest.raises(NotImplementedError, match="per_sample_weights is only supported for mode='sum'"):
        bag(params, {}, jnp.array([[0, 1]]), None, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="max mode does not support scaling"):
        F.embedding_bag(jnp.array([[0, 1]]), params["weight"], mode="max", scale_grad_by_freq=True)


@settings(max_examples=12, deadline=None)
@given(
    mode=st.sampled_from(["sum", "mean", "max"]),
    two_d=st.booleans(),
    cuts=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    last=st.booleans(),
    pad=st.sampled_from([None, 0, -2]),
    psw=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_embedding_bag_parity(mode, two_d, cuts, last, pad, psw, seed):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((NUM, DIM))
        if two_d:
            idx = rng.integers(0, NUM, (3, 3))
            offsets = None
            last = False
        else:
            idx = rng.integers(0, NUM, (9,))
            offsets = np.array([0] + sorted(cuts))  # repeated cuts are empty bags
            if last:
                offsets = np.append(offsets, rng.integers(offsets[-1], 10))
        psw_v = rng.standard_normal(idx.shape) if psw and mode == "sum" else None
        t = torch.nn.EmbeddingBag(NUM, DIM, mode=mode, include_last_offset=last, padding_idx=pad).double()
        with torch.no_grad():
            t.weight.copy_(torch.as_tensor(w))
        layer = nn.EmbeddingBag(NUM, DIM, mode=mode, include_last_offset=last, padding_idx=pad)
        targs = (torch.as_tensor(idx), None if offsets is None else torch.as_tensor(offsets),
                 None if psw_v is None else torch.as_tensor(psw_v))
        tout = t(*targs)
        g = rng.standard_normal(tuple(tout.shape))
        ty, tg = _torch_grads(t, targs, g)

        def loss(p):
            y, _ = layer(p, {}, jnp.asarray(idx), None if offsets is None else jnp.asarray(offsets),
                         None if psw_v is None else jnp.asarray(psw_v))
            return jnp.sum(y * g), y

        (_, y), grads = jax.value_and_grad(loss, has_aux=True)({"weight": jnp.asarray(w)})
        assert y.shape == ty.shape
        assert_close(y, ty, 1e-10, "values")
        assert_close(grads["weight"], tg, 1e-10, "weight grad")


def test_one_hot():
    x = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(F.one_hot(jnp.asarray(x)), to_np(torch.nn.functional.one_hot(torch.as_tensor(x))))
    np.testing.assert_array_equal(F.one_hot(jnp.asarray(x), 6), to_np(torch.nn.functional.one_hot(torch.as_tensor(x), 6)))
    with pytest.raises(ValueError, match="smaller than num_classes"):
        F.one_hot(jnp.asarray(x), 3)
    with pytest.raises(ValueError, match="pass num_classes"):
        jax.jit(F.one_hot)(jnp.asarray(x))

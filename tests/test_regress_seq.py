"""Regressions found by the sequence-layer bug hunt (rnn.py, attention.py, transformer.py):
edge inputs each compared with torch (float64 1e-10, float32 1e-5 relative to the largest
reference value) or checked for a clear error where torch rejects the input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnets import ShapeError, nn
from funcnets.nn import functional as F
from funcnets.torch_io import unflatten
from helpers import assert_close, to_np

TDT = {np.float32: torch.float32, np.float64: torch.float64}


def _torch_params(tm, rng):
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.5))
    return unflatten({n: jnp.asarray(to_np(p)) for n, p in tm.named_parameters()})


# ------------------------------------------------------------------ recurrent layers
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", ["GRU", "LSTM", "RNN"])
def test_empty_batch_matches_torch(cls, dtype):
    """A batch of 0 sequences (torch returns empty outputs) used to fail in reshape
    (ZeroDivisionError) and, for float32 LSTM/GRU, kill the process in oneDNN (SIGFPE)."""
    rng = np.random.default_rng(0)
    tl = getattr(torch.nn, cls)(3, 4, num_layers=2, bidirectional=True).to(TDT[dtype])
    with jax.enable_x64(dtype == np.float64):
        params = _torch_params(tl, rng)
        layer = getattr(nn, cls)(3, 4, num_layers=2, bidirectional=True)
        x = np.zeros((5, 0, 3), dtype)
        y_t, h_t = tl(torch.tensor(x))
        y, h = layer.forward(params, x)
        for a, b in zip(jax.tree.leaves((y, h)), (y_t, *(h_t if cls == "LSTM" else (h_t,)))):
            assert a.shape == tuple(b.shape) and a.dtype == dtype
        g = jax.grad(lambda p: layer.forward(p, jnp.asarray(x))[0].sum())(params)
        assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(g))


def test_zero_length_sequence_and_dtype_mismatch_errors(x64):
    """torch rejects both; funcnets used to raise ZeroDivisionError from a reshape and a
    lax.scan carry-type TypeError."""
    layer = nn.LSTM(3, 4)
    params, _ = layer.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    with pytest.raises(ShapeError, match=r"sequence length larger than 0, got input \(0, 2, 3\)"):
        layer.forward(params, np.zeros((0, 2, 3)))
    with pytest.raises(ShapeError, match=r"batch_first: \(N, L, H_in\)"):
        nn.GRU(3, 4, batch_first=True).forward(params, np.zeros((2, 0, 3)))
    with pytest.raises(ShapeError, match=r"input dtype \(float32\) does not match the parameters' dtype \(float64\)"):
        layer.forward(params, np.zeros((5, 2, 3), np.float32))


# ------------------------------------------------------------------ attention
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sdpa_and_mha_with_no_keys_match_torch(dtype):
    """S = 0 keys: torch gives zeros (MultiheadAttention: out_proj's bias); the safe
    softmax's row max used to fail on the empty axis."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(dtype == np.float64):
        q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 2), (2, 0, 2), (2, 0, 5)))
        out_t = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)))
        out = F.scaled_dot_product_attention(q, k, v)
        assert out.shape == tuple(out_t.shape)
        assert_close(out, to_np(out_t), 0.0, "sdpa, S = 0")
        tm = torch.nn.MultiheadAttention(4, 2).to(TDT[dtype])
        params = _torch_params(tm, rng)
        x, mem = rng.standard_normal((3, 2, 4)).astype(dtype), np.zeros((0, 2, 4), dtype)
        out_t, _ = tm(torch.tensor(x), torch.tensor(mem), torch.tensor(mem), need_weights=False)
        out, _ = nn.MultiheadAttention(4, 2).forward(params, x, mem, mem, need_weights=False)
        assert_close(out, to_np(out_t), 1e-6, "MultiheadAttention, S = 0")


def test_sdpa_mask_shape_follows_torch(x64):
    """A mask wider than the scores used to broadcast the output to the mask's shape (torch
    raises); leading size-1 dims beyond the scores' rank are dropped, as torch does."""
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal(s) for s in ((2, 3, 2), (2, 4, 2), (2, 4, 3)))
    with pytest.raises(ShapeError, match=r"attn_mask of shape \(5, 2, 3, 4\) does not broadcast to the attention scores \(2, 3, 4\)"):
        F.scaled_dot_product_attention(q, k, v, np.ones((5, 2, 3, 4), bool))
    with pytest.raises(ShapeError, match=r"attn_mask of shape \(2, 3, 4\) .* scores \(1, 3, 4\)"):
        F.scaled_dot_product_attention(q[:1], k[:1], v[:1], np.ones((2, 3, 4), bool))
    m = rng.random((1, 1, 3, 4)) < 0.7
    m[..., 0] = True
    out_t = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)), attn_mask=torch.tensor(m))
    out = F.scaled_dot_product_attention(q, k, v, m)
    assert out.shape == tuple(out_t.shape)
    assert_close(out, to_np(out_t), 1e-10, "mask (1, 1, L, S) on 3-D inputs")
    with pytest.raises(ShapeError, match=r"leading dims \(\*\) broadcast together.*enable_gqa=True"):
        F.scaled_dot_product_attention(rng.standard_normal((1, 4, 3, 2)), rng.standard_normal((1, 3, 4, 2)),
                                       rng.standard_normal((1, 3, 4, 2)))

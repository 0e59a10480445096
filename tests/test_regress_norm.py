"""Regressions found by a bug hunt over the normalisation layers, each against torch.

float16/bfloat16 inputs: torch normalises them in float32 (its opmath type) and rounds
once at the end; RMSNorm's ``eps=None`` is float32's epsilon there, not the input's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnets import nn

LOW = [(torch.bfloat16, jnp.bfloat16), (torch.float16, jnp.float16)]


def _pair(layer, tlayer, x, tdt, jdt, rng):
    """The same random weights and low-precision input through both: our output and input
    gradient, torch's output, and the exact (float64 torch) input gradient on the same
    rounded input, weights and output gradient. Torch's own low-precision backward is
    not the reference: for LayerNorm of bfloat16 values ~100 it is 0.25 off the exact one."""
    tlayer = tlayer.to(tdt)
    with torch.no_grad():
        for p in tlayer.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape))).to(tdt))
    params = {k: jnp.asarray(v.detach().float().numpy()).astype(jdt) for k, v in tlayer.named_parameters()}
    xt = torch.tensor(x).to(tdt).requires_grad_(True)
    yt = tlayer(xt)
    g = torch.tensor(rng.standard_normal(tuple(yt.shape))).to(tdt)
    t64 = tlayer.to(torch.float64)
    x64 = xt.detach().double().requires_grad_(True)
    t64(x64).backward(g.double())
    xj = jnp.asarray(xt.detach().float().numpy()).astype(jdt)
    y, vjp = jax.vjp(lambda xx: layer.apply(params, {}, xx)[0], xj)
    (gx,) = vjp(jnp.asarray(g.float().numpy()).astype(jdt))
    assert y.dtype == jdt
    return np.asarray(y, np.float32), yt.detach().float().numpy(), np.asarray(gx, np.float32), x64.grad.numpy()


def _ulps(tdt):
    return {torch.bfloat16: 2**-7, torch.float16: 2**-10}[tdt]


@pytest.mark.parametrize("tdt,jdt", LOW)
def test_rms_norm_low_precision_default_eps_is_float32s(tdt, jdt):
    # values ~1e-2: mean(x²) ~ 3.6e-4, which bfloat16's epsilon (7.8e-3) swamped
    # (ours 0.11 where torch gives 0.53)
    x = np.array([[0.01, -0.02, 0.03, 0.005]], np.float32)
    y, yt, gx, gxt = _pair(nn.RMSNorm(4), torch.nn.RMSNorm(4), x, tdt, jdt, np.random.default_rng(0))
    np.testing.assert_allclose(y, yt, rtol=2 * _ulps(tdt), atol=0)
    np.testing.assert_allclose(gx, gxt, rtol=0, atol=4 * _ulps(tdt) * np.abs(gxt).max())


@pytest.mark.parametrize("tdt,jdt", LOW)
@pytest.mark.parametrize("which", ["layer", "group"])
def test_layer_and_group_norm_low_precision_normalise_in_float32(tdt, jdt, which):
    # a mean far from 0 (100 ± 1): normalising in bfloat16 rounded the mean before
    # subtracting it, LayerNorm was 0.32 off torch (outputs ~2), GroupNorm 0.13
    rng = np.random.default_rng(1)
    if which == "layer":
        layer, tlayer, shape = nn.LayerNorm(8), torch.nn.LayerNorm(8), (4, 8)
    else:
        layer, tlayer, shape = nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4), (2, 4, 3, 3)
    x = (rng.standard_normal(shape) + 100.0).astype(np.float32)
    y, yt, gx, gxt = _pair(layer, tlayer, x, tdt, jdt, rng)
    scale = np.abs(yt).max()
    np.testing.assert_allclose(y, yt, rtol=0, atol=2 * _ulps(tdt) * scale)
    # the exact gradient, rounded once (before: computed in bfloat16)
    np.testing.assert_allclose(gx, gxt, rtol=0, atol=4 * _ulps(tdt) * np.abs(gxt).max())


def test_layer_norm_keeps_its_promotion():
    # a bfloat16 input with float32 weights gives float32, as before (jnp's promotion)
    m = nn.LayerNorm(3)
    params, state = m.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    y, _ = m.apply(params, state, jnp.ones((2, 3), jnp.bfloat16))
    assert y.dtype == jnp.float32
    y, _ = m.apply(jax.tree.map(lambda a: a.astype(jnp.bfloat16), params), state, jnp.ones((2, 3), jnp.bfloat16))
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize("size", [0, -1])
def test_local_response_norm_size_below_one_is_refused(size):
    # torch: "kernel size should be greater than zero"; ours was jax's TypeError about
    # reduce_window's window_dimensions
    with pytest.raises(RuntimeError):
        torch.nn.LocalResponseNorm(size)(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match=f"size must be a positive number of channels in the window, got {size}"):
        nn.LocalResponseNorm(size).apply({}, {}, jnp.ones((2, 3, 4)))


@pytest.mark.parametrize("idx,offsets", [([1, 2, 3], [0]), ([2, 1, 3], [0]), ([0, 1, 2, 3, 3, 1], [0, 2, 2, 4])])
def test_embedding_bag_max_ties_send_the_gradient_to_the_first_maximum(idx, offsets):
    # rows 1 and 2 tie on feature 0, rows 2 and 3 on feature 1: torch's gradient goes to the
    # first maximal entry of the bag; ours was shared (0.5 each) by segment_max's backward
    from funcnets.nn import functional as F

    w = np.array([[1.0, 2.0], [3.0, 0.0], [3.0, 5.0], [0.0, 5.0]])
    g = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])[: len(offsets)]
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.embedding_bag(torch.tensor(idx), wt, torch.tensor(offsets), mode="max")
    yt.backward(torch.tensor(g))

    def f(weight, off):
        return F.embedding_bag(jnp.array(idx), weight, off, mode="max")

    for fn in (f, jax.jit(f)):
        y, vjp = jax.vjp(lambda weight: fn(weight, jnp.array(offsets)), jnp.asarray(w))
        np.testing.assert_allclose(np.asarray(y), yt.detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), wt.grad.numpy(), rtol=0, atol=1e-12)

"""The attention's fast formulation (issue 21): heads computed in place in either layout,
the safe softmax's closed-form derivative, and the paths the parity suites do not draw.

``multi_head_attention_forward`` splits the heads as ``(…, H, head_dim)`` views of the last
axis and attends with einsums, in ``(L, N, E)`` or, for ``batch_first``, ``(N, L, E)``
without transposing the input; ``static_k``/``static_v`` (torch's ``(N·H, S, head_dim)``)
are brought to that layout. The safe softmax is a ``custom_jvp`` whose tangent
``w·(t - Σ w·t)`` reverse mode transposes: forward mode, Hessians and fully masked rows
must still work. float64, 1e-10 against torch or against a plain-autodiff reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnets import nn
from funcnets.nn import functional as F
from funcnets.nn.attention import _safe_softmax
from funcnets.nn.transformer import generate_square_subsequent_mask
from funcnets.torch_io import unflatten
from helpers import assert_close, to_np


def test_static_kv_matches_torch(x64):
    """static_k/static_v (N·H, S, head_dim), with add_zero_attn and a key padding mask:
    values and the gradients of query, static_k, static_v and the projections."""
    rng = np.random.default_rng(0)
    L, S, N, E, H = 3, 4, 2, 4, 2
    tm = torch.nn.MultiheadAttention(E, H, dtype=torch.float64)
    q = rng.standard_normal((L, N, E))
    sk, sv = rng.standard_normal((2, N * H, S, E // H))
    kpm = np.zeros((N, S), bool)
    kpm[0, 1] = True
    tq, tsk, tsv = (torch.tensor(a, requires_grad=True) for a in (q, sk, sv))
    tout, tw = torch.nn.functional.multi_head_attention_forward(
        tq, tq, tq, E, H, tm.in_proj_weight, tm.in_proj_bias, None, None, True, 0.0,
        tm.out_proj.weight, tm.out_proj.bias, training=False, key_padding_mask=torch.tensor(kpm),
        static_k=tsk, static_v=tsv)
    tgrads = torch.autograd.grad((tout ** 2).sum() + (tw ** 2).sum(), [tq, tsk, tsv, tm.in_proj_weight, tm.out_proj.weight])
    p = unflatten({n: jnp.asarray(to_np(v)) for n, v in tm.named_parameters()})

    def f(q, sk, sv, w_in, w_out):
        out, w = F.multi_head_attention_forward(
            q, q, q, E, H, w_in, p["in_proj_bias"], None, None, True, 0.0, w_out, p["out_proj"]["bias"],
            training=False, key_padding_mask=kpm, static_k=sk, static_v=sv)
        return jnp.sum(out ** 2) + jnp.sum(w ** 2), (out, w)

    grads, (out, w) = jax.grad(f, argnums=(0, 1, 2, 3, 4), has_aux=True)(
        q, sk, sv, p["in_proj_weight"], p["out_proj"]["weight"])
    assert_close(out, to_np(tout), 1e-10, "output")
    assert_close(w, to_np(tw), 1e-10, "weights")
    for name, g, tg in zip(("query", "static_k", "static_v", "in_proj_weight", "out_proj.weight"), grads, tgrads):
        assert_close(g, to_np(tg), 1e-10, name)


def test_batch_first_is_the_transposed_sequence_first(x64):
    """The two layouts compute the same numbers (one with a causal hint and padding, which
    takes the safe-softmax path), outputs and gradients."""
    rng = np.random.default_rng(1)
    N, L, E, H = 2, 5, 8, 2
    seq, bf = nn.MultiheadAttention(E, H, dropout=0.0), nn.MultiheadAttention(E, H, batch_first=True)
    params, _ = seq.init(jax.random.key(0))
    x = rng.standard_normal((N, L, E))
    kpm = np.zeros((N, L), bool)
    kpm[1, -2:] = True
    causal = np.asarray(generate_square_subsequent_mask(L)) == -np.inf  # bool, as the padding mask

    def run(m, x, first):
        def loss(p, x):
            xx = x if first else jnp.swapaxes(x, 0, 1)
            out, _ = m.forward(p, xx, xx, xx, key_padding_mask=kpm, attn_mask=causal, need_weights=False)
            out = out if first else jnp.swapaxes(out, 0, 1)
            return jnp.sum(jnp.sin(out)), out
        return jax.grad(loss, argnums=(0, 1), has_aux=True)(params, x)

    (gp_bf, gx_bf), out_bf = run(bf, x, True)
    (gp_sf, gx_sf), out_sf = run(seq, x, False)
    assert_close(out_bf, out_sf, 1e-12, "output")
    assert_close(gx_bf, gx_sf, 1e-12, "input gradient")
    for a, b in zip(jax.tree.leaves(gp_bf), jax.tree.leaves(gp_sf)):
        assert_close(a, b, 1e-12, "parameter gradient")


def _plain_safe_softmax(x):
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(x - m)
    s = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(s == 0, 1.0, s)


def test_safe_softmax_derivatives(x64):
    """jvp, vjp and the Hessian of the closed form equal plain autodiff's; a fully masked
    row has zero weights and zero (finite) derivatives."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4))
    x[1, :] = -np.inf          # fully masked row
    x[2, 1] = -np.inf          # one masked key
    x = jnp.asarray(x)
    t = jnp.asarray(rng.standard_normal((3, 4)))
    w, jt = jax.jvp(_safe_softmax, (x,), (t,))
    w_ref, jt_ref = jax.jvp(_plain_safe_softmax, (x,), (t,))
    assert_close(w, w_ref, 1e-14, "values")
    assert_close(jt, jt_ref, 1e-13, "jvp")
    assert np.all(np.asarray(w[1]) == 0) and np.all(np.asarray(jt[1]) == 0)
    ct = jnp.asarray(rng.standard_normal((3, 4)))
    (g,) = jax.vjp(_safe_softmax, x)[1](ct)
    (g_ref,) = jax.vjp(_plain_safe_softmax, x)[1](ct)
    assert_close(g, g_ref, 1e-13, "vjp")
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g[1]) == 0)
    xf = jnp.asarray(rng.standard_normal(5))
    h = jax.jit(jax.hessian(lambda v: jnp.sum(_safe_softmax(v) ** 3)))(xf)
    h_ref = jax.jit(jax.hessian(lambda v: jnp.sum(_plain_safe_softmax(v) ** 3)))(xf)
    assert_close(h, h_ref, 1e-12, "hessian")


def test_encoder_layer_forward_mode_equals_reverse_mode(x64):
    """Forward mode goes through the encoder layer (the softmax and LayerNorm rules are
    JVPs, not VJP-only): jacfwd equals jacrev for the input."""
    m = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, batch_first=True)
    params, _ = m.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 3, 4)))
    f = lambda x: m.forward(params, x)  # noqa: E731
    assert_close(jax.jit(jax.jacfwd(f))(x), jax.jit(jax.jacrev(f))(x), 1e-12, "jacobian")

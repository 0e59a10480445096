"""Attention against torch: F.scaled_dot_product_attention and nn.MultiheadAttention.

Option spaces (masks bool/float/2-D/3-D/causal, key padding, kdim/vdim, bias,
add_bias_kv, add_zero_attn, batch_first, unbatched, need_weights, average_attn_weights)
are drawn by hypothesis; each case runs the same weights and inputs through torch and
funcnets and compares outputs, attention weights, input gradients and every parameter's
gradient, in float64 (1e-10) and float32 (1e-5 values, 1e-4 gradients, relative to the
largest reference value). Random masks keep one key per query row (a fully masked row is
tested on its own: torch gives NaN on one path and 0 on the other).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from funcnets import ShapeError, nn
from funcnets.nn import functional as F
from funcnets.torch_io import unflatten
from helpers import assert_close, to_np

DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**31 - 1)
TOL = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-4)}
TDT = {np.float32: torch.float32, np.float64: torch.float64}


def _mask(rng, shape, kind, dtype, keep_first=True):
    """A random mask: bool (True = ignore, MultiheadAttention's convention) or float with -inf."""
    ignore = rng.random(shape) < 0.4
    if keep_first:
        ignore[..., 0] = False
    if kind == "bool":
        return ignore
    m = rng.standard_normal(shape).astype(dtype)
    m[ignore] = -np.inf
    return m


def _t(a, requires_grad=False):
    return None if a is None else torch.tensor(a, requires_grad=requires_grad)


# ------------------------------------------------------------------ scaled_dot_product_attention
@settings(max_examples=12, deadline=None)
@given(lead=st.sampled_from([(), (2,), (2, 3)]), L=st.integers(1, 4), S=st.integers(1, 4), E=st.sampled_from([2, 3]),
       Ev=st.sampled_from([2, 5]), mask=st.sampled_from(["none", "bool", "float", "causal", "broadcast"]),
       scale=st.sampled_from([None, 0.3]), dtype=DTYPES, seed=SEEDS)
@example(lead=(2,), L=3, S=3, E=2, Ev=2, mask="bool", scale=None, dtype=np.float64, seed=0)
@example(lead=(2, 3), L=4, S=2, E=3, Ev=5, mask="causal", scale=0.3, dtype=np.float32, seed=1)
def test_sdpa_matches_torch(lead, L, S, E, Ev, mask, scale, dtype, seed):
    """Values and gradients for q, k, v; bool masks here say where to *attend* (torch's SDPA
    convention) and may mask a whole row, which both give zero weights."""
    rng = np.random.default_rng(seed)
    rtol_v, rtol_g = TOL[dtype]
    q, k, v = (rng.standard_normal(lead + s).astype(dtype) for s in ((L, E), (S, E), (S, Ev)))
    am = None
    if mask in ("bool", "float"):
        am = _mask(rng, lead + (L, S), mask, dtype, keep_first=False)
        am = ~am if mask == "bool" else am
    elif mask == "broadcast":
        am = rng.random((L, S)) < 0.6
    causal = mask == "causal"
    g = rng.standard_normal(lead + (L, Ev)).astype(dtype)
    qt, kt, vt = (_t(a, True) for a in (q, k, v))
    yt = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=_t(am), is_causal=causal, scale=scale)
    yt.backward(torch.tensor(g))
    with jax.enable_x64(dtype == np.float64):
        f = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, am, is_causal=causal, scale=scale)  # noqa: E731
        y, pull = jax.vjp(jax.jit(f), q, k, v)
        grads = pull(jnp.asarray(g))
    assert y.dtype == dtype
    assert_close(y, to_np(yt), rtol_v, "sdpa output")
    # relative to the largest of the three gradients: with one key (S = 1) the weights are
    # constant, dq is 0 up to rounding and cannot be compared relative to itself
    scale_g = max(np.abs(to_np(t.grad)).max() for t in (qt, kt, vt))
    for name, a, t in zip("qkv", grads, (qt, kt, vt)):
        err = np.abs(np.asarray(a, np.float64) - to_np(t.grad)).max() / max(scale_g, 1e-30)
        assert err <= rtol_g, f"sdpa d{name}: relative error {err:.3e} > {rtol_g:.0e}"


def test_sdpa_gqa_dropout_and_errors(x64):
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 4, 3, 2)), rng.standard_normal((2, 2, 5, 2)), rng.standard_normal((2, 2, 5, 3))
    yt = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)), enable_gqa=True)
    assert_close(F.scaled_dot_product_attention(q, k, v, enable_gqa=True), to_np(yt), 1e-12, "gqa")
    # dropout on the weights: E[out] unchanged, reproducible from the key, needs a key
    qq, kk, vv = (jnp.asarray(rng.standard_normal((1, 8, 4))) for _ in range(3))
    outs = jax.jit(jax.vmap(lambda key: F.scaled_dot_product_attention(qq, kk, vv, dropout_p=0.5, dropout_key=key)))(
        jax.random.split(jax.random.key(0), 4000))
    assert_close(outs.mean(0), F.scaled_dot_product_attention(qq, kk, vv), 0.1, "dropout mean")
    a = F.scaled_dot_product_attention(qq, kk, vv, dropout_p=0.5, dropout_key=jax.random.key(3))
    b = F.scaled_dot_product_attention(qq, kk, vv, dropout_p=0.5, dropout_key=jax.random.key(3))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="PRNG key"):
        F.scaled_dot_product_attention(qq, kk, vv, dropout_p=0.5)
    with pytest.raises(ValueError, match="is_causal"):
        F.scaled_dot_product_attention(qq, kk, vv, jnp.ones((8, 8), bool), is_causal=True)
    with pytest.raises(ShapeError, match=r"attn_mask of shape \(3, 8\).*\(8, 8\)"):
        F.scaled_dot_product_attention(qq, kk, vv, jnp.ones((3, 8), bool))
    with pytest.raises(ShapeError, match="matching E and S"):
        F.scaled_dot_product_attention(qq, kk[..., :3], vv)


# ------------------------------------------------------------------ MultiheadAttention
def _mha_pair(dtype, rng, **kw):
    tl = torch.nn.MultiheadAttention(**kw).to(TDT[dtype])
    with torch.no_grad():
        for p in tl.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.5))
    params = unflatten({n: jnp.asarray(to_np(p)) for n, p in tl.named_parameters()})
    return nn.MultiheadAttention(**kw), tl, params


_JIT_CACHE: dict = {}


def _mha_vjp(layer, need_weights, average, is_causal, train):
    """One compiled forward+backward per configuration."""
    key = (layer, need_weights, average, is_causal, train)
    if key not in _JIT_CACHE:
        def run(params, q, k, v, kpm, am, g_out, g_w):
            def f(params, q, k, v):
                out, w = layer.forward(params, q, k, v, key_padding_mask=kpm, need_weights=need_weights,
                                       attn_mask=am, average_attn_weights=average, is_causal=is_causal, train=train)
                loss = jnp.sum(out * g_out) + (jnp.sum(w * g_w) if w is not None else 0.0)
                return loss, (out, w)
            return jax.grad(f, argnums=(0, 1, 2, 3), has_aux=True)(params, q, k, v)
        _JIT_CACHE[key] = jax.jit(run)
    return _JIT_CACHE[key]


@settings(max_examples=14, deadline=None)
@given(E_h=st.sampled_from([(4, 1), (4, 2), (6, 3)]), kvdim=st.sampled_from([None, (3, 5)]), bias=st.booleans(),
       bias_kv=st.booleans(), zero_attn=st.booleans(), batch_first=st.booleans(), unbatched=st.booleans(),
       need_weights=st.booleans(), average=st.booleans(), kpm=st.sampled_from(["none", "bool", "float"]),
       am=st.sampled_from(["none", "bool2", "float2", "bool3", "float3", "causal"]), dtype=DTYPES, seed=SEEDS)
@example(E_h=(4, 2), kvdim=None, bias=True, bias_kv=False, zero_attn=False, batch_first=True, unbatched=False,
         need_weights=False, average=True, kpm="bool", am="bool2", dtype=np.float64, seed=0)
@example(E_h=(4, 2), kvdim=(3, 5), bias=True, bias_kv=True, zero_attn=True, batch_first=False, unbatched=False,
         need_weights=True, average=False, kpm="float", am="float3", dtype=np.float64, seed=1)
@example(E_h=(6, 3), kvdim=None, bias=False, bias_kv=False, zero_attn=False, batch_first=True, unbatched=True,
         need_weights=False, average=True, kpm="none", am="causal", dtype=np.float32, seed=2)
def test_multihead_attention_matches_torch(E_h, kvdim, bias, bias_kv, zero_attn, batch_first, unbatched,
                                           need_weights, average, kpm, am, dtype, seed):
    E, H = E_h
    kdim, vdim = kvdim or (E, E)
    N, L, S = 2, 3, 4 if am != "causal" else 3
    rng = np.random.default_rng(seed)
    rtol_v, rtol_g = TOL[dtype]
    with jax.enable_x64(dtype == np.float64):
        layer, tl, params = _mha_pair(dtype, rng, embed_dim=E, num_heads=H, bias=bias, add_bias_kv=bias_kv,
                                      add_zero_attn=zero_attn, kdim=kvdim and kdim, vdim=kvdim and vdim,
                                      batch_first=batch_first)

        def seq(n, d):
            shape = (n, d) if unbatched else ((N, n, d) if batch_first else (n, N, d))
            return rng.standard_normal(shape).astype(dtype)

        q, k, v = seq(L, E), seq(S, kdim), seq(S, vdim)
        kpm_a = None if kpm == "none" else _mask(rng, (S,) if unbatched else (N, S), kpm, dtype)
        is_causal = am == "causal"
        if is_causal:
            am_a = np.triu(np.ones((L, S), bool), 1)
        elif am == "none":
            am_a = None
        else:
            am_a = _mask(rng, (L, S) if am.endswith("2") else ((1 if unbatched else N) * H, L, S), am[:-1], dtype)
        tl.train(False)
        ts = [_t(a, True) for a in (q, k, v)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out_t, w_t = tl(*ts, key_padding_mask=_t(kpm_a), need_weights=need_weights, attn_mask=_t(am_a),
                            average_attn_weights=average, is_causal=is_causal)
        g_out = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
        g_w = rng.standard_normal(tuple(w_t.shape)).astype(dtype) if need_weights else np.zeros((), dtype)
        loss_t = (out_t * torch.tensor(g_out)).sum() + ((w_t * torch.tensor(g_w)).sum() if need_weights else 0)
        loss_t.backward()
        run = _mha_vjp(layer, need_weights, average, is_causal, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (dp, dq, dk, dv), (out, w) = run(params, q, k, v, kpm_a, am_a, g_out, g_w)
    what = f"{layer._who()} kpm={kpm} am={am} need_weights={need_weights}"
    assert out.dtype == dtype and out.shape == tuple(out_t.shape), what
    assert_close(out, to_np(out_t), rtol_v, f"{what}: output")
    if need_weights:
        assert w.shape == tuple(w_t.shape), what
        assert_close(w, to_np(w_t), rtol_v, f"{what}: weights")
    else:
        assert w is None and w_t is None
    # a gradient that is zero in exact arithmetic (one unmasked key: every softmax weight is 1,
    # so the query's gradient vanishes) is rounding noise on both sides: judge it by the others' scale
    scale = max(float(np.abs(to_np(t.grad)).max()) for t in ts)
    for name, a, t in zip(("query", "key", "value"), (dq, dk, dv), ts):
        if float(np.abs(to_np(t.grad)).max()) <= rtol_g * 1e-2 * scale:
            assert float(np.abs(np.asarray(a)).max()) <= rtol_g * scale, f"{what}: d{name} (zero in exact arithmetic)"
        else:
            assert_close(a, to_np(t.grad), rtol_g, f"{what}: d{name}")
    flat = dict(layer.named_parameters(dp))
    assert list(flat) == [n for n, _ in tl.named_parameters()], what
    for n, p in tl.named_parameters():
        assert_close(flat[n], to_np(p.grad), rtol_g, f"{what}: {n} gradient")


def test_fully_masked_row_is_nan_with_weights_and_zero_without(x64):
    """torch: a query whose keys are all padded gives NaN through the need_weights=True
    path (plain softmax) and 0 weights (output = out_proj.bias) through
    scaled_dot_product_attention (need_weights=False, what the transformer layers use)."""
    rng = np.random.default_rng(0)
    layer, tl, params = _mha_pair(np.float64, rng, embed_dim=4, num_heads=2, batch_first=True)
    x = rng.standard_normal((2, 3, 4))
    kpm = np.array([[True] * 3, [False, True, False]])
    for need_weights in (True, False):
        xt = torch.tensor(x, requires_grad=True)
        out_t, w_t = tl(xt, xt, xt, key_padding_mask=torch.tensor(kpm), need_weights=need_weights)
        out, w = jax.jit(lambda p, x: layer.forward(p, x, x, x, key_padding_mask=kpm, need_weights=need_weights))(params, x)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(to_np(out_t)))
        assert np.isnan(out[0]).all() == need_weights
        ok = ~np.isnan(to_np(out_t))
        assert_close(np.asarray(out)[ok], to_np(out_t)[ok], 1e-12, f"need_weights={need_weights}")
        if need_weights:
            np.testing.assert_array_equal(np.isnan(w), np.isnan(to_np(w_t)))
        else:
            assert_close(out[0], np.broadcast_to(to_np(tl.out_proj.bias), (3, 4)), 1e-12, "padded row = bias")
            out_t.sum().backward()
            g = jax.jit(jax.grad(lambda x: layer.forward(params, x, x, x, key_padding_mask=kpm, need_weights=False)[0].sum()))(x)
            assert_close(g, to_np(xt.grad), 1e-10, "gradient with a fully padded row")


def test_train_mode_dropout(x64):
    layer = nn.MultiheadAttention(4, 2, dropout=0.5)
    params, _ = layer.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 2, 4)))
    with pytest.raises(ValueError, match="PRNG key"):
        layer.apply(params, {}, (x, x, x), train=True)
    (a, wa), _ = layer.apply(params, {}, (x, x, x), train=True, key=jax.random.key(1))
    (b, _), _ = layer.apply(params, {}, (x, x, x), train=True, key=jax.random.key(1))
    (c, wc), _ = layer.apply(params, {}, (x, x, x))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # torch returns the weights it used, after dropout: each 0 or the eval weight / (1 - p)
    _, wa = layer.forward(params, x, x, x, average_attn_weights=False, train=True, dropout_key=jax.random.key(1))
    _, wc = layer.forward(params, x, x, x, average_attn_weights=False)
    wa, wc = np.asarray(wa), np.asarray(wc)
    dropped = wa == 0
    assert 0 < dropped.mean() < 1
    assert_close(wa[~dropped], wc[~dropped] / 0.5, 1e-12, "kept weights scaled by 1/(1-p)")


def test_apply_takes_a_tuple_or_a_dict(x64):
    layer = nn.MultiheadAttention(4, 2, batch_first=True)
    params, _ = layer.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)))
    m = jnp.asarray(np.triu(np.ones((3, 3), bool), 1))
    direct = layer.forward(params, x, x, x, attn_mask=m, average_attn_weights=False)
    (o1, w1), _ = layer.apply(params, {}, {"query": x, "key": x, "value": x, "attn_mask": m, "average_attn_weights": False})
    np.testing.assert_array_equal(o1, direct[0])
    np.testing.assert_array_equal(w1, direct[1])
    (o2, _), _ = nn.Sequential(layer)(({"0": params}), {}, (x, x, x))
    assert o2.shape == (2, 3, 4)
    with pytest.raises(TypeError, match="unknown"):
        layer.apply(params, {}, {"query": x, "key": x, "value": x, "mask": m})
    with pytest.raises(TypeError, match="tuple of 3"):
        layer.apply(params, {}, (x, x))


def test_per_sample_gradients_with_vmap(x64):
    rng = np.random.default_rng(0)
    layer, tl, params = _mha_pair(np.float64, rng, embed_dim=4, num_heads=2, batch_first=True)
    x = rng.standard_normal((3, 5, 4))

    def loss(p, xi):  # one unbatched sample
        return jnp.sum(layer.forward(p, xi, xi, xi, need_weights=False)[0] ** 2)

    per = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, x)
    for i in range(3):
        tl.zero_grad()
        xi = torch.tensor(x[i])
        (tl(xi, xi, xi, need_weights=False)[0] ** 2).sum().backward()
        for n, p in tl.named_parameters():
            assert_close(dict(layer.named_parameters(per))[n][i], to_np(p.grad), 1e-10, f"sample {i} {n}")


def test_repr_names_and_init_match_torch(x64):
    for kw in ({"embed_dim": 8, "num_heads": 2}, {"embed_dim": 8, "num_heads": 4, "kdim": 3, "vdim": 5,
                                                 "add_bias_kv": True, "bias": True}, {"embed_dim": 6, "num_heads": 3, "bias": False}):
        layer, tl = nn.MultiheadAttention(**kw), torch.nn.MultiheadAttention(**kw)
        assert repr(layer) == repr(tl)
        params, _ = jax.eval_shape(layer.init_tree, jax.random.key(0))
        ours = layer.named_parameters(params)
        assert [(n, a.shape) for n, a in ours] == [(n, tuple(p.shape)) for n, p in tl.named_parameters()]
    # distributions: xavier-uniform in_proj, zero biases, Linear default out_proj.weight, xavier-normal bias_k
    E = 256
    layer = nn.MultiheadAttention(E, 4, add_bias_kv=True)
    p = dict(layer.named_parameters(layer.init(jax.random.key(1))[0]))
    bound = np.sqrt(6 / (E + 3 * E))
    w = np.asarray(p["in_proj_weight"])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.03 * bound
    assert not np.any(p["in_proj_bias"]) and not np.any(p["out_proj.bias"])
    ow = np.asarray(p["out_proj.weight"])
    assert np.abs(ow).max() <= 1 / np.sqrt(E) and np.abs(ow).max() > 0.97 / np.sqrt(E)
    bk = np.concatenate([np.asarray(p["bias_k"]).ravel(), np.asarray(p["bias_v"]).ravel()])
    assert abs(bk.std() - 1 / np.sqrt(E)) < 0.15 / np.sqrt(E) and abs(bk.mean()) < 0.15 / np.sqrt(E)
    sep = nn.MultiheadAttention(E, 4, kdim=16, vdim=32)
    ps = sep.init(jax.random.key(2))[0]
    for name, fan_in in (("q_proj_weight", E), ("k_proj_weight", 16), ("v_proj_weight", 32)):
        b = np.sqrt(6 / (E + fan_in))
        assert np.abs(ps[name]).max() <= b and np.abs(ps[name]).max() > 0.95 * b, name


def test_errors_name_the_layer_and_the_fix(x64):
    with pytest.raises(ValueError, match="divisible by num_heads.*embed_dim=10 and num_heads=4"):
        nn.MultiheadAttention(10, 4)
    with pytest.raises(ValueError, match="greater than 0"):
        nn.MultiheadAttention(0, 1)
    mha = nn.MultiheadAttention(4, 2)
    params, _ = jax.eval_shape(mha.init_tree, jax.random.key(0))

    class layer:  # errors are raised while tracing: no need to compute
        forward = staticmethod(lambda p, *a, **kw: jax.eval_shape(lambda p: mha.forward(p, *a, **kw), p))

    x = jnp.zeros((3, 2, 4))
    with pytest.raises(ShapeError, match=r"MultiheadAttention\(embed_dim=4.*2D attn_mask is \(3, 4\).*\(3, 3\)"):
        layer.forward(params, x, x, x, attn_mask=jnp.zeros((3, 4), bool))
    with pytest.raises(ShapeError, match=r"3D attn_mask is \(2, 3, 3\).*\(4, 3, 3\).*repeat_interleave"):
        layer.forward(params, x, x, x, attn_mask=jnp.zeros((2, 3, 3), bool))
    with pytest.raises(ShapeError, match=r"key_padding_mask of shape \(N, S\) = \(2, 3\), got \(3, 2\)"):
        layer.forward(params, x, x, x, key_padding_mask=jnp.zeros((3, 2), bool))
    with pytest.raises(ShapeError, match="embedding dimension 4"):
        layer.forward(params, jnp.zeros((3, 2, 5)), x, x)
    with pytest.raises(ShapeError, match="only bool and floating"):
        layer.forward(params, x, x, x, attn_mask=jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(ValueError, match="need attn_mask if specifying the is_causal hint"):
        layer.forward(params, x, x, x, is_causal=True)
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        layer.forward(params, x, x, x, key_padding_mask=jnp.zeros((2, 3), bool), attn_mask=jnp.zeros((3, 3)))


def test_xavier_init_matches_torch_distributions():
    """funcnets.nn.init.xavier_uniform/xavier_normal: torch's fans (receptive field
    included), gain, bounds and std, and torch's error below two dimensions."""
    from funcnets.nn import init

    shape, gain = (64, 32, 3, 3), 1.7
    fan_in, fan_out = 32 * 9, 64 * 9
    assert init.calculate_fan_in_and_fan_out(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    u = np.asarray(init.xavier_uniform(jax.random.key(0), shape, gain=gain))
    t = torch.nn.init.xavier_uniform_(torch.empty(shape), gain=gain).numpy()
    bound = gain * np.sqrt(6 / (fan_in + fan_out))
    assert u.shape == shape and np.abs(u).max() <= bound and np.abs(u).max() > 0.99 * bound
    assert abs(u.std() - t.std()) < 0.03 * t.std() and abs(u.mean()) < 0.02 * bound
    n = np.asarray(init.xavier_normal(jax.random.key(1), shape, gain=gain))
    t = torch.nn.init.xavier_normal_(torch.empty(shape), gain=gain).numpy()
    assert abs(n.std() - gain * np.sqrt(2 / (fan_in + fan_out))) < 0.03 * t.std() and abs(n.mean()) < 0.03 * t.std()
    for f in (init.xavier_uniform, init.xavier_normal):
        with pytest.raises(ValueError, match="fewer than 2 dimensions"):
            f(jax.random.key(0), (5,))

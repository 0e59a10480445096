"""Transformers against torch: TransformerEncoderLayer, TransformerDecoderLayer,
TransformerEncoder, TransformerDecoder and Transformer.

hypothesis draws the options (norm_first, activation relu/gelu/module/callable,
batch_first, unbatched, bias, masks bool/float/causal, key padding masks); each case copies
random weights from the torch model, runs the same inputs through both in train mode
with dropout=0 (torch's reference path; its eval fast paths are checked separately) and
compares outputs, input gradients and every parameter's gradient: float64 1e-10, float32
1e-5 values / 1e-4 gradients, relative to the largest reference value.
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


def _gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {  # ours, torch's
    "relu": ("relu", "relu"),
    "gelu": ("gelu", "gelu"),
    "GELU()": (nn.GELU(), torch.nn.GELU()),
    "callable": (_gelu_tanh, lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
}


def _copy(tmodel, dtype, rng):
    tmodel = tmodel.to(TDT[dtype])
    with torch.no_grad():
        for p in tmodel.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * 0.5))
    return tmodel, unflatten({n: jnp.asarray(to_np(p)) for n, p in tmodel.named_parameters()})


def _seq(rng, n, N, d, batch_first, unbatched, dtype):
    shape = (n, d) if unbatched else ((N, n, d) if batch_first else (n, N, d))
    return rng.standard_normal(shape).astype(dtype)


def _mask(rng, shape, kind, dtype):
    """bool True = ignore, or float with -inf; the first key is always kept (no fully masked row)."""
    if kind == "none":
        return None
    ignore = rng.random(shape) < 0.4
    ignore[..., 0] = False
    if kind == "bool":
        return ignore
    m = rng.standard_normal(shape).astype(dtype)
    m[ignore] = -np.inf
    return m


_COMPILED: dict = {}


def _grad_fn(model, flags):
    """One compiled forward+backward per model and set of bool flags (is_causal):
    gradients for the params and the input tensors."""
    if (model, flags) not in _COMPILED:
        def run(params, inputs, extra, g):
            def f(params, inputs):
                y, _ = model.apply(params, {}, {**extra, **inputs, **dict(flags)}, train=True)
                return jnp.sum(y * g), y
            return jax.grad(f, argnums=(0, 1), has_aux=True)(params, inputs)
        _COMPILED[model, flags] = jax.jit(run)
    return _COMPILED[model, flags]


def _compare(model, tmodel, params, inputs, extra, torch_call, dtype, rng, what):
    """Run both in train mode (dropout=0) with the same cotangent and compare everything."""
    rtol_v, rtol_g = TOL[dtype]
    tmodel.train(True)
    ts = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yt = torch_call(tmodel, ts)
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(g))
    with jax.enable_x64(dtype == np.float64), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flags = tuple(sorted((k, v) for k, v in extra.items() if isinstance(v, bool)))
        arrays = {k: v for k, v in extra.items() if not isinstance(v, bool)}
        (dp, dx), y = _grad_fn(model, flags)(params, inputs, arrays, g)
    assert y.dtype == dtype and y.shape == tuple(yt.shape), what
    assert_close(y, to_np(yt), rtol_v, f"{what}: output")
    for k, t in ts.items():
        assert_close(dx[k], to_np(t.grad), rtol_g, f"{what}: d{k}")
    flat = dict(model.named_parameters(dp))
    assert list(flat) == [n for n, _ in tmodel.named_parameters()], what
    for n, p in tmodel.named_parameters():
        assert_close(flat[n], to_np(p.grad), rtol_g, f"{what}: {n} gradient")


def _t(a):
    return None if a is None else torch.tensor(a)


# ------------------------------------------------------------------ layers
@settings(max_examples=8, deadline=None)
@given(norm_first=st.booleans(), act=st.sampled_from(list(ACTIVATIONS)), batch_first=st.booleans(),
       unbatched=st.booleans(), bias=st.booleans(), mask=st.sampled_from(["none", "bool", "float", "causal"]),
       kpm=st.sampled_from(["none", "bool", "float"]), dtype=DTYPES, seed=SEEDS)
@example(norm_first=False, act="relu", batch_first=True, unbatched=False, bias=True, mask="bool", kpm="bool",
         dtype=np.float64, seed=0)
@example(norm_first=True, act="GELU()", batch_first=False, unbatched=False, bias=False, mask="causal", kpm="none",
         dtype=np.float32, seed=1)
def test_encoder_layer_matches_torch(norm_first, act, batch_first, unbatched, bias, mask, kpm, dtype, seed):
    rng = np.random.default_rng(seed)
    ours, theirs = ACTIVATIONS[act]
    kw = dict(dim_feedforward=6, dropout=0.0, layer_norm_eps=1e-5, batch_first=batch_first, norm_first=norm_first, bias=bias)
    with jax.enable_x64(dtype == np.float64):
        model = nn.TransformerEncoderLayer(4, 2, activation=ours, **kw)
        tmodel, params = _copy(torch.nn.TransformerEncoderLayer(4, 2, activation=theirs, **kw), dtype, rng)
    S, N = 5, 2
    src = _seq(rng, S, N, 4, batch_first, unbatched, dtype)
    m = np.triu(np.ones((S, S), bool), 1) if mask == "causal" else _mask(rng, (S, S), mask, dtype)
    pad = _mask(rng, (S,) if unbatched else (N, S), kpm, dtype)
    causal = mask == "causal"
    extra = {"src_mask": m, "src_key_padding_mask": pad, "is_causal": causal}
    call = lambda t, ts: t(ts["src"], src_mask=_t(m), src_key_padding_mask=_t(pad), is_causal=causal)  # noqa: E731
    _compare(model, tmodel, params, {"src": src}, extra, call, dtype, rng, f"{model._who()} {act} mask={mask} kpm={kpm}")


@settings(max_examples=6, deadline=None)
@given(norm_first=st.booleans(), act=st.sampled_from(list(ACTIVATIONS)), batch_first=st.booleans(),
       unbatched=st.booleans(), bias=st.booleans(), tgt_mask=st.sampled_from(["none", "bool", "causal"]),
       mem_mask=st.sampled_from(["none", "float"]), kpm=st.sampled_from(["none", "bool"]), dtype=DTYPES, seed=SEEDS)
@example(norm_first=False, act="relu", batch_first=False, unbatched=False, bias=True, tgt_mask="causal",
         mem_mask="float", kpm="bool", dtype=np.float64, seed=0)
def test_decoder_layer_matches_torch(norm_first, act, batch_first, unbatched, bias, tgt_mask, mem_mask, kpm, dtype, seed):
    rng = np.random.default_rng(seed)
    ours, theirs = ACTIVATIONS[act]
    kw = dict(dim_feedforward=6, dropout=0.0, batch_first=batch_first, norm_first=norm_first, bias=bias)
    with jax.enable_x64(dtype == np.float64):
        model = nn.TransformerDecoderLayer(4, 2, activation=ours, **kw)
        tmodel, params = _copy(torch.nn.TransformerDecoderLayer(4, 2, activation=theirs, **kw), dtype, rng)
    T, S, N = 3, 4, 2
    tgt, mem = _seq(rng, T, N, 4, batch_first, unbatched, dtype), _seq(rng, S, N, 4, batch_first, unbatched, dtype)
    tm = np.triu(np.ones((T, T), bool), 1) if tgt_mask == "causal" else _mask(rng, (T, T), tgt_mask, dtype)
    mm = _mask(rng, (T, S), mem_mask, dtype)
    tpad = _mask(rng, (T,) if unbatched else (N, T), kpm, dtype)
    mpad = _mask(rng, (S,) if unbatched else (N, S), kpm, dtype)
    causal = tgt_mask == "causal"
    extra = {"tgt_mask": tm, "memory_mask": mm, "tgt_key_padding_mask": tpad, "memory_key_padding_mask": mpad,
             "tgt_is_causal": causal}
    call = lambda t, ts: t(ts["tgt"], ts["memory"], tgt_mask=_t(tm), memory_mask=_t(mm), tgt_key_padding_mask=_t(tpad),  # noqa: E731
                           memory_key_padding_mask=_t(mpad), tgt_is_causal=causal)
    _compare(model, tmodel, params, {"tgt": tgt, "memory": mem}, extra, call, dtype, rng,
             f"{model._who()} {act} tgt_mask={tgt_mask} mem_mask={mem_mask} kpm={kpm}")


# ------------------------------------------------------------------ stacks
@settings(max_examples=2, deadline=None)
@given(norm_first=st.booleans(), batch_first=st.booleans(), final_norm=st.booleans(), dtype=DTYPES, seed=SEEDS)
@example(norm_first=False, batch_first=True, final_norm=True, dtype=np.float64, seed=0)
def test_encoder_and_decoder_stacks_match_torch(norm_first, batch_first, final_norm, dtype, seed):
    rng = np.random.default_rng(seed)
    kw = dict(dim_feedforward=6, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    with jax.enable_x64(dtype == np.float64):
        enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2, **kw), 2, nn.LayerNorm(4) if final_norm else None)
        tenc, penc = _copy(torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(4, 2, **kw), 2,
                                                       torch.nn.LayerNorm(4) if final_norm else None,
                                                       enable_nested_tensor=False), dtype, rng)
        dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(4, 2, **kw), 2, nn.LayerNorm(4) if final_norm else None)
        tdec, pdec = _copy(torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(4, 2, **kw), 2,
                                                       torch.nn.LayerNorm(4) if final_norm else None), dtype, rng)
    S, T, N = 5, 3, 2
    src, tgt = _seq(rng, S, N, 4, batch_first, False, dtype), _seq(rng, T, N, 4, batch_first, False, dtype)
    pad = _mask(rng, (N, S), "bool", dtype)
    causal = np.asarray(nn.Transformer.generate_square_subsequent_mask(T)).astype(dtype)
    _compare(enc, tenc, penc, {"src": src}, {"src_key_padding_mask": pad},
             lambda t, ts: t(ts["src"], src_key_padding_mask=_t(pad)), dtype, rng, "TransformerEncoder")
    _compare(dec, tdec, pdec, {"tgt": tgt, "memory": src},
             {"tgt_mask": causal, "memory_key_padding_mask": pad},
             lambda t, ts: t(ts["tgt"], ts["memory"], tgt_mask=_t(causal), memory_key_padding_mask=_t(pad)),
             dtype, rng, "TransformerDecoder")


def test_transformer_matches_torch(x64):
    rng = np.random.default_rng(0)
    kw = dict(d_model=4, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=6, dropout=0.0,
              activation="gelu", batch_first=True)
    model = nn.Transformer(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmodel, params = _copy(torch.nn.Transformer(**kw), np.float64, rng)
    src, tgt = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 3, 4))
    tm = np.asarray(model.generate_square_subsequent_mask(3))
    spad = _mask(rng, (2, 5), "bool", np.float64)
    extra = {"tgt_mask": tm, "src_key_padding_mask": spad, "memory_key_padding_mask": spad, "tgt_is_causal": True}
    call = lambda t, ts: t(ts["src"], ts["tgt"], tgt_mask=_t(tm), src_key_padding_mask=_t(spad),  # noqa: E731
                           memory_key_padding_mask=_t(spad), tgt_is_causal=True)
    _compare(model, tmodel, params, {"src": src, "tgt": tgt}, extra, call, np.float64, rng, "Transformer")
    # forward(), the direct method, in eval mode
    y = jax.jit(lambda p, s, t: model.forward(p, s, t, tgt_mask=tm, src_key_padding_mask=spad,
                                              memory_key_padding_mask=spad))(params, src, tgt)
    tmodel.eval()
    with torch.no_grad():
        yt = tmodel(torch.tensor(src), torch.tensor(tgt), tgt_mask=_t(tm), src_key_padding_mask=_t(spad),
                    memory_key_padding_mask=_t(spad))
    assert_close(y, to_np(yt), 1e-10, "Transformer.forward eval")


def test_eval_fast_path(x64):
    """torch's eval/no-grad fast path (_transformer_encoder_layer_fwd and the nested-tensor
    encoder) agrees with ours up to rounding, except at padded positions, where torch's
    nested-tensor encoder returns norm(0) and funcnets (like torch's reference path) the
    computed values."""
    rng = np.random.default_rng(0)
    kw = dict(dim_feedforward=6, dropout=0.1, batch_first=True)
    layer = nn.TransformerEncoderLayer(4, 2, **kw)
    tlayer, p = _copy(torch.nn.TransformerEncoderLayer(4, 2, **kw), np.float64, rng)
    enc = nn.TransformerEncoder(layer, 2, nn.LayerNorm(4))
    tenc, penc = _copy(torch.nn.TransformerEncoder(tlayer, 2, torch.nn.LayerNorm(4)), np.float64, rng)
    x = rng.standard_normal((2, 5, 4))
    pad = np.zeros((2, 5), bool)
    pad[0, 3:] = True
    tlayer.eval(), tenc.eval()
    with torch.no_grad():
        y_layer = tlayer(torch.tensor(x), src_key_padding_mask=_t(pad))
        y_enc = tenc(torch.tensor(x), src_key_padding_mask=_t(pad))
    assert_close(layer.forward(p, x, src_key_padding_mask=pad), to_np(y_layer), 1e-10, "fast-path layer")
    ours = np.asarray(enc.forward(penc, x, src_key_padding_mask=pad))
    assert_close(ours[~pad], to_np(y_enc)[~pad], 1e-10, "nested-tensor encoder, kept positions")
    norm0 = to_np(tenc.norm.bias)  # LayerNorm of a zero vector
    assert_close(to_np(y_enc)[pad], np.broadcast_to(norm0, (2, 4)), 1e-12, "torch: padded positions are norm(0)")
    assert np.abs(ours[pad] - norm0).max() > 0.1


def test_dropout_in_train_mode_needs_a_key_and_uses_it(x64):
    model = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.5)
    params, _ = model.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 2, 4)))
    with pytest.raises(ValueError, match="PRNG key"):
        model.apply(params, {}, x, train=True)
    run = jax.jit(lambda p, x, k: model.forward(p, x, train=True, key=k))
    a, b, c = (run(params, x, jax.random.key(s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    ev = jax.jit(lambda p, x: (model.forward(p, x), model.apply(p, {}, {"src": x})[0]))(params, x)
    np.testing.assert_array_equal(ev[0], ev[1])


def test_per_sample_gradients_with_vmap(x64):
    rng = np.random.default_rng(0)
    kw = dict(dim_feedforward=6, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoderLayer(4, 2, **kw)
    tmodel, params = _copy(torch.nn.TransformerEncoderLayer(4, 2, **kw), np.float64, rng)
    x = rng.standard_normal((3, 5, 4))
    per = jax.jit(jax.vmap(jax.grad(lambda p, xi: jnp.sum(model.forward(p, xi, train=True) ** 2)), in_axes=(None, 0)))(params, x)
    per = dict(model.named_parameters(per))
    for i in range(3):
        tmodel.zero_grad()
        (tmodel(torch.tensor(x[i])) ** 2).sum().backward()
        for n, p in tmodel.named_parameters():
            assert_close(per[n][i], to_np(p.grad), 1e-10, f"sample {i} {n}")


def test_repr_names_and_init_match_torch(x64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = [
            (nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 3, nn.LayerNorm(8)),
             torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 3, torch.nn.LayerNorm(8))),
            (nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, activation=nn.GELU(), norm_first=True), 1),
             torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16, activation=torch.nn.GELU(), norm_first=True), 1)),
            (nn.Transformer(8, 2, 1, 2, 16, bias=False), torch.nn.Transformer(8, 2, 1, 2, 16, bias=False)),
        ]
    for model, tmodel in pairs:
        assert repr(model) == repr(tmodel)
        params, _ = jax.eval_shape(model.init_tree, jax.random.key(0))
        assert [(n, a.shape) for n, a in model.named_parameters(params)] == [
            (n, tuple(p.shape)) for n, p in tmodel.named_parameters()]
    # the encoder's layers are copies of one initialised layer, as torch's deepcopy makes them
    enc, _ = pairs[0]
    p = dict(enc.named_parameters(enc.init(jax.random.key(1))[0]))
    np.testing.assert_array_equal(p["layers.0.linear1.weight"], p["layers.2.linear1.weight"])
    assert np.abs(p["layers.0.linear1.weight"]).max() <= 1 / np.sqrt(8)  # Linear's default
    assert np.abs(p["layers.0.linear2.weight"]).max() > 0.9 / 4 and not np.any(p["layers.0.self_attn.in_proj_bias"])
    np.testing.assert_array_equal(p["norm.weight"], np.ones(8))
    # Transformer: every >1-D parameter xavier-uniform, independently
    model = nn.Transformer(64, 4, 1, 1, 256)
    p = dict(model.named_parameters(model.init(jax.random.key(2))[0]))
    for name, fans in (("encoder.layers.0.linear1.weight", 64 + 256), ("decoder.layers.0.self_attn.in_proj_weight", 64 * 4),
                       ("decoder.layers.0.multihead_attn.out_proj.weight", 128)):
        b = np.sqrt(6 / fans)
        assert np.abs(p[name]).max() <= b and np.abs(p[name]).max() > 0.97 * b, name
    b1 = np.asarray(p["encoder.layers.0.linear1.bias"])  # 1-D: Linear's U(±1/sqrt(fan_in)) kept
    assert np.abs(b1).max() <= 1 / 8 and np.abs(b1).max() > 0.9 / 8
    assert not np.array_equal(p["encoder.layers.0.linear1.weight"], p["decoder.layers.0.linear1.weight"][:, :64])
    np.testing.assert_array_equal(
        nn.Transformer.generate_square_subsequent_mask(4), to_np(torch.nn.Transformer.generate_square_subsequent_mask(4)))


class _Traced:
    """``model.forward`` run under ``jax.eval_shape``: shape errors without computing."""

    def __init__(self, model):
        self.model = model

    def forward(self, params, *args, **kw):
        return jax.eval_shape(lambda p: self.model.forward(p, *args, **kw), params)


def test_errors_name_the_layer_and_the_fix(x64):
    with pytest.raises(ValueError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(4, 2, activation="tanh")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.TransformerEncoderLayer(6, 4)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2, 6, batch_first=True), 2)
    params, _ = jax.eval_shape(enc.init_tree, jax.random.key(0))  # errors are raised while tracing
    enc = _Traced(enc)
    with pytest.raises(ShapeError, match=r"layers\.0: TransformerEncoderLayer\(d_model=4.*\(N, S, 4\).*got \(2, 5, 3\)"):
        enc.forward(params, jnp.zeros((2, 5, 3)))
    with pytest.raises(ShapeError, match=r"layers\.0\.self_attn: MultiheadAttention\(embed_dim=4.*2D attn_mask is \(5, 4\)"):
        enc.forward(params, jnp.zeros((2, 5, 4)), mask=jnp.zeros((5, 4), bool))
    with pytest.raises(ShapeError, match=r"key_padding_mask of shape \(N, S\) = \(2, 5\), got \(2, 4\)"):
        enc.forward(params, jnp.zeros((2, 5, 4)), src_key_padding_mask=jnp.zeros((2, 4), bool))
    model = nn.Transformer(4, 2, 1, 1, 6)
    mp, _ = jax.eval_shape(model.init_tree, jax.random.key(0))
    model = _Traced(model)
    with pytest.raises(ShapeError, match="batch number of src and tgt must be equal"):
        model.forward(mp, jnp.zeros((5, 2, 4)), jnp.zeros((3, 3, 4)))
    with pytest.raises(ShapeError, match="equal to d_model=4"):
        model.forward(mp, jnp.zeros((5, 2, 4)), jnp.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match="need attn_mask if specifying the is_causal hint"):
        enc.forward(params, jnp.zeros((2, 5, 4)), is_causal=True)

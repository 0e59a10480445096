"""torchvision's Swin Transformer V1/V2 against funcnets' (``funcnets.models.swin_transformer``).

swin_t and swin_v2_t get full float32 parity (strict load, eval logits 1e-4, export back)
at 36×36: the 9×9 first-stage map is padded to the window (14 / 16) and its odd sides
padded before patch merging, and the shifted blocks roll and mask; the later stages are
smaller than a window (no shift, as torchvision). The other members differ only in
configuration and are checked by structure and weights both ways. Small V1 and V2 models
(patch 2, window 4 on 18×18: 9×9 → padded 12×12 with shift and masks; 5×5 → padded 8×8
with shift and masks) run in float64: eval and train outputs and every parameter gradient.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models import swin_transformer as TS

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models import swin_transformer as S
from helpers import assert_close, to_np
from zoo_harness import (
    check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, init_leaves, std_ok,
    torch_model, torch_weights,
)

# torchvision runs any input from 4×4 (one patch); 36 exercises padding, shifts and masks
CASES = {
    "swin_t": (36, 2, {}),
    "swin_v2_t": (36, 2, {}),
}
STRUCTURE_ONLY = ("swin_s", "swin_b", "swin_v2_s", "swin_v2_b")


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    check_structure_and_weights_both_ways(name)


def _small(lib, v2: bool, sd_prob=0.0, dropout=0.0, attention_dropout=0.0, num_classes=10):
    extra = dict(block=lib.SwinTransformerBlockV2, downsample_layer=lib.PatchMergingV2) if v2 else {}
    return lib.SwinTransformer([2, 2], 8, [2, 2], [1, 2], [4, 4], stochastic_depth_prob=sd_prob, dropout=dropout,
                               attention_dropout=attention_dropout, num_classes=num_classes, **extra)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_float64_small_swin(v2, x64):
    check_float64(f"swin_small_{'v2' if v2 else 'v1'}", 18, 2, lambda: _small(TS, v2), lambda: _small(S, v2))


def test_shifted_window_attention_bias_and_padding_float64(x64):
    """The functional form with biases that are not zero (the model's init zeroes them),
    a non-square window, padding on both sides and the V2 key-bias rule."""
    torch.manual_seed(0)
    for v2 in (False, True):
        cls_t = TS.ShiftedWindowAttentionV2 if v2 else TS.ShiftedWindowAttention
        cls_j = S.ShiftedWindowAttentionV2 if v2 else S.ShiftedWindowAttention
        tm = cls_t(8, [3, 4], [1, 2], 2).double()
        with torch.no_grad():
            for p in tm.parameters():
                p.add_(0.1 * torch.randn_like(p))
        model = cls_j(8, (3, 4), (1, 2), 2)
        params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
        x = torch.randn(2, 7, 9, 8, dtype=torch.float64, requires_grad=True)
        y = tm(x)
        w = torch.randn(y.shape, dtype=torch.float64)
        (y * w).sum().backward()
        f = lambda p, x: jnp.sum(model(p, state, x)[0] * jnp.asarray(to_np(w)))  # noqa: E731
        val, (gp, gx) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(params, jnp.asarray(to_np(x.detach())))
        assert_close(val, float((y * w).sum().detach()), 1e-10, f"v2={v2} value")
        assert_close(gx, to_np(x.grad), 1e-10, f"v2={v2} input grad")
        flat = torch_io.flatten(gp)
        for n, p in tm.named_parameters():
            assert_close(flat[n], to_np(p.grad), 1e-10, f"v2={v2} grad {n}")


def test_init_is_torchvisions():
    f = init_leaves(get_model("swin_t", num_classes=10), "features.1.0.attn.qkv.weight", "features.1.0.attn.qkv.bias",
                     "features.5.1.mlp.0.weight", "features.5.1.mlp.0.bias",
                     "features.1.1.attn.relative_position_bias_table", "features.0.0.weight", "features.2.norm.weight",
                     "head.weight")
    std_ok(f["features.1.0.attn.qkv.weight"], 0.02, "qkv trunc_normal(0.02)")
    std_ok(f["features.5.1.mlp.0.weight"], 0.02, "mlp trunc_normal(0.02) (the model's loop wins over xavier)")
    std_ok(f["features.1.1.attn.relative_position_bias_table"], 0.02, "bias table")
    np.testing.assert_array_equal(f["features.1.0.attn.qkv.bias"], 0.0)
    np.testing.assert_array_equal(f["features.5.1.mlp.0.bias"], 0.0)
    np.testing.assert_array_equal(f["features.2.norm.weight"], 1.0)
    bound = 1 / np.sqrt(3 * 16)  # the patch conv keeps torch's default U(±1/sqrt(fan_in))
    assert bound * 0.98 < np.abs(f["features.0.0.weight"]).max() <= bound
    std_ok(f["head.weight"], 0.02, "head")

    s = init_leaves(get_model("swin_v2_t", num_classes=10), "features.3.1.attn.logit_scale",
                    "features.3.1.attn.cpb_mlp.0.weight", "features.3.1.attn.relative_coords_table",
                    "features.3.1.attn.relative_position_index")
    np.testing.assert_allclose(s["features.3.1.attn.logit_scale"], np.log(10.0) * np.ones((6, 1, 1)), rtol=1e-6)
    std_ok(s["features.3.1.attn.cpb_mlp.0.weight"], 0.02, "cpb_mlp trunc_normal(0.02)")
    # the buffers equal torchvision's (a V2 attention on CPU: cheap)
    t_attn = TS.ShiftedWindowAttentionV2(192, [8, 8], [4, 4], 6)
    np.testing.assert_allclose(s["features.3.1.attn.relative_coords_table"], to_np(t_attn.relative_coords_table),
                               rtol=1e-6)
    np.testing.assert_array_equal(s["features.3.1.attn.relative_position_index"], to_np(t_attn.relative_position_index))

    # a standalone block keeps its own MLP init: xavier_uniform weights, N(0, 1e-6) biases
    block = S.SwinTransformerBlock(32, 2, (4, 4), (0, 0))
    p, _ = block.init(jax.random.PRNGKey(1))
    w, b = np.asarray(p["mlp"]["0"]["weight"]), np.asarray(p["mlp"]["0"]["bias"])  # (128, 32)
    bound = np.sqrt(6 / (128 + 32))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    std_ok(b, 1e-6, "block mlp bias")
    # V2 attention zeroes the key third of the qkv bias
    qkv_b = S.ShiftedWindowAttentionV2(8, (4, 4), (0, 0), 2).init(jax.random.PRNGKey(2))[0]["qkv"]["bias"]
    assert np.all(np.asarray(qkv_b[8:16]) == 0) and np.all(np.asarray(qkv_b[:8]) != 0)


def test_stochastic_depth_rates_are_torchvisions():
    for name in ("swin_t", "swin_v2_b"):
        model = get_model(name, num_classes=10)
        with torch.device("meta"), warnings.catch_warnings():
            tm = torchvision.models.get_model(name, weights=None, num_classes=10)
        ours = [m.p for _, m in model.named_modules() if isinstance(m, S.StochasticDepth)]
        theirs = [m.p for m in tm.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
        assert ours == theirs and len(ours) == sum(model.depths)
        shifts = [m.shift_size for _, m in model.named_modules() if isinstance(m, S.ShiftedWindowAttention)]
        assert shifts == [tuple(m.shift_size) for m in tm.modules() if isinstance(m, TS.ShiftedWindowAttention)]


def test_stochastic_depth_and_dropout_in_training():
    model = _small(S, True, sd_prob=0.9, dropout=0.2, attention_dropout=0.2)
    params, state = torch_weights(model, lambda: _small(TS, True))  # no init to compile
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 18, 18))
    run = jax.jit(lambda p, s, x, k: model(p, s, x, train=True, key=k)[0])
    a, b = run(params, state, x, jax.random.PRNGKey(2)), run(params, state, x, jax.random.PRNGKey(2))
    c = run(params, state, x, jax.random.PRNGKey(3))
    assert a.shape == (4, 10) and bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_array_equal(a, b)  # deterministic for a key
    assert not np.allclose(a, c)  # and the key matters
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model(params, state, x, train=True)
    # eval ignores them: the same as a model built without
    plain = _small(S, True)
    ev = jax.jit(lambda p, s, x: (model(p, s, x)[0], plain(p, s, x)[0]))(params, state, x)
    np.testing.assert_allclose(*ev, rtol=1e-6)


def test_too_small_input_and_bad_settings():
    model = get_model("swin_t")
    with pytest.raises(ShapeError, match=r"at least 4×4, got 3×3"):
        model({}, {}, jnp.zeros((1, 3, 3, 3)))
    with pytest.raises(ShapeError, match=r"expected images \(N, 3, H, W\)"):
        model({}, {}, jnp.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="window_size and shift_size must be of length 2"):
        S.ShiftedWindowAttention(8, (4,), (0, 0), 2)
    with pytest.raises(ShapeError, match=r"expected input \(N, H, W, 8\)"):
        attn = S.ShiftedWindowAttention(8, (4, 4), (0, 0), 2)
        attn(*attn.init(jax.random.PRNGKey(0)), jnp.zeros((1, 8, 4, 4)))


def test_fine_tuning_replaces_the_head():
    model = _small(S, False, num_classes=1000)
    params, state = torch_weights(model, lambda: _small(TS, False, num_classes=1000))  # no init to compile
    model, params, state = nn.replace(model, params, state, "head", nn.Linear(16, 10), jax.random.PRNGKey(1))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.ones((2, 3, 18, 18)))
    assert y.shape == (2, 10)
    assert optim.select(params, "head") == {"head.weight", "head.bias"}


def test_weights_file(tmp_path):
    tm = torch_model("swin_v2_t", num_classes=10)
    torch.save(tm.state_dict(), tmp_path / "swin_v2_t.pth")
    model, params, state = get_model("swin_v2_t", weights=str(tmp_path / "swin_v2_t.pth"), num_classes=10)
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(tm.state_dict())
    assert all(np.array_equal(out[k], to_np(v)) for k, v in tm.state_dict().items())

"""torchvision's MaxViT against funcnets' (``funcnets.models.maxvit``).

maxvit_t gets full float32 parity (strict load, eval logits 1e-4, export back) at 223×223,
the smallest input its ``input_size`` allows (feature maps 112, 56, 28, 14, 7 must be
divisible by the partition size 7). A small MaxVit (partition 2 on 32×32: blocks of 8×8
and 4×4 maps, MBConv with and without the strided shortcut, window and grid attention)
runs in float64: eval and train outputs, every parameter gradient and the BatchNorm
buffers (eps 1e-3, momentum 0.01).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchvision.models import maxvit as TM

from funcnets import nn, optim
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models import maxvit as M
from zoo_harness import check_float32_parity_and_export, check_float64, init_leaves, std_ok, torch_weights

CASES = {
    "maxvit_t": (223, 1, {"input_size": (223, 223)}),
}
STRUCTURE_ONLY = ()


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


def _small(lib, sd_prob=0.0, mlp_dropout=0.0, attention_dropout=0.0, num_classes=10, input_size=(32, 32)):
    return lib.MaxVit(input_size=input_size, stem_channels=8, partition_size=2, block_channels=[8, 16],
                      block_layers=[2, 1], head_dim=4, stochastic_depth_prob=sd_prob, mlp_dropout=mlp_dropout,
                      attention_dropout=attention_dropout, num_classes=num_classes)


def test_float64_small_maxvit(x64):
    check_float64("maxvit_small", 32, 2, lambda: _small(TM), lambda: _small(M))


def test_init_is_torchvisions():
    model = _small(M, num_classes=64)
    pre = "blocks.0.layers.0.layers."
    f = init_leaves(model, "stem.0.0.weight", "stem.0.1.weight", "stem.0.1.bias", "stem.1.0.bias",
                    pre + "MBconv.layers.conv_b.0.weight", pre + "MBconv.layers.squeeze_excitation.fc1.bias",
                    pre + "window_attention.attn_layer.1.relative_position_bias_table",
                    pre + "grid_attention.mlp_layer.1.weight", pre + "grid_attention.mlp_layer.1.bias",
                    "classifier.3.weight", "classifier.5.weight",
                    "blocks.1.layers.0.layers.grid_attention.attn_layer.1.relative_position_index")
    for k in ("stem.0.0.weight", pre + "MBconv.layers.conv_b.0.weight", pre + "grid_attention.mlp_layer.1.weight",
              "classifier.3.weight", "classifier.5.weight"):
        std_ok(f[k], 0.02, k)  # normal_(std=0.02) for every conv and Linear
    for k in ("stem.0.1.bias", "stem.1.0.bias", pre + "MBconv.layers.squeeze_excitation.fc1.bias",
              pre + "grid_attention.mlp_layer.1.bias"):
        np.testing.assert_array_equal(f[k], 0.0)
    np.testing.assert_array_equal(f["stem.0.1.weight"], 1.0)
    t = f[pre + "window_attention.attn_layer.1.relative_position_bias_table"]  # (9, 2): trunc_normal_(0.02)
    assert t.shape == (9, 2) and 0 < np.abs(t).max() < 0.1
    # the relative position index equals torchvision's
    idx = f["blocks.1.layers.0.layers.grid_attention.attn_layer.1.relative_position_index"]
    np.testing.assert_array_equal(idx, TM._get_relative_position_index(2, 2).numpy())
    # maxvit_t's norm layers: BatchNorm eps 1e-3, momentum 0.01 in the convolutions
    bns = [m for _, m in get_model("maxvit_t").named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 11 * 3 and all((m.eps, m.momentum) == (1e-3, 0.01) for m in bns)


def test_stochastic_depth_rates_are_torchvisions():
    import torchvision

    model = get_model("maxvit_t")
    with torch.device("meta"):
        tm = torchvision.models.get_model("maxvit_t", weights=None)
    ours = [m.p for _, m in model.named_modules() if isinstance(m, M.StochasticDepth)]
    theirs = [m.p for m in tm.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    assert ours == theirs  # linspace(0, 0.2, 11); the first MBConv's p = 0 is an Identity in both


def test_stochastic_depth_and_dropout_in_training():
    model = _small(M, sd_prob=0.9, mlp_dropout=0.2, attention_dropout=0.2)
    params, state = torch_weights(model, lambda: _small(TM))  # no init to compile
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 32, 32))
    run = jax.jit(lambda p, s, x, k: model(p, s, x, train=True, key=k)[0])
    a, b = run(params, state, x, jax.random.PRNGKey(2)), run(params, state, x, jax.random.PRNGKey(2))
    c = run(params, state, x, jax.random.PRNGKey(3))
    assert a.shape == (4, 10) and bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_array_equal(a, b)  # deterministic for a key
    assert not np.allclose(a, c)  # and the key matters
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model(params, state, x, train=True)
    plain = _small(M)
    ev = jax.jit(lambda p, s, x: (model(p, s, x)[0], plain(p, s, x)[0]))(params, state, x)
    np.testing.assert_allclose(*ev, rtol=1e-6)


def test_input_size_errors():
    model = get_model("maxvit_t", input_size=(223, 223))
    assert model.min_size == 221  # 221..224 give the same feature maps
    with pytest.raises(ShapeError, match=r"at least 221×221, got 220×220"):
        model({}, {}, jnp.zeros((1, 3, 220, 220)))
    small = _small(M)
    with pytest.raises(ShapeError, match=r"built for input_size=\(32, 32\), got images 64×64"):
        small({}, {}, jnp.zeros((1, 3, 64, 64)))
    with pytest.raises(ValueError, match="is not divisible by partition size 7"):
        get_model("maxvit_t", input_size=(200, 200))
    with pytest.raises(ValueError, match="partition_type must be either 'grid' or 'window'"):
        M.PartitionAttentionLayer(8, 4, 2, "row", (4, 4), 4, nn.GELU, nn.LayerNorm, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="must be divisible by head_dim"):
        M.RelativePositionalMultiHeadAttention(10, 4, 4)


def test_fine_tuning_replaces_the_head():
    model = _small(M, num_classes=1000)
    params, state = torch_weights(model, lambda: _small(TM, num_classes=1000))  # pretrained; no init to compile
    model, params, state = nn.replace(model, params, state, "classifier.5", nn.Linear(16, 10, bias=False),
                                      jax.random.PRNGKey(1))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.ones((2, 3, 32, 32)))
    assert y.shape == (2, 10)
    assert optim.select(params, "classifier.5") == {"classifier.5.weight"}

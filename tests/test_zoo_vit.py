"""torchvision's Vision Transformers (``funcnets.models.vision_transformer``) against torchvision's.

torchvision initialises ``heads.head`` to zeros, so a fresh model's logits are 0 whatever
the rest computes: every parity check here first gives the torchvision model a random
head (the float32 case through the shared harness, with its ``torch_model`` wrapped).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import zoo_harness
from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models.vision_transformer import ConvStemConfig, VisionTransformer
from zoo_harness import check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, init_leaves, std_ok

# name: (input side, batch, kwargs). torchvision's ViT accepts exactly image_size; the
# smallest is one patch (image_size = patch size)
CASES = {"vit_b_32": (32, 1, {"image_size": 32})}
# the same classes with more/larger layers or smaller patches. ViT-B/16 goes through the
# harness (random weights in, the same out, strictly into torchvision); for ViT-L and
# ViT-H (304M-632M parameters: ~7 GB and 70-100 s of random arrays and copies) the check
# is every state_dict name, shape and torch's order, without arrays
STRUCTURE_ONLY = ("vit_b_16", "vit_l_16", "vit_l_32", "vit_h_14")
_NAMES_AND_SHAPES_ONLY = ("vit_l_16", "vit_l_32", "vit_h_14")


def _random_head(tm):
    with torch.no_grad():
        for name, m in tm.heads.named_children():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 1 / math.sqrt(m.in_features))
                m.bias.uniform_(-0.1, 0.1)
    return tm


_tvm = torchvision.models
_SMALL = dict(image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)
_STEM = dict(_SMALL, representation_size=12)
F64 = {
    "vit_small": (8, 2, lambda: _random_head(_tvm.VisionTransformer(**_SMALL)), lambda: VisionTransformer(**_SMALL)),
    # the convolutional stem (conv → BN → ReLU blocks, 1×1 conv_last) and pre_logits → Tanh
    "vit_small_conv_stem_representation": (
        8, 2,
        lambda: _random_head(_tvm.VisionTransformer(**_STEM, conv_stem_configs=[
            _tvm.vision_transformer.ConvStemConfig(4, 3, 2), _tvm.vision_transformer.ConvStemConfig(8, 3, 2)])),
        lambda: VisionTransformer(**_STEM, conv_stem_configs=[ConvStemConfig(4, 3, 2), ConvStemConfig(8, 3, 2)]),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name, monkeypatch):
    size, batch, kwargs = CASES[name]
    plain = zoo_harness.torch_model
    monkeypatch.setattr(zoo_harness, "torch_model", lambda *a, **k: _random_head(plain(*a, **k)))
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    if name not in _NAMES_AND_SHAPES_ONLY:
        check_structure_and_weights_both_ways(name)
        return
    model = get_model(name, num_classes=10)
    with torch.device("meta"):
        meta = torchvision.models.get_model(name, weights=None, num_classes=10)
    template = torch_io._template(model)
    assert list(template) == list(meta.state_dict())
    assert {k: s for k, (_, s) in template.items()} == {k: tuple(v.shape) for k, v in meta.state_dict().items()}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    size, batch, torch_factory, our_factory = F64[name]
    check_float64(name, size, batch, torch_factory, our_factory)


def test_init_is_torchvisions():
    # ViT-B/32's patchify stem and widths, fewer layers (init compiles in seconds)
    model = VisionTransformer(image_size=32, patch_size=32, num_layers=4, num_heads=12, hidden_dim=768, mlp_dim=3072,
                              num_classes=10)
    f = init_leaves(model, "class_token", "conv_proj.weight",
                    "conv_proj.bias", "encoder.pos_embedding", "encoder.layers.encoder_layer_3.mlp.0.weight",
                    "encoder.layers.encoder_layer_3.mlp.3.bias", "encoder.layers.encoder_layer_1.self_attention.in_proj_weight",
                    "encoder.layers.encoder_layer_1.self_attention.out_proj.bias", "encoder.ln.weight",
                    "heads.head.weight", "heads.head.bias")
    std_ok(f["conv_proj.weight"], math.sqrt(1 / (3 * 32 * 32)), "conv_proj trunc_normal")
    std_ok(f["encoder.pos_embedding"], 0.02, "pos_embedding")
    w = f["encoder.layers.encoder_layer_3.mlp.0.weight"]  # (3072, 768): xavier_uniform
    bound = math.sqrt(6 / (3072 + 768))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    std_ok(w, bound / math.sqrt(3), "mlp xavier_uniform")
    std_ok(f["encoder.layers.encoder_layer_3.mlp.3.bias"], 1e-6, "mlp bias")
    w = f["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"]  # (2304, 768), xavier_uniform
    std_ok(w, math.sqrt(6 / (2304 + 768)) / math.sqrt(3), "in_proj xavier_uniform")
    for k in ("class_token", "conv_proj.bias", "encoder.layers.encoder_layer_1.self_attention.out_proj.bias",
              "heads.head.weight", "heads.head.bias"):
        np.testing.assert_array_equal(f[k], 0.0, err_msg=k)
    np.testing.assert_array_equal(f["encoder.ln.weight"], 1.0)
    # pre_logits and the conv stem's conv_last
    model = VisionTransformer(**dict(_STEM, hidden_dim=64, mlp_dim=8, representation_size=256),
                              conv_stem_configs=[ConvStemConfig(4, 3, 2), ConvStemConfig(8, 3, 2)])
    f = init_leaves(model, "heads.pre_logits.weight", "heads.pre_logits.bias", "conv_proj.conv_last.weight",
                    "conv_proj.conv_last.bias", "conv_proj.conv_bn_relu_1.0.weight")
    std_ok(f["heads.pre_logits.weight"], math.sqrt(1 / 64), "pre_logits trunc_normal")
    std_ok(f["conv_proj.conv_last.weight"], math.sqrt(2 / 64), "conv_last normal")
    np.testing.assert_array_equal(f["heads.pre_logits.bias"], 0.0)
    np.testing.assert_array_equal(f["conv_proj.conv_last.bias"], 0.0)
    stem = f["conv_proj.conv_bn_relu_1.0.weight"]  # torch's default U(±1/sqrt(fan_in)), fan_in = 4·9
    assert np.abs(stem).max() <= 1 / 6 and np.abs(stem).max() > 0.8 / 6


def test_dropout_in_training_needs_a_key_and_is_deterministic_for_one():
    model = VisionTransformer(**_SMALL, dropout=0.2, attention_dropout=0.3)
    params, state = model.init(jax.random.PRNGKey(0))
    params = {**params, "heads": {"head": nn.Linear(16, 10).init(jax.random.PRNGKey(1))[0]}}  # not zeros
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 3, 8, 8))
    run = jax.jit(lambda p, x, k: model(p, state, x, train=True, key=k)[0])
    a, b = run(params, x, jax.random.PRNGKey(3)), run(params, x, jax.random.PRNGKey(3))
    c = run(params, x, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # a different key drops other units
    with pytest.raises(ValueError, match="key"):
        model(params, state, x, train=True)


def test_input_size_errors_and_bad_arguments():
    model = get_model("vit_b_32", image_size=32)
    with pytest.raises(ShapeError, match=r"at least 32×32, got 31×31"):
        model({}, {}, jnp.zeros((1, 3, 31, 31)))
    with pytest.raises(ShapeError, match=r"exactly 32×32 .* got \(1, 3, 64, 64\)"):
        model({}, {}, jnp.zeros((1, 3, 64, 64)))
    with pytest.raises(ValueError, match="Input shape indivisible by patch size"):
        get_model("vit_b_16", image_size=40)


def test_fine_tuning_replaces_heads_head():
    model = VisionTransformer(**dict(_SMALL, num_classes=1000))
    params, state = model.init(jax.random.PRNGKey(0))
    model, params, state = nn.replace(model, params, state, "heads.head", nn.Linear(16, 10), jax.random.PRNGKey(1))
    y, _ = model(params, state, jnp.ones((2, 3, 8, 8)))
    assert y.shape == (2, 10) and np.abs(np.asarray(y)).max() > 0  # the new head is torch's default Linear
    assert optim.select(params, "heads.head") == {"heads.head.weight", "heads.head.bias"}


def test_weights_file_sets_image_size(tmp_path):
    # torchvision's builder takes image_size from the weights' meta; a local file gives it
    # through pos_embedding's length. (The forward pass is the float32 case's.)
    template = torch_io._template(VisionTransformer(64, 32, 12, 12, 768, 3072, num_classes=10))
    rng = np.random.default_rng(0)
    sd = {k: np.zeros(s, np.float32) for k, (_, s) in template.items()}
    sd["encoder.pos_embedding"] = rng.standard_normal((1, 5, 768), dtype=np.float32)
    path = tmp_path / "vit_b_32.safetensors"
    torch_io.save_file(path, sd)
    model, params, state = get_model("vit_b_32", weights=str(path), num_classes=10)
    assert model.image_size == 64 and model.seq_length == 5
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(sd) and all(np.array_equal(out[k], sd[k]) for k in sd)
    model, *_ = get_model("vit_b_32", weights=str(path), num_classes=10, image_size=64)
    assert model.image_size == 64

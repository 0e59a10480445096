"""torchvision's ConvNeXt (``funcnets.models.convnext``) against torchvision's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.convnext import CNBlockConfig as TCNBlockConfig

from funcnets import nn, optim
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models.convnext import CNBlockConfig, ConvNeXt
from zoo_harness import check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, init_leaves, std_ok

# name: (input side, batch, kwargs), at torchvision's min_size (32: 32/4 → 8, then three halvings)
CASES = {"convnext_tiny": (32, 2, {})}
# the same classes with more blocks in stage 3 and wider stages
STRUCTURE_ONLY = ("convnext_small", "convnext_base", "convnext_large")

# two stages of one block; layer_scale 0.5 (not 1e-6) so the blocks' branches weigh in the
# outputs and gradients; stochastic depth 0 so train mode is deterministic
_SETTING = [(8, 16, 1), (16, None, 1)]
F64 = {
    "convnext_small_config": (
        32, 2,
        lambda: torchvision.models.ConvNeXt([TCNBlockConfig(*c) for c in _SETTING], stochastic_depth_prob=0.0,
                                            layer_scale=0.5, num_classes=10),
        lambda: ConvNeXt([CNBlockConfig(*c) for c in _SETTING], stochastic_depth_prob=0.0, layer_scale=0.5,
                         num_classes=10),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    check_structure_and_weights_both_ways(name)


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    size, batch, torch_factory, our_factory = F64[name]
    check_float64(name, size, batch, torch_factory, our_factory)


def test_init_is_torchvisions():
    f = init_leaves(get_model("convnext_tiny", num_classes=10), "features.0.0.weight", "features.0.0.bias",
                    "features.0.1.weight", "features.3.1.block.0.weight", "features.3.1.block.3.weight",
                    "features.3.1.block.3.bias", "features.3.1.layer_scale", "features.4.1.weight",
                    "classifier.2.weight", "classifier.2.bias")
    for k in ("features.0.0.weight", "features.3.1.block.0.weight", "features.3.1.block.3.weight",
              "features.4.1.weight"):
        std_ok(f[k], 0.02, k)  # trunc_normal_(std=0.02), cut at ±2 (100 sigma)
    for k in ("features.0.0.bias", "features.3.1.block.3.bias", "classifier.2.bias"):
        np.testing.assert_array_equal(f[k], 0.0, err_msg=k)
    np.testing.assert_array_equal(f["features.0.1.weight"], 1.0)
    np.testing.assert_array_equal(f["features.3.1.layer_scale"], np.full((192, 1, 1), 1e-6, np.float32))
    assert np.asarray(f["classifier.2.weight"]).std() > 0.015


def test_stochastic_depth_grows_with_depth_and_needs_a_key():
    model = get_model("convnext_tiny")
    probs = [b.stochastic_depth.p for stage in (model.features[1], model.features[3], model.features[5],
                                                model.features[7]) for b in stage]
    assert probs[0] == 0.0 and probs[-1] == pytest.approx(0.1) and np.all(np.diff(probs) > 0)
    with torch.device("meta"):
        t = torchvision.models.convnext_tiny()
    assert probs == [m.p for m in t.modules() if isinstance(m, torchvision.ops.StochasticDepth)]

    model = ConvNeXt([CNBlockConfig(*c) for c in _SETTING], stochastic_depth_prob=0.9, layer_scale=0.5,
                     num_classes=10)
    params, state = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 32, 32))
    run = jax.jit(lambda p, x, k: model(p, state, x, train=True, key=k)[0])
    a, b, c = run(params, x, jax.random.PRNGKey(2)), run(params, x, jax.random.PRNGKey(2)), run(
        params, x, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # a different key drops other branches
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model(params, state, x, train=True)


def test_errors_and_fine_tuning():
    with pytest.raises(ShapeError, match=r"at least 32×32, got 31×31"):
        get_model("convnext_tiny")({}, {}, jnp.zeros((1, 3, 31, 31)))
    with pytest.raises(ValueError, match="block_setting should not be empty"):
        ConvNeXt([])
    with pytest.raises(TypeError, match=r"List\[CNBlockConfig\]"):
        ConvNeXt([(8, None, 1)])
    assert repr(CNBlockConfig(96, 192, 3)) == repr(TCNBlockConfig(96, 192, 3))
    model = ConvNeXt([CNBlockConfig(*c) for c in _SETTING], num_classes=1000)
    params, state = model.init(jax.random.PRNGKey(0))
    model, params, state = nn.replace(model, params, state, "classifier.2", nn.Linear(16, 10), jax.random.PRNGKey(1))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.ones((2, 3, 32, 32)))
    assert y.shape == (2, 10)
    assert optim.select(params, "classifier.2") == {"classifier.2.weight", "classifier.2.bias"}

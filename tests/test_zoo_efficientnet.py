"""torchvision's EfficientNet B0–B7 and V2 S/M/L against funcnets' (``funcnets.models.efficientnet``).

B0 and V2-S get full float32 parity (strict load, eval logits 1e-4, export back); the
other members differ only in configuration (width/depth multipliers, stage lists, norm
eps/momentum) and are checked by structure and weights both ways, plus their norm layers
and stochastic-depth rates against torchvision's. A small EfficientNet (MBConv and
FusedMBConv blocks, with and without expansion and residual) runs in float64: eval and
train outputs, every parameter gradient and the BatchNorm buffers.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import efficientnet as E
from funcnets.models import get_model
from helpers import to_np
from zoo_harness import (
    check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, init_leaves, std_ok,
    torch_model,
)

# B0's min_size is 1×1; at 32×32 its depthwise 5×5 kernels see more than their centre
CASES = {
    "efficientnet_b0": (32, 2, {}),
    "efficientnet_v2_s": (33, 1, {}),
}
STRUCTURE_ONLY = (
    "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
    "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_m", "efficientnet_v2_l",
)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    check_structure_and_weights_both_ways(name)


def _small(lib, sd_prob=0.0, dropout=0.0, num_classes=10):
    """Every block kind: fused without expansion (residual), fused with expansion (stride
    2), MBConv with expansion (a residual second layer), MBConv without expansion (5×5);
    BatchNorm eps/momentum as B5–B7's."""
    fused, mb = lib.FusedMBConvConfig, lib.MBConvConfig
    setting = [fused(1, 3, 1, 8, 8, 1), fused(4, 3, 2, 8, 16, 1), mb(4, 3, 2, 16, 16, 2),
               partial(mb, width_mult=1.0, depth_mult=0.5)(1, 5, 1, 16, 24, 2)]
    bn = partial(torch.nn.BatchNorm2d if lib is _tve else nn.BatchNorm2d, eps=0.001, momentum=0.01)
    return lib.EfficientNet(setting, dropout, stochastic_depth_prob=sd_prob, num_classes=num_classes,
                            norm_layer=bn, last_channel=32)


_tve = torchvision.models.efficientnet


def test_float64_small_efficientnet(x64):
    check_float64("efficientnet_small", 12, 2, lambda: _small(_tve), lambda: _small(E))


def _norms_and_depths(model, torch_model):
    ours = [(m.eps, m.momentum) for _, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    theirs = [(m.eps, m.momentum) for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert ours == theirs
    ours = [m.p for _, m in model.named_modules() if isinstance(m, E.StochasticDepth)]
    theirs = [m.p for m in torch_model.modules() if isinstance(m, torchvision.ops.StochasticDepth)]
    assert ours == theirs  # 0.2 · block index / number of blocks


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b5", "efficientnet_v2_s"])
def test_norm_layers_stochastic_depth_and_dropout_are_torchvisions(name):
    model = get_model(name, num_classes=10)
    with torch.device("meta"), warnings.catch_warnings():
        tm = torchvision.models.get_model(name, weights=None, num_classes=10)
    _norms_and_depths(model, tm)
    assert model.classifier[0].p == tm.classifier[0].p
    assert model.features[-1][0].out_channels == tm.features[-1][0].out_channels  # last_channel
    model = get_model(name, num_classes=10, stochastic_depth_prob=0.5, dropout=0.1)
    with torch.device("meta"):
        tm = torchvision.models.get_model(name, weights=None, num_classes=10, stochastic_depth_prob=0.5, dropout=0.1)
    _norms_and_depths(model, tm)
    assert model.classifier[0].p == 0.1


def test_init_is_torchvisions():
    names = ("features.2.0.block.1.0.weight", "features.8.0.weight", "features.2.0.block.2.fc1.bias",
             "features.2.0.block.2.fc2.weight", "features.0.1.weight", "features.0.1.bias", "classifier.1.weight",
             "classifier.1.bias")
    f = init_leaves(get_model("efficientnet_b0", num_classes=10), *names)
    std_ok(f["features.2.0.block.1.0.weight"], np.sqrt(2 / (96 * 9)), "depthwise conv, kaiming fan_out")
    std_ok(f["features.8.0.weight"], np.sqrt(2 / 1280), "last conv, kaiming fan_out")
    std_ok(f["features.2.0.block.2.fc2.weight"], np.sqrt(2 / 96), "SE fc2, kaiming fan_out")
    np.testing.assert_array_equal(f["features.2.0.block.2.fc1.bias"], 0.0)
    np.testing.assert_array_equal(f["features.0.1.weight"], 1.0)
    np.testing.assert_array_equal(f["features.0.1.bias"], 0.0)
    w, bound = f["classifier.1.weight"], 1 / np.sqrt(10)  # U(±1/sqrt(out_features))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    std_ok(w, bound / np.sqrt(3), "classifier U(±1/sqrt(out_features))")
    np.testing.assert_array_equal(f["classifier.1.bias"], 0.0)


_SD_MODEL = _small(E, sd_prob=0.8, dropout=0.5)  # shared, so its init compiles once


def test_stochastic_depth_and_dropout_in_training():
    model = _SD_MODEL
    params, state = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 12, 12))
    run = jax.jit(lambda p, s, x, k: model(p, s, x, train=True, key=k)[0])
    a, b = run(params, state, x, jax.random.PRNGKey(2)), run(params, state, x, jax.random.PRNGKey(2))
    c = run(params, state, x, jax.random.PRNGKey(3))
    assert a.shape == (4, 10) and bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_array_equal(a, b)  # deterministic for a key
    assert not np.allclose(a, c)  # and the key matters
    with pytest.raises(ValueError, match="needs a PRNG key"):  # traced only: the error comes before XLA
        jax.eval_shape(lambda p, s, x: model(p, s, x, train=True), params, state, x)


def test_too_small_input_and_bad_settings():
    with pytest.raises(ShapeError, match=r"at least 33×33, got 32×32"):
        get_model("efficientnet_v2_s")({}, {}, jnp.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="should not be empty"):
        E.EfficientNet([], 0.2)
    with pytest.raises(TypeError, match=r"List\[MBConvConfig\]"):
        E.EfficientNet([(1, 3, 1, 32, 16, 1)], 0.2)
    with pytest.raises(ValueError, match="illegal stride value"):
        E.EfficientNet([E.MBConvConfig(1, 3, 3, 32, 16, 1)], 0.2)


def test_fine_tuning_replaces_the_head():
    model = _SD_MODEL
    params, state = model.init(jax.random.PRNGKey(0))
    model, params, state = nn.replace(model, params, state, "classifier.1", nn.Linear(32, 5), jax.random.PRNGKey(1))
    assert model.classifier[1] == nn.Linear(32, 5) and params["classifier"]["1"]["weight"].shape == (5, 32)
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.ones((2, 3, 12, 12)))
    assert y.shape == (2, 5) and bool(jnp.all(jnp.isfinite(y)))
    assert optim.select(params, "classifier.1") == {"classifier.1.weight", "classifier.1.bias"}


def test_weights_file(tmp_path):
    tm = torch_model("efficientnet_b0", num_classes=10)
    torch.save(tm.state_dict(), tmp_path / "b0.pth")
    model, params, state = get_model("efficientnet_b0", weights=str(tmp_path / "b0.pth"), num_classes=10)
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(tm.state_dict())
    assert all(np.array_equal(out[k], to_np(v)) for k, v in tm.state_dict().items())

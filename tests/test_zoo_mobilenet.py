"""torchvision's MobileNetV2 and MobileNetV3 against funcnets' (``funcnets.models.mobilenetv2``,
``mobilenetv3``): strict load and export, float32 eval logits, float64 train/eval/gradients/
buffers on small configurations, structure over width_mult / round_nearest / reduced_tail /
dilated, initialisation, dropout, errors, fine-tuning."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import MobileNetV2, MobileNetV3, get_model
from funcnets.models.mobilenetv3 import InvertedResidualConfig
from zoo_harness import check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, \
    init_leaves, std_ok, torch_weights

_tvm = torchvision.models

# torchvision's min_size is 1×1, where every 3×3/5×5 convolution sees only its centre
# tap; 33×33 keeps odd sizes through the stride-2 stages, so padding and strides count.
CASES = {
    "mobilenet_v2": (33, 2, {}),
    "mobilenet_v3_small": (33, 2, {}),
}
# the same classes as mobilenet_v3_small with the large configuration
STRUCTURE_ONLY = ("mobilenet_v3_large",)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    check_structure_and_weights_both_ways(name)


@settings(max_examples=6, deadline=None)
@given(arch=st.sampled_from(["mobilenet_v3_small", "mobilenet_v3_large"]),
       width_mult=st.sampled_from([0.35, 0.5, 0.75, 1.25]), reduced_tail=st.booleans(), dilated=st.booleans())
def test_v3_options_structure(arch, width_mult, reduced_tail, dilated):
    check_structure_and_weights_both_ways(arch, width_mult=width_mult, reduced_tail=reduced_tail, dilated=dilated)


@settings(max_examples=4, deadline=None)
@given(width_mult=st.sampled_from([0.35, 0.5, 0.75, 1.4]), round_nearest=st.sampled_from([1, 4, 8]))
def test_v2_options_structure(width_mult, round_nearest):
    check_structure_and_weights_both_ways("mobilenet_v2", width_mult=width_mult, round_nearest=round_nearest)


# ------------------------------------------------------------------ float64, small configurations
# V2: expand_ratio 1 and 6, a residual block, width_mult rounding. V3: squeeze-excitation,
# ReLU and Hardswish, no-expansion, dilation replacing a stride, dilated residual.
_V2_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 1, 2]]


def _v3_setting(cls):
    c = lambda *a: cls(*a, width_mult=0.5)  # noqa: E731
    return [c(16, 3, 16, 16, True, "RE", 2, 1), c(16, 3, 64, 24, False, "RE", 2, 1),
            c(24, 5, 72, 40, True, "HS", 2, 2), c(40, 5, 96, 40, True, "HS", 1, 2)]


F64 = {
    "mobilenet_v2_small": (
        9, 2,
        lambda: _tvm.MobileNetV2(10, 0.5, _V2_SETTING, dropout=0.0),
        lambda: MobileNetV2(10, 0.5, _V2_SETTING, dropout=0.0),
    ),
    "mobilenet_v3_small_dilated": (
        9, 2,
        lambda: _tvm.MobileNetV3(_v3_setting(_tvm.mobilenetv3.InvertedResidualConfig), 32, 10, dropout=0.0),
        lambda: MobileNetV3(_v3_setting(InvertedResidualConfig), 32, 10, dropout=0.0),
    ),
}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    check_float64(name, *F64[name])


# ------------------------------------------------------------------ initialisation
def test_init_is_torchvisions():
    f = init_leaves(get_model("mobilenet_v2", num_classes=10), "features.18.0.weight", "features.1.conv.0.0.weight",
                    "features.1.conv.2.weight", "features.1.conv.2.bias", "classifier.1.weight", "classifier.1.bias")
    std_ok(f["features.18.0.weight"], np.sqrt(2 / 1280), "v2 1x1 conv (fan_out)")  # (1280, 320, 1, 1)
    std_ok(f["features.1.conv.0.0.weight"], np.sqrt(2 / (32 * 9)), "v2 depthwise (fan_out)")  # (32, 1, 3, 3)
    np.testing.assert_array_equal(f["features.1.conv.2.weight"], 1.0)
    np.testing.assert_array_equal(f["features.1.conv.2.bias"], 0.0)
    std_ok(f["classifier.1.weight"], 0.01, "v2 linear")
    np.testing.assert_array_equal(f["classifier.1.bias"], 0.0)

    model = get_model("mobilenet_v3_small", num_classes=10)
    f = init_leaves(model, "features.12.0.weight", "features.1.block.1.fc2.weight", "features.1.block.1.fc1.bias",
                    "classifier.0.weight", "classifier.3.bias")
    std_ok(f["features.12.0.weight"], np.sqrt(2 / 576), "v3 last conv")  # (576, 96, 1, 1)
    std_ok(f["features.1.block.1.fc2.weight"], np.sqrt(2 / 16), "v3 SE conv")  # (16, 8, 1, 1)
    np.testing.assert_array_equal(f["features.1.block.1.fc1.bias"], 0.0)  # SE biases zeroed too
    std_ok(f["classifier.0.weight"], 0.01, "v3 linear")
    np.testing.assert_array_equal(f["classifier.3.bias"], 0.0)
    bn = model.features[0][1]
    assert (bn.eps, bn.momentum) == (0.001, 0.01)  # torchvision's V3 BatchNorm


# ------------------------------------------------------------------ dropout, errors, fine-tuning
_TORCH_SMALL = {  # torchvision's small models, whose weights these tests load (no model.init to compile)
    "v2": lambda num_classes=10: _tvm.MobileNetV2(num_classes, 0.5, _V2_SETTING),
    "v3": lambda num_classes=10: _tvm.MobileNetV3(_v3_setting(_tvm.mobilenetv3.InvertedResidualConfig), 32,
                                                  num_classes),
}


@pytest.mark.parametrize("which", ["v2", "v3"])
def test_dropout_in_training_needs_a_key_and_is_deterministic(which):
    if which == "v2":
        model = MobileNetV2(10, 0.5, _V2_SETTING, dropout=0.5)
    else:
        model = MobileNetV3(_v3_setting(InvertedResidualConfig), 32, 10, dropout=0.5)
    params, state = torch_weights(model, _TORCH_SMALL[which])  # no init to compile
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 9, 9))
    f = jax.jit(lambda p, s, x, k: model(p, s, x, train=True, key=k))
    a, sa = f(params, state, x, jax.random.PRNGKey(2))
    b, _ = f(params, state, x, jax.random.PRNGKey(2))
    c, _ = f(params, state, x, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and np.all(np.isfinite(a))
    counts = [int(v) for k, v in torch_io.flatten(sa).items() if k.endswith("num_batches_tracked")]
    assert counts and set(counts) == {1}  # the BatchNorms counted the train step
    with pytest.raises(ValueError, match="key"):  # traced only: the error comes before any computation
        jax.eval_shape(lambda p, s, x: model(p, s, x, train=True), params, state, x)


def test_input_errors():
    with pytest.raises(ShapeError, match=r"at least 1×1, got 0×0"):
        get_model("mobilenet_v2")({}, {}, jnp.zeros((1, 3, 0, 0)))
    with pytest.raises(ShapeError, match=r"expected images \(N, 3, H, W\), got \(1, 1, 8, 8\)"):
        get_model("mobilenet_v3_small")({}, {}, jnp.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="inverted_residual_setting should be non-empty or a 4-element list"):
        MobileNetV2(inverted_residual_setting=[[1, 16, 1]])
    with pytest.raises(TypeError, match="List\\[InvertedResidualConfig\\]"):
        MobileNetV3([[1, 2]], 16)
    with pytest.raises(TypeError, match="unexpected keyword"):
        get_model("mobilenet_v3_small", widht_mult=0.5)  # torchvision ignores typos; this says so


@pytest.mark.parametrize("which", ["v2", "v3"])
def test_fine_tuning_replaces_the_head(which):
    if which == "v2":
        model, head, n_in = MobileNetV2(1000, 0.5, _V2_SETTING), "classifier.1", 1280
    else:
        model, head, n_in = MobileNetV3(_v3_setting(InvertedResidualConfig), 32, 1000), "classifier.3", 32
    params, state = torch_weights(model, lambda: _TORCH_SMALL[which](1000))  # pretrained; no init to compile
    model, params, state = nn.replace(model, params, state, head, nn.Linear(n_in, 10), jax.random.PRNGKey(1))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.ones((2, 3, 9, 9)))
    assert y.shape == (2, 10)
    assert optim.select(params, head) == {f"{head}.weight", f"{head}.bias"}


def test_weights_file(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = _tvm.mobilenet_v3_small(num_classes=10, width_mult=0.5, reduced_tail=True).eval()
    torch.save(tm.state_dict(), tmp_path / "m.pth")
    model, params, state = get_model("mobilenet_v3_small", weights=str(tmp_path / "m.pth"), num_classes=10,
                                     width_mult=0.5, reduced_tail=True)
    out = torch_io.state_dict(model, params, state)
    assert all(np.array_equal(out[k], v.numpy()) for k, v in tm.state_dict().items())

"""torchvision's ShuffleNetV2 against funcnets' (``funcnets.models.shufflenetv2``): strict load
and export, float32 eval logits, float64 train/eval/gradients/buffers on a small
configuration, channel_shuffle, torch's default initialisation, errors, fine-tuning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st
from torchvision.models.shufflenetv2 import channel_shuffle as t_channel_shuffle

from funcnets import nn, optim
from funcnets.errors import ShapeError
from funcnets.models import ShuffleNetV2, get_model
from funcnets.models.shufflenetv2 import InvertedResidual, channel_shuffle
from zoo_harness import check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, \
    init_leaves, std_ok

_tvm = torchvision.models

# min_size is 1×1 (every 3×3 conv reduced to its centre tap); 33×33 keeps odd sizes
CASES = {"shufflenet_v2_x0_5": (33, 2, {})}
# the same classes with wider stages
STRUCTURE_ONLY = ("shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0")


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    check_structure_and_weights_both_ways(name)


F64 = {  # two stride-1 units in stage2, odd sizes (9 -> 5 -> 3 -> 2 -> 1 -> 1)
    "shufflenet_small": (9, 2, lambda: _tvm.ShuffleNetV2([2, 1, 1], [8, 16, 32, 64, 128], num_classes=10),
                         lambda: ShuffleNetV2([2, 1, 1], [8, 16, 32, 64, 128], num_classes=10)),
}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    check_float64(name, *F64[name])


@settings(max_examples=10, deadline=None)
@given(groups=st.sampled_from([1, 2, 3, 4]), per=st.integers(1, 4), h=st.integers(1, 3))
def test_channel_shuffle(groups, per, h):
    x = np.random.default_rng(0).standard_normal((2, groups * per, h, 2), dtype=np.float32)
    np.testing.assert_array_equal(channel_shuffle(jnp.asarray(x), groups), t_channel_shuffle(torch.from_numpy(x),
                                                                                              groups).numpy())


def test_init_is_torch_default():
    model = get_model("shufflenet_v2_x0_5", num_classes=10)
    f = init_leaves(model, "conv5.0.weight", "stage3.0.branch1.0.weight", "fc.bias", "conv1.1.weight", "conv1.1.bias")
    w, bound = np.asarray(f["conv5.0.weight"]), 1 / np.sqrt(192)  # (1024, 192, 1, 1): U(±1/sqrt(fan_in))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    std_ok(w, bound / np.sqrt(3), "conv5")
    dw = np.asarray(f["stage3.0.branch1.0.weight"])  # depthwise (48, 1, 3, 3): fan_in = 9
    assert np.abs(dw).max() <= 1 / 3 and np.abs(dw).max() > 0.9 / 3
    b = np.asarray(f["fc.bias"])
    assert np.abs(b).max() <= 1 / 32 and np.abs(b).max() > 0.5 / 32
    np.testing.assert_array_equal(f["conv1.1.weight"], 1.0)
    np.testing.assert_array_equal(f["conv1.1.bias"], 0.0)


def test_errors_and_fine_tuning():
    with pytest.raises(ShapeError, match=r"at least 1×1, got 0×0"):
        get_model("shufflenet_v2_x0_5")({}, {}, jnp.zeros((1, 3, 0, 0)))
    with pytest.raises(ValueError, match="expected stages_repeats as list of 3 positive ints"):
        ShuffleNetV2([4, 8], [24, 48, 96, 192, 1024])
    with pytest.raises(ValueError, match="If stride == 1 then inp should be equal to oup // 2 << 1"):
        InvertedResidual(10, 12, 1)
    model = ShuffleNetV2([2, 1, 1], [8, 16, 32, 64, 128], num_classes=1000)
    params, state = model.init(jax.random.PRNGKey(0))
    model, params, state = nn.replace(model, params, state, "fc", nn.Linear(128, 10), jax.random.PRNGKey(1))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.ones((2, 3, 9, 9)))
    assert y.shape == (2, 10) and np.all(np.isfinite(y))
    assert optim.select(params, "fc") == {"fc.weight", "fc.bias"}

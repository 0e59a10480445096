"""torchvision's RegNet X and Y against funcnets' (``funcnets.models.regnet``), with
tests/zoo_harness.py's checks: strict load, float32 eval logits and export back for the
400MF models; structure and weights both ways for the larger ones; float64
eval/train/gradients/buffers for a small RegNet Y (squeeze-excitation, grouped 3×3)
built from the classes.

torchvision's RegNet builders compute their stage widths with torch tensors, which fails
on the meta device the harness builds torchvision models on ("Cannot copy out of meta
tensor"); the ``_block_params_on_cpu`` fixture runs that one computation on the CPU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models.regnet import BlockParams, RegNet
from helpers import assert_close, to_np
from zoo_harness import (
    check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, init_leaves, std_ok,
)

_tvr = torchvision.models.regnet

# name: (input side, batch, kwargs); torchvision's min_size is 1×1, 32 leaves 2×2 in block3
CASES = {
    "regnet_x_400mf": (32, 2, {}),
    "regnet_y_400mf": (32, 2, {}),
}
# the same classes with other BlockParams (every stage width, depth and group count is
# in the checked shapes)
STRUCTURE_ONLY = (
    "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf",
    "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf",
    "regnet_y_128gf",
)
# Over 100M parameters (regnet_y_128gf has 638M: 2.5 GB of random weights, copied on the
# way in and out) the weights round trip would dominate the file's time and memory, so
# these get names, shapes and order only; their siblings run the same naming code with
# weights both ways
_SHAPES_ONLY = ("regnet_x_32gf", "regnet_y_32gf", "regnet_y_128gf")


def _small_params(bp):
    return bp(depths=[1, 2], widths=[16, 32], group_widths=[8, 8], bottleneck_multipliers=[1.0, 1.0],
              strides=[2, 2], se_ratio=0.25)


F64 = {  # name: (input side, batch, torchvision model, funcnets model)
    "regnet_y_small": (
        16, 2, lambda: _tvr.RegNet(_small_params(_tvr.BlockParams), num_classes=10, stem_width=8),
        lambda: RegNet(_small_params(BlockParams), num_classes=10, stem_width=8),
    ),
}


@pytest.fixture(autouse=True)
def _block_params_on_cpu(monkeypatch):
    original = _tvr.BlockParams.from_init_params.__func__

    def from_init_params(cls, *args, **kwargs):
        with torch.device("cpu"):
            return original(cls, *args, **kwargs)

    monkeypatch.setattr(_tvr.BlockParams, "from_init_params", classmethod(from_init_params))


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    if name not in _SHAPES_ONLY:
        check_structure_and_weights_both_ways(name)
        return
    with torch.device("meta"):
        meta = torchvision.models.get_model(name, weights=None, num_classes=10)
    template = torch_io._template(get_model(name, num_classes=10))
    assert list(template) == list(meta.state_dict())
    assert {k: s for k, (_, s) in template.items()} == {k: tuple(v.shape) for k, v in meta.state_dict().items()}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    size, batch, torch_factory, our_factory = F64[name]
    check_float64(name, size, batch, torch_factory, our_factory)


def test_block_params_equal_torchvisions():
    for kw in (dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),
               dict(depth=27, w_0=456, w_a=160.83, w_m=2.52, group_width=264, se_ratio=0.25),
               dict(depth=10, w_0=16, w_a=7.5, w_m=2.0, group_width=12, bottleneck_multiplier=2.0)):
        ours, theirs = BlockParams.from_init_params(**kw), _tvr.BlockParams.from_init_params(**kw)
        for f in ("depths", "widths", "group_widths", "bottleneck_multipliers", "strides", "se_ratio"):
            ref = getattr(theirs, f)
            assert getattr(ours, f) == (tuple(ref) if isinstance(ref, list) else ref), (kw, f)
    with pytest.raises(ValueError, match="Invalid RegNet settings"):
        BlockParams.from_init_params(depth=4, w_0=20, w_a=1.0, w_m=2.0, group_width=8)


# ------------------------------------------------------------------ initialisation
def test_init_is_torchvisions():
    b3 = "trunk_output.block3.block3-0"
    f = init_leaves(get_model("regnet_y_400mf", num_classes=10), "stem.0.weight", f"{b3}.f.b.0.weight",
                    f"{b3}.f.a.1.weight", f"{b3}.f.a.1.bias", f"{b3}.f.se.fc2.weight", f"{b3}.f.se.fc2.bias",
                    "fc.weight", "fc.bias")
    std_ok(f["stem.0.weight"], math.sqrt(2 / (9 * 32)), "stem conv")  # N(0, 2 / (k·k·out))
    w = f[f"{b3}.f.b.0.weight"]  # grouped: fan_out counts all out_channels
    std_ok(w, math.sqrt(2 / (9 * w.shape[0])), "grouped conv")
    np.testing.assert_array_equal(f[f"{b3}.f.a.1.weight"], 1.0)
    np.testing.assert_array_equal(f[f"{b3}.f.a.1.bias"], 0.0)
    std_ok(f[f"{b3}.f.se.fc2.weight"], math.sqrt(2 / f[f"{b3}.f.se.fc2.weight"].shape[0]), "SE conv")
    bound = 1 / math.sqrt(f[f"{b3}.f.se.fc2.weight"].shape[1])  # SE bias: torch's default
    assert 0.8 * bound < np.abs(f[f"{b3}.f.se.fc2.bias"]).max() <= bound
    std_ok(f["fc.weight"], 0.01, "fc")
    np.testing.assert_array_equal(f["fc.bias"], 0.0)


# ------------------------------------------------------------------ errors, fine-tuning
def test_errors_and_finetune_head_selects_only_head():
    """A 0×0 image fails with the size it needs; the head replaced as the tutorial does
    (``model.fc = nn.Linear(32, 3)``) runs, ``optim.select`` picks only it, and the weights
    load into torchvision's model with the same head (same logits)."""
    model = F64["regnet_y_small"][3]()
    with pytest.raises(ShapeError, match=r"accepts images of at least 1×1, got 0×0"):
        model({}, {}, jnp.zeros((1, 3, 0, 0)))
    assert get_model("regnet_x_400mf", stem_width=16).stem[0].out_channels == 16
    torch.manual_seed(0)
    tm = _tvr.RegNet(_small_params(_tvr.BlockParams), num_classes=10, stem_width=8).eval()
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())  # no init to compile
    model, params, state = nn.replace(model, params, state, "fc", nn.Linear(32, 3), jax.random.PRNGKey(1))
    assert optim.select(params, "fc") == {"fc.weight", "fc.bias"}
    x = torch.randn(2, 3, 8, 8)
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x)))
    assert y.shape == (2, 3)
    tm.fc = torch.nn.Linear(32, 3)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in torch_io.state_dict(model, params, state).items()},
                       strict=True)
    with torch.no_grad():
        assert_close(y, to_np(tm(x)), 1e-4, "fine-tuned logits")

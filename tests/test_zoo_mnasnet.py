"""torchvision's MNASNet against funcnets' (``funcnets.models.mnasnet``): strict load and
export, float32 eval logits, float64 train/eval/gradients/buffers (BatchNorm momentum
1 − 0.9997), depths over alpha, initialisation, version-1 checkpoints, dropout, errors,
fine-tuning.

torchvision's ``MNASNet.load_state_dict`` refuses a state_dict without ``_metadata``
(``version should be set to 1 or 2 instead of None``); funcnets exports plain arrays, so
the fixture below attaches version 2 — what a user does — before torchvision loads them.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st
from torchvision.models.mnasnet import MNASNet as TMNASNet

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import MNASNet, get_model
from helpers import assert_close, to_np
from zoo_harness import check_float32_parity_and_export, check_float64, check_structure_and_weights_both_ways, \
    init_leaves, randomise_bn, std_ok, torch_weights

_tvm = torchvision.models

# min_size is 1×1 (every 3×3/5×5 conv reduced to its centre tap); 33×33 keeps odd sizes
CASES = {"mnasnet0_5": (33, 2, {})}
# the same classes with another alpha
STRUCTURE_ONLY = ("mnasnet0_75", "mnasnet1_0", "mnasnet1_3")


@pytest.fixture
def version_metadata(monkeypatch):
    load = TMNASNet.load_state_dict

    def with_version(self, state_dict, *args, **kwargs):
        if getattr(state_dict, "_metadata", None) is None:
            state_dict = OrderedDict(state_dict)
            state_dict._metadata = {"": {"version": 2}}
        return load(self, state_dict, *args, **kwargs)

    monkeypatch.setattr(TMNASNet, "load_state_dict", with_version)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name, version_metadata):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name, version_metadata):
    check_structure_and_weights_both_ways(name)


@settings(max_examples=8, deadline=None)
@given(alpha=st.floats(0.1, 2.0))
def test_depths_for_any_alpha(alpha):
    from torchvision.models.mnasnet import _get_depths as t_depths

    from funcnets.models.mnasnet import _get_depths

    assert _get_depths(alpha) == t_depths(alpha)
    with torch.device("meta"):
        meta = TMNASNet(alpha, num_classes=10)
    shapes = {k: s for k, (_, s) in torch_io._template(MNASNet(alpha, num_classes=10)).items()}
    assert shapes == {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    assert list(shapes) == list(meta.state_dict())


F64 = {  # the smallest depths (every stage at 8-16 channels), all the blocks
    "mnasnet_alpha_0.25": (9, 2, lambda: TMNASNet(0.25, num_classes=10, dropout=0.0),
                           lambda: MNASNet(0.25, num_classes=10, dropout=0.0)),
}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    check_float64(name, *F64[name])


def test_init_is_torchvisions():
    model = get_model("mnasnet0_5", num_classes=10)
    assert all(m.momentum == pytest.approx(0.0003) for _, m in model.named_modules() if isinstance(m, nn.BatchNorm2d))
    f = init_leaves(model, "layers.14.weight", "layers.10.1.layers.3.weight", "layers.15.weight", "layers.15.bias",
                    "classifier.1.weight", "classifier.1.bias")
    std_ok(f["layers.14.weight"], np.sqrt(2 / 1280), "1x1 conv (fan_out)")  # (1280, 160, 1, 1)
    std_ok(f["layers.10.1.layers.3.weight"], np.sqrt(2 / (240 * 25)), "5x5 depthwise (fan_out)")  # (240, 1, 5, 5)
    np.testing.assert_array_equal(f["layers.15.weight"], 1.0)
    np.testing.assert_array_equal(f["layers.15.bias"], 0.0)
    w, bound = np.asarray(f["classifier.1.weight"]), np.sqrt(3 / 10)  # kaiming_uniform_(fan_out, sigmoid)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    std_ok(w, bound / np.sqrt(3), "classifier")
    np.testing.assert_array_equal(f["classifier.1.bias"], 0.0)


def test_weights_files_version_2_and_version_1(tmp_path):
    # version 2 (torchvision's files): loads as it is
    torch.manual_seed(0)
    tm = randomise_bn(_tvm.mnasnet0_75(num_classes=10)).eval()
    torch.save(tm.state_dict(), tmp_path / "v2.pth")
    model, params, state = get_model("mnasnet0_75", weights=str(tmp_path / "v2.pth"), num_classes=10)
    assert model.version == 2
    out = torch_io.state_dict(model, params, state)
    assert all(np.array_equal(out[k], v.numpy()) for k, v in tm.state_dict().items())

    # version 1 (old fixed 32/32/16 stem): torchvision patches its model and warns; so does funcnets
    old = MNASNet(0.5, num_classes=10, version=1)
    params, state = old.init(jax.random.PRNGKey(0))
    sd = OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in torch_io.state_dict(old, params, state).items())
    for k, v in sd.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
        elif k.endswith("running_mean"):
            v.uniform_(-0.1, 0.1)
    sd._metadata = {"": {"version": 1}}
    assert sd["layers.0.weight"].shape[0] == 32
    torch.save(sd, tmp_path / "v1.pth")
    tm = _tvm.mnasnet0_5(num_classes=10)
    with pytest.warns(UserWarning, match="A new version of MNASNet"):
        tm.load_state_dict(torch.load(tmp_path / "v1.pth", weights_only=True))
    with pytest.warns(UserWarning, match="A new version of MNASNet"):
        model, params, state = get_model("mnasnet0_5", weights=str(tmp_path / "v1.pth"), num_classes=10)
    assert model.version == 1
    x = torch.randn(1, 3, 17, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = to_np(tm.eval()(x))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x)))
    assert_close(y, ref, 1e-4, "version-1 checkpoint")


def test_dropout_errors_and_fine_tuning():
    model = MNASNet(0.25, num_classes=1000, dropout=0.5)
    params, state = torch_weights(model, lambda: TMNASNet(0.25, num_classes=1000))  # no init to compile
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 9, 9))
    f = jax.jit(lambda p, s, x, k: model(p, s, x, train=True, key=k)[0])
    a, b, c = (f(params, state, x, jax.random.PRNGKey(k)) for k in (2, 2, 3))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and np.all(np.isfinite(a))
    with pytest.raises(ValueError, match="key"):
        jax.eval_shape(lambda p, s, x: model(p, s, x, train=True), params, state, x)
    with pytest.raises(ShapeError, match=r"at least 1×1, got 0×0"):
        model(params, state, jnp.zeros((1, 3, 0, 0)))
    with pytest.raises(ValueError, match="alpha should be greater than 0.0 instead of 0"):
        MNASNet(0.0)

    model, params, state = nn.replace(model, params, state, "classifier.1", nn.Linear(1280, 10),
                                      jax.random.PRNGKey(4))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, x)
    assert y.shape == (2, 10)
    assert optim.select(params, "classifier.1") == {"classifier.1.weight", "classifier.1.bias"}


def test_torchvision_refuses_plain_state_dicts():
    # why the fixture exists: a plain dict has no version for torchvision's MNASNet
    with warnings.catch_warnings(), torch.device("meta"):
        tm = TMNASNet(0.5, num_classes=10)
    with pytest.raises(ValueError, match="version should be set to 1 or 2 instead of None"):
        tm.load_state_dict(dict(tm.state_dict()))

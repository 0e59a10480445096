"""torchvision's classification models against funcnets' (``funcnets.models.get_model``).

One harness over every name in ``list_models()``: torchvision's ``weights=None`` model
(fixed seed, BatchNorm statistics randomised so eval mode tests more than the identity)
loads strictly into the funcnets model; eval logits agree within 1e-4 (float32) at the
smallest input the architecture accepts (torchvision's ``meta["min_size"]``); the
weights exported back load into torchvision with ``strict=True`` and give the same
logits. One model per family also runs in float64: eval and train logits (1e-9), every
parameter gradient (1e-8) of a fixed random linear functional of the logits (not a loss
through train-mode BatchNorm, which is ill-conditioned, DESIGN.md), and the BatchNorm
buffers after the train step. Initialisation is checked statistically per family.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets import FuncnetsError, torch_io
from funcnets.errors import ShapeError
from funcnets import models as M
from funcnets.models import get_model, list_models
from funcnets.models._registry import _TORCHVISION_CLASSIFICATION
from helpers import assert_close, to_np
from zoo_harness import (
    check_float32_parity_and_export, check_float64, check_grads, check_structure_and_weights_both_ways, init_leaves,
    randomise_bn, std_ok, torch_model,
)

# Full parity (strict load, float32 eval logits, export back to torchvision): one or two
# models per family, at torchvision's meta["min_size"]. name: (input side, batch, kwargs)
CASES = {
    "alexnet": (63, 2, {}),
    "resnet18": (32, 2, {}),
    "vgg11": (32, 2, {}),
    "vgg11_bn": (32, 1, {}),
    "squeezenet1_0": (21, 2, {}),
    "squeezenet1_1": (17, 2, {}),
    "densenet121": (29, 2, {}),
    "googlenet": (15, 2, {"init_weights": True}),
}
# The large variants differ from a fully tested sibling only in configuration (VGG's
# cfg, DenseNet's growth rate and block counts, ResNet's block counts), and compiling
# each costs 3-10 s of CPU; for them the test is the structure (every state_dict name,
# shape and torch's order), torchvision's weights loading strictly and going back.
STRUCTURE_ONLY = (
    "resnet34", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "densenet161", "densenet169",
    "densenet201",
)


def test_list_models_are_torchvision_names():
    ours = list_models()
    assert ours == sorted(ours) and set(ours) <= set(torchvision.models.list_models(module=torchvision.models))
    assert list(_TORCHVISION_CLASSIFICATION) == torchvision.models.list_models(module=torchvision.models)
    covered = {}
    for path in sorted(Path(__file__).parent.glob("test_zoo*.py")):  # one file per family
        mod = sys.modules[__name__] if path.stem == __name__ else importlib.import_module(path.stem)
        for n in [*getattr(mod, "CASES", {}), *getattr(mod, "STRUCTURE_ONLY", ())]:
            assert n not in covered, f"{n} is tested in both {covered[n]} and {path.name}"
            covered[n] = path.name
    assert set(ours) == set(covered), f"without a parity case in tests/test_zoo*.py: {set(ours) - set(covered)}"


def test_unknown_names_list_close_matches():
    with pytest.raises(ValueError, match=r"unknown model name 'vgg17'\. Close matches: .*vgg16"):
        get_model("vgg17")
    for name in sorted(set(_TORCHVISION_CLASSIFICATION) - set(list_models()))[:1]:  # while any remain
        with pytest.raises(ValueError, match=rf"'{name}' is a torchvision model that funcnets does not implement yet"):
            get_model(name)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    check_structure_and_weights_both_ways(name)


# ------------------------------------------------------------------ float64, one per family
# Dropout off in both libraries so train mode is deterministic. DenseNet and VGG use a
# small member of the family (the same classes with a smaller configuration) to keep
# the float64 backward cheap. name: (input side, batch, torchvision model, funcnets model)
_tvm = torchvision.models
F64 = {
    "alexnet": (63, 2, lambda: _tvm.alexnet(num_classes=10, dropout=0.0), lambda: M.alexnet(num_classes=10, dropout=0.0)),
    "vgg_bn_small": (
        32, 3,
        lambda: _tvm.VGG(_tvm.vgg.make_layers([16, "M", 32, "M", 512, "M"], True), num_classes=10, dropout=0.0),
        lambda: M.VGG(M.vgg.make_layers((16, "M", 32, "M", 512, "M"), True), num_classes=10, dropout=0.0),
    ),
    "squeezenet1_1": (17, 2, lambda: _tvm.squeezenet1_1(num_classes=10, dropout=0.0),
                      lambda: M.squeezenet1_1(num_classes=10, dropout=0.0)),
    "densenet_small": (  # memory_efficient: torch's checkpointing, jax.checkpoint here
        29, 2,
        lambda: _tvm.DenseNet(8, (2, 3, 2, 2), 16, bn_size=2, num_classes=10, memory_efficient=True),
        lambda: M.DenseNet(8, (2, 3, 2, 2), 16, bn_size=2, num_classes=10, memory_efficient=True),
    ),
    # train mode returns (logits, aux_logits2, aux_logits1); its gradient through the whole
    # network takes a minute to compile, so the gradients are checked per block below
    "googlenet": (
        15, 2,
        lambda: _tvm.googlenet(num_classes=10, init_weights=True, transform_input=True, dropout=0.0, dropout_aux=0.0),
        lambda: M.googlenet(num_classes=10, init_weights=True, transform_input=True, dropout=0.0, dropout_aux=0.0),
    ),
}


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    size, batch, torch_factory, our_factory = F64[name]
    # googlenet's gradient through the whole network takes a minute to compile: its
    # gradients are checked per block below
    check_float64(name, size, batch, torch_factory, our_factory, grads=name != "googlenet")


@pytest.mark.parametrize("block", ["Inception", "InceptionAux"])
def test_googlenet_blocks_float64_gradients(block, x64):
    from torchvision.models.googlenet import Inception as TInception, InceptionAux as TInceptionAux

    from funcnets.models.googlenet import Inception, InceptionAux

    torch.manual_seed(0)
    if block == "Inception":
        tm, model = TInception(16, 4, 4, 8, 2, 4, 4), Inception(16, 4, 4, 8, 2, 4, 4)
    else:
        tm, model = TInceptionAux(16, 10, dropout=0.0), InceptionAux(16, 10, dropout=0.0)
    tm = randomise_bn(tm.double()).train()
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = tm(x)
    w = torch.randn(y.shape, dtype=torch.float64)
    (y * w).sum().backward()
    f = lambda p: jnp.sum(model(p, state, jnp.asarray(to_np(x)), train=True)[0] * jnp.asarray(to_np(w)))  # noqa: E731
    check_grads(block, jax.jit(jax.grad(f))(params), tm)


# ------------------------------------------------------------------ initialisation
def test_vgg_init_is_torchvisions():
    model = get_model("vgg11_bn", num_classes=10)
    f = init_leaves(model, "features.4.weight", "features.4.bias", "features.5.weight", "features.5.bias",
                     "classifier.6.weight", "classifier.6.bias")
    w = f["features.4.weight"]  # (128, 64, 3, 3): kaiming_normal_, fan_out = 128 * 9
    std_ok(w, np.sqrt(2 / (128 * 9)), "conv")
    np.testing.assert_array_equal(f["features.4.bias"], 0.0)
    np.testing.assert_array_equal(f["features.5.weight"], 1.0)
    np.testing.assert_array_equal(f["features.5.bias"], 0.0)
    std_ok(f["classifier.6.weight"], 0.01, "linear")  # (10, 4096)
    np.testing.assert_array_equal(f["classifier.6.bias"], 0.0)
    # init_weights=False: torch's default U(±1/sqrt(fan_in))
    b = init_leaves(get_model("vgg11", num_classes=10, init_weights=False), "features.3.bias")["features.3.bias"]
    assert np.abs(b).max() <= 1 / np.sqrt(64 * 9) and np.abs(b).max() > 0.5 / np.sqrt(64 * 9)


def test_alexnet_init_is_torch_default():
    w = init_leaves(get_model("alexnet", num_classes=10), "features.3.weight")["features.3.weight"]  # (192, 64, 5, 5)
    bound = 1 / np.sqrt(64 * 25)
    assert np.abs(w).max() <= bound
    std_ok(w, bound / np.sqrt(3), "U(±1/sqrt(fan_in))")


def test_squeezenet_densenet_googlenet_init_are_torchvisions():
    f = init_leaves(get_model("squeezenet1_1", num_classes=10), "features.6.expand3x3.weight",
                     "classifier.1.weight", "features.3.squeeze.bias")
    w = np.asarray(f["features.6.expand3x3.weight"])  # (128, 32, 3, 3): kaiming_uniform_, a=0
    bound = np.sqrt(6 / (32 * 9))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    std_ok(w, bound / np.sqrt(3), "squeezenet kaiming_uniform")
    std_ok(f["classifier.1.weight"], 0.01, "squeezenet final conv")
    np.testing.assert_array_equal(f["features.3.squeeze.bias"], 0.0)

    f = init_leaves(get_model("densenet121", num_classes=10), "features.denseblock2.denselayer3.conv2.weight",
                     "features.norm5.weight", "classifier.bias", "classifier.weight")
    std_ok(f["features.denseblock2.denselayer3.conv2.weight"], np.sqrt(2 / (128 * 9)), "densenet conv (fan_in)")
    np.testing.assert_array_equal(f["features.norm5.weight"], 1.0)
    np.testing.assert_array_equal(f["classifier.bias"], 0.0)
    cw = np.asarray(f["classifier.weight"])  # torch's default U(±1/sqrt(1024))
    assert np.abs(cw).max() <= 1 / 32 and np.abs(cw).max() > 0.99 / 32

    f = init_leaves(get_model("googlenet", num_classes=10), "inception4a.branch2.1.conv.weight", "aux1.fc1.weight",
                     "fc.weight", "conv1.bn.weight", "aux1.fc1.bias")
    for k in ("inception4a.branch2.1.conv.weight", "aux1.fc1.weight", "fc.weight"):
        std_ok(f[k], 0.01, f"googlenet {k}")  # trunc_normal_(0, 0.01, -2, 2): cut at 200 sigma
    np.testing.assert_array_equal(f["conv1.bn.weight"], 1.0)
    assert np.abs(np.asarray(f["aux1.fc1.bias"])).max() <= 1 / np.sqrt(2048)  # torch's default bias
    f = init_leaves(get_model("googlenet", num_classes=10, init_weights=False), "fc.weight")
    assert np.abs(np.asarray(f["fc.weight"])).max() > 0.99 / 32  # torch's default U(±1/sqrt(1024))


def test_densenet_old_names_and_googlenet_aux_in_weights_files(tmp_path):
    tm = torch_model("densenet121", num_classes=10).eval()
    old = {}
    for k, v in tm.state_dict().items():  # torchvision's download files name norm1 "norm.1"
        old[k if k.endswith("num_batches_tracked") else k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")] = v
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "d.pth")
    model, params, state = get_model("densenet121", weights=str(tmp_path / "d.pth"), num_classes=10)
    x = torch.randn(1, 3, 29, 29)
    with torch.no_grad():
        assert_close(jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x)))[0],
                     to_np(tm(x)), 1e-4, "densenet from old names")
    # googlenet: torchvision's file has the aux heads; without aux_logits=True they are dropped
    tg = torch_model("googlenet", num_classes=10, init_weights=True)
    torch_io.save_file(tmp_path / "g.safetensors", {k: to_np(v) for k, v in tg.state_dict().items()})
    model, params, state = get_model("googlenet", weights=str(tmp_path / "g.safetensors"), num_classes=10)
    assert model.aux1 is None and model.transform_input and "aux1" not in params
    model, params, state = get_model("googlenet", weights=str(tmp_path / "g.safetensors"), num_classes=10,
                                     aux_logits=True)
    assert "aux2" in params


# ------------------------------------------------------------------ weights files, errors
def test_weights_file_and_errors(tmp_path):
    tm = torch_model("squeezenet1_1")
    path = tmp_path / "squeezenet1_1.pth"
    torch.save(tm.state_dict(), path)
    model, params, state = get_model("squeezenet1_1", weights=str(path))
    x = torch.randn(1, 3, 17, 17)
    with torch.no_grad():
        assert_close(model(params, state, jnp.asarray(to_np(x)))[0], to_np(tm.eval()(x)), 1e-4, "pretrained")
    with pytest.raises(FuncnetsError, match=r"classifier\.1\.weight: expected shape \(10, 512, 1, 1\)"):
        get_model("squeezenet1_1", weights=str(path), num_classes=10)
    with pytest.raises(FileNotFoundError, match=r"torchvision.models.vgg16\(weights='DEFAULT'\)"):
        get_model("vgg16", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ShapeError, match=r"at least 17×17, got 16×16"):
        model(params, state, jnp.zeros((1, 3, 16, 16)))
    with pytest.raises(ShapeError, match=r"at least 63×63, got 62×62"):
        get_model("alexnet")({}, {}, jnp.zeros((1, 3, 62, 62)))

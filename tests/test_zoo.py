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

import warnings

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
from funcnets.torch_io import flatten
from helpers import assert_close, to_np

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


def _torch_model(name: str, dtype=torch.float32, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet's init_weights notice
        tm = torchvision.models.get_model(name, weights=None, **kwargs).to(dtype)
    return _randomise_bn(tm)


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


def test_list_models_are_torchvision_names():
    ours = list_models()
    assert ours == sorted(ours) and set(ours) <= set(torchvision.models.list_models(module=torchvision.models))
    assert list(_TORCHVISION_CLASSIFICATION) == torchvision.models.list_models(module=torchvision.models)
    assert set(ours) == set(CASES) | set(STRUCTURE_ONLY), "every registered model needs a parity case here"


def test_unknown_names_list_close_matches():
    with pytest.raises(ValueError, match=r"unknown model name 'vgg17'\. Close matches: .*vgg16"):
        get_model("vgg17")
    with pytest.raises(ValueError, match=r"'resnet50' is a torchvision model that funcnets does not implement yet"):
        get_model("resnet50")


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    tm = _torch_model(name, num_classes=10, **kwargs).eval()
    sd = tm.state_dict()
    model = get_model(name, num_classes=10, **kwargs)
    params, state, missing, unexpected = torch_io.load_state_dict(model, sd)  # strict
    assert list(torch_io._template(model)) == list(sd)  # names, and torch's order
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = to_np(_logits(tm(x)))
    y, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x)))
    assert y.shape == (batch, 10)
    assert_close(y, ref, 1e-4, f"{name} eval logits")
    # back to torchvision: strict load, the same logits
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(sd)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        back = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()}, strict=True, assign=True)
    with torch.no_grad():
        np.testing.assert_array_equal(to_np(_logits(back.eval()(x))), ref)


@pytest.mark.parametrize("name", STRUCTURE_ONLY)
def test_structure_and_weights_both_ways(name):
    model = get_model(name, num_classes=10)
    with torch.device("meta"):
        meta = torchvision.models.get_model(name, weights=None, num_classes=10)
    assert list(torch_io._template(model)) == list(meta.state_dict())  # names, in torch's order
    shapes = {k: v for k, (_, v) in torch_io._template(model).items()}
    assert shapes == {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    # values both ways: a random state_dict in, the same arrays out, strict in torchvision
    rng = np.random.default_rng(0)
    sd = {k: (np.full(s, 3, np.int64) if k.endswith("num_batches_tracked") else
              rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()}
    params, state, *_ = torch_io.load_state_dict(model, sd)
    out = torch_io.state_dict(model, params, state)
    assert list(out) == list(sd) and all(np.array_equal(out[k], sd[k]) for k in sd)
    meta.load_state_dict({k: torch.from_numpy(v) for k, v in out.items()}, strict=True, assign=True)


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


def _check_grads(name, grads, tm):
    flat_g = flatten(grads)
    ref_g = {n: to_np(p.grad) for n, p in tm.named_parameters()}
    assert set(flat_g) == set(ref_g)
    # a conv bias before a train-mode BatchNorm has gradient 0 up to rounding (~1e-15):
    # its error is measured against 1e-6 of the largest gradient instead of its own
    floor = 1e-6 * max(np.abs(g).max() for g in ref_g.values())
    for n, g in ref_g.items():
        err = np.abs(np.asarray(flat_g[n]) - g).max() / max(np.abs(g).max(), floor)
        assert err <= 1e-8, f"{name} grad {n}: relative error {err:.3e}"


def _randomise_bn(tm):
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return tm


@pytest.mark.parametrize("name", list(F64))
def test_float64_train_eval_gradients_buffers(name, x64):
    size, batch, torch_model, our_model = F64[name]
    torch.manual_seed(0)
    tm = _randomise_bn(torch_model().double())
    model = our_model()
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 3, size, size, dtype=torch.float64, generator=gen)
    xj = jnp.asarray(to_np(x))
    with torch.no_grad():
        ref_eval = to_np(_logits(tm.eval()(x)))
    y_eval, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, xj)
    assert_close(y_eval, ref_eval, 1e-9, f"{name} float64 eval logits")

    tm.train()
    outs = tm(x)
    outs = tuple(outs) if isinstance(outs, tuple) else (outs,)
    # buffers before backward: torch's checkpointing (memory_efficient) runs the
    # BatchNorms a second time in the backward pass and updates their statistics twice
    ref_buffers = {n: to_np(b).copy() for n, b in tm.named_buffers()}
    weights = [torch.randn(o.shape, dtype=torch.float64, generator=gen) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()

    def functional(p, s):
        y, new = model(p, s, xj, train=True)
        ys = tuple(y) if isinstance(y, tuple) else (y,)
        return sum(jnp.sum(o * jnp.asarray(to_np(w))) for o, w in zip(ys, weights)), (ys, new)

    if name == "googlenet":
        grads, (ys, new_state) = None, jax.jit(lambda p, s: functional(p, s)[1])(params, state)
    else:
        grads, (ys, new_state) = jax.jit(jax.grad(functional, has_aux=True))(params, state)
    assert len(ys) == len(outs)
    for i, (o, r) in enumerate(zip(ys, outs)):
        assert_close(o, to_np(r), 1e-9, f"{name} float64 train output {i}")
    if grads is not None:
        _check_grads(name, grads, tm)
    flat_s = flatten(new_state)
    assert set(flat_s) == set(ref_buffers)
    for n, b in ref_buffers.items():
        if b.dtype == np.int64:
            np.testing.assert_array_equal(flat_s[n], b, err_msg=n)
        else:
            assert_close(flat_s[n], b, 1e-9, f"{name} buffer {n}")


@pytest.mark.parametrize("block", ["Inception", "InceptionAux"])
def test_googlenet_blocks_float64_gradients(block, x64):
    from torchvision.models.googlenet import Inception as TInception, InceptionAux as TInceptionAux

    from funcnets.models.googlenet import Inception, InceptionAux

    torch.manual_seed(0)
    if block == "Inception":
        tm, model = TInception(16, 4, 4, 8, 2, 4, 4), Inception(16, 4, 4, 8, 2, 4, 4)
    else:
        tm, model = TInceptionAux(16, 10, dropout=0.0), InceptionAux(16, 10, dropout=0.0)
    tm = _randomise_bn(tm.double()).train()
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = tm(x)
    w = torch.randn(y.shape, dtype=torch.float64)
    (y * w).sum().backward()
    f = lambda p: jnp.sum(model(p, state, jnp.asarray(to_np(x)), train=True)[0] * jnp.asarray(to_np(w)))  # noqa: E731
    _check_grads(block, jax.jit(jax.grad(f))(params), tm)


# ------------------------------------------------------------------ initialisation
def _init_leaves(model, *names):
    """Selected leaves of ``model.init`` (torch's names): XLA drops the draws of every other
    parameter, which for VGG's 100M-entry classifier would take seconds."""
    f = jax.jit(lambda k: {n: flatten(model.init_tree(k)[0])[n] for n in names})(jax.random.PRNGKey(0))
    return {n: np.asarray(v) for n, v in f.items()}


def _std_ok(w, std, what):
    w = np.asarray(w, np.float64)
    assert abs(w.mean()) < 5 * std / np.sqrt(w.size), f"{what}: mean {w.mean():.3g}"
    assert abs(w.std() / std - 1) < 0.05 + 5 / np.sqrt(w.size), f"{what}: std {w.std():.4g}, expected {std:.4g}"


def test_vgg_init_is_torchvisions():
    model = get_model("vgg11_bn", num_classes=10)
    f = _init_leaves(model, "features.4.weight", "features.4.bias", "features.5.weight", "features.5.bias",
                     "classifier.6.weight", "classifier.6.bias")
    w = f["features.4.weight"]  # (128, 64, 3, 3): kaiming_normal_, fan_out = 128 * 9
    _std_ok(w, np.sqrt(2 / (128 * 9)), "conv")
    np.testing.assert_array_equal(f["features.4.bias"], 0.0)
    np.testing.assert_array_equal(f["features.5.weight"], 1.0)
    np.testing.assert_array_equal(f["features.5.bias"], 0.0)
    _std_ok(f["classifier.6.weight"], 0.01, "linear")  # (10, 4096)
    np.testing.assert_array_equal(f["classifier.6.bias"], 0.0)
    # init_weights=False: torch's default U(±1/sqrt(fan_in))
    b = _init_leaves(get_model("vgg11", num_classes=10, init_weights=False), "features.3.bias")["features.3.bias"]
    assert np.abs(b).max() <= 1 / np.sqrt(64 * 9) and np.abs(b).max() > 0.5 / np.sqrt(64 * 9)


def test_alexnet_init_is_torch_default():
    w = _init_leaves(get_model("alexnet", num_classes=10), "features.3.weight")["features.3.weight"]  # (192, 64, 5, 5)
    bound = 1 / np.sqrt(64 * 25)
    assert np.abs(w).max() <= bound
    _std_ok(w, bound / np.sqrt(3), "U(±1/sqrt(fan_in))")


def test_squeezenet_densenet_googlenet_init_are_torchvisions():
    f = _init_leaves(get_model("squeezenet1_1", num_classes=10), "features.6.expand3x3.weight",
                     "classifier.1.weight", "features.3.squeeze.bias")
    w = np.asarray(f["features.6.expand3x3.weight"])  # (128, 32, 3, 3): kaiming_uniform_, a=0
    bound = np.sqrt(6 / (32 * 9))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    _std_ok(w, bound / np.sqrt(3), "squeezenet kaiming_uniform")
    _std_ok(f["classifier.1.weight"], 0.01, "squeezenet final conv")
    np.testing.assert_array_equal(f["features.3.squeeze.bias"], 0.0)

    f = _init_leaves(get_model("densenet121", num_classes=10), "features.denseblock2.denselayer3.conv2.weight",
                     "features.norm5.weight", "classifier.bias", "classifier.weight")
    _std_ok(f["features.denseblock2.denselayer3.conv2.weight"], np.sqrt(2 / (128 * 9)), "densenet conv (fan_in)")
    np.testing.assert_array_equal(f["features.norm5.weight"], 1.0)
    np.testing.assert_array_equal(f["classifier.bias"], 0.0)
    cw = np.asarray(f["classifier.weight"])  # torch's default U(±1/sqrt(1024))
    assert np.abs(cw).max() <= 1 / 32 and np.abs(cw).max() > 0.99 / 32

    f = _init_leaves(get_model("googlenet", num_classes=10), "inception4a.branch2.1.conv.weight", "aux1.fc1.weight",
                     "fc.weight", "conv1.bn.weight", "aux1.fc1.bias")
    for k in ("inception4a.branch2.1.conv.weight", "aux1.fc1.weight", "fc.weight"):
        _std_ok(f[k], 0.01, f"googlenet {k}")  # trunc_normal_(0, 0.01, -2, 2): cut at 200 sigma
    np.testing.assert_array_equal(f["conv1.bn.weight"], 1.0)
    assert np.abs(np.asarray(f["aux1.fc1.bias"])).max() <= 1 / np.sqrt(2048)  # torch's default bias
    f = _init_leaves(get_model("googlenet", num_classes=10, init_weights=False), "fc.weight")
    assert np.abs(np.asarray(f["fc.weight"])).max() > 0.99 / 32  # torch's default U(±1/sqrt(1024))


def test_densenet_old_names_and_googlenet_aux_in_weights_files(tmp_path):
    tm = _torch_model("densenet121", num_classes=10).eval()
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
    tg = _torch_model("googlenet", num_classes=10, init_weights=True)
    torch_io.save_file(tmp_path / "g.safetensors", {k: to_np(v) for k, v in tg.state_dict().items()})
    model, params, state = get_model("googlenet", weights=str(tmp_path / "g.safetensors"), num_classes=10)
    assert model.aux1 is None and model.transform_input and "aux1" not in params
    model, params, state = get_model("googlenet", weights=str(tmp_path / "g.safetensors"), num_classes=10,
                                     aux_logits=True)
    assert "aux2" in params


# ------------------------------------------------------------------ weights files, errors
def test_weights_file_and_errors(tmp_path):
    tm = _torch_model("squeezenet1_1")
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

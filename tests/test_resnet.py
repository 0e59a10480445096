"""ResNet-18 against real torchvision (resnet18(weights=None)), the tutorial's autograd story."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets import FuncnetsError, optim, torch_io
from funcnets.models import resnet18, resnet34
from funcnets.torch_io import flatten
from helpers import assert_close, to_np


def _pair(dtype):
    torch.manual_seed(0)
    tm = torchvision.models.resnet18(weights=None).to(dtype)
    # non-trivial running statistics, so eval mode tests more than the identity
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    model = resnet18()
    loaded = torch_io.load_state_dict(model, tm.state_dict())
    return tm, model, loaded.params, loaded.state


def test_names_shapes_and_order_equal_torchvision():
    for ours, theirs in ((resnet18(), torchvision.models.resnet18), (resnet34(num_classes=7), torchvision.models.resnet34)):
        ref = theirs(weights=None, num_classes=ours.num_classes).state_dict()
        params, state = jax.eval_shape(ours.init, jax.random.PRNGKey(0))
        flat = {**flatten(params), **flatten(state)}
        assert sorted(flat) == sorted(ref)
        assert {k: tuple(v.shape) for k, v in flat.items()} == {k: tuple(v.shape) for k, v in ref.items()}
        assert list(torch_io._template(ours)) == list(ref)  # torch's state_dict order
    assert "layer2.0.downsample.1.running_var" in flat


def test_torchvision_initialisation():
    params, state = resnet18().init(jax.random.PRNGKey(0))
    w = np.asarray(params["layer3"]["0"]["conv1"]["weight"])  # (256, 128, 3, 3)
    assert abs(w.std() / np.sqrt(2 / (256 * 9)) - 1) < 0.02  # kaiming_normal_, fan_out, relu
    np.testing.assert_array_equal(params["layer1"]["0"]["bn1"]["weight"], 1.0)
    np.testing.assert_array_equal(state["bn1"]["running_var"], 1.0)
    assert np.abs(np.asarray(params["fc"]["weight"])).max() <= 1 / np.sqrt(512)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_forward_and_running_stats(dtype, tol):
    with jax.enable_x64(dtype == torch.float64):
        tm, model, params, state = _pair(dtype)
        x = torch.rand(2, 3, 64, 64, dtype=dtype)
        # eval and train forward in one compiled program (op by op it takes twice as long)
        run = jax.jit(lambda p, s, x: (model(p, s, x, train=False)[0], model(p, s, x, train=True)))
        y_eval, (y_train, new_state) = run(params, state, jnp.asarray(to_np(x)))
        assert_close(y_eval, to_np(tm.eval()(x)), tol, "eval logits")
        assert_close(y_train, to_np(tm.train()(x)), tol, "train logits")
        ours = dict(model.named_buffers(new_state))
        for name, buf in tm.named_buffers():
            if name.endswith("num_batches_tracked"):
                assert int(ours[name]) == int(buf) == 1
            else:
                assert_close(ours[name], to_np(buf), tol, name)


def test_float64_gradients_and_sgd_step_match_torch(x64):
    """The tutorial: loss = (prediction - labels).sum(); backward; SGD(lr=1e-2, momentum=0.9).step()."""
    tm, model, params, state = _pair(torch.float64)
    tm.train()
    data = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    labels = torch.rand(1, 1000, dtype=torch.float64)
    (tm(data) - labels).sum().backward()
    torch.optim.SGD(tm.parameters(), lr=1e-2, momentum=0.9).step()

    def loss(p):
        prediction, new_state = model(p, state, jnp.asarray(to_np(data)), train=True)
        return jnp.sum(prediction - jnp.asarray(to_np(labels))), new_state

    grads, _ = jax.jit(jax.grad(loss, has_aux=True))(params)  # compiled: op by op it takes 5x as long
    ours = dict(model.named_parameters(grads))
    for name, p in tm.named_parameters():
        assert_close(ours[name], to_np(p.grad), 1e-8, f"grad {name}")
    opt = optim.sgd(lr=1e-2, momentum=0.9)
    updates, _ = opt.update(grads, opt.init(params), params)
    stepped = dict(model.named_parameters(jax.tree_util.tree_map(jnp.add, params, updates)))
    for name, p in tm.named_parameters():
        assert_close(stepped[name], to_np(p), 1e-8, f"param {name}")


def test_export_loads_strictly_into_torchvision(tmp_path):
    model = resnet18()
    params, state = model.init(jax.random.PRNGKey(3))
    sd = torch_io.state_dict(model, params, state)
    assert sd["bn1.num_batches_tracked"].dtype == np.int64 and sd["bn1.num_batches_tracked"].shape == ()
    tm = torchvision.models.resnet18(weights=None)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    path = torch_io.save_weights(tmp_path / "r18.safetensors", model, params, state)
    import safetensors.torch

    tm.load_state_dict(safetensors.torch.load_file(path), strict=True)
    torch.save(tm.state_dict(), tmp_path / "r18.pth")
    back = torch_io.load_weights(tmp_path / "r18.pth", model)
    np.testing.assert_array_equal(back.params["layer4"]["1"]["conv2"]["weight"], params["layer4"]["1"]["conv2"]["weight"])


def test_missing_pretrained_file_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"resnet18\(weights='DEFAULT'\)"):
        torch_io.load_weights(tmp_path / "resnet18.pth", resnet18())
    with pytest.raises(FuncnetsError, match="fc.weight: expected shape \\(10, 512\\)"):
        torch_io.load_state_dict(resnet18(num_classes=10), torchvision.models.resnet18(weights=None).state_dict())


def test_channels_last_trunk_equals_nchw_and_custom_modules_keep_nchw(x64):
    """On CPU the trunk runs channels-last: same logits, running statistics and gradients
    as the NCHW trunk. A module the layout is unknown to keeps the whole trunk NCHW.

    One BasicBlock a stage (layer1's without a downsample, the others' with one: both
    kinds ResNet-18 has) halves the two compiles; at 33 pixels layer4's map is still 2x2."""
    from funcnets import nn
    from funcnets.models.resnet import ResNet

    class NCHWResNet(ResNet):  # the plain NCHW trunk, to compare with
        def _trunk_channels_last(self, x):
            return False

    model = ResNet(layers=(1, 1, 1, 1), num_classes=10)
    params, state = model.init(jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(0).random((2, 3, 33, 33)))
    assert model._trunk_channels_last(x) == (jax.default_backend() == "cpu")
    ref = NCHWResNet(model.layers, model.num_classes, model.arch, fc=model.fc)

    def loss(m):
        def f(p):
            y, s = m(p, state, x, train=True)
            return jnp.sum(y * jnp.arange(10.0)), (y, s)

        return jax.jit(jax.grad(f, has_aux=True))(params)  # op by op it takes twice as long

    (g1, (y1, s1)), (g0, (y0, s0)) = loss(model), loss(ref)
    for what, a, b in (("logits", y1, y0), ("state", s1, s0), ("grads", g1, g0)):
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            assert_close(u, v, 1e-10, what)

    class Scale(nn.Module):  # a user's module: it assumes NCHW
        def apply(self, params, state, x, *, train=False, key=None):
            return x * jnp.arange(x.shape[1], dtype=x.dtype)[:, None, None], state

    custom, cparams, cstate = nn.replace(model, params, state, "layer4", nn.Sequential(model.layer4, Scale()), jax.random.PRNGKey(1))
    assert not custom._trunk_channels_last(x)
    y, _ = custom(cparams, cstate, x)
    assert y.shape == (2, 10)

"""torchvision's Inception v3 against funcnets' (``funcnets.models.inception``).

Full float32 parity at torchvision's min_size (75×75); the whole network in float64: eval
logits at 75×75, and at 299×299 (the auxiliary head needs a 17×17 Mixed_6e map) the
train-mode ``InceptionOutputs(logits, aux_logits)`` and the BatchNorm buffers, without gradients
(the whole network's float64 gradient compiles too slowly); every block (InceptionA..E,
InceptionAux) with all its parameter gradients in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models import inception as tvi

from funcnets import nn, optim, torch_io
from funcnets.errors import ShapeError
from funcnets.models import get_model
from funcnets.models import inception as I
from funcnets.nn import conv_lowering
from helpers import assert_close, to_np
from zoo_harness import (
    check_float32_parity_and_export, check_grads, init_leaves, randomise_bn, std_ok, torch_model,
)

CASES = {"inception_v3": (75, 2, {"init_weights": True})}
STRUCTURE_ONLY = ()


@pytest.mark.parametrize("name", list(CASES))
def test_float32_parity_and_export(name):
    size, batch, kwargs = CASES[name]
    check_float32_parity_and_export(name, size, batch, kwargs)


def test_float64_whole_network_train_outputs_and_buffers(x64):
    """As zoo_harness.check_float64 with grads=False, without torch's float64 backward
    (its slow non-oneDNN convolutions at 299×299 cost minutes and check nothing here)."""
    kw = dict(num_classes=10, init_weights=True, transform_input=True, dropout=0.0)
    torch.manual_seed(0)
    tm = randomise_bn(torchvision.models.inception_v3(**kw).double())
    model = I.inception_v3(**kw)
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    gen = torch.Generator().manual_seed(2)
    # eval at 75×75 (torchvision's min_size): XLA's float64 convolutions are slow, and only
    # the auxiliary head in training needs 299×299
    x_eval = torch.randn(2, 3, 75, 75, dtype=torch.float64, generator=gen)
    x = torch.randn(2, 3, 299, 299, dtype=torch.float64, generator=gen)
    xj = jnp.asarray(to_np(x))
    with torch.no_grad():
        ref_eval = to_np(tm.eval()(x_eval))
        ref_train = tm.train()(x)
    assert isinstance(ref_train, tvi.InceptionOutputs)
    y_eval, _ = jax.jit(lambda p, s, x: model(p, s, x))(params, state, jnp.asarray(to_np(x_eval)))
    assert_close(y_eval, ref_eval, 1e-9, "inception_v3 float64 eval logits")
    # at 299×299 the large maps take XLA's float64 convolution, which at the suite's
    # optimisation level 0 (tests/conftest.py) ran this one step for 137 s; the GEMM over
    # patches computes the same cross-correlation in 2 s (the eval above keeps the default
    # lowering, so both run through the whole network)
    with conv_lowering("gemm"):
        y_train, new_state = jax.jit(lambda p, s, x: model(p, s, x, train=True))(params, state, xj)
    assert isinstance(y_train, I.InceptionOutputs)
    for name in ("logits", "aux_logits"):
        assert_close(getattr(y_train, name), to_np(getattr(ref_train, name)), 1e-9, f"inception_v3 train {name}")
    flat = torch_io.flatten(new_state)
    assert set(flat) == {n for n, _ in tm.named_buffers()}
    for n, b in tm.named_buffers():
        if n.endswith("num_batches_tracked"):
            assert int(flat[n]) == int(b) == 1, n
        else:
            assert_close(flat[n], to_np(b), 1e-9, f"buffer {n}")


# block: (torchvision module, funcnets module, input (C, H, W)); small inputs, the blocks'
# hard-coded widths (64..448 channels) kept
BLOCKS = {
    "InceptionA": (lambda: tvi.InceptionA(8, pool_features=4), lambda: I.InceptionA(8, pool_features=4), (8, 5, 4)),
    "InceptionB": (lambda: tvi.InceptionB(8), lambda: I.InceptionB(8), (8, 7, 5)),
    "InceptionC": (lambda: tvi.InceptionC(8, channels_7x7=4), lambda: I.InceptionC(8, channels_7x7=4), (8, 5, 4)),
    "InceptionD": (lambda: tvi.InceptionD(8), lambda: I.InceptionD(8), (8, 7, 5)),
    "InceptionE": (lambda: tvi.InceptionE(8), lambda: I.InceptionE(8), (8, 3, 4)),
    "InceptionAux": (lambda: tvi.InceptionAux(8, 10), lambda: I.InceptionAux(8, 10), (8, 17, 18)),
}


@pytest.mark.parametrize("block", list(BLOCKS))
def test_blocks_float64_train_outputs_and_gradients(block, x64):
    torch_factory, our_factory, chw = BLOCKS[block]
    torch.manual_seed(0)
    tm, model = randomise_bn(torch_factory().double()).train(), our_factory()
    params, state, *_ = torch_io.load_state_dict(model, tm.state_dict())
    assert list(torch_io._template(model)) == list(tm.state_dict())
    x = torch.randn(2, *chw, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = tm(x)
    w = torch.randn(y.shape, dtype=torch.float64)
    (y * w).sum().backward()

    def f(p):
        out, new = model(p, state, jnp.asarray(to_np(x)), train=True)
        return jnp.sum(out * jnp.asarray(to_np(w))), (out, new)

    g, (out, new) = jax.jit(jax.grad(f, has_aux=True))(params)
    np.testing.assert_allclose(out, to_np(y), rtol=0, atol=1e-10 * np.abs(to_np(y)).max())
    check_grads(block, g, tm)
    for n, b in tm.named_buffers():
        np.testing.assert_allclose(torch_io.flatten(new)[n], to_np(b), rtol=1e-10, err_msg=n)


def test_init_is_torchvisions():
    names = ("Mixed_6b.branch7x7_2.conv.weight", "AuxLogits.conv1.conv.weight", "AuxLogits.fc.weight", "fc.weight",
             "Conv2d_1a_3x3.bn.weight", "Conv2d_1a_3x3.bn.bias", "fc.bias")
    f = init_leaves(get_model("inception_v3", num_classes=10), *names)
    for k in ("Mixed_6b.branch7x7_2.conv.weight", "fc.weight"):
        std_ok(f[k], 0.1, k)  # trunc_normal_(0, 0.1, -2, 2)
    # torchvision's stddev = 0.01 sits on the BasicConv2d, which its loop does not read
    std_ok(f["AuxLogits.conv1.conv.weight"], 0.1, "AuxLogits.conv1")
    std_ok(f["AuxLogits.fc.weight"], 0.001, "AuxLogits.fc")
    np.testing.assert_array_equal(f["Conv2d_1a_3x3.bn.weight"], 1.0)
    np.testing.assert_array_equal(f["Conv2d_1a_3x3.bn.bias"], 0.0)
    b = np.abs(f["fc.bias"])  # torch's default U(±1/sqrt(2048))
    assert b.max() <= 1 / np.sqrt(2048) and b.max() > 0.5 / np.sqrt(2048)
    w = np.abs(init_leaves(get_model("inception_v3", num_classes=10, init_weights=False), "fc.weight")["fc.weight"])
    assert w.max() <= 1 / np.sqrt(2048) and w.max() > 0.99 / np.sqrt(2048)  # torch's default


def test_outputs_in_train_and_eval():
    """``InceptionOutputs`` only in training with ``aux_logits`` (shapes only: traced, not compiled)."""
    x = jax.ShapeDtypeStruct((2, 3, 299, 299), jnp.float32)
    for aux in (True, False):
        model = I.Inception3(num_classes=10, aux_logits=aux, dropout=0.0)
        params, state = jax.eval_shape(model.init_tree, jax.random.PRNGKey(0))
        train, _ = jax.eval_shape(lambda p, s, x: model(p, s, x, train=True), params, state, x)
        evald, _ = jax.eval_shape(lambda p, s, x: model(p, s, x), params, state, x)
        assert evald.shape == (2, 10)
        if aux:
            assert isinstance(train, I.InceptionOutputs) and train.logits.shape == train.aux_logits.shape == (2, 10)
        else:
            assert not isinstance(train, tuple) and train.shape == (2, 10)
    with pytest.raises(ValueError, match="length of inception_blocks should be 7 instead of 6"):
        I.Inception3(inception_blocks=[I.BasicConv2d] * 6)
    with pytest.raises(ShapeError, match=r"at least 75×75, got 74×74"):
        get_model("inception_v3")({}, {}, jnp.zeros((1, 3, 74, 74)))


def test_fine_tuning_replaces_the_head():
    model = I.inception_v3(num_classes=1000, aux_logits=False)
    params, state = jax.eval_shape(model.init_tree, jax.random.PRNGKey(0))  # shapes: enough to replace
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    model, params, state = nn.replace(model, params, state, "fc", nn.Linear(2048, 10), jax.random.PRNGKey(1))
    assert model.fc == nn.Linear(2048, 10) and params["fc"]["weight"].shape == (10, 2048)
    y, _ = jax.eval_shape(lambda p, s, x: model(p, s, x), params, state, jnp.zeros((1, 3, 75, 75)))
    assert y.shape == (1, 10)
    assert optim.select(params, "fc") == {"fc.weight", "fc.bias"}


def test_weights_file_aux_head(tmp_path):
    tm = torch_model("inception_v3", num_classes=10, init_weights=False)
    torch_io.save_file(tmp_path / "i.safetensors", {k: to_np(v) for k, v in tm.state_dict().items()})
    model, params, state = get_model("inception_v3", weights=str(tmp_path / "i.safetensors"), num_classes=10)
    assert model.aux_logits and model.transform_input and "AuxLogits" in params
    assert list(torch_io.state_dict(model, params, state)) == list(tm.state_dict())
    model, params, state = get_model("inception_v3", weights=str(tmp_path / "i.safetensors"), num_classes=10,
                                     aux_logits=False)
    assert model.AuxLogits is None and "AuxLogits" not in params and "AuxLogits" not in state
    out = torch_io.state_dict(model, params, state)
    assert list(out) == [k for k in tm.state_dict() if not k.startswith("AuxLogits.")]
    assert all(np.array_equal(out[k], to_np(tm.state_dict()[k])) for k in out)

"""funcnets.from_torch: torch modules traced with torch.fx and run with JAX, compared with torch.

float64 holds semantics (values and gradients to 1e-9 relative), float32 realistic use
(1e-4). Models: torchvision's resnet18 and hand-written user models (U-Net, transformer
classifier, LSTM classifier, a dynamic net reusing one Linear, a forward of shape
arithmetic and slicing); then the refusals.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
import torchvision

import funcnets
from funcnets import optim, torch_io, train
from funcnets.convert import UnsupportedOperationError, from_torch
from helpers import assert_close, to_np


def _j(t):
    return jnp.asarray(to_np(t))


def _grads_torch(m, xs, weight, train_mode):
    """torch: output, d(sum(out * weight))/d(params) by state_dict name, d/d(float inputs)."""
    m.train(train_mode)
    xs = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    m.zero_grad()
    out = m(*xs)
    (out * weight).sum().backward()
    grads = {n: to_np(p.grad) for n, p in m.named_parameters() if p.grad is not None}
    return to_np(out), grads, [to_np(x.grad) for x in xs if x.is_floating_point()]


def _check_parity(m, xs, rtol, train_mode=False, seed=0):
    """Values, parameter and input gradients of the converted model equal torch's."""
    model, params, state = from_torch(m, *xs)
    torch.manual_seed(seed)
    weight = torch.randn_like(m.eval()(*xs))
    ref, ref_g, ref_xg = _grads_torch(m, xs, weight, train_mode)
    jx = [_j(x) for x in xs]
    n_float = sum(x.is_floating_point() for x in xs)

    def loss(p, fx, ints):
        inputs = list(fx) + list(ints)
        y, new = model.apply(p, state, inputs[0] if len(inputs) == 1 else tuple(inputs), train=train_mode)
        return jnp.sum(y * _j(weight)), (y, new)

    (_, (y, new_state)), (g, gx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, jx[:n_float], jx[n_float:])
    assert_close(y, ref, rtol, "output")
    flat_g = dict(model.named_parameters(g))
    assert set(flat_g) == {n for n, _ in m.named_parameters()}
    # relative to the largest gradient of the model: a conv bias before a train-mode
    # BatchNorm has an exactly-zero gradient, which both frameworks give as rounding noise
    scale = max(np.abs(r).max() for r in ref_g.values())
    for n, r in ref_g.items():
        err = np.abs(np.asarray(flat_g[n]) - r).max() / scale
        assert err <= rtol * 10, f"grad {n}: error {err:.3e} relative to the largest gradient"
    for a, r in zip(gx, ref_xg):
        assert_close(a, r, rtol * 10, "input grad")
    return model, params, state, new_state


# ----------------------------------------------------------------------------- torchvision resnet18
@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10)


def test_resnet18_eval_float32(resnet):
    m = resnet.float().eval()
    x = torch.randn(2, 3, 32, 32)
    model, params, state = from_torch(m, x)
    assert "torch" not in repr(model) and repr(model).startswith("ResNet(")
    y, _ = jax.jit(model.apply)(params, state, _j(x))
    with torch.no_grad():
        assert_close(y, to_np(m(x)), 1e-4, "resnet18 float32 logits")
    assert list(torch_io.state_dict(model, params, state)) == list(m.state_dict())


def test_resnet18_float64_eval_and_one_train_step(resnet, x64):
    m = resnet.double()
    x, labels = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 7])
    model, params, state = from_torch(m.eval(), x)
    y, _ = jax.jit(model.apply)(params, state, _j(x))
    with torch.no_grad():
        assert_close(y, to_np(m(x)), 1e-9, "resnet18 float64 eval logits")

    # train mode: logits, gradients of the loss and the BatchNorm buffers after one step
    # (funcnets' train step itself is tested on a small model below: one resnet compile less)
    m.train()
    out = m(x)
    TF.cross_entropy(out, labels).backward()
    grads_t = {n: to_np(p.grad) for n, p in m.named_parameters()}

    def loss(p):
        logits, new = model.apply(p, state, _j(x), train=True)
        return funcnets.losses.cross_entropy(logits, _j(labels)), (logits, new)

    (_, (logits, new_state)), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert_close(logits, to_np(out), 1e-9, "train-mode logits")
    for n, gv in model.named_parameters(g):
        assert_close(gv, grads_t[n], 1e-8, f"grad {n}")
    sd = torch_io.state_dict(model, params, new_state)
    for n, t in m.named_buffers():
        assert_close(sd[n], to_np(t), 1e-9, f"after one step: {n}")
    assert int(sd["bn1.num_batches_tracked"]) == 1


# ----------------------------------------------------------------------------- hand-written user models
class UNet(tnn.Module):
    def __init__(self, c=4):
        super().__init__()
        block = lambda i, o: tnn.Sequential(  # noqa: E731
            tnn.Conv2d(i, o, 3, padding=1), tnn.BatchNorm2d(o), tnn.ReLU(inplace=True))
        self.down1, self.down2 = block(1, c), block(c, 2 * c)
        self.pool = tnn.MaxPool2d(2)
        self.mid = block(2 * c, 2 * c)
        self.up2 = tnn.ConvTranspose2d(2 * c, 2 * c, 2, stride=2)
        self.dec2 = block(4 * c, c)
        self.dec1 = block(2 * c, c)
        self.head = tnn.Conv2d(c, 2, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        m = self.mid(self.pool(d2))
        u2 = self.dec2(torch.cat([self.up2(m), d2], dim=1))
        u1 = TF.interpolate(u2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(self.dec1(torch.cat((u1, d1), 1)))


def test_unet_float64_train_mode(x64):
    torch.manual_seed(1)
    m = UNet().double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    model, params, state, new_state = _check_parity(m, [x], 1e-9, train_mode=True)
    assert_close(new_state["down1"]["1"]["running_var"], to_np(m.down1[1].running_var), 1e-9, "BN running_var")


class TransformerClassifier(tnn.Module):
    def __init__(self, vocab=11, d=8, heads=2, n_cls=3, max_len=6):
        super().__init__()
        self.embed = tnn.Embedding(vocab, d)
        self.pos = tnn.Parameter(torch.randn(1, max_len, d) * 0.1)  # learned positional embedding
        self.attn = tnn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1, self.norm2 = tnn.LayerNorm(d), tnn.LayerNorm(d)
        self.ff = tnn.Sequential(tnn.Linear(d, 2 * d), tnn.GELU(), tnn.Dropout(0.1), tnn.Linear(2 * d, d))
        self.head = tnn.Linear(d, n_cls)

    def forward(self, tokens):
        h = self.embed(tokens) + self.pos[:, : tokens.size(1)]
        a = self.attn(h, h, h, need_weights=False)[0]
        h = self.norm1(h + a)
        h = self.norm2(h + self.ff(h))
        return self.head(h.mean(dim=1))


def test_transformer_classifier_float64(x64):
    torch.manual_seed(2)
    m = TransformerClassifier().double()
    tokens = torch.randint(0, 11, (3, 5))
    model, params, state, _ = _check_parity(m, [tokens], 1e-9)
    assert params["pos"].shape == (1, 6, 8)
    # dropout in train mode draws from the key; without one, funcnets asks for it
    y1, _ = model.apply(params, state, _j(tokens), train=True, key=jax.random.PRNGKey(0))
    y2, _ = model.apply(params, state, _j(tokens), train=True, key=jax.random.PRNGKey(1))
    assert not np.allclose(y1, y2)


class LSTMClassifier(tnn.Module):
    def __init__(self, vocab=13, d=6, hidden=5, n_cls=4):
        super().__init__()
        self.embedding = tnn.Embedding(vocab, d, padding_idx=0)
        self.lstm = tnn.LSTM(d, hidden, batch_first=True, bidirectional=True)
        self.fc = tnn.Linear(2 * hidden, n_cls)

    def forward(self, tokens):
        out, (h, c) = self.lstm(self.embedding(tokens))
        last = torch.cat([h[-2], h[-1]], dim=1)
        return self.fc(last) + out[:, 0].sum(-1, keepdim=True) * 0.1


def test_lstm_text_classifier_float64(x64):
    torch.manual_seed(3)
    m = LSTMClassifier().double()
    tokens = torch.tensor([[3, 5, 0, 0], [1, 2, 7, 12], [0, 4, 4, 9]])
    model, params, *_ = _check_parity(m, [tokens], 1e-9)
    assert model.children()[0][1].padding_idx == 0


class DynamicNet(tnn.Module):
    """The "Learning PyTorch with Examples" dynamic net, with a fixed loop count."""

    def __init__(self):
        super().__init__()
        self.input_linear = tnn.Linear(4, 6)
        self.middle_linear = tnn.Linear(6, 6)
        self.output_linear = tnn.Linear(6, 2)

    def forward(self, x):
        h = self.input_linear(x).clamp(min=0)
        for _ in range(3):
            h = self.middle_linear(h).clamp(min=0)
        return self.output_linear(h)


def test_dynamic_net_shares_weights_and_sums_gradients(x64):
    torch.manual_seed(4)
    m = DynamicNet().double()
    model, params, *_ = _check_parity(m, [torch.randn(5, 4, dtype=torch.float64)], 1e-9)
    assert sorted(params) == ["input_linear", "middle_linear", "output_linear"]


class ShapeNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.proj = tnn.Linear(4, 4)

    def forward(self, x):  # x: (N, C, L)
        n, c, length = x.shape
        half = length // 2
        a, b = x[:, :, :half], x[..., half:]
        y = torch.stack([a, b.flip(-1)], dim=1).reshape(n, 2 * c, -1)  # (N, 2C, L/2)
        y = y.permute(0, 2, 1).contiguous().view(n * half, -1)
        y = self.proj(y).view(n, half, 2 * c).transpose(1, 2)
        s, idx = y.max(dim=-1, keepdim=True)
        v = y.var(dim=2, correction=0, keepdim=True) + y.std(-1, keepdim=True)
        z = torch.where(y > 0, y, y * 0.5) * s.expand(-1, -1, y.size(-1)) + v
        parts = torch.chunk(z, 2, dim=1)
        w = torch.softmax(parts[0], dim=-1) - TF.log_softmax(parts[1], dim=-1)
        w = w.unsqueeze(1).squeeze(1).repeat(1, 1, 2)[:, :, ::2]
        ar = torch.arange(w.size(-1), dtype=w.dtype)
        out = torch.flatten(w * ar + torch.ones_like(w) + torch.zeros_like(w), 1)
        return out.clamp(-5, 5) @ out.new_ones(out.shape[-1], 3) + idx.float().sum() * 0 \
            + torch.einsum("nc,nc->n", out, out)[:, None] + torch.bmm(w, w.transpose(1, 2)).sum((1, 2))[:, None]


def test_shape_arithmetic_and_slicing_float64(x64):
    torch.manual_seed(5)
    m = ShapeNet().double()
    _check_parity(m, [torch.randn(3, 2, 8, dtype=torch.float64)], 1e-9)


def test_shape_arithmetic_float32_jit_vmap():
    torch.manual_seed(5)
    m = ShapeNet()
    x = torch.randn(3, 2, 8)
    model, params, state = from_torch(m, x)
    with torch.no_grad():
        ref = to_np(m(x))
    y, _ = jax.jit(model.apply)(params, state, _j(x))
    assert_close(y, ref, 1e-5, "float32 jit")
    # vmap over an extra leading axis: each slice is one batch of torch's forward
    ys = jax.vmap(lambda xb: model.apply(params, state, xb)[0])(jnp.stack([_j(x), _j(x) * 2]))
    with torch.no_grad():
        assert_close(ys[1], to_np(m(x * 2)), 1e-5, "vmap")


# ----------------------------------------------------------------------------- training, freezing, weights back to torch
def test_train_step_freezing_and_weights_back_to_torch(tmp_path):
    torch.manual_seed(6)
    m = tnn.Sequential(tnn.Conv2d(1, 3, 3, padding=1), tnn.BatchNorm2d(3), tnn.ReLU(), tnn.Flatten(),
                       tnn.Dropout(0.2), tnn.Linear(3 * 6 * 6, 4))
    model, params, state = from_torch(m, torch.randn(2, 1, 6, 6))
    trainable = optim.select(params, exclude="0.*")  # freeze the conv by its torch name
    opt = optim.adam(1e-2)
    ts = train.create_train_state(params, state, opt, jax.random.PRNGKey(0), trainable)
    step = train.make_train_step(train.supervised_loss(model), opt, trainable=trainable, donate=False)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((3, 4, 1, 6, 6)), jnp.float32)
    ys = jnp.asarray(rng.integers(0, 4, (3, 4)), jnp.int32)
    losses = []
    for x, y in zip(xs, ys):
        ts, metrics = step(ts, (x, y))
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    np.testing.assert_array_equal(ts.params["0"]["weight"], params["0"]["weight"])
    assert not np.array_equal(ts.params["5"]["weight"], params["5"]["weight"])
    assert int(ts.model_state["1"]["num_batches_tracked"]) == 3

    path = torch_io.save_weights(tmp_path / "net.safetensors", model, ts.params, ts.model_state)
    from safetensors.torch import load_file

    m.load_state_dict(load_file(str(path)), strict=True)
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        ref = to_np(m.eval()(x))
    y, _ = model.apply(ts.params, ts.model_state, _j(x))
    assert_close(y, ref, 1e-5, "trained weights loaded back into torch")


# ----------------------------------------------------------------------------- refusals
class DataDependent(tnn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Unsupported(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(4, 4)

    def forward(self, x):
        y = torch.special.bessel_j1(self.lin(x))
        return torch.special.bessel_j0(y)


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class CustomFunction(tnn.Module):
    def forward(self, x):
        return _Square.apply(x) + 1


def test_refuses_data_dependent_control_flow():
    with pytest.raises(UnsupportedOperationError) as e:
        from_torch(DataDependent(), torch.randn(2))
    msg = str(e.value)
    assert "control flow" in msg and "if x.sum() > 0" in msg and "concrete_args" in msg and "leaf_modules" in msg


def test_refuses_unsupported_ops_all_at_once():
    with pytest.raises(UnsupportedOperationError) as e:
        from_torch(Unsupported())
    msg = str(e.value)
    assert len(e.value.problems) == 2, msg
    assert "bessel_j1" in msg and "bessel_j0" in msg and "test_from_torch.py" in msg
    assert "torch.special.bessel_j1(self.lin(x))" in msg


def test_refuses_custom_autograd_function():
    with pytest.raises(UnsupportedOperationError) as e:
        from_torch(CustomFunction())
    assert "_Square" in str(e.value) and "custom autograd Function" in str(e.value)
    # tracing patches Function.apply for the trace only: custom Functions work after it
    # (putting back the bound method instead of the classmethod broke every one of them)
    x = torch.randn(3, requires_grad=True)
    _Square.apply(x).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())


def test_leaf_modules_factory_converts_what_fx_cannot(x64):
    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.gate = DataDependent()
            self.lin = tnn.Linear(3, 2)

        def forward(self, x):
            return self.lin(self.gate(x))

    class AbsGate(funcnets.nn.Module):  # the funcnets version of DataDependent: x if sum > 0 else -x
        def apply(self, params, state, x, *, train=False, key=None):
            return jnp.where(jnp.sum(x) > 0, x, -x), state

    m = Net().double()
    x = torch.randn(2, 3, dtype=torch.float64)
    model, params, state = from_torch(m, x, leaf_modules={DataDependent: lambda mod: AbsGate()})
    for sign in (1, -1):
        with torch.no_grad():
            assert_close(model.apply(params, state, _j(x) * sign)[0], to_np(m(x * sign)), 1e-12, "leaf module")

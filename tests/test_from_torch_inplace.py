"""from_torch / port: in-place operations and item assignment, converted functionally.

Each case is a forward as research code writes it (``h += x``, ``h.relu_()``,
``h[:, 0] = v``, ``ReLU(inplace=True)`` applied to a tensor that is read again, ...);
the converted model's output and its gradients (parameters and input) must equal torch's
in float64 (1e-10). Where torch's aliasing cannot be reproduced (a view written while
its base is read later; a parameter or buffer written in forward) the conversion is
refused with the op and its source line.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from helpers import assert_close, to_np

import funcnets
from funcnets.convert import UnsupportedOperationError, from_torch
from funcnets.convert.port import write_port


def _iadd(h, x):
    r = h  # another name for the same tensor: torch's += changes it too
    h += x
    return h * r


def _augmented(h, x):
    n = x.size(0)
    n += 1  # shape arithmetic: a number, no tensor written
    h -= 1
    h *= x
    h /= n
    return h


def _add_(h, x):
    h.add_(x, alpha=2)
    return h


def _mul_(h, x):
    y = h.mul_(x)  # the result is the tensor itself
    y.sub_(0.5)
    return h


def _relu_(h, x):
    h.relu_()
    return h + x


def _relu_inplace_kwarg(h, x):
    y = TF.relu(h, inplace=True)
    return y * h  # h is y


def _torch_relu_(h, x):
    torch.relu_(h)
    z = h - 0.5
    TF.elu_(z)
    return h * z


def _clamp_(h, x):
    h.clamp_(-0.3, 0.4)
    return h * x


def _zero_(h, x):
    z = h * 2
    z.zero_()
    return h + z


def _fill_(h, x):
    z = h * 1
    z.fill_(0.5)
    return h * z


def _masked_fill_(h, x):
    h.masked_fill_(x > 0, 0.25)
    return h


def _copy_(h, x):
    z = torch.zeros_like(h)
    z.copy_(h * 3)
    return z + h


def _setitem_column(h, x):
    h[:, 0] = x[:, 1]
    h[0] = 2.0
    return h


def _setitem_mask(h, x):
    h[x < 0] = 0
    h[:, h[0] > 0] = -1.5
    return h


def _setitem_augmented(h, x):
    h[:, 1:] += x[:, :3]  # getitem, += on the view, written back with setitem
    h[1] *= 3
    return h


CASES = {f.__name__.lstrip("_"): f for f in (
    _iadd, _augmented, _add_, _mul_, _relu_, _relu_inplace_kwarg, _torch_relu_, _clamp_, _zero_, _fill_,
    _masked_fill_, _copy_, _setitem_column, _setitem_mask, _setitem_augmented)}


class Case(tnn.Module):
    def __init__(self, body):
        super().__init__()
        self.lin = tnn.Linear(4, 4)
        self.body = body

    def forward(self, x):
        return self.body(self.lin(x), x)


class InplaceModule(tnn.Module):
    """nn.ReLU(inplace=True) on a tensor read again: torch's output is 2 * relu(h)."""

    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(4, 4)
        self.act = tnn.ReLU(inplace=True)

    def forward(self, x):
        h = self.lin(x)
        y = self.act(h)
        return y + h


def _parity(m, x):
    model, params, state = from_torch(m, x)
    xt = x.clone().requires_grad_(True)
    m.zero_grad()
    out = m(xt)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * weight).sum().backward()

    def loss(p, xj):
        y, _ = model.apply(p, state, xj)
        return jnp.sum(y * jnp.asarray(to_np(weight))), y

    (_, y), (g, gx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.asarray(to_np(x)))
    assert_close(y, to_np(out), 1e-10, "output")
    for name, p in m.named_parameters():
        assert_close(dict(model.named_parameters(g))[name], to_np(p.grad), 1e-10, f"grad {name}")
    assert_close(gx, to_np(xt.grad), 1e-10, "input grad")


@pytest.mark.parametrize("case", sorted(CASES))
def test_inplace_values_and_gradients_float64(case, x64):
    torch.manual_seed(0)
    m = Case(CASES[case]).double()
    _parity(m, torch.randn(3, 4, dtype=torch.float64))


def test_inplace_module_rebinds_its_input(x64):
    torch.manual_seed(1)
    _parity(InplaceModule().double(), torch.randn(3, 4, dtype=torch.float64))


def test_inplace_keeps_the_written_tensors_dtype(x64):
    class Mixed(tnn.Module):
        def forward(self, x):
            h = x.float()
            h += x  # float32 += float64: torch keeps float32
            return h

    model, params, state = from_torch(Mixed())
    y, _ = model.apply(params, state, jnp.ones(3, jnp.float64))
    assert y.dtype == jnp.float32 and np.allclose(y, 2)


# ----------------------------------------------------------------------------- refusals
class WritesAView(tnn.Module):
    def forward(self, x):
        y = x[0]
        y.add_(1)
        return x * 2  # torch: row 0 of x changed


class WritesAReshape(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        flat = h.view(-1)
        flat.mul_(2)
        return h + 1


class WritesAParameter(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(4, 4)

    def forward(self, x):
        scale = self.lin.weight[0]
        scale *= 2
        return self.lin(x) * scale


class WritesABuffer(tnn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        self.count += 1
        return x * self.count


@pytest.mark.parametrize("cls, op, line, names", [
    (WritesAView, "Tensor.add_()", "y.add_(1)", "the input 'x'"),
    (WritesAReshape, "Tensor.mul_()", "flat.mul_(2)", "'lin'"),
    (WritesAParameter, "'*='", "scale *= 2", "'lin.weight'"),
])
def test_refuses_writes_torch_aliasing_makes_unconvertible(cls, op, line, names):
    with pytest.raises(UnsupportedOperationError) as e:
        from_torch(cls())
    msg = str(e.value)
    assert f"in-place {op}" in msg and line in msg and names in msg and "test_from_torch_inplace.py" in msg, msg
    assert "control flow" not in msg  # each in-place problem says its own fix
    with pytest.raises(UnsupportedOperationError, match=r"in-place"):
        funcnets.port(cls())


def test_refuses_a_buffer_written_in_forward_and_leaves_it_unchanged():
    m = WritesABuffer()  # fx runs `self.count += 1` on the real buffer while tracing
    with pytest.raises(UnsupportedOperationError, match=r"in-place write into the buffer 'count'"):
        from_torch(m)
    assert float(m.count) == 0.0


# ----------------------------------------------------------------------------- port
class PortNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tnn.Linear(4, 4)
        self.act = tnn.ReLU(inplace=True)

    def forward(self, x):
        h = self.lin(x)
        r = h
        h += x
        y = self.act(h)
        h.mul_(2)
        h[:, 0] = x[:, 1]
        h[:, 1:] += x[:, :3]
        h[x < 0] = 0
        z = torch.zeros_like(h)
        z.copy_(h)
        z.clamp_(max=1.5)
        return TF.relu(z, inplace=True) + r + y


def test_port_rebinds_written_variables(tmp_path, x64):
    torch.manual_seed(2)
    m = PortNet().double()
    x = torch.randn(3, 4, dtype=torch.float64)
    src, _ = write_port(m, tmp_path / "inplace_net.py")
    text = src.read_text()
    assert "ops.setitem(" in text and "ops.iadd(" in text and "ops.mul_inplace(" in text, text
    calls = [ln for ln in text.splitlines() if "F.relu(" in ln]
    assert calls and not any("inplace" in ln for ln in calls), calls  # the rebinding is the in-place write
    spec = importlib.util.spec_from_file_location("inplace_net", src)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, params, state = mod.load()
    y, _ = model.apply(params, state, jnp.asarray(to_np(x)))
    with torch.no_grad():
        assert_close(y, to_np(m(x)), 1e-10, "ported in-place net")
    ruff = Path(sys.executable).with_name("ruff")
    r = subprocess.run([str(ruff), "check", "--no-cache", str(src)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

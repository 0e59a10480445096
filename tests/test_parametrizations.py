"""weight_norm / spectral_norm (torch.nn.utils.parametrizations and the older hook-based
torch.nn.utils forms) against torch: state_dict names, repr, forward, gradients and the
power method's buffers over eval and train calls (float64 to 1e-12 relative, float32 to
1e-5), and from_torch of a model with parametrized layers."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn.utils import parametrizations as P

import funcnets
import funcnets.nn as nn
from funcnets.convert.fx import UnsupportedOperationError
from funcnets.nn.parametrizations import spectral_norm, weight_norm
from funcnets.torch_io import load_state_dict, state_dict
from helpers import assert_close, to_np

with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated, and still in checkpoints
    warnings.simplefilter("ignore")
    _LEGACY_WN = torch.nn.utils.weight_norm
_LEGACY_SN = torch.nn.utils.spectral_norm

CASES = {  # torch layer, funcnets layer, input shape
    "wn_conv2d": (lambda: P.weight_norm(torch.nn.Conv2d(2, 3, 3)), lambda: weight_norm(nn.Conv2d(2, 3, 3)), (2, 2, 5, 5)),
    "wn_linear_dim_none": (lambda: P.weight_norm(torch.nn.Linear(4, 3), dim=None),
                           lambda: weight_norm(nn.Linear(4, 3), dim=None), (2, 4)),
    "wn_linear_dim1": (lambda: P.weight_norm(torch.nn.Linear(4, 3), dim=1), lambda: weight_norm(nn.Linear(4, 3), dim=1), (2, 4)),
    "wn_conv1d_dim_minus2_legacy": (lambda: _LEGACY_WN(torch.nn.Conv1d(2, 3, 2), dim=-2),
                                    lambda: weight_norm(nn.Conv1d(2, 3, 2), dim=-2, legacy=True), (2, 2, 4)),
    "wn_linear_legacy": (lambda: _LEGACY_WN(torch.nn.Linear(4, 3)), lambda: weight_norm(nn.Linear(4, 3), legacy=True), (2, 4)),
    "sn_linear": (lambda: P.spectral_norm(torch.nn.Linear(4, 3)), lambda: spectral_norm(nn.Linear(4, 3)), (2, 4)),
    "sn_conv2d_3_iterations": (lambda: P.spectral_norm(torch.nn.Conv2d(2, 3, 3), n_power_iterations=3),
                               lambda: spectral_norm(nn.Conv2d(2, 3, 3), n_power_iterations=3), (2, 2, 5, 5)),
    "sn_convtranspose_dim1": (lambda: P.spectral_norm(torch.nn.ConvTranspose1d(3, 2, 2)),
                              lambda: spectral_norm(nn.ConvTranspose1d(3, 2, 2)), (2, 3, 4)),
    "sn_1d_weight": (lambda: P.spectral_norm(torch.nn.LayerNorm(4), eps=1e-3),
                     lambda: spectral_norm(nn.LayerNorm(4), eps=1e-3), (2, 4)),
    "sn_linear_legacy": (lambda: _LEGACY_SN(torch.nn.Linear(4, 3), n_power_iterations=2),
                         lambda: spectral_norm(nn.Linear(4, 3), n_power_iterations=2, legacy=True), (2, 4)),
    "sn_conv2d_legacy_dim1": (lambda: _LEGACY_SN(torch.nn.Conv2d(2, 3, 3), dim=1),
                              lambda: spectral_norm(nn.Conv2d(2, 3, 3), dim=1, legacy=True), (2, 2, 5, 5)),
}


def _compare(t, f, shape, dtype, rtol):
    """Three calls (eval, train, train) from torch's weights: outputs, every parameter's
    gradient and the buffers torch updates in place."""
    t = t.to(dtype)
    params, state = f.init(jax.random.key(0))
    names = [n for n, _ in f.named_parameters(params)] + [n for n, _ in f.named_buffers(state)]
    assert names == list(t.state_dict()), (names, list(t.state_dict()))
    assert repr(f) == repr(t)
    loaded = load_state_dict(f, t.state_dict())
    params, state = loaded.params, loaded.state
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float64 if dtype == torch.float64 else np.float32)
    w = np.random.default_rng(1).standard_normal(f(params, state, jnp.asarray(x))[0].shape).astype(x.dtype)
    for train in (False, True, True):
        t.train(train)
        t.zero_grad()
        ty = t(torch.as_tensor(x))
        (ty * torch.as_tensor(w)).sum().backward()
        loss = lambda p: jnp.sum(f(p, state, jnp.asarray(x), train=train)[0] * w)  # noqa: E731
        (y, new_state), g = f(params, state, jnp.asarray(x), train=train), jax.grad(loss)(params)
        assert_close(y, to_np(ty), rtol, f"forward, train={train}")
        tp = dict(t.named_parameters())
        for n, a in f.named_parameters(g):
            assert_close(a, to_np(tp[n].grad), rtol, f"grad {n}, train={train}")
        tsd = t.state_dict()
        for n, a in f.named_buffers(new_state):
            assert_close(a, to_np(tsd[n]), rtol, f"buffer {n}, train={train}")
        state = new_state


@pytest.mark.parametrize("case", list(CASES))
def test_float64_matches_torch(x64, case):
    torch.manual_seed(0)
    tm, fm, shape = CASES[case]
    _compare(tm(), fm(), shape, torch.float64, 1e-12)


@pytest.mark.parametrize("case", ["wn_conv2d", "sn_conv2d_3_iterations", "sn_linear_legacy"])
def test_float32_matches_torch(case):
    torch.manual_seed(0)
    tm, fm, shape = CASES[case]
    _compare(tm(), fm(), shape, torch.float32, 1e-5)


def test_init_starts_from_the_layers_own_weight(x64):
    inner = nn.Conv2d(2, 3, 3)
    for f in (weight_norm(inner), weight_norm(inner, dim=None, legacy=True)):
        params, _ = f.init(jax.random.key(0))
        w = inner.init(jax.random.split(jax.random.key(0))[0])[0]["weight"]
        x = jnp.ones((1, 2, 3, 3))
        y, _ = f(params, {}, x)
        bias = params["bias"]
        assert_close(y, nn.Conv2d(2, 3, 3)({"weight": w, "bias": bias}, {}, x)[0], 1e-12, "init weight")
    sn = spectral_norm(nn.Linear(5, 4))
    params, state = sn.init(jax.random.key(1))
    u = state["parametrizations"]["weight"]["0"]["_u"]
    w = params["parametrizations"]["weight"]["original"]
    # torch runs 15 power-method steps at creation: sigma is the largest singular value
    assert_close(u @ w @ state["parametrizations"]["weight"]["0"]["_v"], np.linalg.svd(np.asarray(w))[1][0], 1e-6, "sigma")


def test_jit_train_step_updates_the_power_method_state():
    f = spectral_norm(nn.Linear(6, 4), n_power_iterations=1)
    params, state = f.init(jax.random.key(0))
    step = jax.jit(lambda p, s, x: f(p, s, x, train=True))
    _, s1 = step(params, state, jnp.ones((2, 6)))
    _, s_eval = f(params, state, jnp.ones((2, 6)))
    u0, u1 = (s["parametrizations"]["weight"]["0"]["_u"] for s in (state, s1))
    assert s_eval["parametrizations"]["weight"]["0"]["_u"] is u0  # eval keeps u, v
    assert u1.shape == u0.shape and float(jnp.abs(u1 - u0).max()) < 1e-3  # converged at init, moved by rounding


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = P.weight_norm(torch.nn.Conv1d(2, 4, 3))
        self.c2 = _LEGACY_WN(torch.nn.Conv1d(4, 4, 3, padding=1))
        self.t = P.spectral_norm(torch.nn.ConvTranspose1d(4, 3, 3))
        self.lin = _LEGACY_SN(torch.nn.Linear(7, 5))

    def forward(self, x):
        return self.lin(self.t(torch.relu(self.c2(torch.relu(self.c1(x))))))


def test_from_torch_converts_parametrized_layers(x64):
    torch.manual_seed(0)
    t = _Net().double()
    x = torch.randn(2, 2, 7, dtype=torch.float64)
    net, params, state = funcnets.from_torch(t, x)
    assert repr(net) == repr(t)
    for train in (False, True, True):
        t.train(train)
        t.zero_grad()
        ty = t(x)
        ty.sum().backward()
        g = jax.grad(lambda p: jnp.sum(net.apply(p, state, jnp.asarray(x.numpy()), train=train)[0]))(params)
        y, state = net.apply(params, state, jnp.asarray(x.numpy()), train=train)
        assert_close(y, to_np(ty), 1e-12, f"forward train={train}")
        tsd = t.state_dict()
        for k, v in state_dict(net, params, state).items():
            assert_close(v, to_np(tsd[k]), 1e-12, k)
        tp = dict(t.named_parameters())
        for k, v in net.named_parameters(g):
            assert_close(v, to_np(tp[k].grad), 1e-12, f"grad {k}")


def test_errors():
    with pytest.raises(ValueError, match=r"has no parameter 'bias' of its own; its parameters are \['weight'\]"):
        weight_norm(nn.Linear(2, 3, bias=False), name="bias")
    with pytest.raises(ValueError, match="Expected n_power_iterations to be positive, but got n_power_iterations=0"):
        spectral_norm(nn.Linear(2, 3), n_power_iterations=0)
    with pytest.raises(ValueError, match="Expected n_power_iterations to be positive"):  # torch's message
        P.spectral_norm(torch.nn.Linear(2, 3), n_power_iterations=0)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\] but got 2\)"):
        spectral_norm(nn.Linear(2, 3), dim=2)


def test_other_parametrizations_are_still_refused():
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = P.orthogonal(torch.nn.Linear(3, 3))
            self.b = P.weight_norm(P.weight_norm(torch.nn.Linear(3, 3)), name="bias", dim=None)

        def forward(self, x):
            return self.b(self.a(x))

    with pytest.raises(UnsupportedOperationError) as e:
        funcnets.from_torch(Two(), torch.randn(2, 3))
    assert "module a (ParametrizedLinear): its 'weight' is parametrized" in str(e.value)
    assert "module b (ParametrizedLinear): its 'weight', 'bias' is parametrized" in str(e.value)

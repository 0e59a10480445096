"""ParameterList / ParameterDict against torch: state_dict names and order, weights
loaded from torch, forward and gradients (float64, 1e-12), repr, errors, and from_torch
of a torch model that owns them."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcnets
import funcnets.nn as nn
from funcnets.torch_io import load_state_dict
from helpers import assert_close, to_np


class TorchGated(torch.nn.Module):
    def __init__(self, d: int, n: int):
        super().__init__()
        self.gates = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(d)) for _ in range(n)])
        self.lin = torch.nn.Linear(d, d)
        self.affine = torch.nn.ParameterDict({"scale": torch.nn.Parameter(torch.randn(d)),
                                              "shift": torch.nn.Parameter(torch.randn(1))})

    def forward(self, x):
        for g in self.gates:
            x = torch.tanh(self.lin(x)) * g
        return x * self.affine["scale"] + self.affine["shift"]


@dataclass(frozen=True, repr=False)
class Gated(nn.Module):
    d: int
    n: int
    gates: nn.ParameterList = field(init=False)
    lin: nn.Linear = field(init=False)
    affine: nn.ParameterDict = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("gates", nn.ParameterList([np.ones(self.d) for _ in range(self.n)]))
        set_("lin", nn.Linear(self.d, self.d))
        set_("affine", nn.ParameterDict({"scale": np.ones(self.d), "shift": np.zeros(1)}))

    def apply(self, params, state, x, *, train=False, key=None):
        for g in self.gates.values(params["gates"]):
            x = jnp.tanh(self.lin(params["lin"], {}, x)[0]) * g
        return x * params["affine"]["scale"] + params["affine"]["shift"], state


def test_names_weights_forward_and_gradients_match_torch(x64):
    torch.manual_seed(0)
    t = TorchGated(4, 3).double()
    m = Gated(4, 3)
    params, _ = m.init(jax.random.key(0))
    assert [n for n, _ in m.named_parameters(params)] == [n for n, _ in t.named_parameters()]
    assert params["gates"]["2"].tolist() == [1.0] * 4 and params["affine"]["shift"].tolist() == [0.0]
    params = load_state_dict(m, t.state_dict()).params
    x = np.random.default_rng(0).standard_normal((5, 4))
    xt = torch.as_tensor(x).requires_grad_()
    ty = t(xt)
    (ty * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    y, _ = m(params, {}, jnp.asarray(x))
    assert_close(y, to_np(ty), 1e-12, "forward")
    gp, gx = jax.grad(lambda p, x: jnp.sum(m(p, {}, x)[0] * jnp.arange(4.0)), argnums=(0, 1))(params, jnp.asarray(x))
    assert_close(gx, to_np(xt.grad), 1e-12, "input grad")
    tg = dict(t.named_parameters())
    for n, g in m.named_parameters(gp):
        assert_close(g, to_np(tg[n].grad), 1e-12, n)


def test_from_torch_converts_a_model_that_owns_them(x64):
    torch.manual_seed(1)
    t = TorchGated(3, 2).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    net, params, state = funcnets.from_torch(t, x)
    assert len(jax.tree_util.tree_leaves(params)) == len(t.state_dict()) == 6
    y, _ = net.apply(params, state, jnp.asarray(x.numpy()))
    assert_close(y, to_np(t(x)), 1e-12, "converted forward")
    g = jax.grad(lambda p: jnp.sum(net.apply(p, state, jnp.asarray(x.numpy()))[0]))(params)
    t(x).sum().backward()
    assert_close(g["gates"]["1"], to_np(t.gates[1].grad), 1e-12, "converted gate grad")
    assert_close(g["affine"]["shift"], to_np(t.affine["shift"].grad), 1e-12, "converted shift grad")


@pytest.mark.parametrize("values", [
    [], [np.ones(3, np.float32)], [np.ones((3, 4), np.float32), np.ones((), np.float64)],
    [np.ones((2, 1), np.float16), np.ones(5, np.complex64)],
])
def test_repr_is_torchs(values):
    tvals = [torch.nn.Parameter(torch.as_tensor(v)) for v in values]
    assert repr(nn.ParameterList(values)) == repr(torch.nn.ParameterList(tvals))
    named = {f"p{i}": v for i, v in enumerate(values)}
    assert repr(nn.ParameterDict(named)) == repr(torch.nn.ParameterDict(dict(zip(named, tvals))))


def test_dict_order_values_and_list_ops():
    # torch's update(): a repeated key keeps its first position and takes the last value
    pairs = [("b", np.ones(1, np.float32)), ("a", np.ones(2, np.float32)), ("b", np.ones(3, np.float32))]
    tpd = torch.nn.ParameterDict([(k, torch.as_tensor(v)) for k, v in pairs])
    pd = nn.ParameterDict(pairs)
    assert pd.keys() == tuple(tpd.keys()) and list(pd) == list(tpd) and len(pd) == len(tpd)
    assert "a" in pd and "c" not in pd
    params, _ = pd.init(jax.random.key(0))
    assert params["b"].shape == tuple(tpd["b"].shape) == (3,)
    pl = nn.ParameterList([np.zeros(2, np.float32)]) + nn.ParameterList([np.ones(3, np.float32)])
    params, _ = pl.init(jax.random.key(0))
    assert len(pl) == 2 and [v.tolist() for v in pl.values(params)] == [[0.0, 0.0], [1.0, 1.0, 1.0]]


def test_values_are_frozen_copies_and_modules_hash_by_value():
    v = np.ones(3, np.float32)
    pl = nn.ParameterList([v])
    v[0] = 5.0  # the module keeps the value it was built with
    params, _ = pl.init(jax.random.key(0))
    assert params["0"].tolist() == [1.0, 1.0, 1.0]
    assert pl == nn.ParameterList([np.ones(3, np.float32)]) and hash(pl) == hash(nn.ParameterList([np.ones(3, np.float32)]))
    assert pl != nn.ParameterList([np.ones(3, np.float64)]) and pl != nn.ParameterList([np.ones(4, np.float32)])


def test_errors():
    with pytest.raises(TypeError, match="floating-point or complex .* got dtype int64"):
        nn.ParameterList([np.arange(3)])
    with pytest.raises(RuntimeError, match="Only Tensors of floating point"):  # torch refuses it too
        torch.nn.ParameterList([torch.arange(3)])
    with pytest.raises(KeyError, match="parameter name can"):
        nn.ParameterDict({"a.b": np.ones(1)})
    with pytest.raises(KeyError, match="parameter name can"):
        torch.nn.ParameterDict({"a.b": torch.ones(1)})
    with pytest.raises(NotImplementedError, match="ParameterList has no apply"):
        nn.ParameterList([np.ones(1)]).apply({}, {}, jnp.ones(1))
    with pytest.raises(NotImplementedError, match="ParameterDict has no apply"):
        nn.ParameterDict({"a": np.ones(1)}).apply({}, {}, jnp.ones(1))

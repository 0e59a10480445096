"""Sequential / ModuleList / ModuleDict against torch, and a user-written module whose
parameter and buffer names are torch's state_dict keys."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcnets.nn as nn
from funcnets.errors import ShapeError
from funcnets.nn.module import replace
from funcnets.torch_io import load_state_dict
from helpers import assert_close, to_np


def _pair():
    f = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 5), torch.nn.Tanh(),
                            torch.nn.Linear(5, 2)).double()
    return f, t


def test_sequential_indexing_slicing_and_names(x64):
    f, t = _pair()
    assert repr(f) == repr(t) and len(f) == len(t) == 5
    assert repr(f[-1]) == repr(t[-1]) and repr(f[1]) == repr(t[1])
    assert [repr(m) for m in f] == [repr(m) for m in t]
    with pytest.raises(IndexError, match="index 5 is out of range"):
        f[5]
    for sl in (slice(1, 4), slice(None, None, 2), slice(-2, None), slice(3, 1)):
        assert [n for n, _ in f[sl].children()] == [n for n, _ in t[sl].named_children()], sl
        assert repr(f[sl]) == repr(t[sl])
    # the sliced Sequential runs on the same params, picked by its (original) names
    params = load_state_dict(f, t.state_dict()).params
    sub = f[2:]
    sub_params = {k: params[k] for k in sub.names if k in params}
    x = np.random.default_rng(0).standard_normal((3, 4))
    y, _ = sub(sub_params, {}, jnp.asarray(x))
    assert_close(y, to_np(t[2:](torch.as_tensor(x))), 1e-12, "sliced forward")
    assert [n for n, _ in sub.named_parameters(sub_params)] == list(t[2:].state_dict())
    both = f[:2] + f[2:]
    assert [n for n, _ in both.children()] == ["0", "1", "2", "3", "4"] and repr(both) == repr(t)
    with pytest.raises(ValueError, match="add operator supports only objects of Sequential"):
        f + nn.ReLU()


def test_sequential_ordereddict_names_and_errors(x64):
    od = [("conv", nn.Linear(3, 4)), ("act", nn.ReLU()), ("head", nn.Linear(4, 2))]
    tod = [("conv", torch.nn.Linear(3, 4)), ("act", torch.nn.ReLU()), ("head", torch.nn.Linear(4, 2))]
    f, t = nn.Sequential(OrderedDict(od)), torch.nn.Sequential(OrderedDict(tod)).double()
    assert repr(f) == repr(t)
    params, state = f.init(jax.random.PRNGKey(0))
    assert [n for n, _ in f.named_parameters(params)] == list(t.state_dict())
    params = load_state_dict(f, t.state_dict()).params
    x = np.random.default_rng(1).standard_normal((2, 3))
    assert_close(f(params, {}, jnp.asarray(x))[0], to_np(t(torch.as_tensor(x))), 1e-12, "named forward")
    assert repr(f[1:]) == repr(t[1:])
    # replace() keeps the names
    g, p2, _ = replace(f, params, {}, "head", nn.Linear(4, 7), jax.random.PRNGKey(1))
    assert [n for n, _ in g.children()] == ["conv", "act", "head"] and p2["head"]["weight"].shape == (7, 4)
    # an error inside names the child by its name
    with pytest.raises(ShapeError, match="^conv: Linear"):
        f(params, {}, jnp.ones((2, 5)))
    with pytest.raises(TypeError, match="argument 1 is int"):
        nn.Sequential(nn.ReLU(), 3)
    with pytest.raises(KeyError, match="be empty"):
        nn.Sequential(OrderedDict([("a.b", nn.ReLU())]))


def test_modulelist_and_moduledict():
    lin = [nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)]
    tlin = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 3)]
    ml, tml = nn.ModuleList(lin), torch.nn.ModuleList(tlin)
    assert repr(ml) == repr(tml)  # "(0-2): 3 x Linear(...)"
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())
    assert repr(ml[1:4]) == repr(tml[1:4]) and [n for n, _ in ml[1:4].children()] == ["0", "1", "2"]
    assert repr(ml + ml[:1]) == repr(tml + tml[:1]) and len(ml) == 5 and repr(ml[-1]) == repr(tml[-1])
    params, _ = ml.init(jax.random.PRNGKey(0))
    assert [n for n, _ in ml.named_parameters(params)] == list(tml.state_dict())
    with pytest.raises(NotImplementedError, match="iterate it"):
        ml(params, {}, jnp.ones(2))
    md = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.ReLU(), "c": nn.Linear(3, 1, bias=False)})
    tmd = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 3), "b": torch.nn.ReLU(), "c": torch.nn.Linear(3, 1, bias=False)})
    assert repr(md) == repr(tmd) and list(md) == list(tmd) == md.keys() and "b" in md and len(md) == 3
    assert repr(md["c"]) == repr(tmd["c"])
    params, _ = md.init(jax.random.PRNGKey(0))
    assert [n for n, _ in md.named_parameters(params)] == list(tmd.state_dict())
    with pytest.raises(KeyError):
        md["z"]
    # hashable, so a valid static jit argument
    assert hash(ml) == hash(nn.ModuleList(lin)) and md == nn.ModuleDict(list(md.items()))


# --- a user-written module: own parameter, a ModuleList of Linears, a buffer --------
class TorchStack(torch.nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.randn(d))
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(n)])
        self.register_buffer("shift", torch.randn(d))
        self.head = torch.nn.Linear(d, 1)

    def forward(self, x):
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.head(x * self.scale + self.shift)


@dataclass(frozen=True, repr=False)
class Stack(nn.Module):
    d: int
    n: int
    blocks: nn.ModuleList = field(init=False)
    head: nn.Linear = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "blocks", nn.ModuleList([nn.Linear(self.d, self.d) for _ in range(self.n)]))
        object.__setattr__(self, "head", nn.Linear(self.d, 1))

    def param_names(self):
        return ("scale",)

    def buffer_names(self):
        return ("shift",)

    def init_own(self, key):
        return {"scale": jnp.ones(self.d)}, {"shift": jnp.zeros(self.d)}

    def apply(self, params, state, x, *, train=False, key=None):
        blocks = nn.Scope(params.get("blocks", {}), state.get("blocks", {}), train, key)
        for name, block in self.blocks.children():
            x = jax.nn.relu(blocks(name, block, x))
        top = nn.Scope(params, state, train, key)
        return top("head", self.head, x * params["scale"] + state["shift"]), state


def test_custom_module_names_and_torch_weights(x64):
    torch.manual_seed(0)
    t = TorchStack(4, 3).double()
    m = Stack(4, 3)
    params, state = m.init(jax.random.PRNGKey(0))
    names = [n for n, _ in m.named_parameters(params)] + [n for n, _ in m.named_buffers(state)]
    assert [n for n, _ in m.named_parameters(params)] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in m.named_buffers(state)] == [n for n, _ in t.named_buffers()]
    assert sorted(names) == sorted(t.state_dict())
    loaded = load_state_dict(m, t.state_dict())
    params, state = loaded.params, loaded.state
    x = np.random.default_rng(0).standard_normal((5, 4))
    xt = torch.as_tensor(x).requires_grad_()
    ty = t(xt)
    ty.sum().backward()
    y, _ = m(params, state, jnp.asarray(x))
    assert_close(y, to_np(ty), 1e-12, "custom module forward")
    gp, gx = jax.grad(lambda p, x: jnp.sum(m(p, state, x)[0]), argnums=(0, 1))(params, jnp.asarray(x))
    assert_close(gx, to_np(xt.grad), 1e-12, "input grad")
    tg = dict(t.named_parameters())
    for n, g in m.named_parameters(gp):
        assert_close(g, to_np(tg[n].grad), 1e-12, n)
    assert repr(m).startswith("Stack(\n  (blocks): ModuleList(\n    (0-2): 3 x Linear(in_features=4, out_features=4")

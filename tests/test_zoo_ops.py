"""torchvision.ops' shared blocks (``funcnets.models._ops``) against torchvision's: state_dict
names and order, values in float64 (1e-10), and stochastic depth's statistics."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from funcnets import nn, torch_io
from funcnets.models._ops import MLP, Conv2dNormActivation, Permute, SqueezeExcitation, stochastic_depth
from helpers import assert_close, to_np

tops = torchvision.ops


def _check(tm, model, x, x64_on=True, train=False):
    tm = tm.double().train(train)
    sd = tm.state_dict()
    assert list(torch_io._template(model)) == list(sd)
    params, state, *_ = torch_io.load_state_dict(model, sd)
    ref = tm(x).detach()
    y, _ = jax.jit(lambda p, s, x: model(p, s, x, train=train))(params, state, jnp.asarray(to_np(x)))
    assert_close(y, to_np(ref), 1e-10, repr(model))


@pytest.mark.parametrize("case", ["default", "hardswish_bn_eps", "no_norm", "dilated_grouped"])
def test_conv2d_norm_activation(case, x64):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    if case == "default":
        args = dict(kernel_size=3, stride=2)
        t, f = tops.Conv2dNormActivation(4, 6, **args), Conv2dNormActivation(4, 6, **args)
    elif case == "hardswish_bn_eps":
        t = tops.Conv2dNormActivation(4, 8, 5, norm_layer=partial(torch.nn.BatchNorm2d, eps=1e-3, momentum=0.01),
                                      activation_layer=torch.nn.Hardswish)
        f = Conv2dNormActivation(4, 8, 5, norm_layer=partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01),
                                 activation_layer=nn.Hardswish)
    elif case == "no_norm":
        t = tops.Conv2dNormActivation(4, 6, 1, norm_layer=None, activation_layer=None)
        f = Conv2dNormActivation(4, 6, 1, norm_layer=None, activation_layer=None)
    else:
        t = tops.Conv2dNormActivation(4, 4, 3, groups=4, dilation=2, activation_layer=torch.nn.SiLU)
        f = Conv2dNormActivation(4, 4, 3, groups=4, dilation=2, activation_layer=nn.SiLU)
    _check(t, f, x, train=(case == "default"))


def test_squeeze_excitation_and_mlp(x64):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    _check(tops.SqueezeExcitation(6, 3), SqueezeExcitation(6, 3), x)
    _check(tops.SqueezeExcitation(6, 2, torch.nn.SiLU, torch.nn.Hardsigmoid),
           SqueezeExcitation(6, 2, nn.SiLU, nn.Hardsigmoid), x)
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    _check(tops.MLP(6, [8, 7, 4], norm_layer=torch.nn.LayerNorm, activation_layer=torch.nn.GELU),
           MLP(6, [8, 7, 4], norm_layer=nn.LayerNorm, activation_layer=nn.GELU), x)
    _check(tops.Permute([0, 2, 1]), Permute([0, 2, 1]), x)


def test_replace_inside_conv_norm_activation():
    block = Conv2dNormActivation(3, 4)
    params, state = block.init(jax.random.PRNGKey(0))
    new, p2, s2 = nn.replace(block, params, state, "2", nn.SiLU(), jax.random.PRNGKey(1))
    assert type(new) is Conv2dNormActivation and isinstance(new[2], nn.SiLU) and new[0] == block[0]


def test_stochastic_depth_statistics_and_errors():
    x = jnp.ones((4000, 3))
    y = np.asarray(stochastic_depth(x, 0.3, "row", True, jax.random.PRNGKey(0)))
    kept = (y[:, 0] != 0).mean()
    assert abs(kept - 0.7) < 0.03 and np.allclose(y[y != 0], 1 / 0.7)
    assert np.all(y == y[:, :1])  # one draw per row
    b = np.asarray(stochastic_depth(x, 0.5, "batch", True, jax.random.PRNGKey(1)))
    assert np.all(b == b.flat[0]) and b.flat[0] in (0.0, 2.0)
    assert stochastic_depth(x, 0.3, "row", False) is x
    with pytest.raises(ValueError, match="mode has to be either"):
        stochastic_depth(x, 0.3, "col", True, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        stochastic_depth(x, 0.3, "row", True)

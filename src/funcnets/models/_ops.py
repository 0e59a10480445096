"""The building blocks torchvision's models share (``torchvision/ops/misc.py`` and
``torchvision/ops/stochastic_depth.py``), with torchvision's names and ``state_dict`` keys.

- :class:`Conv2dNormActivation`: a ``Sequential`` of conv → norm → activation, named
  ``"0"``, ``"1"``, ``"2"`` (MobileNet, EfficientNet, RegNet, MaxViT, ConvNeXt's stem).
- :class:`SqueezeExcitation`: ``x · σ(fc2(δ(fc1(avgpool(x)))))`` with 1×1 convolutions
  (MobileNetV3, EfficientNet, RegNet Y, MaxViT).
- :func:`stochastic_depth` / :class:`StochasticDepth`: drop whole residual branches per
  sample (``"row"``) or per batch (``"batch"``) in training, scaled by 1 / (1 − p).
- :class:`MLP`: Linear → [norm] → activation → Dropout ..., Linear → Dropout (ViT, Swin).
- :class:`Permute`: ``x.permute(dims)`` as a module (ConvNeXt, Swin).

Layer factories follow torchvision: ``norm_layer`` and ``activation_layer`` are callables
(a class or a ``functools.partial``) called as ``norm_layer(out_channels)`` and
``activation_layer()``; ``None`` leaves the layer out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from funcnets._typing import Array, PRNGKey
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, ReLU, Sequential, Sigmoid
from funcnets.nn.module import Module, Scope

__all__ = ["Conv2dNormActivation", "SqueezeExcitation", "StochasticDepth", "stochastic_depth", "MLP", "Permute"]


class _NamedSequential(Sequential):
    """A ``Sequential`` subclass built from its own constructor arguments (torchvision's
    ``Conv2dNormActivation``, ``MLP``): ``nn.replace`` rebuilds it from its children, not by
    calling that constructor again."""

    def _with_child(self, name: str, child: Module) -> Sequential:
        new = object.__new__(type(self))
        Sequential.__init__(new, OrderedDict((k, child if k == name else m) for k, m in self.children()))
        return new


class Conv2dNormActivation(_NamedSequential):
    """``torchvision.ops.Conv2dNormActivation``: ``(N, C_in, H, W) -> (N, C_out, H', W')``.

    ``padding=None`` is ``(kernel_size - 1) // 2 * dilation`` ("same" for odd kernels at
    stride 1); ``bias=None`` means a bias only when there is no norm layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: Callable[..., Module] | None = BatchNorm2d,
        activation_layer: Callable[..., Module] | None = ReLU,
        dilation: int = 1,
        inplace: bool | None = True,
        bias: bool | None = None,
    ):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers = [Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                         groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())  # inplace changes nothing in a pure function
        super().__init__(*layers)


@dataclass(frozen=True, repr=False)
class SqueezeExcitation(Module):
    """``torchvision.ops.SqueezeExcitation``: ``x: (N, C, H, W) -> x · scale``, with
    ``scale = scale_activation(fc2(activation(fc1(mean_{H,W}(x)))))`` of shape (N, C, 1, 1).
    """

    input_channels: int
    squeeze_channels: int
    activation: Callable[..., Module] = ReLU
    scale_activation: Callable[..., Module] = Sigmoid
    avgpool: AdaptiveAvgPool2d = field(init=False)
    fc1: Conv2d = field(init=False)
    fc2: Conv2d = field(init=False)
    act: Module = field(init=False)
    scale_act: Module = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("avgpool", AdaptiveAvgPool2d(1))
        set_("fc1", Conv2d(self.input_channels, self.squeeze_channels, 1))
        set_("fc2", Conv2d(self.squeeze_channels, self.input_channels, 1))
        set_("act", self.activation())
        set_("scale_act", self.scale_activation())

    def children(self):
        # torch's attribute names (``activation``, ``scale_activation``) are taken by the
        # factories here; neither child has parameters, so only the order matters
        return [("avgpool", self.avgpool), ("fc1", self.fc1), ("fc2", self.fc2),
                ("activation", self.act), ("scale_activation", self.scale_act)]

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, None)
        scale = s("avgpool", self.avgpool, x)
        scale = s("fc2", self.fc2, s("activation", self.act, s("fc1", self.fc1, scale)))
        return x * s("scale_activation", self.scale_act, scale), s.state


def stochastic_depth(input: Array, p: float, mode: str, training: bool = True, key: PRNGKey | None = None) -> Array:
    """``torchvision.ops.stochastic_depth``: in training, zero each sample (``mode="row"``)
    or the whole batch (``"batch"``) with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; the identity in eval or when ``p == 0``. ``input: (N, ...)``."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ("batch", "row"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    if key is None:
        raise ValueError("stochastic_depth in training needs a PRNG key: pass key=jax.random.PRNGKey(...)")
    survival = 1.0 - p
    shape = (input.shape[0],) + (1,) * (input.ndim - 1) if mode == "row" else (1,) * input.ndim
    noise = jax.random.bernoulli(key, survival, shape).astype(input.dtype)
    if survival > 0.0:
        noise = noise / survival
    return input * noise


@dataclass(frozen=True, repr=False)
class StochasticDepth(Module):
    """``torchvision.ops.StochasticDepth(p, mode)``; needs ``key=`` when ``train``."""

    p: float
    mode: str

    def apply(self, params, state, x, *, train=False, key=None):
        return stochastic_depth(x, self.p, self.mode, train, key), state

    def __repr__(self):
        return f"StochasticDepth(p={self.p}, mode={self.mode})"


class MLP(_NamedSequential):
    """``torchvision.ops.MLP``: for each hidden size but the last, Linear → [norm] →
    activation → Dropout; then Linear → Dropout. ``(..., in_channels) -> (..., hidden[-1])``."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: Sequence[int],
        norm_layer: Callable[..., Module] | None = None,
        activation_layer: Callable[..., Module] | None = ReLU,
        inplace: bool | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ):
        layers: list[Module] = []
        in_dim = in_channels
        for hidden_dim in hidden_channels[:-1]:
            layers.append(Linear(in_dim, hidden_dim, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(hidden_dim))
            layers += [activation_layer(), Dropout(dropout)]
            in_dim = hidden_dim
        layers += [Linear(in_dim, hidden_channels[-1], bias=bias), Dropout(dropout)]
        super().__init__(*layers)


@dataclass(frozen=True, repr=False)
class Permute(Module):
    """``torchvision.ops.Permute(dims)``: ``x.permute(dims)``."""

    dims: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "dims", tuple(self.dims))

    def apply(self, params, state, x, *, train=False, key=None):
        return jnp.transpose(x, self.dims), state

    def __repr__(self):
        return "Permute()"

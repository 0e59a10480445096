"""Layers with torch's names, layouts, default initialisation and ``repr``.

Each layer is a frozen dataclass of hyperparameters; see :mod:`funcnets.nn.module` for
the ``init``/``apply`` contract. Default init is torch's: weights
``kaiming_uniform_(a=sqrt(5))`` = U(±1/sqrt(fan_in)), biases U(±1/sqrt(fan_in));
BatchNorm γ=1, β=0, running_mean=0, running_var=1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnets._typing import Array, Params, PRNGKey, State
from funcnets.errors import ShapeError
from funcnets.nn import functional as F
from funcnets.nn.module import Module, Scope

__all__ = [
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "ReLU",
    "Flatten",
    "Dropout",
    "BatchNorm2d",
    "Identity",
    "Sequential",
]


def _uniform(key: PRNGKey, shape: tuple[int, ...], bound: float) -> Array:
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def _check_float(layer: Module, x: Array) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ShapeError(
            f"{layer!r} expected a floating-point input, got dtype {x.dtype}. "
            f"Convert it first, e.g. x.astype(jnp.float32) (images scaled to [0, 1])."
        )


@dataclass(frozen=True, repr=False)
class Linear(Module):
    """``y = x @ weight.T + bias``; ``x: (..., in_features) -> (..., out_features)``."""

    in_features: int
    out_features: int
    bias: bool = True

    def param_names(self):
        return ("weight", "bias") if self.bias else ("weight",)

    def init_own(self, key):
        kw, kb = jax.random.split(key)
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        params = {"weight": _uniform(kw, (self.out_features, self.in_features), bound)}
        if self.bias:
            params["bias"] = _uniform(kb, (self.out_features,), bound)
        return params, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{self!r} expected input (..., {self.in_features}), got {tuple(x.shape)}"
            )
        return F.linear(x, params["weight"], params.get("bias")), state

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias}"


@dataclass(frozen=True, repr=False)
class Conv2d(Module):
    """2-D convolution; ``x: (N, C_in, H, W) -> (N, C_out, H_out, W_out)`` (or unbatched
    ``(C_in, H, W)``), weight ``(C_out, C_in/groups, kH, kW)``."""

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self):
        for name in ("kernel_size", "stride", "padding", "dilation"):
            object.__setattr__(self, name, F._pair(getattr(self, name), name))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"Conv2d: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must both be divisible by groups ({self.groups})."
            )

    def param_names(self):
        return ("weight", "bias") if self.bias else ("weight",)

    def init_own(self, key):
        kw, kb = jax.random.split(key)
        kh, kwid = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kwid
        bound = 1.0 / math.sqrt(fan_in)
        params = {
            "weight": _uniform(kw, (self.out_channels, self.in_channels // self.groups, kh, kwid), bound)
        }
        if self.bias:
            params["bias"] = _uniform(kb, (self.out_channels,), bound)
        return params, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim not in (3, 4) or F._channels(x) != self.in_channels:
            raise ShapeError(f"{self!r} expected input {F._layout(self.in_channels)}, got {tuple(x.shape)}")
        unbatched, batch_axis = x.ndim == 3, F._batch_axis()
        xb = jnp.expand_dims(x, batch_axis) if unbatched else x
        h, w = F._hw(xb)
        eff = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)]
        if h + 2 * self.padding[0] < eff[0] or w + 2 * self.padding[1] < eff[1]:
            raise ShapeError(
                f"{self!r}: input {(h, w)} (padded {(h + 2 * self.padding[0], w + 2 * self.padding[1])}) "
                f"is smaller than the kernel {tuple(eff)}"
            )
        y = F.conv2d(xb, params["weight"], params.get("bias"), self.stride, self.padding, self.dilation, self.groups)
        return (jnp.squeeze(y, batch_axis) if unbatched else y), state

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if not self.bias:
            s += ", bias=False"
        return s


@dataclass(frozen=True, repr=False)
class MaxPool2d(Module):
    """Max pooling; stride defaults to kernel_size. ``(N, C, H, W) -> (N, C, H', W')``."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    ceil_mode: bool = False

    def __post_init__(self):
        if self.stride is None:
            object.__setattr__(self, "stride", self.kernel_size)

    def apply(self, params, state, x, *, train=False, key=None):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode), state

    def extra_repr(self):
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


@dataclass(frozen=True, repr=False)
class AvgPool2d(Module):
    """Average pooling with torch's divisor rules. ``(N, C, H, W) -> (N, C, H', W')``."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def __post_init__(self):
        if self.stride is None:
            object.__setattr__(self, "stride", self.kernel_size)

    def apply(self, params, state, x, *, train=False, key=None):
        y = F.avg_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override
        )
        return y, state

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@dataclass(frozen=True, repr=False)
class AdaptiveAvgPool2d(Module):
    """``(N, C, H, W) -> (N, C, *output_size)``."""

    output_size: int | tuple[int, int]

    def apply(self, params, state, x, *, train=False, key=None):
        return F.adaptive_avg_pool2d(x, self.output_size), state

    def extra_repr(self):
        return f"output_size={self.output_size}"


@dataclass(frozen=True, repr=False)
class ReLU(Module):
    """``max(x, 0)``, gradient 0 at 0 (``torch.nn.ReLU``)."""

    def apply(self, params, state, x, *, train=False, key=None):
        return F.relu(x), state


@dataclass(frozen=True, repr=False)
class Identity(Module):
    def apply(self, params, state, x, *, train=False, key=None):
        return x, state


@dataclass(frozen=True, repr=False)
class Flatten(Module):
    """Merge dims ``start_dim..end_dim``: ``(N, C, H, W) -> (N, C*H*W)`` in C, H, W order."""

    start_dim: int = 1
    end_dim: int = -1

    def apply(self, params, state, x, *, train=False, key=None):
        return F.flatten(x, self.start_dim, self.end_dim), state

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


@dataclass(frozen=True, repr=False)
class Dropout(Module):
    """Zero elements with probability ``p`` in training (needs ``key``); identity in eval."""

    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {self.p}")

    def apply(self, params, state, x, *, train=False, key=None):
        return F.dropout(x, self.p, train, key), state

    def extra_repr(self):
        return f"p={self.p}, inplace=False"


@dataclass(frozen=True, repr=False)
class BatchNorm2d(Module):
    """Batch normalisation over ``(N, H, W)`` per channel; ``(N, C, H, W) -> same``.

    Train mode normalises with batch statistics (biased variance) and returns updated
    running statistics (unbiased variance, ``momentum``) and ``num_batches_tracked + 1``;
    eval mode uses the running statistics. ``momentum=None`` is torch's cumulative average.
    """

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    bias: bool = True  # torch >= 2.14: affine with a learnable shift (False: scale only)
    track_running_stats: bool = True

    def param_names(self):
        if not self.affine:
            return ()
        return ("weight", "bias") if self.bias else ("weight",)

    def buffer_names(self):
        return ("running_mean", "running_var", "num_batches_tracked") if self.track_running_stats else ()

    def init_own(self, key):
        c = self.num_features
        params = {"weight": jnp.ones((c,)), "bias": jnp.zeros((c,))}
        params = {k: params[k] for k in self.param_names()}
        state = {}
        if self.track_running_stats:
            state = {
                "running_mean": jnp.zeros((c,)),
                "running_var": jnp.ones((c,)),
                # int64 in torch; int32 unless jax_enable_x64
                "num_batches_tracked": jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int64)),
            }
        return params, state

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim != 4 or F._channels(x) != self.num_features:
            raise ShapeError(f"{self!r} expected input {F._layout(self.num_features)}, got {tuple(x.shape)}")
        use_batch = train or not self.track_running_stats
        rm, rv = state.get("running_mean"), state.get("running_var")
        if not use_batch:
            y, _, _ = F.batch_norm(x, rm, rv, params.get("weight"), params.get("bias"), False, 0.0, self.eps)
            return y, state
        update = train and self.track_running_stats
        new_state = dict(state)
        momentum = self.momentum
        if update:
            new_state["num_batches_tracked"] = state["num_batches_tracked"] + 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / new_state["num_batches_tracked"].astype(x.dtype)
        y, rm2, rv2 = F.batch_norm(
            x, rm if update else None, rv if update else None,
            params.get("weight"), params.get("bias"), True, momentum, self.eps,
        )
        if update:
            new_state["running_mean"], new_state["running_var"] = rm2, rv2
        return y, new_state

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias}, track_running_stats={self.track_running_stats}"
        )


@dataclass(frozen=True, repr=False, init=False)
class Sequential(Module):
    """Applies its layers in order; children are named ``"0"``, ``"1"``, ... as in torch."""

    layers: tuple[Module, ...]

    def __init__(self, *layers: Module):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: argument {i} is {type(layer).__name__}, not a Module")
        object.__setattr__(self, "layers", tuple(layers))

    def children(self):
        return [(str(i), m) for i, m in enumerate(self.layers)]

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def apply(self, params: Params, state: State, x, *, train=False, key=None):
        scope = Scope(params, state, train, key)
        for name, layer in self.children():
            x = scope(name, layer, x)
        return x, scope.state

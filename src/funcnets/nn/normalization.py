"""``torch.nn.LayerNorm``, ``GroupNorm``, ``RMSNorm``, ``LocalResponseNorm``,
``CrossMapLRN2d`` and their functional forms (CrossMapLRN2d has none in torch).

None of them keeps buffers or behaves differently in train and eval mode. LayerNorm and
GroupNorm share BatchNorm's closed-form normalisation (``batchnorm._normalize``, whose
backward is two reductions and one elementwise pass). Inside :func:`channels_last` /
:func:`batch_last` a 4-D input is an image in that layout and is normalised as its NCHW
self would be (see ``batchnorm._torch_layout``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT, _channels, _check_float, _layout
from funcnets.nn.batchnorm import _normalize, _torch_layout
from funcnets.nn.module import Module

__all__ = [
    "layer_norm", "group_norm", "rms_norm", "local_response_norm",
    "LayerNorm", "GroupNorm", "RMSNorm", "LocalResponseNorm", "CrossMapLRN2d",
]

ShapeLike = int | Sequence[int]


def _shape_tuple(normalized_shape: ShapeLike) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(d) for d in normalized_shape)


def _trailing_axes(x: Array, normalized_shape: tuple[int, ...], who: str) -> tuple[int, ...]:
    """The axes that ``normalized_shape`` names (the last ones), after checking them."""
    k = len(normalized_shape)
    if k == 0:
        raise ValueError(f"{who}: normalized_shape must have at least one dimension, got ()")
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != normalized_shape:
        dims = ", ".join(map(str, normalized_shape))
        raise ShapeError(
            f"{who} expected input (*, {dims}), got {tuple(x.shape)}: its last {k} dimension(s) "
            f"must equal normalized_shape={normalized_shape}"
        )
    return tuple(range(x.ndim - k, x.ndim))


# ------------------------------------------------------------------------ LayerNorm
def layer_norm(
    x: Array,
    normalized_shape: ShapeLike,
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> Array:
    """``torch.nn.functional.layer_norm``: normalise over the last dimensions.

    ``y = (x - E[x]) / sqrt(Var[x] + eps) · weight + bias`` with the mean and the biased
    variance taken over the trailing ``normalized_shape`` dimensions of each sample.

    Args:
      x: ``(*, *normalized_shape)``; weight, bias: ``normalized_shape``.
    Returns:
      ``y`` with ``x``'s shape.
    """
    x, back = _torch_layout(x)
    return back(_layer_norm(x, _shape_tuple(normalized_shape), weight, bias, eps, "layer_norm"))


def _opmath(x: Array) -> jnp.dtype:
    """The dtype torch computes a normalisation of ``x`` in: float32 for a float16/bfloat16
    input (rounded once, at the end), else ``x``'s. Normalising in bfloat16 itself rounds
    the mean before subtracting it: LayerNorm(8) of bfloat16 values around 100 was 0.3 off."""
    return jnp.dtype(jnp.float32) if x.dtype in (jnp.float16, jnp.bfloat16) else x.dtype


def _layer_norm(x, normalized_shape, weight, bias, eps, who):
    out = jnp.result_type(x, *(a for a in (weight, bias) if a is not None))
    y, _, _ = _normalize(x.astype(_opmath(x)), _trailing_axes(x, normalized_shape, who), eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(out)


@dataclass(frozen=True, repr=False)
class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` dimensions;
    ``(*, *normalized_shape) -> same``. ``elementwise_affine`` adds ``weight`` (ones) and,
    if ``bias``, ``bias`` (zeros), both of shape ``normalized_shape``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.LayerNorm(8)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.arange(16.0).reshape(2, 8))
        >>> y.shape, round(float(y[0].std()), 4)              # each row: mean 0, std 1
        ((2, 8), 1.0)
    """

    normalized_shape: ShapeLike
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True

    def __post_init__(self):
        object.__setattr__(self, "normalized_shape", _shape_tuple(self.normalized_shape))

    def param_names(self):
        if not self.elementwise_affine:
            return ()
        return ("weight", "bias") if self.bias else ("weight",)

    def init_own(self, key):
        params = {"weight": jnp.ones(self.normalized_shape), "bias": jnp.zeros(self.normalized_shape)}
        return {k: params[k] for k in self.param_names()}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        x, back = _torch_layout(x)
        y = _layer_norm(x, self.normalized_shape, params.get("weight"), params.get("bias"), self.eps, repr(self))
        return back(y), state

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.elementwise_affine and self.bias}"
        )


# ------------------------------------------------------------------------ RMSNorm
def rms_norm(
    x: Array,
    normalized_shape: ShapeLike,
    weight: Array | None = None,
    eps: float | None = None,
) -> Array:
    """``torch.nn.functional.rms_norm``: ``y = x / sqrt(mean(x²) + eps) · weight`` with the
    mean over the trailing ``normalized_shape`` dimensions; ``eps=None`` is
    ``jnp.finfo(x.dtype).eps``, as in torch (float32's for a float16/bfloat16 ``x``,
    which is computed in float32).

    Args:
      x: ``(*, *normalized_shape)``; weight: ``normalized_shape``.
    Returns:
      ``y`` with ``x``'s shape.
    """
    x, back = _torch_layout(x)
    return back(_rms_norm(x, _shape_tuple(normalized_shape), weight, eps, "rms_norm"))


def _rms_norm(x, normalized_shape, weight, eps, who):
    axes = _trailing_axes(x, normalized_shape, who)
    # torch's eps=None is the epsilon of the dtype it computes in (1.19e-7 for a bfloat16
    # input, computed in float32), not the input's (7.8e-3)
    opmath = _opmath(x)
    if eps is None:
        eps = float(jnp.finfo(opmath).eps)
    xu = x.astype(opmath)
    y = (xu * lax.rsqrt(jnp.mean(xu * xu, axis=axes, keepdims=True) + eps)).astype(x.dtype)
    return y if weight is None else y * weight


@dataclass(frozen=True, repr=False)
class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing ``normalized_shape`` dimensions;
    ``(*, *normalized_shape) -> same``; ``elementwise_affine`` adds ``weight`` (ones).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.RMSNorm(4)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.array([[1.0, 2.0, 3.0, 4.0]]))
        >>> [round(float(v), 4) for v in y[0]]  # x / sqrt(mean(x^2)) = x / sqrt(7.5), as torch
        [0.3651, 0.7303, 1.0954, 1.4606]
    """

    normalized_shape: ShapeLike
    eps: float | None = None
    elementwise_affine: bool = True

    def __post_init__(self):
        object.__setattr__(self, "normalized_shape", _shape_tuple(self.normalized_shape))

    def param_names(self):
        return ("weight",) if self.elementwise_affine else ()

    def init_own(self, key):
        return ({"weight": jnp.ones(self.normalized_shape)} if self.elementwise_affine else {}), {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        x, back = _torch_layout(x)
        return back(_rms_norm(x, self.normalized_shape, params.get("weight"), self.eps, repr(self))), state

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


# ------------------------------------------------------------------------ GroupNorm
def group_norm(
    x: Array,
    num_groups: int,
    weight: Array | None = None,
    bias: Array | None = None,
    eps: float = 1e-5,
) -> Array:
    """``torch.nn.functional.group_norm``: split the channels into ``num_groups`` groups
    and normalise each sample's group over its channels and spatial positions (biased
    variance); then ``· weight + bias`` per channel.

    Args:
      x: ``(N, C, *)`` (4-D: ``(N, H, W, C)`` inside :func:`channels_last`, ``(C, H, W,
        N)`` inside :func:`batch_last`), ``C`` divisible by ``num_groups``; weight, bias: ``(C,)``.
    Returns:
      ``y`` with ``x``'s shape.
    """
    x, back = _torch_layout(x)
    return back(_group_norm(x, num_groups, weight, bias, eps, "group_norm"))


def _group_norm(x, num_groups, weight, bias, eps, who):
    if x.ndim < 2:
        raise ShapeError(f"{who} expected input (N, C, *), got {tuple(x.shape)}: add the batch dimension")
    n, c = x.shape[:2]
    if c % num_groups:
        raise ShapeError(
            f"{who}: expected the number of channels to be divisible by num_groups={num_groups}, "
            f"got input of shape {tuple(x.shape)}"
        )
    # torch's check (F._verify_batch_size on [N·C/G, G, *spatial]), message included
    size = [n * c // num_groups, num_groups, *x.shape[2:]]
    if size[0] * math.prod(size[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")
    out = jnp.result_type(x, *(a for a in (weight, bias) if a is not None))
    y, _, _ = _normalize(x.astype(_opmath(x)).reshape(n, num_groups, -1), (2,), eps)
    y = y.reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.astype(out)


@dataclass(frozen=True, repr=False)
class GroupNorm(Module):
    """Group normalisation; ``(N, C, *) -> same`` with ``C = num_channels``. ``affine``
    adds ``weight`` (ones) and, if ``bias``, ``bias`` (zeros), both ``(C,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.GroupNorm(2, 4)  # channels {0, 1} and {2, 3} normalised together
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.arange(16.0).reshape(1, 4, 2, 2))
        >>> groups = y.reshape(2, 8)
        >>> [round(float(v), 4) for v in groups.std(1)], [abs(round(float(v), 4)) for v in groups.mean(1)]
        ([1.0, 1.0], [0.0, 0.0])
    """

    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True
    bias: bool = field(default=True, kw_only=True)  # keyword-only in torch, after device/dtype

    def __post_init__(self):
        if self.num_groups <= 0 or self.num_channels % self.num_groups:
            raise ValueError(
                f"num_channels ({self.num_channels}) must be divisible by num_groups ({self.num_groups})"
            )

    def param_names(self):
        if not self.affine:
            return ()
        return ("weight", "bias") if self.bias else ("weight",)

    def init_own(self, key):
        c = self.num_channels
        params = {"weight": jnp.ones((c,)), "bias": jnp.zeros((c,))}
        return {k: params[k] for k in self.param_names()}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        c = _channels(x) if x.ndim == 4 else (x.shape[1] if x.ndim >= 2 else None)
        if c != self.num_channels:
            expected = _layout(self.num_channels) if _LAYOUT.get() != "NCHW" else f"(N, {self.num_channels}, *)"
            fix = (
                "add the batch dimension" if x.ndim < 2
                else f"the input has {c} channels; build the layer with num_channels={c}"
            )
            raise ShapeError(f"{self!r} expected input {expected}, got {tuple(x.shape)}: {fix}")
        x, back = _torch_layout(x)
        y = _group_norm(x, self.num_groups, params.get("weight"), params.get("bias"), self.eps, repr(self))
        return back(y), state

    def extra_repr(self):
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.affine and self.bias}"
        )


# ------------------------------------------------------------------------ LocalResponseNorm
def local_response_norm(x: Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Array:
    """``torch.nn.functional.local_response_norm``: each value divided by a power of the
    mean of squares over a window of ``size`` neighbouring channels,

    ``y[n, c] = x[n, c] / (k + alpha/size · Σ_{c'=c-⌊size/2⌋}^{c+⌊(size-1)/2⌋} x[n, c']²)^beta``,

    the channels outside ``[0, C)`` counting as zeros (torch pads and average-pools).

    Args:
      x: ``(N, C, *)`` with at least one spatial axis (4-D: ``(N, H, W, C)`` inside
        :func:`channels_last`, ``(C, H, W, N)`` inside :func:`batch_last`).
    Returns:
      ``y`` with ``x``'s shape.
    """
    x, back = _torch_layout(x)
    return back(_local_response_norm(x, size, alpha, beta, k, "local_response_norm"))


def _local_response_norm(x, size, alpha, beta, k, who):
    if x.ndim < 3:
        raise ShapeError(
            f"{who} expected a 3-D or higher input (N, C, *), got {x.ndim} dimensions {tuple(x.shape)}"
        )
    if size < 1:
        # else a jax TypeError about reduce_window's window (torch: "kernel size should be greater than zero")
        raise ValueError(f"{who}: size must be a positive number of channels in the window, got {size!r}")
    if x.size == 0:
        return x
    # The window sum is one reduce_window over the zero-padded channel axis, and the
    # power is exp(-beta·log(.)) so that the backward reuses it instead of computing a
    # second power. Measured (jit, float32, forward+backward, 2 cores; torch eager in the
    # same process): (32, 64, 27, 27) size 5: 15 ms vs torch 36 ms; `size` shifted slices
    # summed instead: 122 ms (their transposes), a cumulative sum: 53 ms, `/ (.)**beta`: 24 ms.
    pads = ((0, 0), (size // 2, (size - 1) // 2)) + ((0, 0),) * (x.ndim - 2)
    window = (1, size) + (1,) * (x.ndim - 2)
    total = lax.reduce_window(x * x, np.array(0, x.dtype), lax.add, window, (1,) * x.ndim, pads)
    return x * jnp.exp(-beta * jnp.log(total * (alpha / size) + k))


@dataclass(frozen=True, repr=False)
class LocalResponseNorm(Module):
    """Local response normalisation across channels; ``(N, C, *) -> same``
    (see :func:`local_response_norm` for the formula).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.LocalResponseNorm(2, alpha=1.0, beta=1.0, k=1.0)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.ones((1, 3, 1, 1)))
        >>> [round(float(v), 4) for v in y.ravel()]  # channel 0's window holds one channel, the others two
        [0.6667, 0.5, 0.5]
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        x, back = _torch_layout(x)
        return back(_local_response_norm(x, self.size, self.alpha, self.beta, self.k, repr(self))), state

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


# ------------------------------------------------------------------------ CrossMapLRN2d
def _cross_map_lrn2d(x, size, alpha, beta, k, who):
    """torch's ``CrossMapLRN2d`` forward (``torch/nn/modules/_functions.py``, from Lua torch's
    SpatialCrossMapLRN), reproduced to the channel:

    ``y[n, c] = x[n, c] · (k + alpha/size · S[n, c])^-beta`` with ``p = (size + 1) // 2`` and
    ``S[n, c] = Σ_{c'=max(0, c-p+1)}^{min(C-1, c+p-1)} x[n, c']² (+ x[n, 0]² when c >= p)``.

    Unlike :func:`local_response_norm` the window is ``2p - 1`` channels centred on ``c``,
    so an even ``size`` sums ``size - 1`` of them (still divided by ``size``); and torch's
    running sum adds channel ``c+p-1`` and drops channel ``c-p`` only for ``c > p``, so channel
    0 is never dropped: it stays in the window of every channel from ``p`` on.

    The gradient is jax's derivative of this forward. torch's hand-written backward is not
    (its window is shifted by one channel: ``gradcheck`` fails for size 3 and 5 channels, it
    raises for ``size=1``, and it misses the channel-0 term); they agree only where both
    windows span every channel (``C <= size // 2``).
    """
    if x.ndim != 4:
        raise ShapeError(
            f"{who}: Expected input to be 4D, got {x.ndim}D instead. Give it (N, C, H, W); got shape {tuple(x.shape)}"
        )
    if size < 1:
        # torch divides by size=0 (ZeroDivisionError) and returns nonsense for a negative size
        raise ValueError(f"{who}: size must be a positive number of channels in the window, got {size!r}")
    if x.shape[1] == 0:
        raise ShapeError(
            f"{who} expected input (N, C, H, W) with C > 0, got {tuple(x.shape)} (torch fails indexing channel 0)"
        )
    if x.size == 0:
        return x
    c = x.shape[1]
    p = (size + 1) // 2
    square = x * x
    total = lax.reduce_window(square, np.array(0, x.dtype), lax.add, (1, 2 * p - 1, 1, 1), (1,) * 4,
                              ((0, 0), (p - 1, p - 1), (0, 0), (0, 0)))
    if c > p:
        stays = (np.arange(c) >= p).astype(x.dtype).reshape(1, c, 1, 1)
        total = total + square[:, :1] * stays
    # exp(-beta·log(.)) rather than (.)**-beta: the backward reuses it (see local_response_norm)
    return x * jnp.exp(-beta * jnp.log(total * (alpha / size) + k))


@dataclass(frozen=True, repr=False)
class CrossMapLRN2d(Module):
    """torch's legacy (Lua torch) local response normalisation across channels of a 4-D
    input; ``(N, C, H, W) -> same``. Its window and sum differ from
    :class:`LocalResponseNorm`'s: see :func:`_cross_map_lrn2d` for the exact formula.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.CrossMapLRN2d(3, alpha=3.0, beta=1.0, k=1.0)
        >>> y, _ = m.apply({}, {}, jnp.ones((1, 4, 1, 1)))
        >>> [round(float(v), 4) for v in y.ravel()]  # windows {0,1}, {0,1,2}, {0,1,2,3}, {0,2,3}: 1/(1 + n)
        [0.3333, 0.25, 0.2, 0.25]
    """

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        x, back = _torch_layout(x)
        return back(_cross_map_lrn2d(x, self.size, self.alpha, self.beta, self.k, repr(self))), state

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

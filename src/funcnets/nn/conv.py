"""Convolutions: ``torch.nn.Conv2d`` and ``F.conv2d`` (lowering choices in ``_conv.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn import _conv, init
from funcnets.nn._layout import (
    _LAYOUT, IntOr2, _batch_axis, _channels, _check_4d, _check_float, _hw, _layout, _pair,
)
from funcnets.nn.module import Module

__all__ = ["conv2d", "Conv2d"]


def conv2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntOr2 = 1,
    padding: IntOr2 = 0,
    dilation: IntOr2 = 1,
    groups: int = 1,
) -> Array:
    """2-D cross-correlation, ``torch.nn.functional.conv2d``.

    Args:
      x: ``(N, C_in, H, W)``; weight: ``(C_out, C_in / groups, kH, kW)``; bias: ``(C_out,)``.
    Returns:
      ``(N, C_out, H_out, W_out)`` with ``H_out = (H + 2p - d(k-1) - 1) // s + 1``.
    """
    _check_4d(x, "conv2d")
    layout = _LAYOUT.get()
    y = _conv.conv2d(
        x, weight, _pair(stride, "stride"), _pair(padding, "padding"),
        _pair(dilation, "dilation"), groups, layout,
    )
    if bias is None:
        return y
    return y + {"NCHW": bias[None, :, None, None], "NHWC": bias, "CHWN": bias[:, None, None, None]}[layout]



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
            object.__setattr__(self, name, _pair(getattr(self, name), name))
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
        bound = init.default_bound(fan_in)
        params = {
            "weight": init.uniform(kw, (self.out_channels, self.in_channels // self.groups, kh, kwid), -bound, bound)
        }
        if self.bias:
            params["bias"] = init.uniform(kb, (self.out_channels,), -bound, bound)
        return params, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim not in (3, 4) or _channels(x) != self.in_channels:
            raise ShapeError(f"{self!r} expected input {_layout(self.in_channels)}, got {tuple(x.shape)}")
        unbatched, batch_axis = x.ndim == 3, _batch_axis()
        xb = jnp.expand_dims(x, batch_axis) if unbatched else x
        h, w = _hw(xb)
        eff = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)]
        if h + 2 * self.padding[0] < eff[0] or w + 2 * self.padding[1] < eff[1]:
            raise ShapeError(
                f"{self!r}: input {(h, w)} (padded {(h + 2 * self.padding[0], w + 2 * self.padding[1])}) "
                f"is smaller than the kernel {tuple(eff)}"
            )
        y = conv2d(xb, params["weight"], params.get("bias"), self.stride, self.padding, self.dilation, self.groups)
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



"""``torch.nn.PixelShuffle``, ``PixelUnshuffle``, ``ChannelShuffle`` and their functional forms."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.module import Module

__all__ = ["pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle"]


def _factor(r: int, name: str, arg: str, layer: str | None) -> int:
    if int(r) <= 0:
        raise ValueError(f"{layer or name} expects a positive {arg}, but got {r}")
    return int(r)


def _check(x: Array, name: str, layer: str | None) -> None:
    if x.ndim < 3:
        raise ShapeError(
            f"{layer or name} expects input to have at least 3 dimensions (*, C, H, W), but got input with "
            f"{x.ndim} dimension(s) {tuple(x.shape)}"
        )
    if layer and _LAYOUT.get() != "NCHW":
        raise ShapeError(f"{layer} supports torch's (*, C, H, W) layout only; call it outside channels_last/batch_last")


def pixel_shuffle(input: Array, upscale_factor: int, *, _layer: str | None = None) -> Array:
    """``(*, C * r**2, H, W) -> (*, C, H * r, W * r)``: channel ``c * r**2 + i * r + j``
    becomes pixel ``(h * r + i, w * r + j)`` of channel ``c``."""
    _check(input, "pixel_shuffle", _layer)
    r = _factor(upscale_factor, "pixel_shuffle", "upscale_factor", _layer)
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise ShapeError(
            f"{_layer or 'pixel_shuffle'} expects its input's 'channel' dimension to be divisible by the square "
            f"of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}"
        )
    n = len(lead)
    y = input.reshape(*lead, c // (r * r), r, r, h, w)
    y = y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Array, downscale_factor: int, *, _layer: str | None = None) -> Array:
    """``(*, C, H * r, W * r) -> (*, C * r**2, H, W)``, the inverse of :func:`pixel_shuffle`."""
    _check(input, "pixel_unshuffle", _layer)
    r = _factor(downscale_factor, "pixel_unshuffle", "downscale_factor", _layer)
    *lead, c, h, w = input.shape
    for name, size, axis in (("height", h, -2), ("width", w, -1)):
        if size % r:
            raise ShapeError(
                f"{_layer or 'pixel_unshuffle'} expects {name} to be divisible by downscale_factor, but "
                f"input.size({axis})={size} is not divisible by {r}"
            )
    n = len(lead)
    y = input.reshape(*lead, c, h // r, r, w // r, r)
    y = y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return y.reshape(*lead, c * r * r, h // r, w // r)


def channel_shuffle(input: Array, groups: int, *, _layer: str | None = None) -> Array:
    """``torch.nn.functional.channel_shuffle``: ``(N, C, *) -> (N, C, *)``, the channels
    seen as ``(groups, C / groups)`` transposed to ``(C / groups, groups)``: output channel
    ``i * groups + g`` is input channel ``g * (C / groups) + i`` (ShuffleNet's mixing of
    grouped convolutions). Inside :func:`channels_last` / :func:`batch_last` a 4-D input is
    an image in that layout and its channel axis is shuffled.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> F.channel_shuffle(jnp.arange(6.0).reshape(1, 6, 1), 2).ravel().tolist()
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    who = _layer or "channel_shuffle"
    if input.ndim <= 2:
        raise ShapeError(
            f"{who} expects input with > 2 dims, but got input with sizes {list(input.shape)}: "
            f"give it (N, C, *) with at least one dimension after the channels"
        )
    g = int(groups)
    if g <= 0:
        raise ValueError(f"{who}: Number of groups to divide channels in must be positive. Value of groups:{groups}")
    axis = 1 if input.ndim != 4 else {"NCHW": 1, "NHWC": 3, "CHWN": 0}[_LAYOUT.get()]
    c = input.shape[axis]
    if c % g:
        raise ShapeError(
            f"{who}: Number of channels must be divisible by groups. Got {c} channels and {g} groups."
        )
    shape = input.shape
    y = input.reshape(*shape[:axis], g, c // g, *shape[axis + 1:])
    return jnp.swapaxes(y, axis, axis + 1).reshape(shape)


@dataclass(frozen=True, repr=False)
class PixelShuffle(Module):
    """Sub-pixel upsampling: ``(*, C * r**2, H, W) -> (*, C, H * r, W * r)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.PixelShuffle(2).apply({}, {}, jnp.arange(4.0).reshape(1, 4, 1, 1))
        >>> y.shape, y[0, 0].tolist()  # 4 channels of one pixel -> one channel of 2×2 pixels
        ((1, 1, 2, 2), [[0.0, 1.0], [2.0, 3.0]])
        >>> nn.PixelShuffle(2).apply({}, {}, jnp.ones((2, 8, 3, 3)))[0].shape
        (2, 2, 6, 6)
    """

    upscale_factor: int

    def apply(self, params, state, x, *, train=False, key=None):
        return pixel_shuffle(x, self.upscale_factor, _layer=repr(self)), state

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


@dataclass(frozen=True, repr=False)
class PixelUnshuffle(Module):
    """``(*, C, H * r, W * r) -> (*, C * r**2, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.PixelUnshuffle(2).apply({}, {}, jnp.arange(16.0).reshape(1, 1, 4, 4))
        >>> y.shape, y[0, :, 0, 0].tolist()  # the top-left 2×2 block becomes 4 channels
        ((1, 4, 2, 2), [0.0, 1.0, 4.0, 5.0])
    """

    downscale_factor: int

    def apply(self, params, state, x, *, train=False, key=None):
        return pixel_unshuffle(x, self.downscale_factor, _layer=repr(self)), state

    def extra_repr(self):
        return f"downscale_factor={self.downscale_factor}"


@dataclass(frozen=True, repr=False)
class ChannelShuffle(Module):
    """Mixes the channels of ``groups`` groups (ShuffleNet); ``(N, C, *) -> same``, ``C``
    divisible by ``groups`` (see :func:`channel_shuffle`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ChannelShuffle(2).apply({}, {}, jnp.arange(4.0).reshape(1, 4, 1, 1))
        >>> y.ravel().tolist()  # groups (0, 1) and (2, 3) interleaved
        [0.0, 2.0, 1.0, 3.0]
    """

    groups: int

    def apply(self, params, state, x, *, train=False, key=None):
        return channel_shuffle(x, self.groups, _layer=repr(self)), state

    def extra_repr(self):
        return f"groups={self.groups}"

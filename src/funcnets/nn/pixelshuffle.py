"""``torch.nn.PixelShuffle``, ``PixelUnshuffle`` and their functional forms."""

from __future__ import annotations

from dataclasses import dataclass

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.module import Module

__all__ = ["pixel_shuffle", "pixel_unshuffle", "PixelShuffle", "PixelUnshuffle"]


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

"""Padding: ``torch.nn.functional.pad`` and the padding layers (``ZeroPad``, ``ConstantPad``,
``ReflectionPad``, ``ReplicationPad``, ``CircularPad``; 1d, 2d and 3d).

torch's pad tuple names the last dimension first: ``(left, right)`` pads the last one,
``(left, right, top, bottom)`` the last two, and so on. A negative amount crops. The
modes are torch's:

* ``constant``: ``value`` (0 unless given) outside, any number of trailing dimensions;
* ``reflect``: mirrored without repeating the edge (``[2, 1, | 0, 1, 2, 3]``), each
  amount less than the dimension's size;
* ``replicate``: the edge value repeated;
* ``circular``: wrapped around (``[2, 3, | 0, 1, 2, 3]``), each amount at most the size.

The last three pad 1, 2 or 3 trailing dimensions of a batched or unbatched input
(``(N, C, L)``/``(C, L)``, ``(N, C, H, W)``/``(C, H, W)``, ``(N, C, D, H, W)``/``(C, D, H, W)``),
as torch allows. Negative amounts follow torch exactly: reflect and replicate pad the
input, then crop; circular crops first and wraps what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax.numpy as jnp
from jax import lax

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.module import Module

__all__ = [
    "pad",
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
    "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
    "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d",
    "CircularPad1d", "CircularPad2d", "CircularPad3d",
]

_MODES = ("constant", "reflect", "replicate", "circular")
_JNP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(input: Array, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Array:
    """``torch.nn.functional.pad``.

    Args:
      input: any array for ``constant``; ``(N, C, *S)`` or ``(C, *S)`` with ``len(S)`` =
        ``len(pad) // 2`` in 1..3 for the other modes.
      pad: ``(left_last, right_last, left_second_last, right_second_last, ...)``;
        negative amounts crop.
      mode: ``'constant'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
      value: the fill value for ``constant`` (default 0).
    Returns:
      ``input`` with dimension ``-1 - i`` resized by ``pad[2i] + pad[2i + 1]``.
    """
    pads = _pairs(pad, input.ndim)
    if _LAYOUT.get() != "NCHW" and input.ndim == 4:
        raise ShapeError(
            "pad pads the last dimensions of torch's layout (N, C, H, W); inside "
            "F.channels_last()/F.batch_last() the last dimensions of a 4-D activation are not "
            "(H, W). Call it outside that block (move the activation back to NCHW first)."
        )
    if mode not in _MODES:
        raise ValueError(f"Unrecognised padding mode {mode!r}: use one of {_MODES}")
    if mode == "constant":
        return _constant(input, pads, 0.0 if value is None else value)
    if value is not None and value != 0:
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument')
    k = len(pads)
    if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
        raise ShapeError(
            f"pad: mode {mode!r} with {2 * k} padding values pads the last {k} dimension(s) of a "
            f"{k + 1}-D or {k + 2}-D input ((C, *S) or (N, C, *S)), got an input of shape "
            f"{tuple(input.shape)}. Give {2 * (input.ndim - 2)} or {2 * (input.ndim - 1)} padding values "
            f"for this input, or use mode 'constant' (any number of dimensions)."
        )
    return _non_constant(input, pads, mode)


def _pairs(pad: Sequence[int], ndim: int) -> list[tuple[int, int]]:
    """torch's flat pad tuple as ``(lo, hi)`` per padded dimension, first dimension first."""
    p = [int(v) for v in pad]
    if len(p) % 2:
        raise ValueError(f"Padding length must be divisible by 2, got {len(p)} values {tuple(p)}")
    if len(p) // 2 > ndim:
        raise ShapeError(
            f"Padding length should be less than or equal to two times the input dimension but got "
            f"padding length {len(p)} and input of dimension {ndim}"
        )
    return [(p[2 * i], p[2 * i + 1]) for i in reversed(range(len(p) // 2))]


def _constant(x: Array, pads: list[tuple[int, int]], value: float) -> Array:
    lead = x.ndim - len(pads)
    for (lo, hi), size in zip(pads, x.shape[lead:]):
        if size + min(lo, 0) + min(hi, 0) < 0:  # torch crops before it pads
            raise ShapeError(
                f"pad: the padding {(lo, hi)} crops a dimension of size {size} below zero "
                f"(input shape {tuple(x.shape)})"
            )
    config = [(0, 0, 0)] * lead + [(lo, hi, 0) for lo, hi in pads]  # lax.pad crops when negative
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def _non_constant(x: Array, pads: list[tuple[int, int]], mode: str) -> Array:
    lead = x.ndim - len(pads)
    if mode == "circular":  # torch crops first and wraps what is left
        crop = [(min(lo, 0), min(hi, 0)) for lo, hi in pads]
        if any(c != (0, 0) for c in crop):
            x = _constant(x, crop, 0.0)
        grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
        for d, ((lo, hi), s) in enumerate(zip(grow, x.shape[lead:])):
            if lo > s or hi > s:
                raise ShapeError(
                    f"pad: circular padding {pads[d]} of dimension {lead + d} wraps around more than "
                    f"once: each amount must be at most the size left after cropping ({s})"
                )
        return jnp.pad(x, [(0, 0)] * lead + grow, mode="wrap") if any(g != (0, 0) for g in grow) else x
    # reflect and replicate pad the input, then crop (torch's index rule)
    for d, ((lo, hi), s) in enumerate(zip(pads, x.shape[lead:])):
        if mode == "reflect" and (lo >= s or hi >= s):
            raise ShapeError(
                f"pad: reflect padding must be less than the corresponding input dimension, but got "
                f"padding {(lo, hi)} at dimension {lead + d} of input {tuple(x.shape)}"
            )
        # torch's quirk: 2-d and 3-d reflection padding may leave a dimension empty
        if s + lo + hi < (0 if mode == "reflect" and len(pads) > 1 else 1):
            raise ShapeError(
                f"pad: padding {(lo, hi)} leaves dimension {lead + d} of input {tuple(x.shape)} empty "
                f"(torch's {mode} padding needs an output size of at least 1)"
            )
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
    y = jnp.pad(x, [(0, 0)] * lead + grow, mode=_JNP_MODE[mode]) if any(g != (0, 0) for g in grow) else x
    crop = [(min(lo, 0), min(hi, 0)) for lo, hi in pads]
    return _constant(y, crop, 0.0) if any(c != (0, 0) for c in crop) else y


# ----------------------------------------------------------------------------- layers
class _PadNd(Module):
    """A padding layer over the last ``_n`` dimensions: ``padding`` is an int for every side
    or ``2·_n`` ints, last dimension first; negative amounts crop."""

    _n = 0
    _mode = "constant"

    def __post_init__(self):
        p = self.padding
        p = (int(p),) * (2 * self._n) if isinstance(p, int) else tuple(int(v) for v in p)
        if len(p) != 2 * self._n:
            raise ValueError(
                f"{type(self).__name__}: padding must be an int or a tuple of {2 * self._n} ints "
                f"(last dimension first), got {self.padding!r}"
            )
        object.__setattr__(self, "padding", p)

    def _value(self) -> float:
        return 0.0

    def apply(self, params, state, x, *, train=False, key=None):
        n = self._n
        if _LAYOUT.get() != "NCHW":
            raise ShapeError(
                f"{self!r} takes torch's layout (the padded dimensions last); it does not run inside "
                f"F.channels_last()/F.batch_last(), which only the 2-D image layers (Conv2d, "
                f"BatchNorm2d, the 2-D poolings) follow. Call it outside that block."
            )
        spatial = ("L",) if n == 1 else ("H", "W") if n == 2 else ("D", "H", "W")
        if self._mode == "constant" and x.ndim < n:
            raise ShapeError(
                f"{self!r} expected an input with at least {n} dimensions (..., {', '.join(spatial)}), "
                f"got {tuple(x.shape)}: it pads the last {n}."
            )
        if self._mode != "constant" and x.ndim not in (n + 1, n + 2):
            s = ", ".join(spatial)
            raise ShapeError(
                f"{self!r} expected input (C, {s}) or (N, C, {s}), got {tuple(x.shape)}: it pads the "
                f"last {n} dimension(s) of a batched or unbatched input. Add the missing axes with "
                f"jnp.expand_dims, or use the padding layer of this input's dimensionality."
            )
        pads = _pairs(self.padding, x.ndim)
        try:
            if self._mode == "constant":
                return _constant(x, pads, self._value()), state
            return _non_constant(x, pads, self._mode), state
        except ShapeError as e:
            raise ShapeError(f"{self!r} on an input of shape {tuple(x.shape)}: {e.message}") from None

    def extra_repr(self):
        return f"{self.padding}"


class _ConstantPadNd(_PadNd):
    def _value(self) -> float:
        return self.value

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


@dataclass(frozen=True, repr=False)
class ZeroPad1d(_PadNd):
    """Pads with zeros: ``(N, C, L) -> (N, C, L + left + right)``; ``padding``: int or ``(left, right)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ZeroPad1d((1, 2)).apply({}, {}, jnp.array([[[1.0, 2.0]]]))
        >>> y.tolist()
        [[[0.0, 1.0, 2.0, 0.0, 0.0]]]
    """

    padding: int | tuple[int, int]
    _n = 1


@dataclass(frozen=True, repr=False)
class ZeroPad2d(_PadNd):
    """Pads with zeros: ``(N, C, H, W) -> (N, C, H + top + bottom, W + left + right)``;
    ``padding``: int or ``(left, right, top, bottom)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ZeroPad2d((1, 0, 0, 1)).apply({}, {}, jnp.ones((1, 1, 2, 2)))  # (left, right, top, bottom)
        >>> y[0, 0].tolist()
        [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """

    padding: int | tuple[int, int, int, int]
    _n = 2


@dataclass(frozen=True, repr=False)
class ZeroPad3d(_PadNd):
    """Pads with zeros: ``(N, C, D, H, W)``; ``padding``: int or ``(left, right, top, bottom, front, back)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ZeroPad3d(1).apply({}, {}, jnp.ones((1, 1, 2, 2, 2)))
        >>> y.shape, float(y.sum())
        ((1, 1, 4, 4, 4), 8.0)
    """

    padding: int | tuple[int, int, int, int, int, int]
    _n = 3


@dataclass(frozen=True, repr=False)
class ConstantPad1d(_ConstantPadNd):
    """Pads with ``value``: ``(N, C, L) -> (N, C, L + left + right)``; ``padding``: int or ``(left, right)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ConstantPad1d(2, 3.5).apply({}, {}, jnp.array([[1.0, 2.0]]))  # unbatched (C, L)
        >>> y.tolist()
        [[3.5, 3.5, 1.0, 2.0, 3.5, 3.5]]
    """

    padding: int | tuple[int, int]
    value: float
    _n = 1


@dataclass(frozen=True, repr=False)
class ConstantPad2d(_ConstantPadNd):
    """Pads with ``value``: ``(N, C, H, W)``; ``padding``: int or ``(left, right, top, bottom)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ConstantPad2d((1, 1, 0, 0), -1.0).apply({}, {}, jnp.ones((1, 2, 2)))
        >>> y[0].tolist()
        [[-1.0, 1.0, 1.0, -1.0], [-1.0, 1.0, 1.0, -1.0]]
    """

    padding: int | tuple[int, int, int, int]
    value: float
    _n = 2


@dataclass(frozen=True, repr=False)
class ConstantPad3d(_ConstantPadNd):
    """Pads with ``value``: ``(N, C, D, H, W)``; ``padding``: int or ``(left, right, top, bottom, front, back)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ConstantPad3d((1, 1, 1, 1, 0, 0), 0.5).apply({}, {}, jnp.ones((1, 1, 2, 2, 2)))
        >>> y.shape, float(y.sum())  # 8 ones and 24 halves
        ((1, 1, 2, 4, 4), 20.0)
    """

    padding: int | tuple[int, int, int, int, int, int]
    value: float
    _n = 3


@dataclass(frozen=True, repr=False)
class ReflectionPad1d(_PadNd):
    """Pads with the reflection of the input (edge not repeated): ``(N, C, L)`` or ``(C, L)``;
    each amount less than ``L``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReflectionPad1d(2).apply({}, {}, jnp.array([[[0.0, 1.0, 2.0, 3.0]]]))
        >>> y.tolist()  # mirrored about the edge, which is not repeated
        [[[2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0]]]
    """

    padding: int | tuple[int, int]
    _n, _mode = 1, "reflect"


@dataclass(frozen=True, repr=False)
class ReflectionPad2d(_PadNd):
    """Pads with the reflection of the input (edge not repeated): ``(N, C, H, W)`` or ``(C, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReflectionPad2d(1).apply({}, {}, jnp.arange(9.0).reshape(1, 1, 3, 3))
        >>> y.shape, y[0, 0, 0].tolist()  # the new top row is row 1, reflected left and right
        ((1, 1, 5, 5), [4.0, 3.0, 4.0, 5.0, 4.0])
    """

    padding: int | tuple[int, int, int, int]
    _n, _mode = 2, "reflect"


@dataclass(frozen=True, repr=False)
class ReflectionPad3d(_PadNd):
    """Pads with the reflection of the input (edge not repeated): ``(N, C, D, H, W)`` or ``(C, D, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReflectionPad3d(1).apply({}, {}, jnp.ones((1, 1, 2, 2, 2)))
        >>> y.shape
        (1, 1, 4, 4, 4)
    """

    padding: int | tuple[int, int, int, int, int, int]
    _n, _mode = 3, "reflect"


@dataclass(frozen=True, repr=False)
class ReplicationPad1d(_PadNd):
    """Pads by repeating the edge values: ``(N, C, L)`` or ``(C, L)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReplicationPad1d((2, 1)).apply({}, {}, jnp.array([[[1.0, 2.0, 3.0]]]))
        >>> y.tolist()
        [[[1.0, 1.0, 1.0, 2.0, 3.0, 3.0]]]
    """

    padding: int | tuple[int, int]
    _n, _mode = 1, "replicate"


@dataclass(frozen=True, repr=False)
class ReplicationPad2d(_PadNd):
    """Pads by repeating the edge values: ``(N, C, H, W)`` or ``(C, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReplicationPad2d(1).apply({}, {}, jnp.arange(4.0).reshape(1, 1, 2, 2))
        >>> y[0, 0].tolist()
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]]
    """

    padding: int | tuple[int, int, int, int]
    _n, _mode = 2, "replicate"


@dataclass(frozen=True, repr=False)
class ReplicationPad3d(_PadNd):
    """Pads by repeating the edge values: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReplicationPad3d((1, 1, 0, 0, 0, 0)).apply({}, {}, jnp.ones((1, 1, 2, 2, 2)))
        >>> y.shape  # (left, right, top, bottom, front, back): only W grows
        (1, 1, 2, 2, 4)
    """

    padding: int | tuple[int, int, int, int, int, int]
    _n, _mode = 3, "replicate"


@dataclass(frozen=True, repr=False)
class CircularPad1d(_PadNd):
    """Pads by wrapping the input around: ``(N, C, L)`` or ``(C, L)``; each amount at most ``L``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.CircularPad1d((1, 2)).apply({}, {}, jnp.array([[[1.0, 2.0, 3.0]]]))
        >>> y.tolist()  # wrapped around: the left pad is the end, the right pad the start
        [[[3.0, 1.0, 2.0, 3.0, 1.0, 2.0]]]
    """

    padding: int | tuple[int, int]
    _n, _mode = 1, "circular"


@dataclass(frozen=True, repr=False)
class CircularPad2d(_PadNd):
    """Pads by wrapping the input around: ``(N, C, H, W)`` or ``(C, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.CircularPad2d(1).apply({}, {}, jnp.arange(4.0).reshape(1, 1, 2, 2))
        >>> y[0, 0].tolist()
        [[3.0, 2.0, 3.0, 2.0], [1.0, 0.0, 1.0, 0.0], [3.0, 2.0, 3.0, 2.0], [1.0, 0.0, 1.0, 0.0]]
    """

    padding: int | tuple[int, int, int, int]
    _n, _mode = 2, "circular"


@dataclass(frozen=True, repr=False)
class CircularPad3d(_PadNd):
    """Pads by wrapping the input around: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.CircularPad3d((0, 0, 0, 0, 1, 1)).apply({}, {}, jnp.arange(2.0).reshape(1, 1, 2, 1, 1))
        >>> y.ravel().tolist()  # D wraps around
        [1.0, 0.0, 1.0, 0.0]
    """

    padding: int | tuple[int, int, int, int, int, int]
    _n, _mode = 3, "circular"

"""``torch.nn.Fold``, ``Unfold`` and ``F.fold``/``F.unfold`` (im2col and col2im).

``unfold`` is one gather from the padded image with indices computed in NumPy from the
static geometry; ``fold`` is the scatter-add of the same indices, so it is unfold's
adjoint, as in torch (and each is the other's gradient). Column ``c * kh * kw + i * kw + j`` holds channel ``c`` at kernel offset
``(i, j)``; blocks are numbered row-major over the output grid, torch's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT, _pair
from funcnets.nn.module import Module

__all__ = ["fold", "unfold", "Fold", "Unfold"]


def _blocks(size, k, d, p, s) -> tuple[int, int]:
    return tuple((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))  # type: ignore[return-value]


def _indices(hp: int, wp: int, k, d, s, oh: int, ow: int) -> np.ndarray:
    """Flat indices into the padded ``(hp, wp)`` image, shaped ``(kh * kw, oh * ow)``."""
    rows = (np.arange(k[0]) * d[0])[:, None, None, None] + (np.arange(oh) * s[0])[None, None, :, None]
    cols = (np.arange(k[1]) * d[1])[None, :, None, None] + (np.arange(ow) * s[1])[None, None, None, :]
    return (rows * wp + cols).reshape(k[0] * k[1], oh * ow)


def _geometry(kernel_size, dilation, padding, stride):
    k, d, p, s = (_pair(v, n) for v, n in ((kernel_size, "kernel_size"), (dilation, "dilation"),
                                            (padding, "padding"), (stride, "stride")))
    if min(k) <= 0 or min(d) <= 0 or min(s) <= 0 or min(p) < 0:
        raise ValueError(
            f"kernel_size, dilation and stride must be positive and padding non-negative, got "
            f"kernel_size={k}, dilation={d}, padding={p}, stride={s}"
        )
    return k, d, p, s


def _check_layout(name: str) -> None:
    if _LAYOUT.get() != "NCHW":
        raise ShapeError(f"{name} supports torch's (N, C, H, W) layout only; call it outside channels_last/batch_last")


def unfold(input: Array, kernel_size, dilation=1, padding=0, stride=1, *, _layer: str | None = None) -> Array:
    """Sliding blocks as columns: ``(N, C, H, W) -> (N, C * kh * kw, L)`` (``(C, H, W)``
    gives ``(C * kh * kw, L)``), ``L = oh * ow`` with
    ``oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1``."""
    name = _layer or "unfold"
    _check_layout(name)
    k, d, p, s = _geometry(kernel_size, dilation, padding, stride)
    if input.ndim not in (3, 4):
        raise ShapeError(
            f"{name} expected a 4-D input (N, C, H, W) or an unbatched 3-D (C, H, W), got {tuple(input.shape)}"
        )
    x = input if input.ndim == 4 else input[None]
    n, c, h, w = x.shape
    oh, ow = _blocks((h, w), k, d, p, s)
    if oh <= 0 or ow <= 0:
        raise ShapeError(
            f"{name}: the kernel {k} with dilation {d} and padding {p} does not fit the input {h}x{w} "
            f"(it gives {oh}x{ow} blocks); pad the input or use a smaller kernel"
        )
    x = jnp.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    hp, wp = h + 2 * p[0], w + 2 * p[1]
    idx = _indices(hp, wp, k, d, s, oh, ow)
    y = x.reshape(n, c, hp * wp)[:, :, idx].reshape(n, c * k[0] * k[1], oh * ow)
    return y if input.ndim == 4 else y[0]


def fold(input: Array, output_size, kernel_size, dilation=1, padding=0, stride=1, *, _layer: str | None = None) -> Array:
    """Sum columns back into an image: ``(N, C * kh * kw, L) -> (N, C, H, W)`` with
    ``(H, W) = output_size`` (``(C * kh * kw, L)`` gives ``(C, H, W)``); overlapping
    blocks add up, as in torch."""
    name = _layer or "fold"
    _check_layout(name)
    out = _pair(output_size, "output_size")
    k, d, p, s = _geometry(kernel_size, dilation, padding, stride)
    if input.ndim not in (2, 3):
        raise ShapeError(
            f"{name} expected a 3-D input (N, C * kh * kw, L) or an unbatched 2-D (C * kh * kw, L), "
            f"got {tuple(input.shape)}"
        )
    x = input if input.ndim == 3 else input[None]
    n, ck, length = x.shape
    oh, ow = _blocks(out, k, d, p, s)
    if ck % (k[0] * k[1]) == 0 and (oh <= 0 or ow <= 0):  # torch checks the kernel before the block count
        raise ShapeError(
            f"{name}: Given output_size={out}, kernel_size={k}, dilation={d}, padding={p}, stride={s}, "
            f"calculated shape of the array of sliding blocks as ({oh}, {ow}), which is too small "
            f"(non-positive): the kernel does not fit the output; use a larger output_size or more padding."
        )
    if ck % (k[0] * k[1]):
        raise ShapeError(
            f"{name}: expected size of input's dimension 1 to be divisible by the product of kernel_size, "
            f"but got input.size(1)={ck} and kernel_size={k}"
        )
    if oh * ow != length:
        raise ShapeError(
            f"{name}: Given output_size={out}, kernel_size={k}, dilation={d}, padding={p}, stride={s}, expected "
            f"size of input's dimension 2 to match the calculated number of sliding blocks {oh} * {ow} = "
            f"{oh * ow}, but got input.size(2)={length}."
        )
    c = ck // (k[0] * k[1])
    hp, wp = out[0] + 2 * p[0], out[1] + 2 * p[1]
    idx = _indices(hp, wp, k, d, s, oh, ow)
    y = jnp.zeros((n, c, hp * wp), x.dtype).at[:, :, idx].add(x.reshape(n, c, k[0] * k[1], oh * ow))
    y = y.reshape(n, c, hp, wp)
    y = y[:, :, p[0] : p[0] + out[0], p[1] : p[1] + out[1]]
    return y if input.ndim == 3 else y[0]


@dataclass(frozen=True, repr=False)
class Unfold(Module):
    """``torch.nn.Unfold``: ``(N, C, H, W) -> (N, C * kh * kw, L)``; see :func:`unfold`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Unfold(kernel_size=2).apply({}, {}, jnp.arange(9.0).reshape(1, 1, 3, 3))
        >>> y.shape  # (N, C·2·2, L = 2·2 blocks)
        (1, 4, 4)
        >>> y[0, :, 0].tolist()  # the first block, the top-left 2×2
        [0.0, 1.0, 3.0, 4.0]
    """

    kernel_size: int | tuple[int, int]
    dilation: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    stride: int | tuple[int, int] = 1

    def apply(self, params, state, x, *, train=False, key=None):
        return unfold(x, self.kernel_size, self.dilation, self.padding, self.stride, _layer=repr(self)), state

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


@dataclass(frozen=True, repr=False)
class Fold(Module):
    """``torch.nn.Fold``: ``(N, C * kh * kw, L) -> (N, C, *output_size)``; see :func:`fold`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Fold(output_size=(3, 3), kernel_size=2).apply({}, {}, jnp.ones((1, 4, 4)))
        >>> y[0, 0].tolist()  # overlapping blocks add up: how many blocks cover each pixel
        [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """

    output_size: int | tuple[int, int]
    kernel_size: int | tuple[int, int]
    dilation: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    stride: int | tuple[int, int] = 1

    def apply(self, params, state, x, *, train=False, key=None):
        y = fold(x, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride, _layer=repr(self))
        return y, state

    def extra_repr(self):
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")

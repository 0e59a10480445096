"""Pooling: ``torch.nn.MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d`` and their functional forms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnets._typing import Array
from funcnets.nn import _conv
from funcnets.nn._layout import _LAYOUT, IntOr2, _check_4d, _hw, _nchw_pads, _pair
from funcnets.nn.module import Module

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """torch's pooling output size and the extra right padding ceil_mode needs."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    # torch: in ceil mode the last window must start inside the input or the left padding
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    extra = max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
    return out, extra


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, op):
    _check_4d(x, op)
    k = _pair(kernel_size, "kernel_size")
    s = _pair(stride if stride is not None and stride != [] else kernel_size, "stride")
    p = _pair(padding, "padding")
    d = _pair(dilation, "dilation")
    for ki, pi, di in zip(k, p, d):
        if pi > (di * (ki - 1) + 1) // 2:
            raise ValueError(
                f"{op}: padding {p} must be at most half the effective kernel size "
                f"{tuple(di * (kk - 1) + 1 for kk, di in zip(k, d))} (torch's rule)."
            )
    outs = [_pool_out(_hw(x)[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2)]
    if any(o <= 0 for o, _ in outs):
        raise ValueError(
            f"{op}: input spatial size {tuple(_hw(x))} is too small for kernel_size={k}, "
            f"padding={p}, dilation={d} (output would be {tuple(o for o, _ in outs)})."
        )
    pads = ((0, 0), (0, 0)) + tuple((p[i], p[i] + outs[i][1]) for i in range(2))
    return k, s, p, d, _nchw_pads(pads)


def max_pool2d(
    x: Array,
    kernel_size: IntOr2,
    stride: IntOr2 | None = None,
    padding: IntOr2 = 0,
    dilation: IntOr2 = 1,
    ceil_mode: bool = False,
) -> Array:
    """``torch.nn.functional.max_pool2d``: stride defaults to kernel_size, pads with -inf.

    Args:
      x: ``(N, C, H, W)``. Returns ``(N, C, H_out, W_out)`` (floor mode unless ceil_mode,
      which drops windows that would start in the right padding, as torch does).
    The gradient at ties goes to one element of the window, as in torch.
    """
    k, s, _, d, pads = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    # A running maximum over the k·k strided views of the -inf-padded input. `t > m` keeps
    # the earlier element at ties, so the gradient goes to the first maximum in the
    # window as in torch (jnp.max would split it). It is also faster on CPU than
    # reduce_window, whose select-and-scatter backward measured 3-4× slower (batch 32,
    # 64×32×32: 10.6 vs 35.9 ms), and it has a gradient with dilation, which JAX's
    # reduce_window max lacks.
    xp = jnp.pad(x, pads, constant_values=-jnp.inf)
    hp, wp = _hw(xp)
    oh, ow = (hp - d[0] * (k[0] - 1) - 1) // s[0] + 1, (wp - d[1] * (k[1] - 1) - 1) // s[1] + 1
    geometry = (k, s, d, (oh, ow), _LAYOUT.get())
    if all(s[i] >= d[i] * (k[i] - 1) + 1 for i in range(2)):
        return _max_pool_chain(xp, *geometry)[0]  # disjoint windows: autodiff of the chain
    return _max_pool_overlapping(xp, *geometry)


def _max_pool_chain(xp, k, s, d, out_hw, layout):
    """The running maximum of the window views and the winner's view index (int8 up to
    127 views)."""
    itype = jnp.int8 if k[0] * k[1] <= 127 else jnp.int32
    out = idx = None
    for i, t in enumerate(_conv.window_views(xp, k, s, d, out_hw, layout)):
        if out is None:
            out, idx = t, jnp.zeros(t.shape, itype)
        else:
            take = (t > out) | jnp.isnan(t)  # NaN propagates, as in torch
            out, idx = jnp.where(take, t, out), jnp.where(take, itype(i), idx)
    return out, idx


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4, 5))
def _max_pool_overlapping(xp, k, s, d, out_hw, layout):
    return _max_pool_chain(xp, k, s, d, out_hw, layout)[0]


@_max_pool_overlapping.defjvp
def _max_pool_overlapping_jvp(k, s, d, out_hw, layout, primals, tangents):
    # The tangent is the winner's, picked by its index: the backward then costs one
    # compare per (input element, window) pair. Autodiff of the chain instead masks each
    # candidate with all later comparisons of its window, which with overlapping windows
    # (ResNet's 3×3 stride-2 pool) measured slower in the ResNet-18 step: batch 32
    # 193-197 -> 186-188 ms, batch 8 61-63 -> 61-62.5 ms. With disjoint windows (LeNet's
    # 2×2) the chain is faster: LeNet step 5.7 vs 5.9 ms with the index.
    (xp,), (tx,) = primals, tangents
    out, idx = _max_pool_chain(xp, k, s, d, out_hw, layout)
    views = _conv.window_views(tx, k, s, d, out_hw, layout)
    zero = jnp.zeros((), tx.dtype)
    return out, sum(jnp.where(idx == i, v, zero) for i, v in enumerate(views))


def avg_pool2d(
    x: Array,
    kernel_size: IntOr2,
    stride: IntOr2 | None = None,
    padding: IntOr2 = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    """``torch.nn.functional.avg_pool2d`` with torch's divisor rules.

    The divisor counts the window's positions inside the zero-padded input
    (``count_include_pad=True``) or inside the input alone; positions added by
    ``ceil_mode`` never count.
    """
    k, s, p, _, pads = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    cl = _LAYOUT.get() != "NCHW"  # spatial axes 1, 2 (NHWC, CHWN)
    window, strides = ((1,) + k + (1,), (1,) + s + (1,)) if cl else ((1, 1) + k, (1, 1) + s)
    summed = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
    if divisor_override is not None:
        return summed / divisor_override
    # the divisor depends only on static shapes: compute it once in NumPy
    (h, w), (ph, pw) = _hw(x), (pads[1], pads[2]) if cl else (pads[2], pads[3])
    mask = np.zeros((h + ph[0] + ph[1], w + pw[0] + pw[1]))
    if count_include_pad:
        mask[: h + 2 * p[0], : w + 2 * p[1]] = 1
    else:
        mask[p[0] : p[0] + h, p[1] : p[1] + w] = 1
    win = np.lib.stride_tricks.sliding_window_view(mask, k)[:: s[0], :: s[1]]
    divisor = win.sum(axis=(-1, -2))
    return summed / jnp.asarray(divisor[..., None] if cl else divisor, x.dtype)


def adaptive_avg_pool2d(x: Array, output_size: IntOr2) -> Array:
    """``torch.nn.functional.adaptive_avg_pool2d``: output bin ``i`` averages input rows
    ``floor(i·H/out) .. ceil((i+1)·H/out)``. ``x: (N, C, H, W) -> (N, C, *output_size)``."""
    _check_4d(x, "adaptive_avg_pool2d")
    layout = _LAYOUT.get()
    oh, ow = _pair(output_size, "output_size")
    h, w = _hw(x)
    if h % oh == 0 and w % ow == 0:
        if layout == "NCHW":
            n, c = x.shape[:2]
            return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5))
        a, b = x.shape[0], x.shape[3]  # (N, C) or (C, N)
        return x.reshape(a, oh, h // oh, ow, w // ow, b).mean(axis=(2, 4))

    def bins(size: int, out: int) -> np.ndarray:
        m = np.zeros((out, size))
        for i in range(out):
            a, b = (i * size) // out, -(-((i + 1) * size) // out)
            m[i, a:b] = 1.0 / (b - a)
        return m

    ah, aw = (jnp.asarray(bins(h, oh), x.dtype), jnp.asarray(bins(w, ow), x.dtype))
    spec = {"NCHW": "oh,nchw,pw->ncop", "NHWC": "oh,nhwc,pw->nopc", "CHWN": "oh,chwn,pw->copn"}[layout]
    return jnp.einsum(spec, ah, x, aw)


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
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode), state

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
        y = avg_pool2d(
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
        return adaptive_avg_pool2d(x, self.output_size), state

    def extra_repr(self):
        return f"output_size={self.output_size}"



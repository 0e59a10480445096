"""Pooling: ``torch.nn``'s pooling layers and, beside them, their functional forms.

Layers: ``MaxPool1d/2d/3d``, ``AvgPool1d/2d/3d``, ``MaxUnpool1d/2d/3d``,
``AdaptiveMaxPool1d/2d/3d``, ``AdaptiveAvgPool1d/2d/3d``, ``LPPool1d/2d/3d``. Functions:
``max_pool{1,2,3}d`` (with ``return_indices``), ``avg_pool{1,2,3}d``,
``max_unpool{1,2,3}d``, ``adaptive_max_pool{1,2,3}d``, ``adaptive_avg_pool{1,2,3}d``,
``lp_pool{1,2,3}d``; ``FractionalMaxPool2d/3d`` and ``fractional_max_pool{2,3}d``.

One N-d implementation serves every dimension. A pooling window is a set of strided views
of the padded input, one per kernel offset (im2col's columns): max pooling is a running
maximum over them, average pooling XLA's ``reduce_window`` sum divided by counts that
depend only on static shapes. Inputs are ``(N, C, *spatial)`` or unbatched ``(C,
*spatial)``. The 2-D forms also take ``(N, H, W, C)`` inside
:func:`~funcnets.nn.functional.channels_last` and ``(C, H, W, N)`` inside
:func:`~funcnets.nn.functional.batch_last` (ResNet's and LeNet's trunks on CPU); the 1-D
and 3-D forms have no such layouts and refuse to run inside those blocks.

torch's rules, reproduced: stride defaults to kernel_size; padding is at most half the
kernel; in ceil mode a last window is kept only if it starts inside the input or the left
padding; max pooling pads with -inf, sends the gradient at ties to the first maximum of
the window (in row-major window order) and propagates NaN (the window's last NaN wins, as
in torch's kernels); returned indices are flat positions in each ``(N, C)`` input plane,
``int64`` as in torch (``int32`` unless x64 is enabled).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache, partial, reduce
from typing import Any, ClassVar, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnets._typing import Array, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.container import _Value
from funcnets.nn.module import Module

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "fractional_max_pool2d", "fractional_max_pool3d", "FractionalMaxPool2d", "FractionalMaxPool3d",
]  # fmt: skip

IntOrN = int | Sequence[int]
OptIntOrN = int | None | Sequence[int | None]

_SHAPE = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}
_UNBATCHED = {1: "(C, L)", 2: "(C, H, W)", 3: "(C, D, H, W)"}
_LAYOUT_SHAPE = {"NHWC": "(N, H, W, C) (channels_last)", "CHWN": "(C, H, W, N) (batch_last)"}
_BLOCK = {"NHWC": "channels_last()", "CHWN": "batch_last()"}


# ------------------------------------------------------------------ inputs and geometry
def _batched(x: Array, n: int, op: str, layer: bool) -> tuple[Array, tuple[int, ...], int | None]:
    """``x`` with a batch axis, its spatial axes, and the axis to squeeze off the result
    (``None`` when ``x`` was batched). Raises the house's errors for the wrong rank,
    dtype or layout block."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ShapeError(
            f"{op} expected a floating-point input, got dtype {x.dtype}. "
            f"Convert it first, e.g. x.astype(jnp.float32)."
        )
    layout = _LAYOUT.get()
    if layout == "NCHW":
        axes = tuple(range(2, n + 2))
        if x.ndim == n + 2:
            return x, axes, None
        if x.ndim == n + 1:
            return x[None], axes, 0
        spatial = x.ndim - 2
        hint = (
            f"a {spatial}-D signal needs the {spatial}d form"
            if spatial in (1, 2, 3)
            else f"reshape it to {_SHAPE[n]}"
        )
        raise ShapeError(
            f"{op} expected input {_SHAPE[n]} or unbatched {_UNBATCHED[n]}, got shape {tuple(x.shape)}: {hint}."
        )
    if n != 2:
        raise ShapeError(
            f"{op} takes torch's layout {_SHAPE[n]} only, not the {_BLOCK[layout]} layout of 4-D images; "
            f"call it outside the `with F.{_BLOCK[layout]}:` block."
        )
    batch_axis = -1 if layout == "CHWN" else 0
    if x.ndim == 4:
        return x, (1, 2), None
    if x.ndim == 3 and layer:  # an unbatched image, as conv2d's layers take it
        return jnp.expand_dims(x, batch_axis), (1, 2), batch_axis
    raise ShapeError(
        f"{op} expects a 4-D input {_LAYOUT_SHAPE[layout]}, got shape {tuple(x.shape)}. "
        f"Add a batch dimension with jnp.expand_dims(x, {batch_axis}) for a single image."
    )


def _check_nonempty(op: str, x: Array, xb: Array) -> None:
    """torch's max and average pooling refuse an empty non-batch dimension (a batch of 0 is fine)."""
    if _LAYOUT.get() == "NCHW" and 0 in xb.shape[1:]:
        raise ShapeError(
            f"{op}: expected an input with non-zero channel and spatial sizes (an empty batch is allowed), "
            f"got shape {tuple(x.shape)}."
        )


def _unbatch(y: Array, squeeze: int | None) -> Array:
    return y if squeeze is None else jnp.squeeze(y, squeeze)


def _tuple(op: str, v: Any, n: int, name: str) -> tuple[int, ...]:
    """torch's ``_single``/``_pair``/``_triple``: an int, or a sequence of 1 or ``n`` ints."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    try:
        t = tuple(int(i) for i in v)
    except TypeError:
        t = ()
    if len(t) == 1:
        t = t * n
    if len(t) != n:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def _pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output size (``pooling_output_shape``)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    # ceil mode: the last window must start inside the input or the left padding
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class _Window(NamedTuple):
    """A pooling's static geometry (hashable: a ``custom_jvp`` static argument and a
    cache key). ``extra``: the right padding that ceil mode adds beyond ``p``."""

    k: tuple[int, ...]
    s: tuple[int, ...]
    d: tuple[int, ...]
    p: tuple[int, ...]
    sizes: tuple[int, ...]
    outs: tuple[int, ...]
    extra: tuple[int, ...]
    axes: tuple[int, ...]
    ndim: int


def _window(op, n, x, axes, kernel_size, stride, padding, dilation, ceil_mode) -> _Window:
    k = _tuple(op, kernel_size, n, "kernel_size")
    s = _tuple(op, kernel_size if stride is None or stride == [] else stride, n, "stride")
    p = _tuple(op, padding, n, "padding")
    d = _tuple(op, dilation, n, "dilation")
    for name, t in (("kernel_size", k), ("stride", s), ("dilation", d)):
        if min(t) <= 0:
            raise ValueError(f"{op}: {name} must be greater than zero, got {t}")
    if min(p) < 0 or any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(
            f"{op}: padding {p} must be non-negative and at most half of kernel_size {k} "
            f"(torch's rule: padding <= kernel_size // 2); lower the padding or widen the kernel."
        )
    sizes = tuple(x.shape[a] for a in axes)
    outs = tuple(_pool_size(*g, ceil_mode) for g in zip(sizes, k, s, p, d))
    if min(outs) <= 0:
        raise ShapeError(
            f"{op}: input of spatial size {sizes} is too small for kernel_size={k}, stride={s}, "
            f"padding={p}, dilation={d}: the output would be {outs}. Use a larger input, "
            f"a smaller kernel or dilation, or more padding."
        )
    extra = tuple(
        max(0, (o - 1) * si + di * (ki - 1) + 1 - (L + 2 * pi)) for L, o, ki, si, pi, di in zip(sizes, outs, k, s, p, d)
    )
    return _Window(k, s, d, p, sizes, outs, extra, tuple(axes), x.ndim)


def _pads(w: _Window) -> list[tuple[int, int]]:
    pads = [(0, 0)] * w.ndim
    for a, p, e in zip(w.axes, w.p, w.extra):
        pads[a] = (p, p + e)
    return pads


def _spatial_shape(w: _Window, per_axis: Sequence[int]) -> list[int]:
    """A broadcastable shape: ``per_axis`` at the spatial axes, 1 elsewhere."""
    shape = [1] * w.ndim
    for a, m in zip(w.axes, per_axis):
        shape[a] = m
    return shape


# ------------------------------------------------------------------ max pooling
def _views(xp: Array, w: _Window) -> list[Array]:
    """The ``prod(k)`` strided views of the padded input, one per kernel offset in
    row-major order, each of the output's shape (``_conv.window_views`` in N-d)."""
    views = []
    for offs in itertools.product(*map(range, w.k)):
        start, limit, strides = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
        for a, o, s, d, m in zip(w.axes, offs, w.s, w.d, w.outs):
            start[a], limit[a], strides[a] = o * d, o * d + (m - 1) * s + 1, s
        views.append(lax.slice(xp, start, limit, strides))
    return views


def _index_type(views: int):
    return jnp.int8 if views <= 127 else jnp.int32


@lru_cache(maxsize=256)
def _first_real(w: _Window) -> np.ndarray | None:
    """Per output position, the view index of the window's first element inside the
    input (row-major; the first real offset of a box is each axis's first real offset),
    broadcastable to the output; ``None`` where that is view 0 everywhere."""
    firsts = []
    for L, k, s, d, p, m in zip(w.sizes, w.k, w.s, w.d, w.p, w.outs):
        pos = np.arange(m)[:, None] * s + np.arange(k)[None, :] * d - p
        real = (pos >= 0) & (pos < L)
        firsts.append(real.argmax(1))  # 0 for a window of padding only (torch reads outside the input there)
    view = firsts[0]
    for f, k in zip(firsts[1:], w.k[1:]):
        view = np.add.outer(view * k, f)  # the row-major view index over the axes so far
    return view.reshape(_spatial_shape(w, w.outs)).astype(_index_type(math.prod(w.k))) if view.any() else None


def _running_max(views: Sequence[Array]) -> tuple[Array, Array]:
    """The running maximum of the views and the winner's view index (int8 up to 127 views).

    ``t > m`` keeps the earlier element at ties, so the gradient goes to the first maximum
    of the window as in torch (``jnp.max`` would split it); a NaN always takes over."""
    itype = _index_type(len(views))
    out, idx = views[0], jnp.zeros(views[0].shape, itype)
    for i in range(1, len(views)):
        t = views[i]
        take = (t > out) | jnp.isnan(t)
        out, idx = jnp.where(take, t, out), jnp.where(take, itype(i), idx)
    return out, idx


def _max_chain(xp: Array, w: _Window) -> tuple[Array, Array]:
    out, idx = _running_max(_views(xp, w))
    first = _first_real(w)
    if first is not None:
        # torch starts a window's maximum at -inf with the index of its first input
        # element: where every input element is -inf the winner is that element, not
        # the -inf padding before it. One select on the result: masks inside the chain
        # cost ~20% of ResNet-18's pool backward, which XLA fuses into one loop that
        # re-runs the chain per window (batch 32, channels-last, interleaved medians of
        # two runs on a loaded machine: 228/219 ms without the fix, 271/264 with masks,
        # 232/213 with this select).
        idx = jnp.where(out == -jnp.inf, first, idx)
    return out, idx


def _in_memory(idx: Array) -> Array:
    """``idx``, computed once into its own buffer: the max of it and zeros (an identity
    for the non-negative index, but a reduction, which XLA:CPU does not fuse into its
    consumers). Otherwise XLA fuses the winner's compare chain into the backward's loop
    and re-derives it per input element and kernel tap: ResNet-18's stem pool backward
    (batch 32, channels-last, 32×32×64) took 51-56 ms against 3.6 ms so, torch 1.3-1.5 ms.
    (``lax.optimization_barrier`` does not stop it: XLA:CPU drops the barrier first.)"""
    return jnp.max(jnp.stack([idx, jnp.zeros_like(idx)]), axis=0)


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_overlapping(xp: Array, w: _Window) -> Array:
    return _max_chain(xp, w)[0]


@_max_pool_overlapping.defjvp
def _max_pool_overlapping_jvp(w, primals, tangents):
    # The tangent is the winner's, picked by its index: the backward then costs one
    # compare per (input element, window) pair. Autodiff of the chain instead masks each
    # candidate with all later comparisons of its window, which with overlapping windows
    # (ResNet's 3×3 stride-2 pool) measured slower in the ResNet-18 step: batch 32
    # 193-197 -> 186-188 ms, batch 8 61-63 -> 61-62.5 ms. With disjoint windows (LeNet's
    # 2×2) the chain is faster: LeNet step 5.7 vs 5.9 ms with the index.
    (xp,), (tx,) = primals, tangents
    out, idx = _max_chain(xp, w)
    idx = _in_memory(idx)
    zero = jnp.zeros((), tx.dtype)
    return out, sum(jnp.where(idx == i, v, zero) for i, v in enumerate(_views(tx, w)))


def _index_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def _flat_indices(win: Array, tables: Sequence[np.ndarray], axes: Sequence[int], sizes: Sequence[int]) -> Array:
    """Flat input-plane indices of the winners. ``win``: the winner's row-major offset in
    the window; ``tables[i][o, j]``: the input coordinate, along spatial axis ``i``, of
    offset ``j`` of output position ``o``."""
    itype = _index_dtype()
    win = win.astype(itype)
    flat = jnp.zeros(win.shape, itype)
    kstride = plane_stride = 1
    for a, t, L in reversed(list(zip(axes, tables, sizes))):
        k = t.shape[1]
        j = (win // kstride) % k
        o = lax.broadcasted_iota(itype, win.shape, a)
        flat = flat + jnp.take(jnp.asarray(t.ravel(), itype), o * k + j) * plane_stride
        kstride, plane_stride = kstride * k, plane_stride * L
    return flat


def _max_pool(x, n, kernel_size, stride, padding, dilation, ceil_mode, return_indices, op, layer=False):
    xb, axes, squeeze = _batched(x, n, op, layer)
    _check_nonempty(op, x, xb)
    w = _window(op, n, xb, axes, kernel_size, stride, padding, dilation, ceil_mode)
    # A running maximum over the strided views of the -inf-padded input. It is faster on
    # CPU than reduce_window, whose select-and-scatter backward measured 3-4× slower
    # (batch 32, 64×32×32: 10.6 vs 35.9 ms), and it has a gradient with dilation, which
    # JAX's reduce_window max lacks.
    xp = jnp.pad(xb, _pads(w), constant_values=-jnp.inf)
    win, padded = None, any(w.p) or any(w.extra)
    if all(s >= d * (k - 1) + 1 for k, s, d in zip(w.k, w.s, w.d)) and not padded:
        # disjoint windows: autodiff of the chain (with padding the custom JVP is what
        # sends an all -inf window's gradient to its first input element)
        out, win = _max_chain(xp, w)
    else:
        out = _max_pool_overlapping(xp, w)
    if not return_indices:
        return _unbatch(out, squeeze)
    if win is None:
        win = _max_chain(lax.stop_gradient(xp), w)[1]
    tables = [
        np.arange(m)[:, None] * s - p + np.arange(k)[None, :] * d
        for m, k, s, p, d in zip(w.outs, w.k, w.s, w.p, w.d)
    ]
    return _unbatch(out, squeeze), _unbatch(_flat_indices(win, tables, w.axes, w.sizes), squeeze)


_MAX_POOL_DOC = """``torch.nn.functional.max_pool{n}d``: stride defaults to kernel_size, pads with -inf.

    Args:
      x: ``{shape}`` or unbatched ``{unbatched}``.
      kernel_size, stride, padding, dilation: an int or a tuple of {n}; padding is at most
        half the kernel.
      ceil_mode: round the output size up; a last window is kept only if it starts inside
        the input or the left padding (torch's rule).
      return_indices: also return the flat index of each maximum in its ``(N, C)`` input
        plane (for :func:`max_unpool{n}d`), ``int64`` (``int32`` unless x64).
    Returns:
      ``(N, C, *out)`` with ``out = (size + 2p - d(k-1) - 1) / s + 1`` rounded down (up in
      ceil mode), or ``(values, indices)``. The gradient at ties goes to the first maximum
      of the window; NaN propagates.
    """


def max_pool1d(
    x: Array,
    kernel_size: IntOrN,
    stride: IntOrN | None = None,
    padding: IntOrN = 0,
    dilation: IntOrN = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Array | tuple[Array, Array]:
    return _max_pool(x, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool1d")


def max_pool2d(
    x: Array,
    kernel_size: IntOrN,
    stride: IntOrN | None = None,
    padding: IntOrN = 0,
    dilation: IntOrN = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Array | tuple[Array, Array]:
    return _max_pool(x, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool2d")


def max_pool3d(
    x: Array,
    kernel_size: IntOrN,
    stride: IntOrN | None = None,
    padding: IntOrN = 0,
    dilation: IntOrN = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Array | tuple[Array, Array]:
    return _max_pool(x, 3, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool3d")


# ------------------------------------------------------------------ average pooling
def _counts(L: int, k: int, s: int, p: int, m: int, include_pad: bool) -> np.ndarray:
    """Per output position along one axis, how many of the window's positions count:
    those inside the zero-padded input, or inside the input alone (never the positions
    that ceil mode adds). A box's count is the product over its axes."""
    start = np.arange(m) * s - p
    lo, hi = (-p, L + p) if include_pad else (0, L)
    return np.clip(start + k, lo, hi) - np.clip(start, lo, hi)


def _avg_pool(x, n, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, op, layer=False):
    xb, axes, squeeze = _batched(x, n, op, layer)
    _check_nonempty(op, x, xb)
    sizes, k = tuple(xb.shape[a] for a in axes), _tuple(op, kernel_size, n, "kernel_size")
    if n == 3 and any(L < ki for L, ki in zip(sizes, k)):
        # torch's avg_pool3d (and so lp_pool3d) checks the unpadded input against the
        # kernel, before the output size, which the 1-D and 2-D forms do not
        raise ShapeError(
            f"{op}: input image of spatial size {sizes} is smaller than kernel_size {k} "
            f"(torch's 3-D average pooling needs every input size >= the kernel's, padding aside); "
            f"use a smaller kernel or pad the input first (e.g. with F.pad)."
        )
    w = _window(op, n, xb, axes, kernel_size, stride, padding, 1, ceil_mode)
    window, strides = _spatial_shape(w, w.k), _spatial_shape(w, w.s)
    summed = lax.reduce_window(xb, 0.0, lax.add, window, strides, _pads(w))
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero (torch: 'divisor must be not zero').")
        return _unbatch(summed / divisor_override, squeeze)
    # the divisor depends only on static shapes: computed once, in NumPy
    per_axis = [_counts(L, k, s, p, m, count_include_pad) for L, k, s, p, m in zip(w.sizes, w.k, w.s, w.p, w.outs)]
    divisor = reduce(np.multiply.outer, per_axis).reshape(_spatial_shape(w, w.outs))
    return _unbatch(summed / jnp.asarray(divisor, xb.dtype), squeeze)


_AVG_POOL_DOC = """``torch.nn.functional.avg_pool{n}d`` with torch's divisor rules.

    Args:
      x: ``{shape}`` or unbatched ``{unbatched}``.
      kernel_size, stride, padding: an int or a tuple of {n} (stride defaults to
        kernel_size; padding, with zeros, at most half the kernel).
      ceil_mode: as in :func:`max_pool{n}d`.
      count_include_pad: the divisor counts the window's positions inside the zero-padded
        input (True) or inside the input alone; positions added by ceil_mode never count.
      divisor_override: divide every window's sum by this instead (2-D and 3-D).
    Returns:
      ``(N, C, *out)``, the output size as in :func:`max_pool{n}d` with dilation 1.
    """


def avg_pool1d(
    x: Array,
    kernel_size: IntOrN,
    stride: IntOrN | None = None,
    padding: IntOrN = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Array:
    return _avg_pool(x, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None, "avg_pool1d")


def avg_pool2d(
    x: Array,
    kernel_size: IntOrN,
    stride: IntOrN | None = None,
    padding: IntOrN = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    return _avg_pool(x, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, "avg_pool2d")


def avg_pool3d(
    x: Array,
    kernel_size: IntOrN,
    stride: IntOrN | None = None,
    padding: IntOrN = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    return _avg_pool(x, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, "avg_pool3d")


# ------------------------------------------------------------------ max unpooling
def _unpool_rows(x: Array, idx: Array, size: int, unique: bool) -> Array:
    rows = jnp.arange(x.shape[0])[:, None]
    return (
        jnp.zeros((x.shape[0], size), x.dtype)
        .at[rows, idx]
        .set(x, mode="drop", wrap_negative_indices=False, unique_indices=unique)
    )


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _unpool(x: Array, idx: Array, size: int) -> Array:
    return _unpool_rows(x, idx, size, False)


@_unpool.defjvp
def _unpool_jvp(size, primals, tangents):
    (x, idx), (tx, _) = primals, tangents
    # The tangent is declared a scatter to unique places so that reverse mode transposes
    # it to a gather: torch's gradient, where every input reads the output gradient at
    # its index, also when overlapping windows repeat an index. (JAX's gradient of a
    # scatter with repeated indices would give it to one of the repeats only.)
    return _unpool(x, idx, size), _unpool_rows(tx, idx, size, True)


def _unpool_size(op, n, sizes, k, s, p, output_size, axes) -> tuple[int, ...]:
    """torch's ``_unpool_output_size``: ``(size - 1)·s + k - 2p`` unless ``output_size``
    (``n`` sizes, or the whole shape of ``n + 2``) picks one within a stride of it."""
    default = tuple((L - 1) * si + ki - 2 * pi for L, ki, si, pi in zip(sizes, k, s, p))
    if output_size is None:
        out = default
    else:
        out = tuple(int(o) for o in output_size)
        if len(out) == n + 2:
            out = tuple(out[a] for a in axes)
        if len(out) != n:
            raise ValueError(
                f"{op}: output_size should be a sequence of {n} or {n + 2} sizes, "
                f"but it has {len(out)}: {tuple(output_size)}"
            )
        for i, (o, dflt, si) in enumerate(zip(out, default, s)):
            if not dflt - si < o < dflt + si:
                raise ValueError(
                    f'{op}: invalid output_size "{out}" (dim {i} must be between '
                    f"{dflt - si} and {dflt + si}, exclusive)"
                )
    if min(out) < 0:
        raise ShapeError(
            f"{op}: the output size {out} of input spatial size {sizes} is negative "
            f"(kernel_size={k}, stride={s}, padding={p}); check the padding."
        )
    return out


def _check_unpool_indices(op: str, indices: Array, outs: tuple[int, ...], sizes: tuple[int, ...]) -> None:
    """torch's error for an index outside the output plane, where the indices are known
    (under a trace they are not, and such indices are dropped)."""
    if isinstance(indices, jax.core.Tracer) or indices.size == 0:
        return
    lo, hi = int(jnp.min(indices)), int(jnp.max(indices))
    if lo < 0 or hi >= math.prod(outs):
        bad = hi if hi >= math.prod(outs) else lo
        raise ValueError(
            f"{op}: found an invalid max index {bad} (the output planes are of size "
            f"{'x'.join(map(str, outs))}, from the input's spatial size {sizes}). The pooled input "
            f"was larger than the default output size: pass output_size= the spatial size of the "
            f"input to the max pooling."
        )


def _max_unpool(x, indices, n, kernel_size, stride, padding, output_size, op, layer=False):
    xb, axes, squeeze = _batched(x, n, op, layer)
    indices = jnp.asarray(indices)
    if indices.shape != x.shape or not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ShapeError(
            f"{op}: indices must be integers of the input's shape {tuple(x.shape)}, got "
            f"{indices.dtype} {tuple(indices.shape)}; pass the indices that "
            f"max_pool{n}d(..., return_indices=True) returned with the input."
        )
    ib = indices if squeeze is None else jnp.expand_dims(indices, squeeze)
    k = _tuple(op, kernel_size, n, "kernel_size")
    s = _tuple(op, kernel_size if stride is None else stride, n, "stride")
    p = _tuple(op, padding, n, "padding")
    sizes = tuple(xb.shape[a] for a in axes)
    outs = _unpool_size(op, n, sizes, k, s, p, output_size, axes)
    _check_unpool_indices(op, indices, outs, sizes)
    # scatter within each (N, C) plane: the spatial axes last, flattened
    perm = [a for a in range(xb.ndim) if a not in axes] + list(axes)
    lead = tuple(xb.shape[a] for a in perm[:-n])
    plane = math.prod(sizes)
    y = _unpool(xb.transpose(perm).reshape(-1, plane), ib.transpose(perm).reshape(-1, plane), math.prod(outs))
    y = y.reshape(lead + outs).transpose(tuple(int(a) for a in np.argsort(perm)))
    return _unbatch(y, squeeze)


_MAX_UNPOOL_DOC = """``torch.nn.functional.max_unpool{n}d``: the partial inverse of :func:`max_pool{n}d`.

    Writes each input value at its index (flat, in its ``(N, C)`` output plane) and zeros
    elsewhere. The gradient of an input is the output gradient at its index.

    Args:
      x: ``{shape}`` or unbatched ``{unbatched}``, the pooled values.
      indices: their indices, as ``max_pool{n}d(..., return_indices=True)`` returns them.
      kernel_size, stride, padding: the pooling's (stride defaults to kernel_size).
      output_size: the spatial size to restore (``n`` sizes or the whole shape), within
        a stride of the default ``(size - 1)·stride + kernel_size - 2·padding``.
    Returns:
      ``(N, C, *output_size)``. An index outside the output plane is an error, as in
      torch, where the indices are concrete; under ``jit`` such indices are dropped.
    """


def max_unpool1d(x: Array, indices: Array, kernel_size: IntOrN, stride: IntOrN | None = None, padding: IntOrN = 0,
                 output_size: Sequence[int] | None = None) -> Array:  # fmt: skip
    return _max_unpool(x, indices, 1, kernel_size, stride, padding, output_size, "max_unpool1d")


def max_unpool2d(x: Array, indices: Array, kernel_size: IntOrN, stride: IntOrN | None = None, padding: IntOrN = 0,
                 output_size: Sequence[int] | None = None) -> Array:  # fmt: skip
    return _max_unpool(x, indices, 2, kernel_size, stride, padding, output_size, "max_unpool2d")


def max_unpool3d(x: Array, indices: Array, kernel_size: IntOrN, stride: IntOrN | None = None, padding: IntOrN = 0,
                 output_size: Sequence[int] | None = None) -> Array:  # fmt: skip
    return _max_unpool(x, indices, 3, kernel_size, stride, padding, output_size, "max_unpool3d")


# ------------------------------------------------------------------ adaptive pooling
def _adaptive_sizes(op: str, n: int, output_size: OptIntOrN, sizes: Sequence[int]) -> tuple[int, ...]:
    """``output_size`` as ``n`` ints; ``None`` entries (2-D, 3-D) keep the input's size."""
    if output_size is None or isinstance(output_size, (int, np.integer)):
        t = (output_size,) * n
    else:
        t = tuple(output_size)
    if len(t) != n or (n == 1 and t[0] is None):
        raise ValueError(f"{op}: output_size must be an int or a tuple of {n}, got {output_size!r}")
    if 0 in sizes:  # torch's check (an empty bin would average to NaN)
        raise ShapeError(
            f"{op}: expected input to have non-zero size for non-batch dimensions, but its spatial "
            f"size is {tuple(sizes)}"
        )
    outs = tuple(L if o is None else int(o) for o, L in zip(t, sizes))
    if min(outs) < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {output_size!r}")
    return outs


def _bins(L: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins: bin ``i`` covers ``floor(i·L/o) .. ceil((i+1)·L/o)``."""
    i = np.arange(o)
    return (i * L) // o, -(-((i + 1) * L) // o)


def _adaptive_avg(x, n, output_size, op, layer=False):
    xb, axes, squeeze = _batched(x, n, op, layer)
    sizes = tuple(xb.shape[a] for a in axes)
    outs = _adaptive_sizes(op, n, output_size, sizes)
    spatial = dict(zip(axes, outs))
    if 0 in outs:
        return _unbatch(jnp.zeros(tuple(spatial.get(a, m) for a, m in enumerate(xb.shape)), xb.dtype), squeeze)
    # axes the output divides are equal bins: one reshape and one mean for all of them
    shape, mean_axes = [], []
    for a, m in enumerate(xb.shape):
        if a in spatial and m % spatial[a] == 0:
            shape += [spatial[a], m // spatial[a]]
            mean_axes.append(len(shape) - 1)
        else:
            shape.append(m)
    y = xb.reshape(shape).mean(axis=tuple(mean_axes)) if mean_axes else xb
    # the others: a product with each axis's averaging matrix (a box mean is separable)
    for a, L, o in zip(axes, sizes, outs):
        if L % o:
            start, end = _bins(L, o)
            cols = np.arange(L)
            avg = ((cols >= start[:, None]) & (cols < end[:, None])) / (end - start)[:, None]
            y = jnp.tensordot(y, jnp.asarray(avg, y.dtype), axes=((a,), (1,)), precision=lax.Precision.HIGHEST)
            y = jnp.moveaxis(y, -1, a)
    return _unbatch(y, squeeze)


def _winner(y: Array) -> Array:
    """torch's max-pooling winner along the last axis: the first maximum, or the window's
    last NaN (its kernels' running ``val > max || isnan(val)``)."""
    nan = jnp.isnan(y)
    last_nan = y.shape[-1] - 1 - jnp.argmax(nan[..., ::-1], axis=-1)
    return jnp.where(nan.any(-1), last_nan, jnp.argmax(y, axis=-1))


def _adaptive_max(x, n, output_size, return_indices, op, layer=False):
    xb, axes, squeeze = _batched(x, n, op, layer)
    sizes = tuple(xb.shape[a] for a in axes)
    outs = _adaptive_sizes(op, n, output_size, sizes)
    spatial = dict(zip(axes, outs))
    if 0 in outs:
        shape = tuple(spatial.get(a, m) for a, m in enumerate(xb.shape))
        out = _unbatch(jnp.zeros(shape, xb.dtype), squeeze)
        return (out, _unbatch(jnp.zeros(shape, _index_dtype()), squeeze)) if return_indices else out
    # Each spatial axis L becomes (out, k): the input coordinates of each bin, padded to
    # the longest bin by repeating its last element (a repeat never wins a tie, and a
    # trailing NaN maps back to the same element). Equal bins are a reshape, others a
    # gather (its gradient a scatter-add).
    tables, y = [], xb
    for a, L, o in reversed(list(zip(axes, sizes, outs))):
        start, end = _bins(L, o)
        k = int((end - start).max())
        table = np.minimum(start[:, None] + np.arange(k), end[:, None] - 1)
        tables.insert(0, table)
        if L != o * k or (table.ravel() != np.arange(L)).any():
            y = jnp.take(y, table.ravel(), axis=a)
        y = y.reshape(y.shape[:a] + (o, k) + y.shape[a + 1 :])
    kaxes = [a + i + 1 for i, a in enumerate(axes)]
    y = jnp.moveaxis(y, kaxes, list(range(-n, 0)))
    y = y.reshape(y.shape[:-n] + (-1,))  # (..., bin element)
    win = _winner(y)
    out = jnp.take_along_axis(y, win[..., None], axis=-1)[..., 0]  # its gradient goes to the winner only
    if not return_indices:
        return _unbatch(out, squeeze)
    return _unbatch(out, squeeze), _unbatch(_flat_indices(win, tables, axes, sizes), squeeze)


_ADAPTIVE_MAX_DOC = """``torch.nn.functional.adaptive_max_pool{n}d``: the maximum over torch's bins.

    Output bin ``i`` covers input positions ``floor(i·L/out) .. ceil((i+1)·L/out)`` along
    each axis (bins overlap when ``L`` is not a multiple of ``out``).

    Args:
      x: ``{shape}`` or unbatched ``{unbatched}``.
      output_size: an int or a tuple of {n}; ``None`` keeps that axis's size (2-D, 3-D).
      return_indices: also return each maximum's flat index in its ``(N, C)`` input plane.
    Returns:
      ``(N, C, *output_size)``, or ``(values, indices)``. Ties and NaN as in
      :func:`max_pool{n}d`.
    """

_ADAPTIVE_AVG_DOC = """``torch.nn.functional.adaptive_avg_pool{n}d``: the mean over torch's bins.

    Output bin ``i`` averages input positions ``floor(i·L/out) .. ceil((i+1)·L/out)``
    along each axis.

    Args:
      x: ``{shape}`` or unbatched ``{unbatched}``.
      output_size: an int or a tuple of {n}; ``None`` keeps that axis's size (2-D, 3-D).
    Returns:
      ``(N, C, *output_size)``.
    """


def adaptive_max_pool1d(x: Array, output_size: OptIntOrN, return_indices: bool = False) -> Array | tuple[Array, Array]:
    return _adaptive_max(x, 1, output_size, return_indices, "adaptive_max_pool1d")


def adaptive_max_pool2d(x: Array, output_size: OptIntOrN, return_indices: bool = False) -> Array | tuple[Array, Array]:
    return _adaptive_max(x, 2, output_size, return_indices, "adaptive_max_pool2d")


def adaptive_max_pool3d(x: Array, output_size: OptIntOrN, return_indices: bool = False) -> Array | tuple[Array, Array]:
    return _adaptive_max(x, 3, output_size, return_indices, "adaptive_max_pool3d")


def adaptive_avg_pool1d(x: Array, output_size: OptIntOrN) -> Array:
    return _adaptive_avg(x, 1, output_size, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(x: Array, output_size: OptIntOrN) -> Array:
    return _adaptive_avg(x, 2, output_size, "adaptive_avg_pool2d")


def adaptive_avg_pool3d(x: Array, output_size: OptIntOrN) -> Array:
    return _adaptive_avg(x, 3, output_size, "adaptive_avg_pool3d")


# ------------------------------------------------------------------ power-average pooling
def _lp_pool(x, n, norm_type, kernel_size, stride, ceil_mode, op, layer=False):
    _batched(x, n, op, layer)  # the input checks, before x**p can change the dtype
    if norm_type == 0:
        raise ValueError(f"{op}: norm_type must be a non-zero value, but got {norm_type}")
    if abs(norm_type) == math.inf:
        # |x| as x·sign(x): torch's abs has gradient sign(x), 0 at 0, where jnp.abs's is 1
        ax = x * jnp.sign(x)
        if norm_type > 0:
            return _max_pool(ax, n, kernel_size, stride, 0, 1, ceil_mode, False, op, layer)
        return -_max_pool(-ax, n, kernel_size, stride, 0, 1, ceil_mode, False, op, layer)
    out = _avg_pool(x**norm_type, n, kernel_size, stride, 0, ceil_mode, True, None, op, layer)
    k = math.prod(_tuple(op, kernel_size, n, "kernel_size"))
    # torch's expression: relu's zero gradient at 0 is what keeps the gradient of an
    # all-zero window at zero (the power's would be infinite)
    return (jnp.sign(out) * jax.nn.relu(jnp.abs(out)) * k) ** (1.0 / norm_type)


_LP_POOL_DOC = """``torch.nn.functional.lp_pool{n}d``: ``(Σ_window x^p)^(1/p)``.

    Computed as torch does, ``(k · avg_pool{n}d(x^p, kernel_size, stride, 0, ceil_mode))^(1/p)``
    (so in ceil mode a clipped window's sum is scaled to the full kernel); ``p = inf`` is
    max pooling of ``|x|``. An all-zero window has gradient zero.

    Args:
      x: ``{shape}`` or unbatched ``{unbatched}``.
      norm_type: ``p``, non-zero. kernel_size, stride: an int or a tuple of {n}.
    Returns:
      ``(N, C, *out)``, the output size of :func:`avg_pool{n}d` without padding.
    """


def lp_pool1d(x: Array, norm_type: float, kernel_size: IntOrN, stride: IntOrN | None = None, ceil_mode: bool = False) -> Array:
    return _lp_pool(x, 1, norm_type, kernel_size, stride, ceil_mode, "lp_pool1d")


def lp_pool2d(x: Array, norm_type: float, kernel_size: IntOrN, stride: IntOrN | None = None, ceil_mode: bool = False) -> Array:
    return _lp_pool(x, 2, norm_type, kernel_size, stride, ceil_mode, "lp_pool2d")


def lp_pool3d(x: Array, norm_type: float, kernel_size: IntOrN, stride: IntOrN | None = None, ceil_mode: bool = False) -> Array:
    return _lp_pool(x, 3, norm_type, kernel_size, stride, ceil_mode, "lp_pool3d")


# ------------------------------------------------------------------ fractional max pooling
_FRACTIONAL_AXES = {2: ("height", "width"), 3: ("time", "height", "width")}


def _fractional_sizes(op, n, sizes, kernel_size, output_size, output_ratio) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The kernel and output sizes, checked as torch checks them."""
    k = _tuple(op, kernel_size, n, "kernel_size")
    if min(k) <= 0:
        raise ValueError(f"{op}: kernel size should be greater than zero, but got {'x'.join(map(str, k))}")
    if output_size is None:
        if output_ratio is None:
            raise ValueError(f"{op} requires specifying either an output_size or an output_ratio")
        r = (output_ratio,) * n if isinstance(output_ratio, (int, float, np.number)) else tuple(output_ratio)
        if len(r) == 1:
            r = r * n
        if len(r) != n:
            raise ValueError(f"{op}: output_ratio must be a number or a tuple of {n} numbers, got {output_ratio!r}")
        output_size = tuple(int(L * float(ri)) for L, ri in zip(sizes, r))  # torch: int(size * ratio)
    outs = _tuple(op, output_size, n, "output_size")
    if min(outs) < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {outs}")
    # ATen's checks, in its order: 3-D refuses a last window that ends at the input's end
    # (output + kernel - 1 == input), which 2-D allows
    order = (0, 1) if n == 2 else (0, 2, 1)
    for d in order:
        name, L, ki, o = _FRACTIONAL_AXES[n][d], sizes[d], k[d], outs[d]
        if o + ki - 1 > L or (n == 3 and o + ki - 1 == L):
            need = "<=" if n == 2 else "<"
            raise ShapeError(
                f"{op}: pool {name} {ki} too large relative to input {name} {L}: {o} windows (output_size "
                f"{outs}) need output + kernel - 1 {need} input, here {o} + {ki} - 1 vs {L}. Use a smaller "
                f"kernel_size or output_size (output_ratio)."
            )
    return k, outs


def _fractional_samples(op, n, xb, batched, samples, key) -> Array:
    """torch's ``_random_samples`` (checked as ATen checks them), or a uniform [0, 1) draw
    with ``key`` of shape ``(N, C, n)`` in the input's dtype, as torch.rand draws them."""
    N, C = xb.shape[:2]
    if samples is None:
        if key is None:
            raise ValueError(
                f"{op} draws its pooling regions at random (in eval too, as torch does) and needs a PRNG key: "
                f"pass key=jax.random.key(seed), or fixed _random_samples of shape ({N}, {C}, {n})."
            )
        return jax.random.uniform(key, (N, C, n), xb.dtype)
    samples = jnp.asarray(samples)
    if samples.dtype != xb.dtype:
        raise ValueError(
            f"{op}: expect _random_samples to have the same dtype as input ({xb.dtype}), got {samples.dtype}"
        )
    if samples.ndim != 3:
        raise ShapeError(f"{op}: expect _random_samples to have 3 dimensions (N, C, {n}), got {samples.ndim}")
    # torch reads the first N rows (one for an unbatched input); more are allowed
    if samples.shape[0] < (N if batched else 1) or samples.shape[1] != C or samples.shape[2] != n:
        raise ShapeError(
            f"{op}: _random_samples must be (N, C, {n}) = ({N if batched else 1}, {C}, {n}) for this input "
            f"(its first dimension may be larger), got {tuple(samples.shape)}"
        )
    return samples[:N]


def _fractional_starts(u: Array, L: int, k: int, o: int) -> Array:
    """ATen's ``generate_intervals`` for one axis: ``u (N, C)`` -> window starts ``(N, C, o)``.

    ``alpha = (L - k) / (o - 1)`` and ``start_i = int((i + u)·alpha) - int(u·alpha)``, the
    last window at ``L - k``; computed in the samples' dtype as torch computes it in the
    input's scalar type, so that float32's rounding picks torch's windows."""
    last = jnp.full(u.shape + (1,), L - k, jnp.int32)
    if o == 1:
        return last
    dt = u.dtype
    alpha = np.asarray(L - k, dt) / np.asarray(o - 1, dt)  # the scalar type's division, not float64's
    i = jnp.asarray(np.arange(o - 1), dt)
    u = u[..., None]
    # float -> int conversion truncates toward zero, as C++'s static_cast<int>
    seq = ((i + u) * alpha).astype(jnp.int32) - (u * alpha).astype(jnp.int32)
    return jnp.concatenate([seq, jnp.broadcast_to(last, seq.shape[:-1] + (1,))], axis=-1)


def _fractional_max(x, n, kernel_size, output_size, output_ratio, return_indices, samples, key, op, layer=False):
    if _LAYOUT.get() != "NCHW":
        raise ShapeError(
            f"{op} takes torch's layout {_SHAPE[n]} only, not the {_BLOCK[_LAYOUT.get()]} layout; "
            f"call it outside the `with F.{_BLOCK[_LAYOUT.get()]}:` block."
        )
    xb, axes, squeeze = _batched(x, n, op, layer)
    _check_nonempty(op, x, xb)
    sizes = tuple(xb.shape[2:])
    k, outs = _fractional_sizes(op, n, sizes, kernel_size, output_size, output_ratio)
    u = _fractional_samples(op, n, xb, squeeze is None, samples, key)
    N, C = xb.shape[:2]
    if 0 in outs or N == 0:
        out = jnp.zeros((N, C) + outs, xb.dtype)
        idx = jnp.zeros((N, C) + outs, _index_dtype())
        return (_unbatch(out, squeeze), _unbatch(idx, squeeze)) if return_indices else _unbatch(out, squeeze)
    # Every window's flat input-plane positions, (N, C, *outs, *k) in row-major window
    # order (torch's loop order), then one gather: no loop over output positions.
    flat = jnp.zeros((), jnp.int32)
    plane_stride = 1
    for d in reversed(range(n)):
        # ATen's 2-D kernel reads sample 0 for the width, 1 for the height; its 3-D kernel
        # 0, 1, 2 for time, height, width
        start = _fractional_starts(u[..., n - 1 - d if n == 2 else d], sizes[d], k[d], outs[d])
        pos = start[..., None] + jnp.arange(k[d], dtype=jnp.int32)  # (N, C, o_d, k_d)
        shape = [N, C] + [1] * (2 * n)
        shape[2 + d], shape[2 + n + d] = outs[d], k[d]
        flat = flat + pos.reshape(shape) * plane_stride
        plane_stride *= sizes[d]
    O, K = math.prod(outs), math.prod(k)
    flat = jnp.broadcast_to(flat, (N, C) + outs + k).reshape(N, C, O, K)
    xflat = xb.reshape(N, C, plane_stride)
    windows = jnp.take_along_axis(xflat, flat.reshape(N, C, O * K), axis=2).reshape(N, C, O, K)
    win = jnp.take_along_axis(flat, _winner(lax.stop_gradient(windows))[..., None], axis=-1)[..., 0]
    # the value is read at the winner's index, so the gradient goes there only (summed
    # over the windows that pick it, as torch's backward adds into the index)
    out = jnp.take_along_axis(xflat, win, axis=2).reshape((N, C) + outs)
    if not return_indices:
        return _unbatch(out, squeeze)
    return _unbatch(out, squeeze), _unbatch(win.astype(_index_dtype()).reshape((N, C) + outs), squeeze)


_FRACTIONAL_DOC = """``torch.nn.functional.fractional_max_pool{n}d``: max pooling over pseudo-random windows.

    Graham's fractional max pooling: output position ``i`` of an axis of input size ``L``
    takes the maximum over ``kernel_size`` elements from ``start_i = int((i + u)·α) -
    int(u·α)``, ``α = (L - k)/(out - 1)`` (the last window at ``L - k``), with one sample
    ``u`` in [0, 1) per ``(N, C)`` plane and axis: ATen's ``generate_intervals``, in the
    input's dtype, so that with torch's samples the windows are torch's.

    Args:
      input: ``{shape}`` or unbatched ``{unbatched}``.
      kernel_size: an int or a tuple of {n}.
      output_size: an int or a tuple of {n}; each needs ``output + kernel - 1 <= input``
        (``<`` in 3-D, as torch checks).
      output_ratio: instead of output_size, ``output = int(input · ratio)`` per axis (a
        number or a tuple of {n}); output_size wins if both are given, as in torch.
      return_indices: also return each maximum's flat index in its ``(N, C)`` input plane
        (for :func:`max_unpool{n}d`), ``int64`` (``int32`` unless x64).
      _random_samples: ``(N, C, {n})`` samples in [0, 1), the input's dtype (one row for an
        unbatched input; extra rows are ignored), in torch's order: (width, height) in 2-D,
        (time, height, width) in 3-D. Pass torch's for its exact result. Samples outside
        [0, 1) are not checked (torch reads outside the input with them).
      key: the PRNG key to draw the samples with (``jax.random.uniform``) when
        ``_random_samples`` is None. torch's ``torch.rand`` draw cannot be reproduced, so
        the same seed gives other windows than torch's.
    Returns:
      ``(N, C, *output_size)``, or ``(values, indices)``. Ties go to the first maximum of
      the window, NaN propagates (the last NaN wins), the gradient goes to the index
      returned, as in torch.
    """


def fractional_max_pool2d(
    input: Array,
    kernel_size: IntOrN,
    output_size: IntOrN | None = None,
    output_ratio: float | Sequence[float] | None = None,
    return_indices: bool = False,
    _random_samples: Array | None = None,
    *,
    key: PRNGKey | None = None,
) -> Array | tuple[Array, Array]:
    return _fractional_max(
        input, 2, kernel_size, output_size, output_ratio, return_indices, _random_samples, key, "fractional_max_pool2d"
    )


def fractional_max_pool3d(
    input: Array,
    kernel_size: IntOrN,
    output_size: IntOrN | None = None,
    output_ratio: float | Sequence[float] | None = None,
    return_indices: bool = False,
    _random_samples: Array | None = None,
    *,
    key: PRNGKey | None = None,
) -> Array | tuple[Array, Array]:
    return _fractional_max(
        input, 3, kernel_size, output_size, output_ratio, return_indices, _random_samples, key, "fractional_max_pool3d"
    )


for _n in (1, 2, 3):
    _fill = dict(n=_n, shape=_SHAPE[_n], unbatched=_UNBATCHED[_n])
    for _f, _doc in (
        (f"max_pool{_n}d", _MAX_POOL_DOC), (f"avg_pool{_n}d", _AVG_POOL_DOC), (f"max_unpool{_n}d", _MAX_UNPOOL_DOC),
        (f"adaptive_max_pool{_n}d", _ADAPTIVE_MAX_DOC), (f"adaptive_avg_pool{_n}d", _ADAPTIVE_AVG_DOC),
        (f"lp_pool{_n}d", _LP_POOL_DOC), (f"fractional_max_pool{_n}d", _FRACTIONAL_DOC),
    ):  # fmt: skip
        if _f in globals():  # fractional max pooling has no 1-D form
            globals()[_f].__doc__ = _doc.format(**_fill)
del _n, _f, _doc, _fill


# ------------------------------------------------------------------ layers
def _frozen(v: Any) -> Any:
    """Lists as tuples, so that a layer stays hashable (a static ``jax.jit`` argument)."""
    return tuple(v) if isinstance(v, list) else v


class _Pool(Module):
    """Shared by the pooling layers: hashable fields, ``stride`` defaulting to the kernel."""

    _n: ClassVar[int]

    def __post_init__(self):
        for f in self.__dataclass_fields__:
            object.__setattr__(self, f, _frozen(getattr(self, f)))
        if "stride" in self.__dataclass_fields__ and self.stride is None and not isinstance(self, _LPPoolNd):
            object.__setattr__(self, "stride", self.kernel_size)


@dataclass(frozen=True, repr=False)
class _MaxPoolNd(_Pool):
    kernel_size: IntOrN
    stride: IntOrN | None = None
    padding: IntOrN = 0
    dilation: IntOrN = 1
    return_indices: bool = False
    ceil_mode: bool = False

    def apply(self, params, state, x, *, train=False, key=None):
        y = _max_pool(
            x, self._n, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
            self.return_indices, repr(self), layer=True,
        )  # fmt: skip
        return y, state

    def extra_repr(self):
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


@dataclass(frozen=True, repr=False)
class MaxPool1d(_MaxPoolNd):
    """Max pooling over ``(N, C, L)`` (or ``(C, L)``) -> ``(N, C, L_out)``; with
    ``return_indices`` the output is ``(values, indices)``. See :func:`max_pool1d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.MaxPool1d(2, return_indices=True)
        >>> (y, indices), _ = m.apply({}, {}, jnp.array([[[1.0, 3.0, 2.0, 5.0, 4.0, 0.0]]]))
        >>> y.tolist(), indices.tolist()  # the maximum of each window, and where it was
        ([[[3.0, 5.0, 4.0]]], [[[1, 3, 4]]])
    """

    _n = 1


@dataclass(frozen=True, repr=False)
class MaxPool2d(_MaxPoolNd):
    """Max pooling over ``(N, C, H, W)`` (or ``(C, H, W)``) -> ``(N, C, H_out, W_out)``;
    with ``return_indices`` the output is ``(values, indices)``. See :func:`max_pool2d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> y, _ = nn.MaxPool2d(2).apply({}, {}, x)
        >>> y.tolist()
        [[[[5.0, 7.0], [13.0, 15.0]]]]
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class MaxPool3d(_MaxPoolNd):
    """Max pooling over ``(N, C, D, H, W)`` (or ``(C, D, H, W)``) -> ``(N, C, D', H', W')``;
    with ``return_indices`` the output is ``(values, indices)``. See :func:`max_pool3d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.MaxPool3d(2, ceil_mode=True).apply({}, {}, jnp.ones((1, 2, 3, 5, 5)))
        >>> y.shape  # the partial last windows count (without ceil_mode: (1, 2, 1, 2, 2))
        (1, 2, 2, 3, 3)
    """

    _n = 3


@dataclass(frozen=True, repr=False)
class AvgPool1d(_Pool):
    """Average pooling over ``(N, C, L)`` (or ``(C, L)``) -> ``(N, C, L_out)``, torch's
    divisor rules (:func:`avg_pool1d`). Sizes are 1-tuples, as torch stores them.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.array([[[3.0, 3.0, 3.0]]])
        >>> y, _ = nn.AvgPool1d(3, stride=1, padding=1).apply({}, {}, x)
        >>> y.tolist()  # the zero padding counts in the mean
        [[[2.0, 3.0, 2.0]]]
        >>> y, _ = nn.AvgPool1d(3, stride=1, padding=1, count_include_pad=False).apply({}, {}, x)
        >>> y.tolist()
        [[[3.0, 3.0, 3.0]]]
    """

    kernel_size: IntOrN
    stride: IntOrN | None = None
    padding: IntOrN = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    _n = 1

    def __post_init__(self):
        super().__post_init__()
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _tuple("AvgPool1d", getattr(self, name), 1, name))

    def apply(self, params, state, x, *, train=False, key=None):
        y = _avg_pool(
            x, 1, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad, None,
            repr(self), layer=True,
        )  # fmt: skip
        return y, state

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@dataclass(frozen=True, repr=False)
class _AvgPoolNd(_Pool):
    kernel_size: IntOrN
    stride: IntOrN | None = None
    padding: IntOrN = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def apply(self, params, state, x, *, train=False, key=None):
        y = _avg_pool(
            x, self._n, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
            self.divisor_override, repr(self), layer=True,
        )  # fmt: skip
        return y, state

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@dataclass(frozen=True, repr=False)
class AvgPool2d(_AvgPoolNd):
    """Average pooling over ``(N, C, H, W)`` (or ``(C, H, W)``) -> ``(N, C, H_out,
    W_out)``, torch's divisor rules (:func:`avg_pool2d`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> y, _ = nn.AvgPool2d(2).apply({}, {}, x)
        >>> y.tolist()
        [[[[2.5, 4.5], [10.5, 12.5]]]]
        >>> y, _ = nn.AvgPool2d(2, divisor_override=1).apply({}, {}, x)  # window sums
        >>> y.tolist()
        [[[[10.0, 18.0], [42.0, 50.0]]]]
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class AvgPool3d(_AvgPoolNd):
    """Average pooling over ``(N, C, D, H, W)`` (or ``(C, D, H, W)``), torch's divisor
    rules (:func:`avg_pool3d`).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.AvgPool3d((1, 2, 2)).apply({}, {}, jnp.ones((1, 2, 4, 4, 4)))
        >>> y.shape
        (1, 2, 4, 2, 2)
    """

    _n = 3


@dataclass(frozen=True, repr=False)
class _MaxUnpoolNd(_Pool):
    kernel_size: IntOrN
    stride: IntOrN | None = None
    padding: IntOrN = 0

    def __post_init__(self):
        super().__post_init__()
        for name in ("kernel_size", "stride", "padding"):
            object.__setattr__(self, name, _tuple(type(self).__name__, getattr(self, name), self._n, name))

    def __call__(self, params, state, x, indices=None, output_size=None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, x, indices, output_size, train=train, key=key)

    def apply(self, params, state, x, indices=None, output_size=None, *, train=False, key=None):
        """``x``: the pooled values, and ``indices`` their indices; or ``x = (values,
        indices)``, a return_indices max pool's output (so that it can follow one in a
        ``Sequential``). ``output_size`` as in :func:`max_unpool2d`."""
        if indices is None:
            if not (isinstance(x, tuple) and len(x) == 2):
                raise ShapeError(
                    f"{self!r} needs the indices of the pooling: call it as unpool(params, state, "
                    f"values, indices), or pass the (values, indices) of a return_indices=True max pool."
                )
            x, indices = x
        y = _max_unpool(
            x, indices, self._n, self.kernel_size, self.stride, self.padding, output_size, repr(self), layer=True
        )
        return y, state

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


@dataclass(frozen=True, repr=False)
class MaxUnpool1d(_MaxUnpoolNd):
    """The partial inverse of :class:`MaxPool1d`: ``(N, C, L_in), indices -> (N, C,
    L_out)`` with ``L_out = (L_in - 1)·stride + kernel_size - 2·padding`` or the call's
    ``output_size``. See :func:`max_unpool1d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> pool, unpool = nn.MaxPool1d(2, return_indices=True), nn.MaxUnpool1d(2)
        >>> (y, indices), _ = pool.apply({}, {}, jnp.array([[[1.0, 3.0, 5.0, 2.0]]]))
        >>> x, _ = unpool.apply({}, {}, y, indices)  # each maximum back in its place, zeros elsewhere
        >>> x.tolist()
        [[[0.0, 3.0, 5.0, 0.0]]]
    """

    _n = 1


@dataclass(frozen=True, repr=False)
class MaxUnpool2d(_MaxUnpoolNd):
    """The partial inverse of :class:`MaxPool2d`: ``(N, C, H_in, W_in), indices -> (N, C,
    H_out, W_out)``, each ``(size - 1)·stride + kernel_size - 2·padding`` or the call's
    ``output_size``. See :func:`max_unpool2d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
        >>> (y, indices), _ = pool.apply({}, {}, jnp.array([[[[1.0, 2.0], [4.0, 3.0]]]]))
        >>> x, _ = unpool.apply({}, {}, y, indices)
        >>> x.tolist()  # output_size=(H, W) picks the size when the pool dropped a border
        [[[[0.0, 0.0], [4.0, 0.0]]]]
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class MaxUnpool3d(_MaxUnpoolNd):
    """The partial inverse of :class:`MaxPool3d` (``(N, C, D, H, W)``). See
    :func:`max_unpool3d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> pool, unpool = nn.MaxPool3d(2, return_indices=True), nn.MaxUnpool3d(2)
        >>> pooled, _ = pool.apply({}, {}, jnp.arange(8.0).reshape(1, 1, 2, 2, 2))
        >>> x, _ = unpool.apply({}, {}, pooled)  # the (values, indices) pair as one input, as in a Sequential
        >>> x.ravel().tolist()
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0]
    """

    _n = 3


@dataclass(frozen=True, repr=False)
class _AdaptiveMaxPoolNd(_Pool):
    output_size: OptIntOrN
    return_indices: bool = False

    def apply(self, params, state, x, *, train=False, key=None):
        return _adaptive_max(x, self._n, self.output_size, self.return_indices, repr(self), layer=True), state

    def extra_repr(self):
        return f"output_size={self.output_size}"


@dataclass(frozen=True, repr=False)
class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """``(N, C, L) -> (N, C, output_size)``, the maximum over torch's bins; with
    ``return_indices``, ``(values, indices)``. See :func:`adaptive_max_pool1d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.AdaptiveMaxPool1d(2, return_indices=True)
        >>> (y, indices), _ = m.apply({}, {}, jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]))
        >>> y.tolist(), indices.tolist()  # torch's bins [0, 3) and [2, 5) overlap
        ([[[3.0, 5.0]]], [[[2, 4]]])
    """

    _n = 1


@dataclass(frozen=True, repr=False)
class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """``(N, C, H, W) -> (N, C, *output_size)``, the maximum over torch's bins; with
    ``return_indices``, ``(values, indices)``. See :func:`adaptive_max_pool2d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.AdaptiveMaxPool2d(2, return_indices=True)
        >>> (y, indices), _ = m.apply({}, {}, jnp.arange(16.0).reshape(1, 1, 4, 4))
        >>> y.tolist(), indices.tolist()  # indices into the flattened H·W plane
        ([[[[5.0, 7.0], [13.0, 15.0]]]], [[[[5, 7], [13, 15]]]])
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """``(N, C, D, H, W) -> (N, C, *output_size)``. See :func:`adaptive_max_pool3d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.AdaptiveMaxPool3d((3, 3, 3)).apply({}, {}, jnp.ones((1, 2, 5, 6, 7)))
        >>> y.shape
        (1, 2, 3, 3, 3)
    """

    _n = 3


@dataclass(frozen=True, repr=False)
class _AdaptiveAvgPoolNd(_Pool):
    output_size: OptIntOrN

    def apply(self, params, state, x, *, train=False, key=None):
        return _adaptive_avg(x, self._n, self.output_size, repr(self), layer=True), state

    def extra_repr(self):
        return f"output_size={self.output_size}"


@dataclass(frozen=True, repr=False)
class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """``(N, C, L) -> (N, C, output_size)``, the mean over torch's bins. See
    :func:`adaptive_avg_pool1d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.AdaptiveAvgPool1d(2).apply({}, {}, jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]))
        >>> y.tolist()  # the means of torch's bins [0, 3) and [2, 5)
        [[[2.0, 4.0]]]
    """

    _n = 1


@dataclass(frozen=True, repr=False)
class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """``(N, C, H, W) -> (N, C, *output_size)``, the mean over torch's bins; ``None`` in
    output_size keeps that size. See :func:`adaptive_avg_pool2d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.ones((2, 8, 7, 7))
        >>> nn.AdaptiveAvgPool2d((1, 1)).apply({}, {}, x)[0].shape  # global average pooling
        (2, 8, 1, 1)
        >>> nn.AdaptiveAvgPool2d((None, 2)).apply({}, {}, x)[0].shape  # None keeps H
        (2, 8, 7, 2)
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """``(N, C, D, H, W) -> (N, C, *output_size)``. See :func:`adaptive_avg_pool3d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.AdaptiveAvgPool3d(1).apply({}, {}, jnp.arange(64.0).reshape(1, 1, 4, 4, 4))
        >>> y.shape, y.ravel().tolist()
        ((1, 1, 1, 1, 1), [31.5])
    """

    _n = 3


@dataclass(frozen=True, repr=False)
class _LPPoolNd(_Pool):
    norm_type: float
    kernel_size: IntOrN
    stride: IntOrN | None = None
    ceil_mode: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.norm_type == 0:
            raise ValueError(f"norm_type must be a non-zero value, but got {self.norm_type}")

    def apply(self, params, state, x, *, train=False, key=None):
        y = _lp_pool(x, self._n, self.norm_type, self.kernel_size, self.stride, self.ceil_mode, repr(self), layer=True)
        return y, state

    def extra_repr(self):
        return (
            f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"ceil_mode={self.ceil_mode}"
        )


@dataclass(frozen=True, repr=False)
class LPPool1d(_LPPoolNd):
    """Power-average pooling ``(Σ_window x^p)^(1/p)`` over ``(N, C, L)``. See :func:`lp_pool1d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.LPPool1d(2, kernel_size=2).apply({}, {}, jnp.array([[[3.0, 4.0, 6.0, 8.0]]]))
        >>> y.tolist()  # the 2-norm of each window
        [[[5.0, 10.0]]]
    """

    _n = 1


@dataclass(frozen=True, repr=False)
class LPPool2d(_LPPoolNd):
    """Power-average pooling over ``(N, C, H, W)``. See :func:`lp_pool2d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.LPPool2d(1, kernel_size=2).apply({}, {}, jnp.arange(16.0).reshape(1, 1, 4, 4))
        >>> y.tolist()  # norm_type=1: the window sums
        [[[[10.0, 18.0], [42.0, 50.0]]]]
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class LPPool3d(_LPPoolNd):
    """Power-average pooling over ``(N, C, D, H, W)``. See :func:`lp_pool3d`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.LPPool3d(2, kernel_size=2).apply({}, {}, jnp.ones((1, 1, 2, 2, 2)))
        >>> round(float(y.squeeze()), 4)  # sqrt(8)
        2.8284
    """

    _n = 3


@dataclass(frozen=True, repr=False)
class _FractionalMaxPoolNd(_Pool):
    """torch's ``FractionalMaxPool{2,3}d``: random windows, drawn per call from ``key``.

    torch draws the windows in eval too, so ``apply`` always needs ``key`` (a
    ``Sequential`` splits its own to its children), unless the layer was built with fixed
    ``_random_samples``: torch's test hook, kept (as torch keeps it) as the buffer
    ``state["_random_samples"]``, which ``apply`` then reads instead of drawing.
    """

    kernel_size: IntOrN
    output_size: IntOrN | None = None
    output_ratio: float | Sequence[float] | None = None
    return_indices: bool = False
    _random_samples: Any = None

    def __post_init__(self):
        super().__post_init__()
        name, n = type(self).__name__, self._n
        k = self.kernel_size
        if n == 3 and (isinstance(k, int) and k <= 0 or isinstance(k, tuple) and not all(ki > 0 for ki in k)):
            raise ValueError(f"kernel_size must be greater than 0, but got {k}")
        object.__setattr__(self, "kernel_size", _tuple(name, k, n, "kernel_size"))
        if self.output_size is None and self.output_ratio is None:
            raise ValueError(f"{name} requires specifying either an output size, or a pooling ratio")
        if self.output_size is not None and self.output_ratio is not None:
            raise ValueError("only one of output_size and output_ratio may be specified")
        if self.output_size is not None:
            object.__setattr__(self, "output_size", _tuple(name, self.output_size, n, "output_size"))
        else:
            r = self.output_ratio
            r = (r,) * n if isinstance(r, (int, float, np.number)) else tuple(r)
            if len(r) != n or not all(0 < ri < 1 for ri in r):
                raise ValueError(f"output_ratio must be between 0 and 1 (got {self.output_ratio})")
            object.__setattr__(self, "output_ratio", tuple(float(ri) for ri in r))
        if self._random_samples is not None and not isinstance(self._random_samples, _Value):
            object.__setattr__(self, "_random_samples", _Value(self._random_samples))  # hashable, frozen

    def buffer_names(self):
        return () if self._random_samples is None else ("_random_samples",)

    def init_own(self, key):
        if self._random_samples is None:
            return {}, {}
        return {}, {"_random_samples": jnp.asarray(self._random_samples.array)}

    def apply(self, params, state, x, *, train=False, key=None):
        samples = state.get("_random_samples") if self._random_samples is not None else None
        y = _fractional_max(
            x, self._n, self.kernel_size, self.output_size, self.output_ratio, self.return_indices, samples, key,
            repr(self), layer=True,
        )  # fmt: skip
        return y, state

    def extra_repr(self):
        size = f"output_size={self.output_size}" if self.output_size is not None else f"output_ratio={self.output_ratio}"
        return f"kernel_size={self.kernel_size}, {size}" + (", return_indices=True" if self.return_indices else "")


@dataclass(frozen=True, repr=False)
class FractionalMaxPool2d(_FractionalMaxPoolNd):
    """Fractional max pooling over ``(N, C, H, W)`` (or ``(C, H, W)``) -> ``(N, C,
    *output_size)``, windows of ``kernel_size`` at pseudo-random starts drawn with ``key``
    (in eval too, as in torch); with ``return_indices``, ``(values, indices)``. See
    :func:`fractional_max_pool2d`. The draw is ``jax.random``'s, not torch's: the same
    seed gives other windows (pass torch's samples to the functional form for its result).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.FractionalMaxPool2d(2, output_ratio=0.5)
        >>> y, _ = m.apply({}, {}, jnp.ones((1, 3, 10, 7)), key=jax.random.key(0))
        >>> y.shape  # int(10·0.5), int(7·0.5)
        (1, 3, 5, 3)
    """

    _n = 2


@dataclass(frozen=True, repr=False)
class FractionalMaxPool3d(_FractionalMaxPoolNd):
    """Fractional max pooling over ``(N, C, T, H, W)`` (or ``(C, T, H, W)``) -> ``(N, C,
    *output_size)``, random windows drawn with ``key``. See :func:`fractional_max_pool3d`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.FractionalMaxPool3d(2, output_size=(2, 3, 3), return_indices=True)
        >>> (y, indices), _ = m.apply({}, {}, jnp.ones((4, 5, 6, 6)), key=jax.random.key(0))
        >>> y.shape, indices.shape  # unbatched (C, T, H, W); indices into the T·H·W plane
        ((4, 2, 3, 3), (4, 2, 3, 3))
    """

    _n = 3

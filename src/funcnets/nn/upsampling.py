"""Resampling: ``torch.nn.Upsample``, ``UpsamplingNearest2d``, ``UpsamplingBilinear2d``
and ``F.interpolate``.

Every mode is separable, so the resampling is one small matrix per spatial axis,
computed in NumPy from the static shapes with ATen's index and weight rules (its CPU
kernels, ``aten/src/ATen/native/UpSample.h`` and ``UpSampleKernel.cpp``), and applied
with a ``tensordot`` per axis (the nearest modes gather instead). The result is exact,
differentiable (the gradient is the transposed matrix, torch's backward kernel) and
fast on CPU. The rules reproduced:

* source coordinate ``scale * (i + 0.5) - 0.5`` (clamped at 0 for the linear modes), or
  ``(in - 1) / (out - 1) * i`` with ``align_corners``; ``scale`` is ``1 / scale_factor``
  when a scale factor is given (and not recomputed), else ``in / out``;
* the linear modes copy when the output size equals the input size;
* ``nearest``: ``floor(i * scale)``, ``nearest-exact``: ``floor((i + 0.5) * scale)``,
  in ATen's mixed float32/float64 arithmetic, which differs between its 2-D kernel and
  the 1-D/3-D one and picks another pixel than exact arithmetic in some cases (14 -> 46);
* ``bicubic``: Keys' kernel with ``A = -0.75``, border indices clamped;
* ``antialias`` (bilinear/bicubic): PIL's separable filters (triangle; cubic with
  ``a = -0.5``) stretched by the downscale factor and normalised per output pixel; a
  kept size is copied even under a scale factor that is not 1 (ATen skips that axis);
* ``area``: adaptive average pooling's bins ``[floor(i*in/out), ceil((i+1)*in/out))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.module import Module

__all__ = ["interpolate", "upsample", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"]

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_NEEDS_DIM = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}


# --- per-axis index and weight rules (NumPy, static shapes) ----------------------------
def _scale(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> float:
    """ATen's ``area_pixel_compute_scale``."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale if scale is not None and scale > 0 else n_in / n_out


def _nearest_index(n_in: int, n_out: int, scale: float | None, exact: bool, dtype, two_d: bool) -> np.ndarray:
    """ATen CPU's nearest source indices: ``floor(i * scale)`` (``nearest``) or
    ``floor((i + 0.5) * scale)`` (``nearest-exact``; product in double), through a float32
    ``floorf``. 2-D inputs use ``nearest_idx`` (scale in float32; copy when the size is
    kept, ``i >> 1`` when doubled), 1-D and 3-D ones the generic kernel (scale in the
    input's precision, no shortcuts)."""
    i = np.arange(n_out)
    if two_d and not exact and n_out == n_in:
        return i
    if two_d and not exact and n_out == 2 * n_in:
        return i >> 1
    d = np.dtype(np.float32 if two_d or np.dtype(dtype).itemsize < 8 else np.float64)
    s = d.type(1.0 / scale) if scale is not None and scale > 0 else d.type(n_in) / d.type(n_out)
    src = (i + 0.5) * np.float64(s) if exact else i.astype(d) * s
    return np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), n_in - 1)


def _linear_matrix(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> np.ndarray:
    if n_out == n_in:
        return np.eye(n_in)
    r = _scale(n_in, n_out, align_corners, scale)
    i = np.arange(n_out)
    src = r * i if align_corners else np.maximum(r * (i + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    l1 = np.clip(src - i0, 0.0, 1.0)
    i1 = i0 + (i0 < n_in - 1)
    w = np.zeros((n_out, n_in))
    np.add.at(w, (i, i0), 1.0 - l1)
    np.add.at(w, (i, i1), l1)
    return w


def _cubic_matrix(n_in: int, n_out: int, align_corners: bool, scale: float | None) -> np.ndarray:
    a = -0.75
    r = _scale(n_in, n_out, align_corners, scale)
    i = np.arange(n_out)
    src = r * i if align_corners else r * (i + 0.5) - 0.5  # not clamped: the cubic needs i-1
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.clip(src - i0, 0.0, 1.0)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    coeffs = (far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t))
    w = np.zeros((n_out, n_in))
    for j, c in enumerate(coeffs):
        np.add.at(w, (i, np.clip(i0 - 1 + j, 0, n_in - 1)), c)
    return w


def _aa_filter(mode: str):
    if mode == "bilinear":
        return 2, lambda x: np.maximum(1.0 - np.abs(x), 0.0)
    a = -0.5  # PIL's bicubic (torch's antialias uses it, not -0.75)

    def cubic(x):
        x = np.abs(x)
        return np.where(
            x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
            np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0),
        )

    return 4, cubic


def _aa_matrix(n_in: int, n_out: int, align_corners: bool, scale: float | None, mode: str) -> np.ndarray:
    """ATen's ``_compute_weights_aa``: the filter widened by the downscale factor."""
    if n_out == n_in:  # ATen's separable antialias kernel skips a kept size, whatever the scale
        return np.eye(n_in)
    interp, filt = _aa_filter(mode)
    r = _scale(n_in, n_out, align_corners, scale)
    support = interp * 0.5 * r if r >= 1.0 else interp * 0.5
    invscale = 1.0 / r if r >= 1.0 else 1.0
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = r * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        row = filt((j - center + 0.5) * invscale)
        total = row.sum()
        w[i, lo:hi] = row / total if total != 0 else row
    return w


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        w[i, lo:hi] = 1.0 / (hi - lo)
    return w


def _resample_axis(x: Array, axis: int, n_out: int, mode: str, align_corners: bool,
                   scale: float | None, antialias: bool) -> Array:
    n_in = x.shape[axis]
    if mode in ("nearest", "nearest-exact"):
        idx = _nearest_index(n_in, n_out, scale, mode == "nearest-exact", x.dtype, x.ndim == 4)
        return jnp.take(x, jnp.asarray(idx), axis=axis)
    if antialias:
        w = _aa_matrix(n_in, n_out, align_corners, scale, mode)
    elif mode == "area":
        w = _area_matrix(n_in, n_out)
    elif mode == "bicubic":
        w = _cubic_matrix(n_in, n_out, align_corners, scale)
    else:
        w = _linear_matrix(n_in, n_out, align_corners, scale)
    if n_out == n_in and np.array_equal(w, np.eye(n_in)):
        return x
    y = jnp.tensordot(x, jnp.asarray(w.T, x.dtype), axes=([axis], [0]))
    return jnp.moveaxis(y, -1, axis)


# --- functional form ---------------------------------------------------------------------
def _layer_name(name: str | None) -> str:
    return name or "interpolate"


def interpolate(
    input: Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
    *,
    _name: str | None = None,
) -> Array:
    """``torch.nn.functional.interpolate``: resample the spatial dims.

    Args:
      input: ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` (``linear`` needs 3-D,
        ``bilinear``/``bicubic`` 4-D, ``trilinear`` 5-D).
      size: the output spatial size (int or one per spatial dim), or
      scale_factor: multiplies each spatial size (output ``floor(in * s)``); unless
        ``recompute_scale_factor``, ``1 / s`` is also the coordinate scale (torch's rule).
      mode: ``nearest`` | ``nearest-exact`` | ``linear`` | ``bilinear`` | ``bicubic`` |
        ``trilinear`` | ``area``.
      align_corners: for the linear and cubic modes: map corner pixel centres onto each
        other; default False.
      antialias: bilinear/bicubic 4-D only: filter when downsampling (PIL's filters).
    Returns:
      ``(N, C, *out_size)``.
    """
    name = _layer_name(_name)
    if mode not in _MODES:
        raise ValueError(f"{name}: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(
                "align_corners option can only be set with the interpolating modes: "
                "linear | bilinear | bicubic | trilinear"
            )
    elif align_corners is None:
        align_corners = False
    if input.ndim not in (3, 4, 5):
        raise ShapeError(
            f"{name} expected a 3-D (N, C, L), 4-D (N, C, H, W) or 5-D (N, C, D, H, W) input, got "
            f"{tuple(input.shape)}. Add the batch dimension with x[None] for a single example."
        )
    if mode in _NEEDS_DIM and input.ndim != _NEEDS_DIM[mode]:
        raise ShapeError(
            f"{name}: mode {mode!r} needs a {_NEEDS_DIM[mode]}-D input, got {input.ndim}-D {tuple(input.shape)}; "
            f"use mode {['linear', 'bilinear', 'trilinear'][input.ndim - 3]!r} for a {input.ndim}-D input."
        )
    if not jnp.issubdtype(input.dtype, jnp.floating):
        raise ShapeError(f"{name} expected a floating-point input, got dtype {input.dtype}")
    dim = input.ndim - 2
    spatial = input.shape[2:]
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(
                    "Input and output must have the same number of spatial dimensions, but got input with "
                    f"spatial dimensions of {list(spatial)} and output size of {size}. Please provide input "
                    "tensor in (N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) format."
                )
            out = [int(s) for s in size]
        else:
            out = [int(size)] * dim
        scales: list[float | None] = [None] * dim
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(
                    "Input and scale_factor must have the same number of spatial dimensions, but got input "
                    f"with spatial dimensions of {list(spatial)} and scale_factor of shape {scale_factor}. "
                    "Please provide input tensor in (N, C, d1, d2, ...,dK) format and scale_factor in "
                    "(s1, s2, ...,sK) format."
                )
            scales = [float(s) for s in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        out = [math.floor(n * s) for n, s in zip(spatial, scales)]
        if mode == "area" or recompute_scale_factor:
            scales = [None] * dim
    else:
        raise ValueError("either size or scale_factor should be defined")
    if antialias and not (mode in ("bilinear", "bicubic") and input.ndim == 4):
        raise ValueError(
            "Anti-alias option is restricted to bilinear and bicubic modes and requires a 4-D tensor as input"
        )
    if any(n <= 0 for n in out) or any(n <= 0 for n in spatial):
        raise ShapeError(
            f"{name}: input and output sizes should be greater than 0, but got input {tuple(spatial)} "
            f"and output {tuple(out)}"
        )
    y = input
    for ax, (n, s) in enumerate(zip(out, scales)):
        y = _resample_axis(y, 2 + ax, n, mode, bool(align_corners), s, antialias)
    return y


def upsample(input: Array, size=None, scale_factor=None, mode: str = "nearest", align_corners=None) -> Array:
    """``torch.nn.functional.upsample`` (deprecated in torch): :func:`interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# --- layers ---------------------------------------------------------------------------------
def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


@dataclass(frozen=True, repr=False)
class Upsample(Module):
    """``torch.nn.Upsample``: :func:`interpolate` with fixed options (no antialias, as
    torch's). ``x: (N, C, *spatial) -> (N, C, *out)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Upsample(scale_factor=2, mode="nearest").apply({}, {}, jnp.array([[[1.0, 2.0]]]))
        >>> y.tolist()
        [[[1.0, 1.0, 2.0, 2.0]]]
        >>> y, _ = nn.Upsample(size=(5, 7), mode="bilinear").apply({}, {}, jnp.ones((2, 3, 4, 4)))
        >>> y.shape
        (2, 3, 5, 7)
    """

    size: int | tuple[int, ...] | None = None
    scale_factor: float | tuple[float, ...] | None = None
    mode: str = "nearest"
    align_corners: bool | None = None
    recompute_scale_factor: bool | None = None

    def __post_init__(self):
        sf = self.scale_factor
        sf = tuple(float(f) for f in sf) if isinstance(sf, (tuple, list)) else (float(sf) if sf else None)
        object.__setattr__(self, "scale_factor", sf)
        object.__setattr__(self, "size", _freeze(self.size))

    def apply(self, params, state, x, *, train=False, key=None):
        if _LAYOUT.get() != "NCHW":
            raise ShapeError(f"{self!r} supports torch's (N, C, ...) layout only; call it outside channels_last/batch_last")
        y = interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                        self.recompute_scale_factor, _name=repr(self))
        return y, state

    def extra_repr(self):
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


@dataclass(frozen=True, repr=False, init=False)
class UpsamplingNearest2d(Upsample):
    """``torch.nn.UpsamplingNearest2d``: ``Upsample(mode='nearest')`` on ``(N, C, H, W)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.UpsamplingNearest2d(scale_factor=2).apply({}, {}, jnp.arange(4.0).reshape(1, 1, 2, 2))
        >>> y[0, 0].tolist()
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]]
    """

    def __init__(self, size=None, scale_factor=None):
        Upsample.__init__(self, size, scale_factor, "nearest")


@dataclass(frozen=True, repr=False, init=False)
class UpsamplingBilinear2d(Upsample):
    """``torch.nn.UpsamplingBilinear2d``: ``Upsample(mode='bilinear', align_corners=True)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.array([[[[0.0, 2.0], [4.0, 6.0]]]])
        >>> y, _ = nn.UpsamplingBilinear2d(size=(3, 3)).apply({}, {}, x)
        >>> [[round(v, 4) for v in row] for row in y[0, 0].tolist()]  # align_corners: the corners stay
        [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0], [4.0, 5.0, 6.0]]
    """

    def __init__(self, size=None, scale_factor=None):
        Upsample.__init__(self, size, scale_factor, "bilinear", True)

"""im2col for the GEMM convolutions, as one XLA FFI call and its transpose.

:func:`patches` turns ``x: (N, H, W, C)`` into the patch matrix ``(N·H'·W', C·kH·kW)``,
or channels-first ``x: (N, C, H, W)`` into ``(N, C·kH·kW, H'·W')`` (``C·kH·kW`` in OIHW's
``(c, i, j)`` order), that :func:`funcnets.nn._conv.conv2d_gemm` multiplies by the weight.
Written with XLA ops it is a pad, ``kH·kW`` strided slices and a stack, and its gradient a
pad-and-add per slice: ~70 of the 169 kernels XLA compiled for a ResNet-18 train step.
On CPU they are now two primitives, ``funcnets_im2col`` and its transpose
``funcnets_col2im`` (``src/funcnets/csrc/im2col.cc``, built with funcnets on x86-64
Linux), which XLA calls instead of compiling: that step (batch 8, 3×64×64, 2-core CPU)
compiles in 1.95-2.19 instead of 2.55-2.84 s and runs as fast. Each is linear and the
other's transpose, so ``grad``, ``jvp``, Hessians and ``vmap`` keep using them. Without
the extension, on other backends, for dtypes other than float32/float64, or with more than
one device (XLA would replicate a custom call it cannot partition), they lower to the XLA
ops.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from funcnets._typing import Array
from funcnets.nn import _onednn

# geometry: ((kH, kW), (sH, sW), ((lo, hi), (lo, hi)), (dH, dW), channels_last), all static


@lru_cache(maxsize=None)
def error() -> str | None:
    """``None`` when the im2col FFI targets are registered with XLA, else why not."""
    try:
        if _onednn.load_extension("funcnets._im2col", ("funcnets_im2col", "funcnets_col2im")) is None:
            return "funcnets' im2col extension is not built (pip install -e . on x86-64 Linux); XLA's slices are used"
    except (OSError, AttributeError) as e:
        return f"funcnets' im2col extension did not load ({type(e).__name__}: {e}); XLA's slices are used"
    return None


def patches(x: Array, kernel, stride, pads, dilation, channels_last: bool = True) -> Array:
    """``x: (N, H, W, C)`` -> ``(N·H'·W', C·kH·kW)``: row ``(n, h', w')`` holds the window of
    output pixel ``(h', w')`` of image ``n``, channel-major then kernel offset ``(i, j)``.
    With ``channels_last=False``, ``x: (N, C, H, W)`` -> ``(N, C·kH·kW, H'·W')``, the same
    entries with each image's matrix transposed. ``pads = ((lo, hi), (lo, hi))`` zeros
    around ``H`` and ``W`` (non-negative)."""
    geometry = (tuple(kernel), tuple(stride), tuple(map(tuple, pads)), tuple(dilation), bool(channels_last))
    return _im2col.bind(x, geometry=geometry)


def _out_hw(h: int, w: int, geometry) -> tuple[int, int]:
    (kh, kw), (sh, sw), ((t, b), (left, r)), (dh, dw), _ = geometry
    return (h + t + b - dh * (kh - 1) - 1) // sh + 1, (w + left + r - dw * (kw - 1) - 1) // sw + 1


def _patch_shape(x_shape, geometry) -> tuple[int, ...]:
    (kh, kw), last = geometry[0], geometry[-1]
    n, h, w, c = x_shape if last else (x_shape[0], *x_shape[2:], x_shape[1])
    oh, ow = _out_hw(h, w, geometry)
    return (n * oh * ow, c * kh * kw) if last else (n, c * kh * kw, oh * ow)


# ----------------------------------------------------------------------------- XLA's ops
def _im2col_xla(x: Array, geometry) -> Array:
    """The same patch matrix from XLA ops: pad, one strided slice per kernel offset, stack."""
    from funcnets.nn import _conv  # which imports this module

    kernel, stride, pads, dilation, last = geometry
    layout = "NHWC" if last else "NCHW"
    h, w = _conv._spatial(x.shape, layout)
    cols = _conv.window_views(_conv.pad_spatial(x, pads, layout), kernel, stride, dilation,
                              _out_hw(h, w, geometry), layout)
    return jnp.stack(cols, axis=-1 if last else 2).reshape(_patch_shape(x.shape, geometry))


def _col2im_xla(p: Array, geometry, x_shape) -> Array:
    (x,) = jax.linear_transpose(partial(_im2col_xla, geometry=geometry), jax.ShapeDtypeStruct(x_shape, p.dtype))(p)
    return x


def _ffi_usable(dtype) -> bool:
    return dtype in (np.float32, np.float64) and jax.device_count() == 1 and error() is None


def _ffi(target: str, operand: Array, out_shape, geometry) -> Array:
    (kh, kw), (sh, sw), ((t, b), (left, r)), (dh, dw), last = geometry

    def ints(*v):
        return np.asarray(v, np.int64)

    call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, operand.dtype), vmap_method="sequential")
    return call(operand, channels_last=last, kernel=ints(kh, kw), stride=ints(sh, sw), lo=ints(t, left),
                hi=ints(b, r), dilation=ints(dh, dw))


def _im2col_cpu(x, *, geometry):
    if not _ffi_usable(x.dtype):
        return _im2col_xla(x, geometry)
    return _ffi("funcnets_im2col", x, _patch_shape(x.shape, geometry), geometry)


def _col2im_cpu(p, *, geometry, x_shape):
    if not _ffi_usable(p.dtype):
        return _col2im_xla(p, geometry, x_shape)
    return _ffi("funcnets_col2im", p, x_shape, geometry)


# ----------------------------------------------------------------------------- primitives
_im2col = Primitive("funcnets_im2col")
_col2im = Primitive("funcnets_col2im")

_im2col.def_impl(jax.jit(lambda x, *, geometry: _im2col.bind(x, geometry=geometry), static_argnames="geometry"))
_col2im.def_impl(jax.jit(lambda p, *, geometry, x_shape: _col2im.bind(p, geometry=geometry, x_shape=x_shape),
                         static_argnames=("geometry", "x_shape")))
_im2col.def_abstract_eval(lambda x, *, geometry: ShapedArray(_patch_shape(x.shape, geometry), x.dtype))
_col2im.def_abstract_eval(lambda p, *, geometry, x_shape: ShapedArray(x_shape, p.dtype))

mlir.register_lowering(_im2col, mlir.lower_fun(lambda x, *, geometry: _im2col_xla(x, geometry), multiple_results=False))
mlir.register_lowering(_col2im, mlir.lower_fun(lambda p, *, geometry, x_shape: _col2im_xla(p, geometry, x_shape),
                                               multiple_results=False))
mlir.register_lowering(_im2col, mlir.lower_fun(_im2col_cpu, multiple_results=False), platform="cpu")
mlir.register_lowering(_col2im, mlir.lower_fun(_col2im_cpu, multiple_results=False), platform="cpu")

# linear maps, each the other's transpose
ad.deflinear2(_im2col, lambda ct, x, *, geometry: [_col2im.bind(ct, geometry=geometry, x_shape=tuple(x.aval.shape))])
ad.deflinear2(_col2im, lambda ct, p, *, geometry, x_shape: [_im2col.bind(ct, geometry=geometry)])


def _im2col_batch(args, dims, *, geometry):
    """``vmap``: the mapped axis folded into the batch axis (rows are image-major)."""
    (x,), (d,) = args, dims
    x = jnp.moveaxis(x, d, 0)
    size = x.shape[0]
    p = _im2col.bind(x.reshape(size * x.shape[1], *x.shape[2:]), geometry=geometry)
    return p.reshape(size, p.shape[0] // size, *p.shape[1:]), 0


def _col2im_batch(args, dims, *, geometry, x_shape):
    (p,), (d,) = args, dims
    p = jnp.moveaxis(p, d, 0)
    size = p.shape[0]
    x = _col2im.bind(p.reshape(size * p.shape[1], *p.shape[2:]), geometry=geometry,
                     x_shape=(size * x_shape[0], *x_shape[1:]))
    return x.reshape(size, *x_shape), 0


batching.primitive_batchers[_im2col] = _im2col_batch
batching.primitive_batchers[_col2im] = _col2im_batch

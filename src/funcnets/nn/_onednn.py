"""oneDNN's convolutions inside XLA:CPU programs, through XLA's FFI.

torch runs its CPU convolutions on oneDNN, whose kernels are faster than XLA:CPU's
(Eigen's) on ResNet-18's 3×3 stages and far faster on its 7×7 stem. Measured on the
2-core AVX-512 CPU, batch 8, channels-last, four independent convolutions per call, ms:
stem 1.72 (XLA) vs 0.57 (oneDNN), layer1 3×3 64→64 0.71 vs 0.51, layer2 3×3 128→128
0.73 vs 0.55; the ResNet-18 train step 59.1 -> 54.1 ms at batch 8 and 181.4 -> 159.1 ms
at batch 32, the frozen-trunk step 18.2 -> 16.0 ms (same run, interleaved). Small maps
stay GEMMs (:data:`funcnets.nn._conv.GEMM_MAX_PIXELS`): oneDNN on them made the batch-8
step 54.9 -> 94.8 ms.

The kernels are ``funcnets._onednn_conv`` (``src/funcnets/csrc/onednn_conv.cc``), built
when funcnets is installed on x86-64 Linux against ``onednn-cpu-gomp``. Activations are
NHWC, weights OIHW, float32 only (oneDNN has no float64 convolution), one device
(:func:`usable`); anything else uses XLA. :func:`error` (``funcnets.nn.onednn_error``)
says why oneDNN is not available, or ``None``.

Differentiation: :func:`conv2d` is a ``custom_jvp`` whose tangent is XLA's convolution,
so every JAX transformation works (``jvp``, ``grad``, Hessians, ``vmap``) and reverse
mode differentiates the tangent with XLA's kernels. Inside :func:`reverse_mode_only`
(the train step's ``value_and_grad``) it is a ``custom_vjp`` whose gradients are oneDNN's
too; those gradients are themselves differentiable (with XLA's kernels).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import importlib.util
from functools import lru_cache, partial
from importlib import metadata
from pathlib import Path
from typing import Iterator

import jax
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from funcnets._typing import Array

_TARGETS = ("forward", "backward_data", "backward_weights")


@lru_cache(maxsize=None)
def error() -> str | None:
    """``None`` when oneDNN's convolutions are registered with XLA, else why not."""
    spec = importlib.util.find_spec("funcnets._onednn_conv")
    if spec is None or spec.origin is None:
        return ("funcnets' oneDNN extension is not built; it is built on x86-64 Linux with a C++ "
                "compiler when funcnets is installed (pip install -e .); XLA's convolutions are used")
    try:
        # the extension needs libdnnl.so.3, which onednn-cpu-gomp puts under the
        # environment's prefix, outside the loader's path: load it first, by its path
        ctypes.CDLL(_installed_file("onednn-cpu-gomp", "lib/libdnnl.so.3"), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(spec.origin)
        for t in _TARGETS:
            handler = jax.ffi.pycapsule(getattr(lib, f"funcnets_conv_{t}"))
            jax.ffi.register_ffi_target(f"funcnets_conv_{t}", handler, platform="cpu")
    except (OSError, AttributeError, metadata.PackageNotFoundError, FileNotFoundError) as e:
        return f"funcnets' oneDNN extension did not load ({type(e).__name__}: {e}); XLA's convolutions are used"
    return None


def _installed_file(dist: str, suffix: str) -> str:
    for f in metadata.distribution(dist).files or ():
        path = Path(f.locate()).resolve()  # RECORD names data files relative to site-packages
        if path.as_posix().endswith("/" + suffix):
            return str(path)
    raise FileNotFoundError(f"{suffix} is not in the installed {dist}")


_REVERSE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("funcnets_reverse_only", default=False)


@contextlib.contextmanager
def reverse_mode_only() -> Iterator[None]:
    """The convolutions traced in this block are differentiated in reverse mode only (as
    in a train step's ``value_and_grad``), so oneDNN computes their gradients too. Under
    ``jax.jvp`` such a convolution raises JAX's error for forward mode of a custom VJP."""
    token = _REVERSE_ONLY.set(True)
    try:
        yield
    finally:
        _REVERSE_ONLY.reset(token)


def usable(x: Array, w: Array, groups: int) -> bool:
    """Whether :func:`conv2d` takes these (NHWC) arguments here. Only with one device:
    XLA partitions a custom call it has no sharding rule for by replicating its operands,
    so in a data-parallel program every device would convolve the whole batch."""
    return (groups == 1 and x.dtype == np.float32 and w.dtype == np.float32
            and jax.default_backend() == "cpu" and jax.device_count() == 1 and error() is None)


def conv2d(x: Array, w: Array, stride, padding, dilation) -> Array:
    """``x: (N, H, W, C_in)`` float32, ``w: (C_out, C_in, kH, kW)`` -> ``(N, H', W', C_out)``,
    torch's cross-correlation with symmetric ``padding``."""
    geometry = (tuple(stride), tuple(padding), tuple(dilation))
    return (_conv_vjp if _REVERSE_ONLY.get() else _forward)(x, w, *geometry)


# ----------------------------------------------------------------------------- FFI calls
def _out_shape(x_shape, w_shape, *geometry) -> tuple[int, ...]:
    """The output shape of XLA's convolution (its own shape rule, not a copy of it)."""
    x, w = jax.ShapeDtypeStruct(x_shape, np.float32), jax.ShapeDtypeStruct(w_shape, np.float32)
    return jax.eval_shape(lambda x, w: _xla(x, w, *geometry), x, w).shape


def _call(target: str, shape, a: Array, b: Array, stride, padding, dilation) -> Array:
    if (why := error()) is not None:  # error() also registers the targets
        raise RuntimeError(why)
    i = np.int64
    return jax.ffi.ffi_call(f"funcnets_conv_{target}", jax.ShapeDtypeStruct(shape, a.dtype), vmap_method="sequential")(
        a, b, sh=i(stride[0]), sw=i(stride[1]), pt=i(padding[0]), pl=i(padding[1]), pb=i(padding[0]),
        pr=i(padding[1]), dh=i(dilation[0]), dw=i(dilation[1]))


# ----------------------------------------------------------------------------- XLA's, for tangents
def _xla(x, w, stride, padding, dilation):
    pads = [(padding[0], padding[0]), (padding[1], padding[1])]
    return lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation,
                                    dimension_numbers=("NHWC", "OIHW", "NHWC"))


def _xla_backward_data(dy, w, x_shape, *geometry):
    x = jax.ShapeDtypeStruct(x_shape, dy.dtype)
    return jax.linear_transpose(lambda x: _xla(x, w, *geometry), x)(dy)[0]


def _xla_backward_weights(x, dy, w_shape, *geometry):
    w = jax.ShapeDtypeStruct(w_shape, dy.dtype)
    return jax.linear_transpose(lambda w: _xla(x, w, *geometry), w)(dy)[0]


def _onednn_bilinear(target: str, xla):
    """A oneDNN call ``f(a, b, out_shape, stride, padding, dilation)``, bilinear in
    ``(a, b)``, as a custom JVP whose tangent is ``xla`` (the same map on XLA's kernels)
    applied to each nonzero input tangent: linear, so reverse mode transposes it into
    XLA's kernels, and a zero tangent (a frozen weight, the input image) costs nothing."""

    @partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
    def f(a, b, out_shape, stride, padding, dilation):
        return _call(target, out_shape, a, b, stride, padding, dilation)

    def f_jvp(out_shape, stride, padding, dilation, primals, tangents):
        (a, b), (ta, tb) = primals, tangents
        rest = (out_shape, stride, padding, dilation)
        y = f(a, b, *rest)
        terms = [xla(ta, b, *rest)] if not isinstance(ta, SymbolicZero) else []
        if not isinstance(tb, SymbolicZero):
            terms.append(xla(a, tb, *rest))
        return y, sum(terms[1:], terms[0]) if terms else lax.zeros_like_array(y)

    f.defjvp(f_jvp, symbolic_zeros=True)
    return f


# ----------------------------------------------------------------------------- differentiation
_conv = _onednn_bilinear("forward", lambda x, w, _, *geometry: _xla(x, w, *geometry))
_backward_data = _onednn_bilinear("backward_data", _xla_backward_data)  # (dy, w, x_shape, ...)
_backward_weights = _onednn_bilinear("backward_weights", _xla_backward_weights)  # (x, dy, w_shape, ...)


def _forward(x, w, stride, padding, dilation):
    return _conv(x, w, _out_shape(x.shape, w.shape, stride, padding, dilation), stride, padding, dilation)


_conv_vjp = partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))(_forward)


def _conv_vjp_fwd(x, w, stride, padding, dilation):
    return _forward(x, w, stride, padding, dilation), (x, w)


def _conv_vjp_bwd(stride, padding, dilation, residuals, dy):
    x, w = residuals
    geometry = (stride, padding, dilation)
    # an unused input gradient (the stem's) is a custom call without side effects: XLA drops it
    return _backward_data(dy, w, x.shape, *geometry), _backward_weights(x, dy, w.shape, *geometry)


_conv_vjp.defvjp(_conv_vjp_fwd, _conv_vjp_bwd)

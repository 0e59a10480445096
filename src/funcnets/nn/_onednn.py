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
when funcnets is installed on x86-64 Linux against ``onednn-cpu-gomp``. 1-D, 2-D and 3-D
convolutions, activations channels-last or channels-first, weights torch's, float32 only
(oneDNN has no float64 convolution), one device (:func:`usable`); anything else uses XLA.
:func:`error` (``funcnets.nn.onednn_error``) says why oneDNN is not available, or ``None``.

Differentiation: the forward convolution, its input gradient and its weight gradient are
three JAX primitives (:func:`funcnets.nn._bilinear.bilinear_trio`), each differentiated
through the others, so ``grad``, ``vjp``, ``jvp``, Hessians and ``vmap`` all run oneDNN's
kernels. (Before, a ``custom_jvp`` with XLA's convolution as its tangent gave reverse mode
XLA's gradients outside the train step: Conv3d(16, 32, 3) under plain ``jax.vjp`` 0.48×
torch eager, ConvTranspose2d(64, 32, 4, 2, 1) 0.50×.)
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import lru_cache, partial
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from funcnets._typing import Array
from funcnets.nn._bilinear import bilinear_trio

_TARGETS = ("forward", "forward_bias", "backward_data", "backward_weights")


def load_extension(module: str, targets) -> ctypes.CDLL | None:
    """funcnets' compiled extension ``module`` (``src/funcnets/csrc/``) loaded, with its FFI
    handlers ``targets`` (symbol names, also the targets' names) registered with XLA on
    CPU; ``None`` if it was not built. Raises ``OSError``/``AttributeError`` if it does not load."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    lib = ctypes.CDLL(spec.origin)
    for t in targets:
        jax.ffi.register_ffi_target(t, jax.ffi.pycapsule(getattr(lib, t)), platform="cpu")
    return lib


@lru_cache(maxsize=None)
def error() -> str | None:
    """``None`` when oneDNN's convolutions are registered with XLA, else why not."""
    if importlib.util.find_spec("funcnets._onednn_conv") is None:
        return ("funcnets' oneDNN extension is not built; it is built on x86-64 Linux with a C++ "
                "compiler when funcnets is installed (pip install -e .); XLA's convolutions are used")
    try:
        # the extension needs libdnnl.so.3, which onednn-cpu-gomp puts under the
        # environment's prefix, outside the loader's path: load it first, by its path
        ctypes.CDLL(_installed_file("onednn-cpu-gomp", "lib/libdnnl.so.3"), mode=ctypes.RTLD_GLOBAL)
        load_extension("funcnets._onednn_conv", [f"funcnets_conv_{t}" for t in _TARGETS])
    except (OSError, AttributeError, metadata.PackageNotFoundError, FileNotFoundError) as e:
        return f"funcnets' oneDNN extension did not load ({type(e).__name__}: {e}); XLA's convolutions are used"
    return None


def _installed_file(dist: str, suffix: str) -> str:
    for f in metadata.distribution(dist).files or ():
        path = Path(f.locate()).resolve()  # RECORD names data files relative to site-packages
        if path.as_posix().endswith("/" + suffix):
            return str(path)
    raise FileNotFoundError(f"{suffix} is not in the installed {dist}")


def usable(x: Array, w: Array, groups: int) -> bool:
    """Whether :func:`conv` takes these arguments here (any layout). Only with one device:
    XLA partitions a custom call it has no sharding rule for by replicating its operands,
    so in a data-parallel program every device would convolve the whole batch."""
    return (groups == 1 and x.dtype == np.float32 and w.dtype == np.float32
            and jax.default_backend() == "cpu" and jax.device_count() == 1 and error() is None)


def conv(x: Array, w: Array, stride, pads, dilation, channels_last: bool, bias: Array | None = None) -> Array:
    """torch's cross-correlation with 1, 2 or 3 spatial axes, float32: ``x: (N, *S, C_in)``
    channels-last or ``(N, C_in, *S)`` channels-first (taken as it is: oneDNN reads NCW,
    NCHW and NCDHW itself), ``w: (C_out, C_in, *K)``, padding ``pads = ((lo, hi), ...)``
    (non-negative), ``bias: (C_out,)`` or ``None`` -> ``(N, *S', C_out)`` or ``(N, C_out, *S')``.
    The bias is added by oneDNN's kernel as it writes the output, as in torch."""
    geometry = _geometry(stride, pads, dilation, channels_last)
    shape = _out_shape(x.shape, w.shape, *geometry)
    if bias is None or bias.dtype != np.float32 or bias.shape != (w.shape[0],):
        y = _prims.forward(x, w, shape, geometry)
        return y if bias is None else y + _spread(bias, shape, channels_last)  # XLA's promotion or shape error
    return _forward_bias.bind(x, w, bias, out_shape=shape, geometry=geometry)


def conv_transpose(x: Array, w: Array, out_spatial, stride, pads, dilation, channels_last: bool) -> Array:
    """``x: (N, *S, C_in)`` or ``(N, C_in, *S)`` float32, ``w: (C_in, C_out, *K)`` -> the
    output of spatial size ``out_spatial`` in the same layout: oneDNN's input gradient of
    the convolution this transposes (whose ``(O, I, *K)`` weight is ``w`` itself), as
    torch runs ``conv_transpose2d`` on CPU; its gradients are oneDNN's forward convolution
    and weight gradient."""
    c = w.shape[1]
    shape = (x.shape[0], *out_spatial, c) if channels_last else (x.shape[0], c, *out_spatial)
    return _prims.backward_data(x, w, shape, _geometry(stride, pads, dilation, channels_last))


def _geometry(stride, pads, dilation, channels_last) -> tuple:
    """The primitives' static ``geometry`` parameter (hashable)."""
    return tuple(stride), tuple(map(tuple, pads)), tuple(dilation), bool(channels_last)


# ----------------------------------------------------------------------------- FFI calls
def _out_shape(x_shape, w_shape, *geometry) -> tuple[int, ...]:
    """The output shape of XLA's convolution (its own shape rule, not a copy of it)."""
    x, w = jax.ShapeDtypeStruct(x_shape, np.float32), jax.ShapeDtypeStruct(w_shape, np.float32)
    return jax.eval_shape(lambda x, w: _xla(x, w, *geometry), x, w).shape


def _call(target: str, *args_and_geometry) -> Array:
    """``funcnets_conv_{target}`` on the arrays ``*args``, then the output shape and the geometry."""
    *args, shape, stride, pads, dilation, channels_last = args_and_geometry
    if (why := error()) is not None:  # error() also registers the targets
        raise RuntimeError(why)

    def ints(v):
        return np.asarray(v, np.int64)

    call = jax.ffi.ffi_call(f"funcnets_conv_{target}", jax.ShapeDtypeStruct(shape, args[0].dtype),
                            vmap_method="sequential")
    return call(*args, channels_last=bool(channels_last), stride=ints(stride), lo=ints([p[0] for p in pads]),
                hi=ints([p[1] for p in pads]), dilation=ints(dilation))


# ----------------------------------------------------------------------------- primitives
def _xla(x, w, stride, pads, dilation, channels_last):
    """XLA's convolution of the same geometry: the reference in the tests, and the shape rule."""
    sp = "DHW"[3 - (w.ndim - 2):]
    act = f"N{sp}C" if channels_last else f"NC{sp}"
    return lax.conv_general_dilated(x, w, stride, list(pads), rhs_dilation=dilation,
                                    dimension_numbers=(act, f"OI{sp}", act))


_prims = bilinear_trio(
    "funcnets_onednn_conv",
    partial(_call, "forward"),  # (x, w) -> y
    partial(_call, "backward_data"),  # (dy, w) -> dx
    partial(_call, "backward_weights"),  # (x, dy) -> dw
)


# ----------------------------------------------------------------------------- with a bias
def _spread(b: Array, out_shape, channels_last: bool) -> Array:
    """The bias ``(C_out,)`` along the output's channel axis."""
    return lax.broadcast_in_dim(b, out_shape, (len(out_shape) - 1 if channels_last else 1,))


def _unfused(x, w, b, *, out_shape, geometry):
    return _prims.forward(x, w, out_shape, geometry) + _spread(b, out_shape, geometry[-1])


def _forward_bias_jvp(primals, tangents, *, out_shape, geometry):
    """``d(F(x, w) + b) = F(dx, w) + F(x, dw) + db``: the derivatives take the trio's
    primitives (so reverse mode runs oneDNN's input and weight gradients) and XLA's sum for
    the bias."""
    (x, w, b), (dx, dw, db) = primals, tangents
    y = _forward_bias.bind(x, w, b, out_shape=out_shape, geometry=geometry)
    terms = [f() for t, f in ((dx, lambda: _prims.forward(dx, w, out_shape, geometry)),
                              (dw, lambda: _prims.forward(x, dw, out_shape, geometry)),
                              (db, lambda: _spread(db, out_shape, geometry[-1])))
             if type(t) is not ad.Zero]
    return y, sum(terms[1:], terms[0]) if terms else ad.Zero.from_primal_value(y)


def _forward_bias_batch(args, dims, *, out_shape, geometry):
    """``vmap``: a batched input with unbatched weight and bias folds into the batch axis
    (one oneDNN call); anything else maps the unfused form, which the trio batches."""
    (x, w, b), (dx, dw, db) = args, dims
    if dw is None and db is None:
        x = jnp.moveaxis(x, dx, 0)
        size, n = x.shape[:2]
        y = _forward_bias.bind(x.reshape(size * n, *x.shape[2:]), w, b, out_shape=(size * n, *out_shape[1:]),
                               geometry=geometry)
        return y.reshape(size, n, *out_shape[1:]), 0
    return jax.vmap(partial(_unfused, out_shape=out_shape, geometry=geometry), (dx, dw, db))(x, w, b), 0


def _forward_bias_primitive() -> Primitive:
    """``conv(x, w) + b`` as one primitive: oneDNN's forward convolution with its bias."""
    p = Primitive("funcnets_onednn_conv_forward_bias")

    def run(x, w, b, *, out_shape, geometry):
        return _call("forward_bias", x, w, b, out_shape, *geometry)

    p.def_impl(jax.jit(run, static_argnames=("out_shape", "geometry")))
    p.def_abstract_eval(lambda x, w, b, *, out_shape, geometry: ShapedArray(out_shape, x.dtype))
    mlir.register_lowering(p, mlir.lower_fun(run, multiple_results=False))
    ad.primitive_jvps[p] = _forward_bias_jvp
    batching.primitive_batchers[p] = _forward_bias_batch
    return p


_forward_bias = _forward_bias_primitive()

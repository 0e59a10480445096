"""The convolutions behind ``conv1d``/``conv2d``/``conv3d`` and ``conv_transpose*``: torch's
layouts (NCHW / OIHW), explicit padding, and a per-shape choice of lowering on CPU.

XLA:CPU's convolution is pathological on small maps with many channels. Measured on a
2-core AVX-512 CPU, jaxlib 0.10 with :data:`funcnets.config.XLA_CPU_FLAGS` (Eigen
convolutions, not YNNPACK); ResNet-18 at 3×64×64, batch 8; forward / forward+backward ms:

================================  =============  ======================
layer (C_in→C_out, output map)    XLA conv       GEMM over patches
================================  =============  ======================
layer4 3×3 512→512, 2×2           78 / 139       2.3 / 4.5
layer4.0 3×3 s2 256→512, 2×2      2.3 / 26       0.9 / 2.2
layer3 3×3 256→256, 4×4           1.5 / 3.9      1.2 / 2.6   (batch 32: 11.5 vs 12.0)
layer3.0 3×3 s2 128→256, 4×4      1.6 / 3.2      0.8 / 2.2
layer2 3×3 128→128, 8×8           1.4 / 3.3      1.7 / 4.0   (batch 32: 8.2 vs 11.0)
layer1 3×3 64→64, 16×16           1.1 / 3.1      1.6 / 4.0
conv1 7×7 s2 3→64, 32×32          2.3 / 6.7      2.9 / 11.4
================================  =============  ======================

So on CPU an output map of at most ``GEMM_MAX_PIXELS`` pixels is computed as one GEMM
over im2col patches built from strided slices (their gradient is a cheap pad-and-add),
and larger maps use XLA's convolution, or oneDNN's for channels-last float32 activations
(:mod:`funcnets.nn._onednn`; the table above predates it). All compute the same
cross-correlation in float32 with float32 accumulation. On GPU XLA's (cuDNN) convolution
is always used.

Inside a loop (``lax.scan``/``while``) XLA:CPU's convolution is far worse still: a
ResNet-18 train step took 1425 ms in a scanned epoch with XLA convs, 92 ms with GEMM
convs, 78 ms as a plain jitted step. :func:`conv_lowering` forces a lowering while a
function is traced; ``make_train_epoch`` uses ``conv_lowering("loop")`` on CPU (``"auto"``
with the GEMM where XLA's convolution would be), and so should a hand-written
``lax.scan`` over conv layers. oneDNN's convolutions, FFI calls, are as fast in a loop as
outside one: batch 8, 8-step epochs, same process, ms a step, loop of jitted steps /
scanned with GEMM convolutions / scanned with oneDNN's: ResNet-18 38.2-40.1 / 39.2-47.5 /
37.6-41.1, LeNet (batch 64) 2.3-2.7 / 2.3-3.0 / 1.8-2.3.

``layout`` names the activations' axis order; the weight stays OIHW in every layout.
``"NHWC"`` (channels-last): XLA:CPU computes its convolutions channels-last, and with
NCHW activations every BatchNorm/ReLU/pool fusion around a conv transposes (ResNet-18
train step, batch 8: 71 -> 65 ms; batch 32: 228 -> 193 ms with the whole network
channels-last). ``"CHWN"`` (batch-last) suits small images with few channels, such as
LeNet's: every elementwise and pooling fusion vectorizes along the batch, each im2col
slice copies whole rows of ``N`` samples, and the GEMM ``(C_out, K) @ (K, H'·W'·N)``
is already batch-last, so no transposes are needed. XLA's own convolution would
transpose a batch-last input, so on CPU the batch-last convolution is always the GEMM,
with the weight gradient from XLA's convolution (:func:`conv2d_batch_last`). LeNet
train step, batch 64: 5.6 -> ~3.5 ms (torch 4.8 ms).

Beyond ResNet's and LeNet's convolutions (:func:`conv_nd`, :func:`conv_transpose_nd`;
``benchmarks/conv_more.py``), XLA:CPU has four more pathologies. Forward + backward,
float32, torch eager in the same process (its ms first). "In a train step" are figures
from before every lowering below was a primitive (:mod:`funcnets.nn._bilinear`), when only
``funcnets.train``'s step took these gradients; now ``jax.grad``/``jax.vjp`` do too:

* grouped convolutions: depthwise 3×3 over 32×56×56, batch 32: torch 21, XLA 242 ms.
  :func:`conv_depthwise` is one fusion of the 9 shifted multiply-adds (its gradient the
  same kind of fusion and 9 reductions): 17-22 ms; in a train step the weight gradient is
  one variadic reduction over the 9 taps (one pass over the input and the output
  gradient): 1.5-1.9× faster than the 9 reductions (loaded machine, same process: 59.6 /
  63.5 -> 30.9 / 42.0 ms); quiet machine, 2026-12-03, with the input gradient as the
  forward's fusion over the flipped kernel (:func:`_depthwise_input_grad`): torch 8.3-9.5,
  funcnets 7.0-7.1 ms. Other groups (64 channels in 2
  groups, 32×32): torch 18-28, XLA 334 ms; one convolution per group
  (:func:`_conv_by_groups`): 41 ms.
* input-dilated (transposed) convolutions: ConvTranspose2d(64, 32, 4, 2, 1) at 32×32,
  batch 32: torch 35, XLA 1790 ms. The sub-pixel decomposition
  (:func:`conv_transpose_subpixel`): 69 ms; in a train step oneDNN's deconvolution
  (:func:`conv_transpose_onednn`): 43 ms NCHW, 27 ms channels-last (torch channels-last
  31 ms). NCHW costs four transposes around oneDNN (~2.3 ms each at this size), so a
  non-overlapping kernel (U-Net's k2 s2) in NCHW is one GEMM instead (:func:`_subpixel_gemm`).
* weight gradients of convolutions padded beyond 'same' (an output larger than the
  input): 2×2 kernel, padding 1, 64→128, 32×32, batch 32: 2.6 s; padded first, 15 ms.
  :func:`conv_nd` pads such inputs first.
* 3-D convolutions: Conv3d(16, 32, 3) over 16³, batch 8: torch 9.4, XLA 96 ms; as one
  2-D convolution with the depth taps as channels (:func:`_conv_by_2d`): 19 ms, 10-11 ms
  in a train step. 1-D ones go the same way (1.06× torch in a train step).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from functools import partial
from typing import Iterator, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnets._typing import Array
from funcnets.nn import _onednn, _patches
from funcnets.nn._bilinear import bilinear_trio
from funcnets.nn._gemm import times_weight

GEMM_MAX_PIXELS = 16  # output H'·W' at or below which the GEMM lowering wins (measured above)


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


_LOWERING: contextvars.ContextVar[str] = contextvars.ContextVar("funcnets_conv_lowering", default="auto")


@contextlib.contextmanager
def conv_lowering(mode: Literal["auto", "loop", "gemm", "xla"]) -> Iterator[None]:
    """Force how ``conv2d`` lowers while functions are *traced* in this block:
    ``"auto"`` (per shape, the default: on CPU a GEMM for small maps, oneDNN's convolution
    for larger float32 ones in either layout, see :mod:`funcnets.nn._onednn`, XLA's
    otherwise), ``"loop"`` (for loop bodies: ``"auto"`` with the GEMM instead of XLA's
    convolution, which is pathological inside a loop on CPU), ``"gemm"`` (patches + GEMM
    on CPU, for groups=1) or ``"xla"`` (XLA's convolution). Depthwise and transposed
    convolutions of any dimension take their CPU lowerings (:func:`conv_depthwise`,
    :func:`conv_transpose_subpixel`) except under ``"xla"``. Compiled functions keep what
    they were traced with.
    """
    if mode not in ("auto", "loop", "gemm", "xla"):
        raise ValueError(f"conv lowering must be 'auto', 'loop', 'gemm' or 'xla', got {mode!r}")
    token = _LOWERING.set(mode)
    try:
        yield
    finally:
        _LOWERING.reset(token)


def use_gemm(x_shape, w_shape, stride, padding, dilation, groups, layout="NCHW") -> bool:
    """Whether :func:`conv2d` takes the GEMM path for these static shapes."""
    mode = _LOWERING.get()
    if groups != 1 or mode == "xla" or jax.default_backend() != "cpu":
        return False
    if mode == "gemm" or layout == "CHWN":
        return True
    h, w = _spatial(x_shape, layout)
    oh = _out_size(h, w_shape[2], stride[0], padding[0], dilation[0])
    ow = _out_size(w, w_shape[3], stride[1], padding[1], dilation[1])
    return oh * ow <= GEMM_MAX_PIXELS


def onednn_convolves(x: Array, w: Array, groups: int = 1) -> bool:
    """Whether a convolution of more than GEMM-sized maps traced here is oneDNN's: the
    ``"auto"`` or ``"loop"`` lowering, ``groups=1``, float32, funcnets' extension built
    (CPU, one device), and not a part of a grouped convolution."""
    return _LOWERING.get() in ("auto", "loop") and not _GROUP_PART.get() and _onednn.usable(x, w, groups)


def _spatial(shape, layout: str) -> tuple[int, int]:
    """``(H, W)`` of a 4-D shape in ``layout``: axes 2, 3 in NCHW, axes 1, 2 otherwise."""
    return tuple(shape[2:4]) if layout == "NCHW" else tuple(shape[1:3])


def conv2d(
    x: Array,
    w: Array,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    layout: str = "NCHW",
    bias: Array | None = None,
) -> Array:
    """``x: (N, C_in, H, W)``, ``w: (C_out, C_in/groups, kH, kW)`` -> ``(N, C_out, H', W')``;
    ``x: (N, H, W, C_in)`` -> ``(N, H', W', C_out)`` in ``"NHWC"``, ``(C_in, H, W, N)`` ->
    ``(C_out, H', W', N)`` in ``"CHWN"``; plus ``bias: (C_out,)`` if given."""
    if not use_gemm(x.shape, w.shape, stride, padding, dilation, groups, layout):
        if layout in ("NHWC", "NCHW") and onednn_convolves(x, w, groups):
            return _onednn.conv(x, w, stride, [(p, p) for p in padding], dilation, layout == "NHWC", bias)
        if _LOWERING.get() == "loop" and groups == 1:  # not XLA's convolution in a loop body
            y = conv2d_gemm(x, w, stride, padding, dilation, layout)
        else:
            y = conv2d_xla(x, w, stride, padding, dilation, groups, layout)
    elif layout == "CHWN" and _LOWERING.get() == "auto":
        y = conv2d_batch_last(x, w, stride, padding, dilation)
    else:
        y = conv2d_gemm(x, w, stride, padding, dilation, layout)
    return add_bias(y, bias, layout)


def add_bias(y: Array, bias: Array | None, layout: str) -> Array:
    """``y + bias`` along ``y``'s channel axis in ``layout``; ``y`` itself for no bias."""
    if bias is None:
        return y
    shape = [1] * y.ndim
    shape[_axes(y.ndim, layout)[0]] = -1
    return y + bias.reshape(shape)


def conv2d_xla(x, w, stride, padding, dilation, groups, layout="NCHW"):
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=[(padding[0], padding[0]), (padding[1], padding[1])],
        rhs_dilation=dilation,
        dimension_numbers=(layout, "OIHW", layout),
        feature_group_count=groups,
    )


def window_views(xp: Array, kernel, stride, dilation, out_hw, layout="NCHW") -> list[Array]:
    """The ``kH·kW`` strided views of a padded 4-D input in ``layout``, one per kernel
    offset in row-major (i, j) order, each with the spatial size ``out_hw``: im2col's
    columns, and the candidates of a pooling window."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    lead = (slice(None), slice(None)) if layout == "NCHW" else (slice(None),)
    return [
        xp[lead + (slice(i * dh, i * dh + (oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))]
        for i in range(kh)
        for j in range(kw)
    ]


def conv2d_gemm(x, w, stride, padding, dilation, layout="NCHW"):
    """im2col + one GEMM, patches in OIHW's (c, i, j) order so that the weight reshapes
    to ``(C_out, C·kH·kW)`` with no transpose. NCHW: patches ``(N, C·kH·kW, H'·W')``;
    NHWC: ``(N·H'·W', C·kH·kW)``, and the product is already ``(N, H', W', C_out)``;
    CHWN: ``(C·kH·kW, H'·W'·N)``, and the product is already ``(C_out, H', W', N)``."""
    o, c, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    h, wd = _spatial(x.shape, layout)
    n = x.shape[3] if layout == "CHWN" else x.shape[0]
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    spatial_pad = ((ph, ph), (pw, pw))
    wk = w.reshape(o, c * kh * kw)
    if layout == "CHWN":
        xp = jnp.pad(x, ((0, 0),) + spatial_pad + ((0, 0),)) if ph or pw else x
        patches = jnp.stack(window_views(xp, (kh, kw), stride, dilation, (oh, ow), layout), axis=1)
        return (wk @ patches.reshape(c * kh * kw, oh * ow * n)).reshape(o, oh, ow, n)
    # NHWC and NCHW: one FFI call on CPU, not a kernel per slice to compile (funcnets.nn._patches)
    last = layout == "NHWC"
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        patches = x.reshape((n * h * wd, c) if last else (n, c, h * wd))
    else:
        patches = _patches.patches(x, (kh, kw), stride, spatial_pad, dilation, channels_last=last)
    if last:
        return times_weight(patches, wk).reshape(n, oh, ow, o)
    # one (C_out × K) @ (K × N·H'·W') product; a per-image batched GEMM is slower on CPU
    y = jnp.einsum("ok,nkp->onp", wk, patches)
    return y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def conv2d_batch_last(x, w, stride, padding, dilation):
    """The CPU convolution for ``(C_in, H, W, N)`` activations: the value and the input
    gradient are the GEMM over patches (its gradient is a GEMM and a pad-and-add), the
    weight gradient is XLA's convolution.

    Autodiff of the GEMM would compute the weight gradient as ``(C_out, H'·W'·N) @
    (H'·W'·N, K)``, a product with a long contraction and a tiny result, which XLA:CPU
    runs at ~30 GFLOP/s (LeNet, batch 64: 0.62 ms for conv2, 0.40 ms for conv1). XLA's
    weight-gradient convolution takes the batch-last input with no transpose (the
    batch as its feature dimension): 0.19 and 0.02 ms.
    """
    return conv2d_gemm(x, w, stride, padding, dilation, "CHWN")


@conv2d_batch_last.defjvp
def _conv2d_batch_last_jvp(stride, padding, dilation, primals, tangents):
    (x, w), (tx, tw) = primals, tangents
    args = (stride, padding, dilation)
    # linear in (tx, tw): reverse mode transposes each term with its own lowering
    ty = conv2d_gemm(tx, w, *args, "CHWN") + conv2d_xla(x, tw, *args, 1, "CHWN")
    return conv2d_batch_last(x, w, *args), ty


# ----------------------------------------------------------------------------- N-d convolutions
def _axes(ndim: int, layout: str) -> tuple[int, tuple[int, ...]]:
    """``(channel axis, spatial axes)`` of an activation with ``ndim`` axes: torch's
    channels-first ``"NCHW"`` (any number of spatial axes), ``"NHWC"`` or ``"CHWN"``."""
    sp = tuple(range(2, ndim)) if layout == "NCHW" else tuple(range(1, ndim - 1))
    return {"NCHW": 1, "NHWC": ndim - 1, "CHWN": 0}[layout], sp


def _spatial_sizes(shape, layout: str) -> tuple[int, ...]:
    """The spatial sizes of an activation's ``shape`` in ``layout`` (any number of them)."""
    return tuple(shape[a] for a in _axes(len(shape), layout)[1])


def _dimension_numbers(n: int, layout: str) -> tuple[str, str, str]:
    sp = "DHW"[3 - n:] if n <= 3 else "".join(chr(ord("a") + i) for i in range(n))
    lhs = {"NCHW": "NC" + sp, "NHWC": "N" + sp + "C", "CHWN": "C" + sp + "N"}[layout]
    return lhs, "OI" + sp, lhs


def pad_spatial(x: Array, pads, layout: str = "NCHW") -> Array:
    """Zero-pad (negative: crop) the spatial axes of ``x`` by ``pads = ((lo, hi), ...)``."""
    _, sp = _axes(x.ndim, layout)
    config = [(0, 0, 0)] * x.ndim
    for a, (lo, hi) in zip(sp, pads):
        config[a] = (lo, hi, 0)
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def use_depthwise(x_shape, w_shape, groups: int, layout: str = "NCHW") -> bool:
    """Whether :func:`conv_nd` takes the shifted multiply-add lowering (:func:`conv_depthwise`)."""
    c_axis, _ = _axes(len(x_shape), layout)
    return (groups > 1 and x_shape[c_axis] == groups and w_shape[1] == 1
            and _LOWERING.get() != "xla" and jax.default_backend() == "cpu")


def conv_nd(x: Array, w: Array, stride, pads, dilation, groups: int, layout: str = "NCHW",
            bias: Array | None = None) -> Array:
    """torch's cross-correlation in any number of spatial dimensions, padding ``pads =
    ((lo, hi), ...)`` per spatial axis (negative crops), weight ``(C_out, C_in/groups, *k)``,
    plus ``bias: (C_out,)`` if given (oneDNN adds it in its kernel, as torch does).

    On CPU depthwise convolutions are :func:`conv_depthwise`, other grouped ones one
    convolution per group (:func:`_conv_by_groups`); 2-D ones take :func:`conv2d`'s
    lowering (asymmetric padding beyond the symmetric part is applied first); float32 1-D
    and 3-D ones are oneDNN's in either layout, others are made of 2-D channels-last ones
    (:func:`_conv_by_2d`). Elsewhere, or in ``conv_lowering("xla")``, they are all XLA's.
    Forward + backward against torch eager (interleaved), quiet 2-core CPU, as 2-D
    channels-last ones between transposes -> oneDNN's on NCW/NCDHW -> with the bias in
    oneDNN's kernel: Conv1d(64, 64, 3) over 256 steps, batch 32, 0.53x -> 0.59x -> 1.04x;
    Conv3d(16, 32, 3) over 16³, batch 8, 0.71x -> 0.74x -> 1.03x (the last step also
    with benchmarks/README.md's longer settling between the contenders).
    """
    n = w.ndim - 2
    if use_depthwise(x.shape, w.shape, groups, layout):
        return add_bias(conv_depthwise(x, w, stride, pads, dilation, layout), bias, layout)
    if any(lo + hi > d * (k - 1) for (lo, hi), k, d in zip(pads, w.shape[2:], dilation)):
        # padding beyond 'same' (an output larger than the input): XLA:CPU's weight-gradient
        # convolution takes seconds there (k=2, p=1, 64->128 channels, 32x32, batch 32:
        # 2.6 s vs 15 ms padded first), so the input is padded first
        x, pads = pad_spatial(x, pads, layout), ((0, 0),) * n
    if groups > 1 and _LOWERING.get() != "xla" and jax.default_backend() == "cpu":
        return add_bias(_conv_by_groups(x, w, stride, pads, dilation, groups, layout), bias, layout)
    if n == 2:
        sym = tuple(max(0, min(lo, hi)) for lo, hi in pads)
        extra = [(lo - s, hi - s) for (lo, hi), s in zip(pads, sym)]
        if any(e != (0, 0) for e in extra):
            x = pad_spatial(x, extra, layout)
        return conv2d(x, w, tuple(stride), sym, tuple(dilation), groups, layout, bias)
    if n in (1, 3) and _LOWERING.get() != "xla" and jax.default_backend() == "cpu":
        if layout in ("NCHW", "NHWC") and onednn_convolves(x, w, groups) and min(min(p) for p in pads) >= 0:
            return _onednn.conv(x, w, stride, pads, dilation, layout == "NHWC", bias)
        return add_bias(_conv_by_2d(x, w, stride, pads, dilation, groups, layout), bias, layout)
    return add_bias(lax.conv_general_dilated(
        x, w, window_strides=tuple(stride), padding=[tuple(p) for p in pads], rhs_dilation=tuple(dilation),
        dimension_numbers=_dimension_numbers(n, layout), feature_group_count=groups,
    ), bias, layout)


def _channels_last(x: Array, layout: str) -> Array:
    """``x`` as ``(N, *S, C)`` from ``layout`` (self-inverse for ``"CHWN"``)."""
    return {"NCHW": lambda: jnp.moveaxis(x, 1, -1), "NHWC": lambda: x, "CHWN": lambda: jnp.swapaxes(x, 0, -1)}[layout]()


def _from_channels_last(y: Array, layout: str) -> Array:
    return {"NCHW": lambda: jnp.moveaxis(y, -1, 1), "NHWC": lambda: y, "CHWN": lambda: jnp.swapaxes(y, 0, -1)}[layout]()


# set while the per-group convolutions of a grouped one are traced: they keep off oneDNN, as
# grouped convolutions always have (tests/test_onednn.py holds them to it), though oneDNN
# would run them faster still (64 channels in 2 groups below: 19 ms in a train step)
_GROUP_PART: contextvars.ContextVar[bool] = contextvars.ContextVar("funcnets_conv_group_part", default=False)


def _conv_by_groups(x: Array, w: Array, stride, pads, dilation, groups: int, layout: str) -> Array:
    """A grouped convolution on CPU as one channels-last convolution per group, concatenated.
    XLA:CPU's grouped convolution (``feature_group_count``) is 20-200× slower than torch's.
    Forward + backward, 3×3, batch 32/16, ms (torch / XLA's / this): 64 channels in 2
    groups at 32×32: 18-28 / 334 / 41; 128 in 8 at 28×28: 9 / 1086 / 24; 128 in 32
    (ResNeXt's 4 per group): 17-19 / 3189 / 49."""
    xl = _channels_last(x, layout)
    cg, og = xl.shape[-1] // groups, w.shape[0] // groups
    token = _GROUP_PART.set(True)
    try:
        ys = [conv_nd(xl[..., g * cg:(g + 1) * cg], w[g * og:(g + 1) * og], stride, pads, dilation, 1, "NHWC")
              for g in range(groups)]
    finally:
        _GROUP_PART.reset(token)
    return _from_channels_last(jnp.concatenate(ys, axis=-1), layout)


def _conv_by_2d(x: Array, w: Array, stride, pads, dilation, groups: int, layout: str) -> Array:
    """A 1-D or 3-D convolution on CPU as a 2-D channels-last one (``conv2d``'s lowering)
    where oneDNN's own does not run (float64, parts of grouped ones): 1-D as a 1-pixel-high
    image; 3-D with the output depths folded into the batch and the kernel's depth taps
    into the input channels (an im2col along depth). Forward + backward against torch's
    speed, XLA's own / this (in a train step, with oneDNN's gradients): Conv1d(64, 64, 3) over 256 steps, batch 32: 0.55-0.63x
    / 0.68-0.72x (1.06x); Conv3d(16, 32, 3) over 16³, batch 8: 0.10x / 0.48-0.51x
    (0.89-0.90x; one 2-D convolution per depth tap: 0.78-0.84x)."""
    if layout != "NHWC":  # the one transpose each way; 2-D convolutions compute channels-last
        return _from_channels_last(_conv_by_2d(_channels_last(x, layout), w, stride, pads, dilation, groups, "NHWC"), layout)
    if w.ndim == 3:
        y = conv_nd(x[:, None], w[:, :, None], (1, stride[0]), ((0, 0), pads[0]), (1, dilation[0]), groups, "NHWC")
        return y[:, 0]
    (lo, hi), (o, ci, kd, kh, kw), sd, dd = pads[0], w.shape, stride[0], dilation[0]
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (lo, hi, 0)] + [(0, 0, 0)] * 3)
    nb, depth, c = x.shape[0], (xp.shape[1] - dd * (kd - 1) - 1) // sd + 1, x.shape[-1]
    taps = jnp.stack([lax.slice_in_dim(xp, i * dd, i * dd + (depth - 1) * sd + 1, sd, axis=1) for i in range(kd)], -2)
    # (N·D', H, W, [g, kd, C/g]): each group's channels stay together, as its weight's are
    taps = taps.reshape(nb * depth, *x.shape[2:4], kd, groups, c // groups).swapaxes(-3, -2)
    wk = w.transpose(0, 2, 1, 3, 4).reshape(o, kd * ci, kh, kw)
    y = conv_nd(taps.reshape(nb * depth, *x.shape[2:4], kd * c), wk, stride[1:], pads[1:], dilation[1:], groups, "NHWC")
    return y.reshape(nb, depth, *y.shape[1:])


def conv_depthwise(x: Array, w: Array, stride, pads, dilation, layout: str = "NCHW") -> Array:
    """A depthwise convolution (``groups == C_in``, weight ``(C_in·m, 1, *k)``, channel
    multiplier ``m``) as a sum of ``prod(k)`` shifted multiply-adds over the padded input,
    one XLA fusion; its input gradient is the same kind of fusion, and its weight gradient
    one variadic reduction over the taps (:func:`_depthwise_weight_grad`, one pass over the
    input and the output gradient instead of autodiff's ``prod(k)``). XLA:CPU's grouped
    convolution is 30× slower than torch here (see the module's table). The three are
    primitives (:mod:`funcnets.nn._bilinear`), so every transformation takes them."""
    geometry = (tuple(stride), tuple(tuple(p) for p in pads), tuple(dilation), layout)
    out = jax.eval_shape(lambda x, w: _depthwise(x, w, *geometry), x, w).shape
    return _depthwise_prims.forward(x, w, out, geometry)


def _depthwise_taps(x: Array, w_shape, stride, pads, dilation, layout: str):
    """The padded (channel-repeated) input's strided view for each kernel tap, in the
    weight's flattened tap order, and the ``(1, C_out, 1, ...)``-style broadcast shape."""
    c_axis, sp = _axes(x.ndim, layout)
    kernel = w_shape[2:]
    m = w_shape[0] // x.shape[c_axis]
    if m > 1:  # output channel o reads input channel o // m, as torch's groups do
        x = jnp.repeat(x, m, axis=c_axis)
    xp = pad_spatial(x, pads, layout)
    out = [(xp.shape[a] - d * (k - 1) - 1) // s + 1 for a, k, s, d in zip(sp, kernel, stride, dilation)]
    views = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None)] * x.ndim
        for a, o, s, d, size in zip(sp, offsets, stride, dilation, out):
            index[a] = slice(o * d, o * d + (size - 1) * s + 1, s)
        views.append(xp[tuple(index)])
    bshape = [1] * x.ndim
    bshape[c_axis] = w_shape[0]
    return views, bshape, c_axis


def _depthwise(x, w, stride, pads, dilation, layout):
    views, bshape, _ = _depthwise_taps(x, w.shape, stride, pads, dilation, layout)
    taps = w.reshape(w.shape[0], -1)
    y = None
    for t, view in enumerate(views):
        term = view * taps[:, t].reshape(bshape)
        y = term if y is None else y + term
    return y


def _depthwise_weight_grad(x, g, w_shape, stride, pads, dilation, layout):
    """``dL/dw`` of :func:`_depthwise` for the output gradient ``g``: for each tap the sum
    of ``view_t * g`` over every axis but the channels, all taps in one variadic
    ``lax.reduce``, which XLA:CPU fuses into one pass over ``x`` and ``g`` (the autodiff
    form is one reduction, one pass, per tap). Channels-last, the batch axis is kept in
    that pass and summed after (3×3, 32 channels at 56×56, batch 32: 11.8 -> 4.2 ms);
    channels-first that is no faster (7×7: slower)."""
    views, _, c_axis = _depthwise_taps(x, w_shape, stride, pads, dilation, layout)
    prods = [v * g for v in views]
    zero = jnp.zeros((), g.dtype)
    channels_last = c_axis == g.ndim - 1
    dims = tuple(a for a in range(g.ndim) if a != c_axis and not (channels_last and a == 0))
    sums = lax.reduce(prods, [zero] * len(prods), lambda a, b: [u + v for u, v in zip(a, b)], dims)
    if channels_last:
        sums = [s.sum(0) for s in sums]
    return jnp.stack(sums, axis=-1).reshape(w_shape)


def _depthwise_input_grad(g, w, x_shape, stride, pads, dilation, layout):
    """``dL/dx`` of :func:`_depthwise`: with one output channel per input channel, the
    correlation of ``g`` (its pixels ``stride - 1`` apart, padded to the input's size) with
    the flipped kernel, the forward's fusion again. With a channel multiplier (weight
    ``(C·m, 1, ...)``) it is ``jax.linear_transpose`` of the forward (a sum over the ``m``
    copies). Forward's transpose / this, 32 channels at 56×56, batch 32: 3×3 4.2 / 1.6 ms,
    stride 2 9.5 / 1.8 ms, 7×7 52 / 4.8 ms; channels-last 3×3 6.3 / 3.4 ms."""
    c_axis, sp = _axes(len(x_shape), layout)
    if w.shape[0] != x_shape[c_axis]:
        x = jax.ShapeDtypeStruct(x_shape, g.dtype)
        return jax.linear_transpose(lambda x: _depthwise(x, w, stride, pads, dilation, layout), x)(g)[0]
    kernel = w.shape[2:]
    config = [(0, 0, 0)] * g.ndim
    for a, k, s, (lo, _), d in zip(sp, kernel, stride, pads, dilation):
        # forward: y[o] = sum_t x[o*s + t*d - lo] w[t]; so dx[i] = sum_t gd[i + lo - t*d] w[t]
        # with gd = g dilated by s; the padding makes that a stride-1 correlation of length X
        config[a] = (d * (k - 1) - lo, x_shape[a] + lo - (g.shape[a] - 1) * s - 1, s - 1)
    gd = lax.pad(g, jnp.zeros((), g.dtype), config)
    flipped = lax.rev(w, tuple(range(2, w.ndim)))
    return _depthwise(gd, flipped, (1,) * len(kernel), ((0, 0),) * len(kernel), dilation, layout)


_depthwise_prims = bilinear_trio(
    "funcnets_depthwise",
    lambda x, w, _, *geometry: _depthwise(x, w, *geometry),
    _depthwise_input_grad,  # (g, w, x_shape, ...)
    _depthwise_weight_grad,  # (x, g, w_shape, ...)
)


# ----------------------------------------------------------------------------- transposed
def transposed_out_size(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """torch's ConvTranspose output size ``(L - 1)·s - 2p + d(k - 1) + op + 1``."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def conv_transpose_nd(x: Array, w: Array, stride, padding, output_padding, dilation, groups: int,
                      layout: str = "NCHW") -> Array:
    """``torch.nn.functional.conv_transposeNd``, weight ``(C_in, C_out/groups, *k)``,
    activations channels-first (``"NCHW"``) or channels-last (``"NHWC"``). On CPU: oneDNN's
    deconvolution (:func:`conv_transpose_onednn`) for float32 ones with ``groups=1`` (but
    one GEMM for channels-first non-overlapping kernels, :func:`_subpixel_gemm`), else
    :func:`conv_transpose_subpixel`; elsewhere, or in ``conv_lowering("xla")``, XLA's
    input-dilated convolution (:func:`conv_transpose_xla`)."""
    args = (stride, padding, output_padding, dilation)
    if _LOWERING.get() == "xla" or jax.default_backend() != "cpu":
        return conv_transpose_xla(x, w, *args, groups, layout)
    if (layout in ("NCHW", "NHWC") and onednn_convolves(x, w, groups)
            and not _subpixel_gemm(w, stride, dilation, groups, layout)
            and all(o < s for o, s in zip(output_padding, stride))):
        return conv_transpose_onednn(x, w, *args, layout)
    return conv_transpose_subpixel(x, w, *args, groups, layout)


def _subpixel_gemm(w, stride, dilation, groups: int, layout: str) -> bool:
    """Whether the sub-pixel phases are one plain GEMM: NCHW, ``groups=1`` and every output
    pixel from at most one kernel tap (``d·(k - 1) < s``, U-Net's kernel 2 stride 2).
    ConvTranspose2d(64, 32, 2, 2) at 32x32, batch 32, forward + backward: 19-23 ms as
    one GEMM, 26-27 ms through oneDNN with the NCHW transposes, torch 32.5 (same run)."""
    return layout == "NCHW" and groups == 1 and all(d * (k - 1) < s for k, s, d in zip(w.shape[2:], stride, dilation))


def conv_transpose_onednn(x: Array, w: Array, stride, padding, output_padding, dilation, layout="NCHW") -> Array:
    """A transposed convolution as torch runs it on CPU: oneDNN's input gradient of the
    convolution it transposes (:func:`funcnets.nn._onednn.conv_transpose`), with oneDNN's
    forward convolution and weight gradient as its gradients, in either layout. XLA's weight
    gradient of this geometry took 4.3 s for ConvTranspose2d(64, 32, 4, 2, 1) at batch 32,
    32x32 (oneDNN's: part of a 69 ms step). ``output_padding`` below the stride only
    lengthens the output: the convolution of that length with the same padding reads the
    input's length back. (torch also allows it up to the dilation; with ``output_padding
    >= stride`` the convolution would need a negative padding, which oneDNN refuses, so
    :func:`conv_transpose_nd` takes the sub-pixel lowering there.)"""
    last = layout == "NHWC"
    spatial = x.shape[1:-1] if last else x.shape[2:]
    out = tuple(transposed_out_size(L, k, s, p, o, d)
                for L, k, s, p, o, d in zip(spatial, w.shape[2:], stride, padding, output_padding, dilation))
    pads = [(p, p) for p in padding]
    return _onednn.conv_transpose(x, w, out, stride, pads, dilation, last)


def _forward_weight(w: Array, groups: int) -> Array:
    """A transposed convolution's ``(C_in, C_out/g, *k)`` weight as the equivalent
    convolution's ``(C_out, C_in/g, *k)`` (within each group), kernel not flipped."""
    c_in, c_og, *k = w.shape
    w = w.reshape(groups, c_in // groups, c_og, *k)
    return jnp.swapaxes(w, 1, 2).reshape(groups * c_og, c_in // groups, *k)


def conv_transpose_xla(x, w, stride, padding, output_padding, dilation, groups, layout="NCHW"):
    """XLA's transposed convolution: a stride-1 convolution of the input dilated by the
    stride (``lhs_dilation``), with the flipped kernel; ``s^n`` of its products are zeros."""
    n = w.ndim - 2
    wf = jnp.flip(_forward_weight(w, groups), axis=tuple(range(2, 2 + n)))
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op) for k, p, op, d in zip(w.shape[2:], padding, output_padding, dilation)]
    return lax.conv_general_dilated(
        x, wf, window_strides=(1,) * n, padding=pads, lhs_dilation=tuple(stride), rhs_dilation=tuple(dilation),
        dimension_numbers=_dimension_numbers(n, layout), feature_group_count=groups,
    )


def _phase_taps(k: int, s: int, d: int) -> tuple[int, np.ndarray]:
    """Per output phase, which kernel tap each sub-kernel position holds.

    Output ``o`` of a transposed convolution with ``u = o + p = q·s + φ`` sums
    ``x[q - e_t]·w[t]`` over the taps with ``t·d ≡ φ (mod s)``, ``e_t = (t·d - φ) / s``:
    for each phase ``φ`` a stride-1 correlation of ``x`` with a sub-kernel of length
    ``E + 1`` (``E = (k - 1)·d // s``) that holds tap ``t`` at position ``E - e_t``.
    Returns ``E`` and the ``(s, E + 1)`` table of taps (``k`` where there is none).
    """
    e = (k - 1) * d // s
    table = np.full((s, e + 1), k, np.int32)
    for t in range(k):
        table[t * d % s, e - t * d // s] = t
    return e, table


def conv_transpose_subpixel(x, w, stride, padding, output_padding, dilation, groups, layout="NCHW"):
    """The sub-pixel decomposition: each of the ``prod(s)`` output phases is a stride-1
    convolution of the input with a sub-kernel of ``w`` (:func:`_phase_taps`); the phases
    are one channels-last convolution with ``C_out·prod(s)`` output channels
    (:func:`conv_nd`, so 2-D ones take ``conv2d``'s lowering), interleaved into the output
    (a pixel shuffle, the one transpose) and cropped to torch's size. No product with an
    inserted zero is computed."""
    n = w.ndim - 2
    c_in, c_og, *kernel = w.shape
    c_out = groups * c_og
    sizes = _spatial_sizes(x.shape, layout)
    out = [transposed_out_size(L, k, s, p, op, d)
           for L, k, s, p, op, d in zip(sizes, kernel, stride, padding, output_padding, dilation)]
    # sub-kernels: pad each kernel axis with one zero (the "no tap" index k), gather the tables
    wk = jnp.pad(w, [(0, 0), (0, 0)] + [(0, 1)] * n)
    es, q0s, qs = [], [], []
    for i, (k, s, d, p, o) in enumerate(zip(kernel, stride, dilation, padding, out)):
        e, table = _phase_taps(k, s, d)
        wk = jnp.take(wk, table.reshape(-1), axis=2 + 2 * i).reshape(
            wk.shape[:2 + 2 * i] + (s, e + 1) + wk.shape[3 + 2 * i:])
        q0 = p // s
        es.append(e), q0s.append(q0), qs.append(-(-(p + o) // s) - q0)
    # (C_in, C_out/g, s1, E1+1, s2, E2+1, ...) -> (g, C_out/g, s1, s2, ..., C_in/g, E1+1, E2+1, ...)
    wk = wk.reshape(groups, c_in // groups, c_og, *wk.shape[2:])
    perm = [0, 2] + [3 + 2 * i for i in range(n)] + [1] + [4 + 2 * i for i in range(n)]
    wk = wk.transpose(perm).reshape(c_out * int(np.prod(stride)), c_in // groups, *(e + 1 for e in es))
    pads = [(e - q0, q0 + q - L) for e, q0, q, L in zip(es, q0s, qs, sizes)]
    nb = x.shape[0]
    if _subpixel_gemm(w, stride, dilation, groups, layout):
        # 1x1 sub-kernels: (C_out·P, C_in) @ (C_in, N·Q1·Q2...), the output's one transpose after
        xp = jnp.moveaxis(pad_spatial(x, pads), 1, 0)
        z = (wk.reshape(wk.shape[0], c_in) @ xp.reshape(c_in, -1)).reshape(c_out, *stride, nb, *qs)
        perm = [1 + n, 0] + [a for i in range(n) for a in (2 + n + i, 1 + i)]  # (N, C_out, Q1, s1, ...)
    else:
        # XLA:CPU convolves channels-last (a 2x2 sub-kernel, 64->128 channels: 44.6 ms NCHW, 16.6 NHWC)
        xl = x if layout == "NHWC" else jnp.moveaxis(x, 1, -1)
        z = conv_nd(xl, wk, (1,) * n, pads, (1,) * n, groups, "NHWC")  # (N, Q1, Q2, ..., C_out·P)
        z = z.reshape(nb, *qs, c_out, *stride)
        interleaved = [a for i in range(n) for a in (1 + i, 2 + n + i)]  # Q1, s1, Q2, s2, ...
        perm = [0] + interleaved + [1 + n] if layout == "NHWC" else [0, 1 + n] + interleaved
    z = z.transpose(perm).reshape(nb, *((c_out,) if layout == "NCHW" else ()),
                                  *(q * s for q, s in zip(qs, stride)), *((c_out,) if layout == "NHWC" else ()))
    start = [p - q0 * s for p, q0, s in zip(padding, q0s, stride)]
    _, sp = _axes(z.ndim, layout)
    lo, hi = [0] * z.ndim, list(z.shape)
    for a, b, o in zip(sp, start, out):
        lo[a], hi[a] = b, b + o
    return lax.slice(z, lo, hi)

"""``torch.nn.functional`` as pure JAX functions, with torch's layouts and semantics.

Layouts: inputs NCHW, conv weights OIHW ``(out, in/groups, kH, kW)``, linear weights
``(out, in)``. Padding is explicit and symmetric (never ``'SAME'``). Functions that
update buffers in torch (``batch_norm``) return the new buffers instead.

Inside :func:`channels_last` (what ResNet's trunk runs in on CPU) the image functions
take and return 4-D activations as ``(N, H, W, C)``, inside :func:`batch_last` (LeNet's
trunk on CPU) as ``(C, H, W, N)``; weights keep torch's layouts.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from functools import partial
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnets._typing import Array, PRNGKey
from funcnets.autograd import my_relu, relu
from funcnets.nn import _conv

__all__ = [
    "linear",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "relu",
    "my_relu",
    "batch_norm",
    "dropout",
    "flatten",
    "log_softmax",
    "softmax",
    "batch_norm_groups",
    "channels_last",
    "is_channels_last",
    "batch_last",
    "is_batch_last",
]

IntOr2 = int | Sequence[int]


def _pair(v: IntOr2, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t  # type: ignore[return-value]


# the axis order of 4-D activations while tracing: "NCHW" (torch's), "NHWC" or "CHWN"
_LAYOUT: contextvars.ContextVar[str] = contextvars.ContextVar("funcnets_layout", default="NCHW")


@contextlib.contextmanager
def _layout_block(layout: str) -> Iterator[None]:
    token = _LAYOUT.set(layout)
    try:
        yield
    finally:
        _LAYOUT.reset(token)


def channels_last() -> contextlib.AbstractContextManager[None]:
    """While tracing, 4-D activations are ``(N, H, W, C)`` for ``conv2d``, the poolings,
    ``batch_norm`` and the layers built on them (``Conv2d``, ``BatchNorm2d``, ...);
    weights stay in torch's layouts. XLA:CPU computes convolutions channels-last, so a
    network that stays channels-last between its convolutions saves a transpose in every
    fusion around them. Move the input with ``x.transpose(0, 2, 3, 1)`` and back with
    ``y.transpose(0, 3, 1, 2)`` before anything layout-specific (``flatten``).
    """
    return _layout_block("NHWC")


def batch_last() -> contextlib.AbstractContextManager[None]:
    """While tracing, 4-D activations are ``(C, H, W, N)`` for the same functions and
    layers as :func:`channels_last` (an unbatched input is ``(C, H, W)``). On CPU this
    is fastest for small images with few channels (LeNet): elementwise and pooling work
    vectorizes along the batch and the convolutions need no transposes (see
    ``nn/_conv.py``). Move the input with ``x.transpose(1, 2, 3, 0)`` and back with
    ``y.transpose(3, 0, 1, 2)`` before anything layout-specific (``flatten``, ``linear``).
    """
    return _layout_block("CHWN")


def is_channels_last() -> bool:
    """Whether functions traced now see ``(N, H, W, C)`` activations (:func:`channels_last`)."""
    return _LAYOUT.get() == "NHWC"


def is_batch_last() -> bool:
    """Whether functions traced now see ``(C, H, W, N)`` activations (:func:`batch_last`)."""
    return _LAYOUT.get() == "CHWN"


def _hw(x: Array) -> tuple[int, int]:
    """A 4-D activation's spatial size ``(H, W)`` in the current layout."""
    return _conv._spatial(x.shape, _LAYOUT.get())


def _nchw_pads(pads: tuple) -> tuple:
    """``((0, 0), (0, 0), h_pad, w_pad)`` in the current layout's axis order."""
    return pads if _LAYOUT.get() == "NCHW" else ((0, 0), pads[2], pads[3], (0, 0))


def _channels(x: Array) -> int:
    """The channel count of an image ``(N, C, H, W)``/``(C, H, W)`` in the current layout."""
    return x.shape[{"NCHW": -3, "NHWC": -1, "CHWN": 0}[_LAYOUT.get()]]


def _batch_axis() -> int:
    """Where a batch axis goes (``jnp.expand_dims``) or comes off an unbatched image."""
    return -1 if _LAYOUT.get() == "CHWN" else 0


def _layout(c: int | str = "C") -> str:
    """The expected activation shape with ``c`` channels, for error messages."""
    return {
        "NCHW": f"(N, {c}, H, W)",
        "NHWC": f"(N, H, W, {c}) (channels_last)",
        "CHWN": f"({c}, H, W, N) (batch_last)",
    }[_LAYOUT.get()]


def _check_4d(x: Array, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"{op} expects a 4-D input {_layout()}, got shape {tuple(x.shape)}. "
            f"Add a batch dimension with jnp.expand_dims(x, {_batch_axis()}) for a single image."
        )


def linear(x: Array, weight: Array, bias: Array | None = None) -> Array:
    """``y = x @ weight.T + bias``.

    Args:
      x: ``(..., in_features)``; weight: ``(out_features, in_features)``;
      bias: ``(out_features,)`` or None.
    Returns:
      ``(..., out_features)``.
    """
    y = jnp.matmul(x, weight.T)
    return y if bias is None else y + bias


def conv2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: IntOr2 = 1,
    padding: IntOr2 = 0,
    dilation: IntOr2 = 1,
    groups: int = 1,
) -> Array:
    """2-D cross-correlation, ``torch.nn.functional.conv2d``.

    Args:
      x: ``(N, C_in, H, W)``; weight: ``(C_out, C_in / groups, kH, kW)``; bias: ``(C_out,)``.
    Returns:
      ``(N, C_out, H_out, W_out)`` with ``H_out = (H + 2p - d(k-1) - 1) // s + 1``.
    """
    _check_4d(x, "conv2d")
    layout = _LAYOUT.get()
    y = _conv.conv2d(
        x, weight, _pair(stride, "stride"), _pair(padding, "padding"),
        _pair(dilation, "dilation"), groups, layout,
    )
    if bias is None:
        return y
    return y + {"NCHW": bias[None, :, None, None], "NHWC": bias, "CHWN": bias[:, None, None, None]}[layout]


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


_BN_GROUPS: contextvars.ContextVar[int] = contextvars.ContextVar("funcnets_bn_groups", default=1)


@contextlib.contextmanager
def batch_norm_groups(groups: int) -> Iterator[None]:
    """While tracing, training-mode ``batch_norm`` splits the batch into ``groups``
    equal sub-batches with their own statistics (DDP's per-replica BatchNorm; see
    :mod:`funcnets.parallel`). The running statistics follow the first group, as DDP
    keeps rank 0's buffers."""
    token = _BN_GROUPS.set(groups)
    try:
        yield
    finally:
        _BN_GROUPS.reset(token)


def batch_norm(
    x: Array,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Array | None = None,
    bias: Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Array, Array | None, Array | None]:
    """``torch.nn.functional.batch_norm``, returning the updated running statistics.

    Training normalises with the batch mean and the *biased* batch variance, and
    updates ``running = (1 - momentum)·running + momentum·batch`` using the *unbiased*
    variance. Evaluation normalises with the running statistics.

    Args:
      x: ``(N, C, ...)`` (4-D: ``(N, H, W, C)`` inside :func:`channels_last`, ``(C, H,
      W, N)`` inside :func:`batch_last`); running_mean,
      running_var, weight, bias: ``(C,)``.
    Returns:
      ``(y, new_running_mean, new_running_var)``; ``y`` has ``x``'s shape.
    """
    if x.ndim == 4 and _LAYOUT.get() == "CHWN":
        # the statistics and the per-device split want the batch leading: run it in NCHW
        # (two transposes; no model of ours puts a BatchNorm in a batch-last trunk)
        with _layout_block("NCHW"):
            y, running_mean, running_var = batch_norm(
                x.transpose(3, 0, 1, 2), running_mean, running_var, weight, bias, training, momentum, eps
            )
        return y.transpose(1, 2, 3, 0), running_mean, running_var
    c_axis = 3 if x.ndim == 4 and _LAYOUT.get() == "NHWC" else 1
    shape = tuple(-1 if i == c_axis else 1 for i in range(x.ndim))
    if training:
        # statistics per sub-batch: one sub-batch (the whole batch) unless
        # batch_norm_groups asks for per-device statistics
        groups = _BN_GROUPS.get()
        if x.shape[0] % groups:
            raise ValueError(f"per-device BatchNorm: batch {x.shape[0]} does not split into {groups} equal parts")
        xg = x.reshape((groups, x.shape[0] // groups) + x.shape[1:])  # (G, N/G, C, ...)
        axes = tuple(i for i in range(1, xg.ndim) if i != c_axis + 1)
        n = math.prod(xg.shape[i] for i in axes)
        if n <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input of shape "
                f"{tuple(x.shape)}{f' split over {groups} devices' if groups > 1 else ''}. "
                f"Use a larger batch, or eval mode (train=False)."
            )
        xhat, mean, var = _normalize(xg, axes, eps)  # var is biased: used to normalise
        y = xhat.reshape(x.shape)
        if running_mean is not None:  # the first sub-batch's statistics (DDP keeps rank 0's)
            m0, v0 = mean.reshape(groups, -1)[0], var.reshape(groups, -1)[0]
            running_mean = (1 - momentum) * running_mean + momentum * m0
            running_var = (1 - momentum) * running_var + momentum * v0 * (n / (n - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in eval mode needs running_mean and running_var.")
        y = (x - running_mean.reshape(shape)) * lax.rsqrt(running_var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y, running_mean, running_var


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _normalize(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array, Array]:
    """``((x - mean)/sqrt(var + eps), mean, var)`` over ``axes`` (biased variance)."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.var(x, axis=axes, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps), mean, var


@_normalize.defjvp
def _normalize_jvp(axes, eps, primals, tangents):
    # The closed form, d x̂ = (dx - mean(dx) - x̂·mean(x̂·dx)) / sqrt(var + eps): its
    # transpose (the backward) is two reductions and one elementwise pass, as in torch's
    # kernel, where autodiff through mean/var/rsqrt replays the forward's structure.
    (x,), (tx,) = primals, tangents
    xhat, mean, var = _normalize(x, axes, eps)
    inv = lax.rsqrt(var + eps)
    tmean = jnp.mean(tx, axis=axes, keepdims=True)
    proj = jnp.mean(xhat * tx, axis=axes, keepdims=True)
    return (xhat, mean, var), (inv * (tx - tmean - xhat * proj), tmean, 2 * proj / inv)


def dropout(x: Array, p: float = 0.5, training: bool = True, key: PRNGKey | None = None) -> Array:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    Randomness is explicit: training with ``0 < p`` needs a PRNG ``key``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    if key is None:
        raise ValueError(
            "dropout in training mode needs a PRNG key: pass key=jax.random.key(seed) "
            "(or train=False for evaluation)."
        )
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def flatten(x: Array, start_dim: int = 1, end_dim: int = -1) -> Array:
    """``torch.flatten``: merge dims ``start_dim..end_dim`` (C, H, W order for images)."""
    nd = x.ndim
    s, e = start_dim % nd, end_dim % nd
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1 :])


def log_softmax(x: Array, dim: int = -1) -> Array:
    return jax.nn.log_softmax(x, axis=dim)


def softmax(x: Array, dim: int = -1) -> Array:
    return jax.nn.softmax(x, axis=dim)

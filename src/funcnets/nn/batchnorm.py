"""Batch normalisation: ``torch.nn.BatchNorm1d/2d/3d``, ``F.batch_norm`` and per-device statistics.

Also the pieces the other normalisation layers share: the closed-form normalisation
``_normalize``, torch's ``_NormBase`` (InstanceNorm's base too) and ``_torch_layout``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, ClassVar, Iterator

import jax
import jax.numpy as jnp
from jax import lax

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT, _batch_axis, _channels, _check_float, _layout, _layout_block
from funcnets.nn.module import Module

__all__ = ["batch_norm", "batch_norm_groups", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]

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
        W, N)`` inside :func:`batch_last`).
      running_mean, running_var, weight, bias: ``(C,)``.
    Returns:
      ``(y, new_running_mean, new_running_var)``; ``y`` has ``x``'s shape.
    """
    if x.ndim < 2:
        raise ShapeError(f"batch_norm expected an input (N, C, ...), got shape {tuple(x.shape)}")
    if isinstance(eps, (int, float)) and (eps < 0 or (training and eps <= 0)):
        raise ValueError(
            f"batch_norm eps must be {'positive during training' if training else 'non-negative'}, but got {eps}"
        )
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


def _torch_layout(x: Array) -> tuple[Array, Callable[[Array], Array]]:
    """``x`` in torch's layout, and the map that puts a result back in ``x``'s layout.

    Inside :func:`channels_last`/:func:`batch_last` a 4-D activation is an image in that
    layout; the normalisation functions that have no layout-specific lowering (every one
    but ``batch_norm``) compute it in NCHW between two transposes rather than give a
    wrong answer. Other ranks are always in torch's layout.
    """
    layout = _LAYOUT.get()
    if x.ndim != 4 or layout == "NCHW":
        return x, lambda y: y
    to, back = {"NHWC": ((0, 3, 1, 2), (0, 2, 3, 1)), "CHWN": ((3, 0, 1, 2), (1, 2, 3, 0))}[layout]
    return x.transpose(to), lambda y: y.transpose(back)


@dataclass(frozen=True, repr=False)
class _NormBase(Module):
    """What BatchNorm and InstanceNorm share (torch's ``_NormBase``): the per-channel
    affine parameters ``weight`` (ones) and ``bias`` (zeros), and the buffers
    ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (0)."""

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    bias: bool = field(default=True, kw_only=True)  # torch >= 2.14: False = scale only

    def param_names(self):
        if not self.affine:
            return ()
        return ("weight", "bias") if self.bias else ("weight",)

    def buffer_names(self):
        return ("running_mean", "running_var", "num_batches_tracked") if self.track_running_stats else ()

    def init_own(self, key):
        c = self.num_features
        params = {"weight": jnp.ones((c,)), "bias": jnp.zeros((c,))}
        params = {k: params[k] for k in self.param_names()}
        state = {}
        if self.track_running_stats:
            state = {
                "running_mean": jnp.zeros((c,)),
                "running_var": jnp.ones((c,)),
                # int64 in torch; int32 unless jax_enable_x64
                "num_batches_tracked": jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int64)),
            }
        return params, state

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.affine and self.bias}, track_running_stats={self.track_running_stats}"
        )


@dataclass(frozen=True, repr=False)
class _BatchNorm(_NormBase):
    """Batch normalisation per channel over every other axis (torch's ``_BatchNorm``).

    Train mode normalises with batch statistics (biased variance) and returns updated
    running statistics (unbiased variance, ``momentum``) and ``num_batches_tracked + 1``;
    ``momentum=None`` is the cumulative average ``1 / num_batches_tracked``. Eval mode
    uses the running statistics, or the batch's when ``track_running_stats=False``
    (which keeps no buffers).
    """

    _ndims: ClassVar[tuple[int, ...]] = ()
    _shapes: ClassVar[str] = ""  # the expected input, with {C} for num_features

    def _channels_of(self, x: Array) -> int:
        return x.shape[1]

    def _expected(self) -> str:
        return self._shapes.format(C=self.num_features)

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim not in self._ndims:
            fix = {
                2: "an (N, C) input is BatchNorm1d's", 3: "an (N, C, L) input is BatchNorm1d's",
                4: "an (N, C, H, W) input is BatchNorm2d's", 5: "an (N, C, D, H, W) input is BatchNorm3d's",
            }.get(x.ndim, "BatchNorm needs a batch")
            if x.ndim == min(self._ndims) - 1:
                fix += f"; for a single sample add the batch dimension, jnp.expand_dims(x, {_batch_axis()})"
            raise ShapeError(f"{self!r} expected input {self._expected()}, got {tuple(x.shape)}: {fix}")
        if self._channels_of(x) != self.num_features:
            raise ShapeError(
                f"{self!r} expected input {self._expected()}, got {tuple(x.shape)}: the input has "
                f"{self._channels_of(x)} channels; build the layer with num_features={self._channels_of(x)}"
            )
        use_batch = train or not self.track_running_stats
        rm, rv = state.get("running_mean"), state.get("running_var")
        if not use_batch:
            y, _, _ = batch_norm(x, rm, rv, params.get("weight"), params.get("bias"), False, 0.0, self.eps)
            return y, state
        update = train and self.track_running_stats
        new_state = dict(state)
        momentum = self.momentum
        if update:
            new_state["num_batches_tracked"] = state["num_batches_tracked"] + 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / new_state["num_batches_tracked"].astype(x.dtype)
        y, rm2, rv2 = batch_norm(
            x, rm if update else None, rv if update else None,
            params.get("weight"), params.get("bias"), True, momentum, self.eps,
        )
        if update:
            new_state["running_mean"], new_state["running_var"] = rm2, rv2
        return y, new_state


@dataclass(frozen=True, repr=False)
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C) -> same`` over ``N``, or ``(N, C, L) -> same`` over
    ``(N, L)``, per channel (see :class:`_BatchNorm` for train/eval and the buffers).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.BatchNorm1d(2)
        >>> params, state = m.init(jax.random.key(0))
        >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
        >>> y, new_state = m.apply(params, state, x, train=True)  # batch statistics
        >>> y.round(4).tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
        >>> [round(v, 4) for v in new_state["running_mean"].tolist()]  # 0.9·0 + 0.1·mean
        [0.2, 2.0]
        >>> [round(v, 4) for v in new_state["running_var"].tolist()]  # 0.9·1 + 0.1·unbiased var
        [1.1, 20.9]
        >>> y, _ = m.apply(params, new_state, x)  # eval: (1 - 0.2) / sqrt(1.1 + eps)
        >>> round(float(y[0, 0]), 4)
        0.7628
    """

    _ndims: ClassVar[tuple[int, ...]] = (2, 3)
    _shapes: ClassVar[str] = "(N, {C}) or (N, {C}, L)"


@dataclass(frozen=True, repr=False)
class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, H, W)`` per channel; ``(N, C, H, W) -> same``
    (``(N, H, W, C)`` inside :func:`channels_last`, ``(C, H, W, N)`` inside
    :func:`batch_last`; see :class:`_BatchNorm` for train/eval and the buffers).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.BatchNorm2d(3)
        >>> params, state = m.init(jax.random.key(0))
        >>> sorted(params), sorted(state)
        (['bias', 'weight'], ['num_batches_tracked', 'running_mean', 'running_var'])
        >>> y, state = m.apply(params, state, jnp.arange(24.0).reshape(2, 3, 2, 2), train=True)
        >>> y.shape, int(state["num_batches_tracked"])
        ((2, 3, 2, 2), 1)
        >>> [round(v, 4) for v in state["running_mean"].tolist()]  # 0.1 × the channel means
        [0.75, 1.15, 1.55]
    """

    _ndims: ClassVar[tuple[int, ...]] = (4,)

    def _channels_of(self, x):
        return _channels(x)

    def _expected(self):
        return _layout(self.num_features)


@dataclass(frozen=True, repr=False)
class BatchNorm3d(_BatchNorm):
    """Batch normalisation over ``(N, D, H, W)`` per channel; ``(N, C, D, H, W) -> same``
    (see :class:`_BatchNorm` for train/eval and the buffers).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.BatchNorm3d(2)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, _ = m.apply(params, state, jnp.full((1, 2, 2, 2, 2), 3.0))  # eval, fresh buffers: mean 0, var 1
        >>> y.shape, round(float(y.max()), 4)
        ((1, 2, 2, 2, 2), 3.0)
    """

    _ndims: ClassVar[tuple[int, ...]] = (5,)
    _shapes: ClassVar[str] = "(N, {C}, D, H, W)"

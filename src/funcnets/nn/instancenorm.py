"""Instance normalisation: ``torch.nn.InstanceNorm1d/2d/3d`` and ``F.instance_norm``.

Each sample's channels are normalised over their own spatial positions. With
``track_running_stats=True`` train mode also updates running statistics averaged over the
batch (torch reshapes ``(N, C, ...)`` to ``(1, N·C, ...)``, runs BatchNorm and averages the
``N`` updated copies of each channel's buffer), and eval mode normalises with them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _batch_axis, _channels, _check_float, _layout
from funcnets.nn.batchnorm import _NormBase, _normalize, _torch_layout

__all__ = ["instance_norm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"]


def instance_norm(
    x: Array,
    running_mean: Array | None = None,
    running_var: Array | None = None,
    weight: Array | None = None,
    bias: Array | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Array, Array | None, Array | None]:
    """``torch.nn.functional.instance_norm``, returning the updated running statistics.

    ``use_input_stats`` normalises each ``(sample, channel)`` over its spatial positions
    (biased variance) and, given running statistics, updates them with the batch mean of
    the per-instance statistics: ``running = (1 - momentum)·running + momentum·mean_N(stat)``
    with the *unbiased* per-instance variance. Otherwise it normalises with the running
    statistics, as ``batch_norm`` does in eval mode.

    Args:
      x: ``(N, C, *spatial)`` (4-D: ``(N, H, W, C)`` inside :func:`channels_last`,
        ``(C, H, W, N)`` inside :func:`batch_last`); running_mean, running_var, weight,
        bias: ``(C,)``.
    Returns:
      ``(y, new_running_mean, new_running_var)``; ``y`` has ``x``'s shape.
    """
    x, back = _torch_layout(x)
    y, running_mean, running_var = _instance_norm(
        x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps
    )
    return back(y), running_mean, running_var


def _instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps):
    """:func:`instance_norm` on an input in torch's layout."""
    if x.ndim < 2:
        raise ShapeError(f"instance_norm expected an input (N, C, *spatial), got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    shape = (1, c) + (1,) * (x.ndim - 2)
    if use_input_stats:
        count = math.prod(x.shape[2:])
        if count == 1:
            raise ValueError(
                f"Expected more than 1 spatial element when training, got input size {list(x.shape)}. "
                f"Each sample is normalised over its own spatial positions: give it more than one."
            )
        y, mean, var = _normalize(x, tuple(range(2, x.ndim)), eps)
        if running_mean is not None:
            batch_mean = jnp.mean(mean.reshape(n, c), axis=0)
            batch_var = jnp.mean(var.reshape(n, c), axis=0) * (count / (count - 1))  # unbiased
            running_mean = (1 - momentum) * running_mean + momentum * batch_mean
            running_var = (1 - momentum) * running_var + momentum * batch_var
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "Expected running_mean and running_var to be defined when use_input_stats is false."
            )
        y = (x - running_mean.reshape(shape)) * lax.rsqrt(running_var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y, running_mean, running_var


@dataclass(frozen=True, repr=False)
class _InstanceNorm(_NormBase):
    """torch's ``_InstanceNorm``: per-sample, per-channel normalisation over the spatial
    axes. ``affine`` adds ``weight``/``bias`` ``(C,)``; ``track_running_stats`` keeps
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` (which, as in torch, stays
    0), updates the running statistics in train mode (``momentum=None`` leaves them as
    they are) and normalises with them in eval mode. Unbatched inputs are accepted.
    """

    momentum: float | None = 0.1
    affine: bool = False
    track_running_stats: bool = False

    _no_batch_dim: ClassVar[int] = 0  # the rank of an unbatched input
    _shapes: ClassVar[str] = ""  # the expected input, with {C} for num_features

    def _channels_of(self, x: Array) -> int:
        return x.shape[x.ndim - self._no_batch_dim]

    def _expected(self) -> str:
        return self._shapes.format(C=self.num_features)

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim not in (self._no_batch_dim, self._no_batch_dim + 1):
            raise ShapeError(
                f"{self!r} expected input {self._expected()}, got {tuple(x.shape)}: InstanceNorm1d takes "
                f"(N, C, L), InstanceNorm2d (N, C, H, W), InstanceNorm3d (N, C, D, H, W), each with or without N"
            )
        c = self._channels_of(x)
        if c != self.num_features:
            if self.affine or self.track_running_stats:
                raise ShapeError(
                    f"{self!r} expected input {self._expected()}, got {tuple(x.shape)}: the input has {c} "
                    f"channels; build the layer with num_features={c}"
                )
            warnings.warn(  # torch's behaviour: without weights or buffers, num_features is unused
                f"input's size at the channel axis ({c}) does not match num_features ({self.num_features}) "
                f"of {self!r}; num_features is not used because affine=False",
                stacklevel=2,
            )
        unbatched = x.ndim == self._no_batch_dim
        batch_axis = self._batch_axis()
        xb = jnp.expand_dims(x, batch_axis) if unbatched else x
        update = train and self.track_running_stats
        y, rm, rv = instance_norm(
            xb,
            state.get("running_mean"),
            state.get("running_var"),
            params.get("weight"),
            params.get("bias"),
            train or not self.track_running_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )
        y = jnp.squeeze(y, batch_axis) if unbatched else y
        if not update:
            return y, state
        return y, {**state, "running_mean": rm, "running_var": rv}

    def _batch_axis(self) -> int:
        return 0


@dataclass(frozen=True, repr=False)
class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation over ``L``; ``(N, C, L)`` or ``(C, L)`` -> same.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.InstanceNorm1d(2)
        >>> params, state = m.init(jax.random.key(0))
        >>> params, state  # affine=False, track_running_stats=False: nothing to hold
        ({}, {})
        >>> y, _ = m.apply(params, state, jnp.array([[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]]))
        >>> [round(v, 4) for v in y[0, 0].tolist()]  # each (sample, channel) over L
        [-1.2247, 0.0, 1.2247]
        >>> bool(jnp.allclose(y[0, 0], y[0, 1], atol=1e-5))
        True
    """

    _no_batch_dim: ClassVar[int] = 2
    _shapes: ClassVar[str] = "(N, {C}, L) or ({C}, L)"


@dataclass(frozen=True, repr=False)
class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation over ``(H, W)``; ``(N, C, H, W)`` or ``(C, H, W)`` -> same
    (``(N, H, W, C)``/``(H, W, C)`` inside :func:`channels_last`, ``(C, H, W, N)``/``(C, H,
    W)`` inside :func:`batch_last`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
        >>> params, state = m.init(jax.random.key(0))
        >>> sorted(params), sorted(state)
        (['bias', 'weight'], ['num_batches_tracked', 'running_mean', 'running_var'])
        >>> y, state = m.apply(params, state, jnp.arange(24.0).reshape(2, 3, 2, 2), train=True)
        >>> [round(v, 4) for v in state["running_mean"].tolist()]  # 0.1 × the mean of the per-instance means
        [0.75, 1.15, 1.55]
    """

    _no_batch_dim: ClassVar[int] = 3

    def _channels_of(self, x):
        return _channels(x)

    def _expected(self):
        return f"{_layout(self.num_features)}, or one image without N"

    def _batch_axis(self):
        return _batch_axis()


@dataclass(frozen=True, repr=False)
class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation over ``(D, H, W)``; ``(N, C, D, H, W)`` or ``(C, D, H, W)`` -> same.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.InstanceNorm3d(2)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, _ = m.apply(params, state, jnp.arange(96.0).reshape(2, 3, 4, 4))  # unbatched (C, D, H, W)
        >>> y.shape, round(float(y[1].std()), 4)  # each channel: mean 0, standard deviation 1
        ((2, 3, 4, 4), 1.0)
    """

    _no_batch_dim: ClassVar[int] = 4
    _shapes: ClassVar[str] = "(N, {C}, D, H, W) or ({C}, D, H, W)"

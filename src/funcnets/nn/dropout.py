"""Dropout: ``torch.nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
``FeatureAlphaDropout`` and their functional forms, with an explicit PRNG key.

All of them are ATen's ``_dropout_impl``: identity in eval, when ``p == 0`` or for an
empty input; ``x · 0`` when ``p == 1``; otherwise a Bernoulli(1 - p) ``noise`` with one
draw per element (``dropout``, ``alpha_dropout``) or per channel (``(N, C, 1, ...)``, the
feature variants), and

* dropout: ``y = x · noise / (1 - p)`` (the kept elements are scaled so E[y] = x);
* alpha dropout: ``y = x · a·noise + b`` with ``a = 1/sqrt((α²p + 1)(1 - p))``,
  ``b = (noise - 1)·α·a + α·a·p`` and ``α = 1.7580993408473766`` (= SELU's scale·alpha),
  so dropped units take SELU's saturation value and a zero-mean unit-variance input
  keeps its mean and variance.

Randomness is explicit: training with ``0 < p < 1`` needs ``key`` (a layer gets it from
``apply(..., key=)``). The functional forms take ``key`` as the fourth positional
argument, where torch has ``inplace``; ``inplace`` is accepted (by keyword) and ignored,
as everything here is a pure function.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from funcnets._typing import Array, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT, _check_float
from funcnets.nn.module import Module

__all__ = [
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
]

# ATen's Dropout.cpp: -SELU(-inf) = selu scale · selu alpha
_ALPHA = 1.7580993408473766


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _check_layout(who: object, x: Array) -> None:
    """Channel dropout reads NCHW's channel axis: refuse a 4-D input inside a layout block."""
    if x.ndim == 4 and _LAYOUT.get() != "NCHW":
        raise ShapeError(
            f"{who} zeroes whole channels of a torch-layout (N, C, H, W) input, but it was called "
            f"inside {'channels_last()' if _LAYOUT.get() == 'NHWC' else 'batch_last()'} with "
            f"{tuple(x.shape)}. Call it outside the layout block (transpose back to NCHW first)."
        )


def _dropout_impl(
    x: Array, p: float, training: bool, key: PRNGKey | None, *, feature: bool, alpha: bool, who: object
) -> Array:
    """ATen's ``_dropout_impl<feature, alpha>`` (see the module docstring)."""
    _check_p(p)
    x = jnp.asarray(x)
    if not training or p == 0 or x.size == 0:
        return x
    if p == 1:  # torch multiplies by zero (not zeros_like): NaN stays NaN, the gradient is 0
        return x * jnp.zeros((), x.dtype)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ShapeError(f"{who} expected a floating-point input, got dtype {x.dtype}. Convert it first, e.g. x.astype(jnp.float32).")
    if feature:
        if x.ndim < 2:
            raise ShapeError(
                f"{who}: feature (channel-wise) dropout needs an input (N, C, *) with at least 2 dims, "
                f"got shape {tuple(x.shape)}. Use dropout for element-wise dropout."
            )
        _check_layout(who, x)
    if key is None:
        raise ValueError(
            "dropout in training mode needs a PRNG key: pass key=jax.random.key(seed) "
            "(or train=False for evaluation)."
        )
    shape = x.shape[:2] + (1,) * (x.ndim - 2) if feature else x.shape
    noise = jax.random.bernoulli(key, 1.0 - p, shape).astype(x.dtype)
    if alpha:
        a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
        b = (noise - 1) * (_ALPHA * a) + _ALPHA * a * p
        return x * (noise * a) + b
    return x * (noise / (1.0 - p))


def dropout(input: Array, p: float = 0.5, training: bool = True, key: PRNGKey | None = None, inplace: bool = False) -> Array:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1 - p)``.

    Args:
      input: ``(*)``; p: drop probability; training: identity when False;
      key: PRNG key, needed when training with ``0 < p < 1``.
    Returns:
      ``input``'s shape (``input`` itself when not training or ``p == 0``).
    """
    return _dropout_impl(input, p, training, key, feature=False, alpha=False, who="dropout")


def dropout1d(input: Array, p: float = 0.5, training: bool = True, key: PRNGKey | None = None, inplace: bool = False) -> Array:
    """Zero whole channels (1-D feature maps) with probability ``p``, scale the rest by ``1/(1 - p)``.

    Args:
      input: ``(N, C, L)`` or unbatched ``(C, L)``.
    """
    x = jnp.asarray(input)
    if x.ndim not in (2, 3):
        raise ShapeError(
            f"dropout1d expected a 2-D or 3-D input ((C, L) or (N, C, L)), got shape {tuple(x.shape)}. "
            f"For images use dropout2d/dropout3d; for element-wise dropout use dropout."
        )
    return _unbatched(x, x.ndim == 2, p, training, key, alpha=False, who="dropout1d")


def dropout2d(input: Array, p: float = 0.5, training: bool = True, key: PRNGKey | None = None, inplace: bool = False) -> Array:
    """Zero whole channels (2-D feature maps) with probability ``p``, scale the rest by ``1/(1 - p)``.

    Args:
      input: ``(N, C, H, W)``. As in torch, a 3-D input is taken as ``(N, C, L)``
        (channel-wise 1-D dropout, with torch's warning), not as an unbatched image:
        use ``dropout1d`` for that, or add the batch dim (``x[None]``).
    """
    x = jnp.asarray(input)
    _warn_unusual_rank("dropout2d", x.ndim, spatial=2)
    if x.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
            "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel "
            "dim. This behavior will change in a future release to interpret the input as one "
            "without a batch dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise "
            "dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    return _dropout_impl(x, p, training, key, feature=True, alpha=False, who="dropout2d")


def dropout3d(input: Array, p: float = 0.5, training: bool = True, key: PRNGKey | None = None, inplace: bool = False) -> Array:
    """Zero whole channels (3-D feature maps) with probability ``p``, scale the rest by ``1/(1 - p)``.

    Args:
      input: ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
    """
    x = jnp.asarray(input)
    _warn_unusual_rank("dropout3d", x.ndim, spatial=3)
    return _unbatched(x, x.ndim != 5, p, training, key, alpha=False, who="dropout3d")


def _warn_unusual_rank(who: str, ndim: int, spatial: int) -> None:
    """torch's deprecation warning for a ``dropout2d``/``dropout3d`` input that is neither
    ``(C, *spatial)`` nor ``(N, C, *spatial)`` (it still runs, as torch's does)."""
    if ndim not in (spatial + 1, spatial + 2):
        warnings.warn(
            f"{who}: Received a {ndim}-D input to {who}, which is deprecated and will result "
            "in an error in a future release. To retain the behavior and silence this warning, please "
            f"use dropout instead. Note that {who} exists to provide channel-wise dropout on inputs "
            f"with {spatial} spatial dimensions, a channel dimension, and an optional batch dimension (i.e. "
            f"{spatial + 1}D or {spatial + 2}D inputs).",
            stacklevel=3,
        )


def _unbatched(x: Array, add_batch: bool, p, training, key, *, alpha: bool, who: str) -> Array:
    """torch's ``unsqueeze(0)`` / feature dropout / ``squeeze(0)`` for unbatched inputs
    (in eval, and for ``p == 0``, ``input`` itself comes back)."""
    if add_batch and training and p != 0 and x.size:
        return _dropout_impl(x[None], p, training, key, feature=True, alpha=alpha, who=who)[0]
    return _dropout_impl(x, p, training, key, feature=True, alpha=alpha, who=who)


def alpha_dropout(input: Array, p: float = 0.5, training: bool = False, key: PRNGKey | None = None, inplace: bool = False) -> Array:
    """Alpha dropout (for SELU networks): dropped elements take SELU's saturation value and
    an affine map keeps a zero-mean unit-variance input's mean and variance.

    Note torch's default ``training=False`` for this function.
    """
    return _dropout_impl(input, p, training, key, feature=False, alpha=True, who="alpha_dropout")


def feature_alpha_dropout(
    input: Array, p: float = 0.5, training: bool = False, key: PRNGKey | None = None, inplace: bool = False
) -> Array:
    """Alpha dropout of whole channels: ``input: (N, C, *)``. Torch's default ``training=False``."""
    return _dropout_impl(input, p, training, key, feature=True, alpha=True, who="feature_alpha_dropout")


# ------------------------------------------------------------------------------ layers
@dataclass(frozen=True, repr=False)
class _DropoutNd(Module):
    """Identity in eval (``train=False``); in training the layer's dropout with ``key``."""

    p: float = 0.5
    inplace: bool = False
    _fn: ClassVar[object] = None
    _feature: ClassVar[bool] = True  # whole channels (dim 1)
    # the input ranks the layer takes, and what its ShapeError says otherwise
    _ndim: ClassVar[tuple[int, int | None]] = (0, None)  # (least, most)
    _expected: ClassVar[str] = ""
    _hint: ClassVar[str] = ""

    def __post_init__(self):
        _check_p(self.p)

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        self._check_input(x)
        if self._feature and train and self.p != 0:
            _check_layout(self, x)
        return type(self)._fn(x, self.p, train, key), state

    def _check_input(self, x: Array) -> None:
        least, most = self._ndim
        if x.ndim < least or (most is not None and x.ndim > most):
            raise ShapeError(
                f"{self!r} expected input {self._expected}, got {tuple(x.shape)}." + (f" {self._hint}" if self._hint else "")
            )

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


@dataclass(frozen=True, repr=False)
class Dropout(_DropoutNd):
    """Zero elements with probability ``p`` and scale the rest by ``1/(1 - p)``; ``x: (*)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m, x = nn.Dropout(p=0.5), jnp.ones(100)
        >>> y, _ = m.apply({}, {}, x)  # eval (train=False): the identity
        >>> bool((y == x).all())
        True
        >>> y, _ = m.apply({}, {}, x, train=True, key=jax.random.key(0))
        >>> sorted(set(y.tolist()))  # dropped, or kept and scaled by 1/(1 - p)
        [0.0, 2.0]
    """

    _fn: ClassVar[object] = staticmethod(dropout)
    _feature: ClassVar[bool] = False


@dataclass(frozen=True, repr=False)
class Dropout1d(_DropoutNd):
    """Zero whole channels: ``x: (N, C, L)`` or ``(C, L)`` -> same.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Dropout1d(p=0.5).apply({}, {}, jnp.ones((2, 8, 3)), train=True, key=jax.random.key(0))
        >>> bool((y.min(-1) == y.max(-1)).all())  # each channel kept (×2) or zeroed whole
        True
        >>> sorted(set(y.ravel().tolist()))
        [0.0, 2.0]
    """

    _fn: ClassVar[object] = staticmethod(dropout1d)
    _ndim = (2, 3)
    _expected = "(N, C, L) or unbatched (C, L)"
    _hint = "For images use Dropout2d (N, C, H, W) or Dropout3d; for element-wise dropout use Dropout."


@dataclass(frozen=True, repr=False)
class Dropout2d(_DropoutNd):
    """Zero whole channels: ``x: (N, C, H, W)`` -> same.

    As in torch, a 3-D input is taken as ``(N, C, L)`` (with torch's warning), not as an
    unbatched image: add the batch dim (``x[None]``) for one image.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Dropout2d(p=0.5).apply({}, {}, jnp.ones((2, 8, 3, 3)), train=True, key=jax.random.key(0))
        >>> bool((y.min((-2, -1)) == y.max((-2, -1))).all())  # whole feature maps
        True
        >>> sorted(set(y.ravel().tolist()))
        [0.0, 2.0]
    """

    _fn: ClassVar[object] = staticmethod(dropout2d)
    _ndim = (2, None)
    _expected = "(N, C, H, W)"
    _hint = "Use Dropout for element-wise dropout."


@dataclass(frozen=True, repr=False)
class Dropout3d(_DropoutNd):
    """Zero whole channels: ``x: (N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` -> same.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m, x = nn.Dropout3d(p=0.25), jnp.ones((8, 2, 2, 2))  # unbatched (C, D, H, W)
        >>> bool((m.apply({}, {}, x)[0] == x).all())  # eval: the identity
        True
        >>> y, _ = m.apply({}, {}, x, train=True, key=jax.random.key(0))
        >>> bool((y.min((1, 2, 3)) == y.max((1, 2, 3))).all())
        True
    """

    _fn: ClassVar[object] = staticmethod(dropout3d)
    _ndim = (1, None)
    _expected = "(N, C, D, H, W) or (C, D, H, W)"


@dataclass(frozen=True, repr=False)
class AlphaDropout(_DropoutNd):
    """Alpha dropout for SELU networks, element-wise; ``x: (*)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m, x = nn.AlphaDropout(p=0.5), jnp.zeros(100)
        >>> bool((m.apply({}, {}, x)[0] == x).all())  # eval: the identity
        True
        >>> y, _ = m.apply({}, {}, x, train=True, key=jax.random.key(0))
        >>> sorted({round(v, 4) for v in y.tolist()})  # dropped ones are not 0: SELU's saturation, rescaled
        [-0.7792, 0.7792]
    """

    _fn: ClassVar[object] = staticmethod(alpha_dropout)
    _feature: ClassVar[bool] = False


@dataclass(frozen=True, repr=False)
class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels; ``x: (N, C, *)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.FeatureAlphaDropout(p=0.5)
        >>> y, _ = m.apply({}, {}, jnp.zeros((2, 8, 3)), train=True, key=jax.random.key(0))
        >>> bool((y.min(-1) == y.max(-1)).all())  # whole channels
        True
        >>> sorted({round(v, 4) for v in y.ravel().tolist()})
        [-0.7792, 0.7792]
    """

    _fn: ClassVar[object] = staticmethod(feature_alpha_dropout)
    _ndim = (2, None)
    _expected = "(N, C, *)"
    _hint = "Use AlphaDropout for element-wise dropout."

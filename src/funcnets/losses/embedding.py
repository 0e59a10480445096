"""Margin losses on pairs and triplets (metric and ranking learning):
``cosine_embedding_loss``, ``margin_ranking_loss``, ``hinge_embedding_loss``,
``triplet_margin_loss``, ``triplet_margin_with_distance_loss``, with
``torch.nn.functional``'s formulas, options and gradients.

``target`` holds ``1`` (similar / ranked first) or ``-1``. At an exact tie on the margin
the gradient is 0, as in torch. ``reduction`` is ``"none" | "mean" | "sum"``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.errors import ShapeError
from funcnets.losses._base import _abs, _broadcast_shape, _check_reduction, _hinge, _reduce

__all__ = [
    "cosine_embedding_loss", "margin_ranking_loss", "hinge_embedding_loss", "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

_COS_EPS = 9.999999960041972e-13  # torch adds 1e-12 (a float32 constant) to each squared norm


def cosine_embedding_loss(
    input1: Array, input2: Array, target: Array, margin: float = 0.0, reduction: str = "mean"
) -> Array:
    """``torch.nn.functional.cosine_embedding_loss``: ``1 - cos(x1, x2)`` where
    ``y = 1``, ``max(0, cos(x1, x2) - margin)`` where ``y = -1`` (0 for other labels).

    ``cos = Σ x1·x2 / sqrt((Σ x1² + ε)·(Σ x2² + ε))`` (ε = 1e-12) over the feature dimension.

    Args:
      input1, input2: ``(N, D)`` with ``target: (N,)``, or ``(D,)`` with a scalar target.
      target: ``1`` or ``-1``.

    Returns:
      ``(N,)`` (or a scalar) for ``reduction="none"``, else a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x1 = jnp.array([[1.0, 0.0], [1.0, 1.0]]); x2 = jnp.array([[0.0, 1.0], [1.0, 1.0]])
        >>> losses.cosine_embedding_loss(x1, x2, jnp.array([1, -1]), reduction="none").tolist()  # 1 - cos; cos
        [1.0, 1.0]
    """
    warn_if_downcast(input1, input2, target, where="cosine_embedding_loss")
    _check_reduction(reduction)
    fn = "cosine_embedding_loss"
    tdim = jnp.ndim(target)
    if tdim not in (0, 1):
        raise ShapeError(f"{fn}: 0D or 1D target tensor expected (one label per pair), got {tuple(jnp.shape(target))}.")
    want = 2 if tdim == 1 else 1
    if jnp.ndim(input1) != want or jnp.ndim(input2) != want:
        raise ShapeError(
            f"{fn}: a {tdim}D target expects {want}D inputs {'(N, D)' if want == 2 else '(D,)'}, got "
            f"{tuple(jnp.shape(input1))} and {tuple(jnp.shape(input2))}."
        )
    _broadcast_shape(fn, ("input1", input1), ("input2", input2))
    ax = tdim  # the feature dimension
    dot = jnp.sum(input1 * input2, axis=ax)
    sq1 = jnp.sum(input1 * input1, axis=ax) + _COS_EPS
    sq2 = jnp.sum(input2 * input2, axis=ax) + _COS_EPS
    cos = dot / jnp.sqrt(sq1 * sq2)
    _broadcast_shape(fn, ("the pairs", cos), ("target", target))
    zero = jnp.zeros((), cos.dtype)
    loss = jnp.where(target == 1, 1 - cos, zero) + jnp.where(target == -1, _hinge(cos - margin), zero)
    return _reduce(loss, reduction)


def margin_ranking_loss(
    input1: Array, input2: Array, target: Array, margin: float = 0.0, reduction: str = "mean"
) -> Array:
    """``torch.nn.functional.margin_ranking_loss``: ``max(0, -y·(x1 - x2) + margin)``;
    ``y = 1`` asks for ``x1`` ranked above ``x2`` by at least ``margin``.

    Args:
      input1, input2, target: the same number of dimensions, broadcasting together
        (usually all ``(N,)``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x1, x2, y = jnp.array([0.5, 2.0]), jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0])
        >>> losses.margin_ranking_loss(x1, x2, y, margin=0.5, reduction="none").tolist()
        [1.0, 0.0]
    """
    warn_if_downcast(input1, input2, target, where="margin_ranking_loss")
    _check_reduction(reduction)
    fn = "margin_ranking_loss"
    if not jnp.ndim(input1) == jnp.ndim(input2) == jnp.ndim(target):
        raise ShapeError(
            f"{fn}: All input tensors should have same dimension but got sizes: input1: "
            f"{tuple(jnp.shape(input1))}, input2: {tuple(jnp.shape(input2))}, target: {tuple(jnp.shape(target))}."
        )
    _broadcast_shape(fn, ("input1", input1), ("input2", input2), ("target", target))
    return _reduce(_hinge(-target * (input1 - input2) + margin), reduction)


def hinge_embedding_loss(input: Array, target: Array, margin: float = 1.0, reduction: str = "mean") -> Array:
    """``torch.nn.functional.hinge_embedding_loss``: ``x`` where ``y = 1``,
    ``max(0, margin - x)`` where ``y = -1`` (both terms for other labels, as torch).

    Args:
      input: distances, any shape.
      target: ``1`` or ``-1``, broadcasting with ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> d, y = jnp.array([0.3, 0.4]), jnp.array([1.0, -1.0])
        >>> [round(v, 4) for v in losses.hinge_embedding_loss(d, y, reduction="none").tolist()]  # x; 1 - x
        [0.3, 0.6]
    """
    warn_if_downcast(input, target, where="hinge_embedding_loss")
    _check_reduction(reduction)
    _broadcast_shape("hinge_embedding_loss", ("input", input), ("target", target))
    zero = jnp.zeros((), jnp.result_type(input))
    loss = jnp.where(target != 1, _hinge(margin - input), zero) + jnp.where(target != -1, input, zero)
    return _reduce(loss, reduction)


def _vector_norm(x: Array, p: float, axis: int) -> Array:
    """``torch.norm(x, p, axis)`` with torch's gradients: 0 where the norm (or, for
    ``p < 2``, an element) is 0, where the plain formulas give NaN or ±1."""
    if p == math.inf:
        return jnp.max(_abs(x), axis=axis)
    if p == -math.inf:
        return jnp.min(_abs(x), axis=axis)
    if p == 0:
        return jnp.sum(x != 0, axis=axis).astype(x.dtype)
    a = _abs(x)
    if p == 1:
        return jnp.sum(a, axis=axis)
    nz = a > 0
    a_p = jnp.where(nz, jnp.where(nz, a, 1) ** p, 0) if p != 2 else a * a
    s = jnp.sum(a_p, axis=axis)
    pos = s > 0
    s_safe = jnp.where(pos, s, 1)
    return jnp.where(pos, jnp.sqrt(s_safe) if p == 2 else s_safe ** (1 / p), 0)


def _pairwise_distance(x1: Array, x2: Array, p: float, eps: float) -> Array:
    """``torch.pairwise_distance``: ``‖x1 - x2 + eps‖_p`` over the last dimension."""
    return _vector_norm(x1 - x2 + eps, p, axis=-1)


def _check_triplet_dims(fn: str, anchor: Array, positive: Array, negative: Array) -> None:
    dims = (jnp.ndim(anchor), jnp.ndim(positive), jnp.ndim(negative))
    if len(set(dims)) != 1:
        raise ShapeError(
            f"{fn}: The anchor, positive, and negative tensors are expected to have the same number of "
            f"dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative {dims[2]}D inputs "
            f"(shapes {tuple(jnp.shape(anchor))}, {tuple(jnp.shape(positive))}, {tuple(jnp.shape(negative))})."
        )


def triplet_margin_loss(
    anchor: Array,
    positive: Array,
    negative: Array,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> Array:
    """``torch.nn.functional.triplet_margin_loss``:
    ``max(0, margin + d(a, p) - d(a, n))`` with ``d(x, y) = ‖x - y + eps‖_p`` over the
    last dimension; ``swap`` replaces ``d(a, n)`` by ``min(d(a, n), d(p, n))``.

    Args:
      anchor, positive, negative: ``(N, D)`` or ``(D,)``, the same number of dimensions
        (broadcasting together).
      margin: > 0.

    Returns:
      ``(N,)`` (the inputs' shape without the last dimension) for ``reduction="none"``,
      else a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]]), jnp.array([[1.0, 0.0]])
        >>> round(float(losses.triplet_margin_loss(a, p, n)), 4)  # 1 + ‖a - p‖ - ‖a - n‖ = 1 + 5 - 1
        5.0
    """
    warn_if_downcast(anchor, positive, negative, where="triplet_margin_loss")
    _check_reduction(reduction)
    fn = "triplet_margin_loss"
    if margin <= 0:
        raise ValueError(f"{fn}: margin must be greater than 0, got {margin}")
    _check_triplet_dims(fn, anchor, positive, negative)
    _broadcast_shape(fn, ("anchor", anchor), ("positive", positive), ("negative", negative))
    d_pos = _pairwise_distance(anchor, positive, p, eps)
    d_neg = _pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = jnp.minimum(d_neg, _pairwise_distance(positive, negative, p, eps))
    return _reduce(_hinge(margin + d_pos - d_neg), reduction)


def triplet_margin_with_distance_loss(
    anchor: Array,
    positive: Array,
    negative: Array,
    *,
    distance_function: Callable[[Array, Array], Array] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> Array:
    """``torch.nn.functional.triplet_margin_with_distance_loss``:
    ``max(0, margin + d(a, p) - d(a, n))`` with any distance ``d``; ``swap`` replaces
    ``d(a, n)`` by ``min(d(a, n), d(p, n))``.

    ``d`` defaults to ``pairwise_distance`` (``‖x - y + 1e-6‖₂`` over the last
    dimension, torch's default). A custom ``distance_function(x, y)`` must be written in
    JAX (it is traced with the rest under ``jit``/``grad``) and return one distance per
    triplet, e.g. ``lambda x, y: 1 - F.cosine_similarity(x, y)``. At an exact tie
    (``margin + d(a, p) == d(a, n)``) the gradient is 0, and ``swap``'s minimum shares it
    equally between equal distances, both as in torch.

    Args:
      anchor, positive, negative: ``(N, D)`` or ``(D,)`` for the default distance (any
        shapes ``distance_function`` takes), the same number of dimensions.
      distance_function: ``(x, y) -> distances``; None for ``pairwise_distance``.
      margin: > 0.
      swap: use the distance from the positive to the negative where it is smaller
        (Balntas et al., "Learning shallow convolutional feature descriptors with triplet
        losses").

    Returns:
      the distances' shape (``(N,)``, or a scalar for ``(D,)`` inputs) for
      ``reduction="none"``, else a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]]), jnp.array([[1.0, 0.0]])
        >>> l1 = lambda x, y: jnp.sum(jnp.abs(x - y), axis=-1)
        >>> float(losses.triplet_margin_with_distance_loss(a, p, n, distance_function=l1))  # 1 + 7 - 1
        7.0
    """
    warn_if_downcast(anchor, positive, negative, where="triplet_margin_with_distance_loss")
    fn = "triplet_margin_with_distance_loss"
    _check_reduction(reduction)
    if margin <= 0:
        raise ValueError(f"{fn}: margin must be greater than 0, got {margin}")
    _check_triplet_dims(fn, anchor, positive, negative)
    if distance_function is None:

        def distance_function(x: Array, y: Array) -> Array:
            _broadcast_shape(f"{fn} (pairwise_distance)", ("x1", x), ("x2", y))
            return _pairwise_distance(x, y, 2.0, 1e-6)

    d_pos = distance_function(anchor, positive)
    d_neg = distance_function(anchor, negative)
    if swap:
        d_neg = jnp.minimum(d_neg, distance_function(positive, negative))
    return _reduce(_hinge(margin + d_pos - d_neg), reduction)

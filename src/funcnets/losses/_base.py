"""What every loss shares: ``reduction``, torch's pointwise-loss contract, the hinge of
the margin losses, and the checks that look at values (only possible outside ``jit``)."""

from __future__ import annotations

import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.errors import ShapeError

__all__: list[str] = []

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")


def _reduce(x: Array, reduction: str) -> Array:
    if reduction == "mean":
        return jnp.mean(x)
    if reduction == "sum":
        return jnp.sum(x)
    return x


def _values(*xs) -> tuple[np.ndarray, ...] | None:
    """The arrays' values (numpy), or None inside jit/grad/vmap, where they are unknown.
    (Even a constant is traced there once a jnp operation touches it, so the checks that
    use this work on numpy.)"""
    if any(isinstance(x, jax.core.Tracer) for x in xs):
        return None
    return tuple(np.asarray(x) for x in xs)


def _warn_broadcast(input: Array, target: Array) -> None:
    if jnp.shape(input) != jnp.shape(target):
        warnings.warn(
            f"Using a target size ({tuple(jnp.shape(target))}) that is different to the input size "
            f"({tuple(jnp.shape(input))}). This will likely lead to incorrect results due to "
            f"broadcasting. Please ensure they have the same size.",
            stacklevel=4,
        )


def _check_same_shape(fn: str, what: str, a: Array, other: str, b: Array, fix: str = "") -> None:
    if jnp.shape(a) != jnp.shape(b):
        raise ShapeError(
            f"{fn}: {what} must have the shape of {other} {tuple(jnp.shape(b))}, got {tuple(jnp.shape(a))}"
            + (f"; {fix}" if fix else ".")
        )


def _broadcast_shape(fn: str, *named: tuple[str, Array]) -> tuple[int, ...]:
    """The broadcast shape of the named arrays, or a ShapeError naming them (not XLA's)."""
    try:
        return jnp.broadcast_shapes(*(jnp.shape(a) for _, a in named))
    except ValueError:
        given = ", ".join(f"{n} {tuple(jnp.shape(a))}" for n, a in named)
        raise ShapeError(
            f"{fn}: the shapes of {given} do not broadcast together; give them the same shape "
            f"(or size-1 dimensions where one should be repeated)."
        ) from None


def _pointwise(
    input: Array,
    target: Array,
    reduction: str,
    fn: Callable[[Array], Array],
    weight: Array | None = None,
    *,
    mean_over_weights: bool = True,
    fn_name: str = "loss",
) -> Array:
    """``reduce(fn(input - target) · weight)``, torch's contract for the regression losses:
    a warning when the shapes differ (they broadcast), ``weight`` of ``input``'s shape, and
    with ``weight`` a ``mean`` that divides by ``Σ weight`` (mse, l1) or by the number of
    elements (huber, ``mean_over_weights=False``)."""
    _check_reduction(reduction)
    _warn_broadcast(input, target)
    _broadcast_shape(fn_name, ("input", input), ("target", target))
    loss = fn(input - target)
    if weight is None:
        return _reduce(loss, reduction)
    if jnp.shape(weight) != jnp.shape(input):
        raise ShapeError(
            f"Weights and input must have the same size: input {tuple(jnp.shape(input))}, weight "
            f"{tuple(jnp.shape(weight))}. Give one weight per input element."
        )
    loss = loss * weight
    if reduction == "mean" and mean_over_weights:
        return jnp.sum(loss) / jnp.sum(weight)
    return _reduce(loss, reduction)


def _abs(x: Array) -> Array:
    """``|x|`` with torch's gradient ``sign(x)``: 0 at 0, where ``jnp.abs`` gives 1."""
    return x * jnp.sign(x)


def _hinge(z: Array) -> Array:
    """``max(z, 0)`` with no gradient at ``z == 0``: torch's margin losses (ranking,
    hinge, cosine, triplet, multi-margin) all pass none at an exact tie, whereas
    ``jnp.maximum`` would pass half."""
    return jnp.where(z > 0, z, jnp.zeros((), jnp.result_type(z)))  # z may be NumPy float64


def _check_class_indices(fn: str, target: Array, n_classes: int, extra: tuple[int, ...] = (), note: str = "") -> None:
    """Integer class indices in ``[0, n_classes)`` (or one of ``extra``, e.g. ignore_index).
    torch raises on out-of-range indices; we can only look when not tracing."""
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: class-index targets must be integers, got dtype {target.dtype}. Convert them "
            f"with target.astype(int)."
        )
    vals = _values(target)
    if vals is None:
        return
    (t,) = vals
    valid = (t >= 0) & (t < n_classes)
    for e in extra:
        valid = valid | (t == e)
    if not valid.all():
        bad = int(t[~valid][0])
        raise ValueError(
            f"Target {bad} is out of bounds: class indices must be in [0, {n_classes}){note}. "
            f"Check the labels against the number of classes in the input."
        )

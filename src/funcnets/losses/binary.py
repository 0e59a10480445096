"""Binary and multi-label losses: ``binary_cross_entropy``,
``binary_cross_entropy_with_logits``, ``soft_margin_loss``, ``multilabel_soft_margin_loss``,
with ``torch.nn.functional``'s formulas, options and gradients.

``input`` and ``target`` have the same shape (any); ``reduction`` is
``"none" | "mean" | "sum"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.errors import ShapeError
from funcnets.losses._base import _broadcast_shape, _check_reduction, _check_same_shape, _reduce, _values

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
]

_BCE_EPS = 9.999999960041972e-13  # torch's floor on x(1-x) in the BCE gradient: 1e-12 as a float32


@jax.custom_jvp
def _bce(x: Array, t: Array) -> Array:
    # torch clamps each log at -100 so that probabilities of exactly 0 and 1 give a finite loss
    return (t - 1) * jnp.maximum(jnp.log1p(-x), -100.0) - t * jnp.maximum(jnp.log(x), -100.0)


def _bce_jvp(primals, tangents):
    # torch's own derivatives (derivatives.yaml), not those of the clamped formula: the
    # input's ``(x - t) / max(x(1-x), 1e-12)`` stays finite at 0 and 1 (autodiff of the
    # clamp gives NaN there), the target's ``-logit(x)`` is unclamped.
    x, t = primals
    dx, dt = tangents
    out = _bce(x, t)
    tangent = jnp.zeros_like(out)
    # symbolic zeros keep the target's infinite -logit(0) from turning a 0 tangent into NaN
    if not isinstance(dx, SymbolicZero):
        tangent = tangent + (x - t) / jnp.maximum((1 - x) * x, _BCE_EPS) * dx
    if not isinstance(dt, SymbolicZero):
        tangent = tangent + (jnp.log1p(-x) - jnp.log(x)) * dt
    return out, tangent


_bce.defjvp(_bce_jvp, symbolic_zeros=True)


def binary_cross_entropy(input: Array, target: Array, weight: Array | None = None, reduction: str = "mean") -> Array:
    """Binary cross-entropy of probabilities, ``torch.nn.functional.binary_cross_entropy``.

    ``loss = -w·(t·max(log x, -100) + (1-t)·max(log(1-x), -100))``: the clamp keeps
    ``x = 0`` or ``1`` finite (100 where the target disagrees). The gradient is torch's,
    ``w·(x - t) / max(x(1-x), 1e-12)`` (finite at 0 and 1), and ``-w·logit(x)`` for
    the target.

    Args:
      input: probabilities in ``[0, 1]``, any shape.
      target: probabilities in ``[0, 1]``, ``input``'s shape.
      weight: rescales each element; broadcasts to ``input``'s shape.

    Raises:
      ValueError: when the shapes differ, or (outside ``jit``, where values can be seen)
        an input or target is outside ``[0, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> p, t = jnp.array([0.8, 0.2]), jnp.array([1.0, 0.0])
        >>> round(float(losses.binary_cross_entropy(p, t)), 4)  # -log 0.8
        0.2231
        >>> float(losses.binary_cross_entropy(jnp.array([0.0]), jnp.array([1.0])))  # log 0 clamped at -100
        100.0
    """
    warn_if_downcast(input, target, weight, where="binary_cross_entropy")
    _check_reduction(reduction)
    _check_same_shape(
        "binary_cross_entropy", "target", target, "input", input,
        "one probability per input element (for class indices use cross_entropy).",
    )
    if weight is not None and _broadcast_shape("binary_cross_entropy", ("input", input), ("weight", weight)) != jnp.shape(input):
        raise ShapeError(
            f"binary_cross_entropy: weight {tuple(jnp.shape(weight))} must broadcast to the input's "
            f"shape {tuple(jnp.shape(input))}."
        )
    for name, x in (("input", input), ("target", target)):
        v = _values(x)  # a target is often known where the input is traced (under grad)
        if v is not None and not np.all((v[0] >= 0) & (v[0] <= 1)):
            v = v[0]
            finite = v[~np.isnan(v)]
            raise ValueError(
                f"binary_cross_entropy: all elements of {name} should be between 0 and 1, got values "
                f"{f'in [{finite.min()}, {finite.max()}]' if finite.size else ''}"
                f"{' and NaN' if np.isnan(v).any() else ''}. For logits use "
                f"binary_cross_entropy_with_logits (or apply jax.nn.sigmoid first)."
            )
    loss = _bce(input, jnp.asarray(target, jnp.result_type(input)))  # input's dtype as JAX computes it
    if weight is not None:  # torch's kernel returns the input's dtype whatever the weight's
        loss = loss * jnp.asarray(weight, loss.dtype)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    weight: Array | None = None,
    reduction: str = "mean",
    pos_weight: Array | None = None,
) -> Array:
    """Sigmoid + binary cross-entropy in one stable formula,
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    ``loss = w·((1-t)·x - (1 + (p-1)·t)·log σ(x))`` (``p`` = ``pos_weight``), which is
    ``-w·(p·t·log σ(x) + (1-t)·log(1-σ(x)))`` without overflow for large ``|x|``.

    Args:
      input: logits, any shape.
      target: probabilities, ``input``'s shape.
      weight: rescales each element; broadcasts to ``input``'s shape.
      pos_weight: weight of the positive term, broadcast along the last dimension
        (``(C,)`` for ``(N, C)`` multi-label logits).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, t = jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0])
        >>> round(float(losses.binary_cross_entropy_with_logits(x, t)), 4)  # = BCE of sigmoid(x)
        0.2201
        >>> pw = jnp.array([3.0, 3.0])  # positives weigh 3x: only the first term grows
        >>> round(float(losses.binary_cross_entropy_with_logits(x, t, pos_weight=pw)), 4)
        0.347
    """
    warn_if_downcast(input, target, weight, pos_weight, where="binary_cross_entropy_with_logits")
    _check_reduction(reduction)
    fn = "binary_cross_entropy_with_logits"
    _check_same_shape(fn, "target", target, "input", input, "one probability per logit.")
    named = [("input", input)]
    named += [] if weight is None else [("weight", weight)]
    named += [] if pos_weight is None else [("pos_weight", pos_weight)]
    if _broadcast_shape(fn, *named) != jnp.shape(input):  # torch computes in place, in the input's shape
        raise ShapeError(
            f"{fn}: weight and pos_weight must broadcast to the input's shape {tuple(jnp.shape(input))}, got "
            + ", ".join(f"{n} {tuple(jnp.shape(a))}" for n, a in named[1:])
            + "."
        )
    log_sig = jax.nn.log_sigmoid(input)
    if pos_weight is not None:
        log_sig = log_sig * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input - log_sig
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def soft_margin_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """Two-class logistic loss, ``torch.nn.functional.soft_margin_loss``:
    ``log(1 + exp(-y·x))`` with ``y`` (usually ±1) = ``target``.

    Computed as ``softplus(-y·x)``: where torch's ``log1p(exp(·))`` overflows
    (``-y·x`` above ~88 in float32, ~709 in float64) torch gives ``inf`` and a NaN
    gradient, funcnets the finite value and gradient; elsewhere they agree to rounding.

    Args:
      input: scores, any shape.
      target: labels, ``input``'s shape (broadcasts with a ShapeError if it cannot).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> round(float(losses.soft_margin_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, -1.0]))), 4)
        0.2201
    """
    warn_if_downcast(input, target, where="soft_margin_loss")
    _check_reduction(reduction)
    if _broadcast_shape("soft_margin_loss", ("input", input), ("target", target)) != jnp.shape(input):
        raise ShapeError(  # torch writes the loss into the input's shape
            f"soft_margin_loss: target {tuple(jnp.shape(target))} must broadcast to the input's shape "
            f"{tuple(jnp.shape(input))}; give the input the full shape."
        )
    return _reduce(jax.nn.softplus(-target * input), reduction)


def multilabel_soft_margin_loss(
    input: Array, target: Array, weight: Array | None = None, reduction: str = "mean"
) -> Array:
    """One-vs-all logistic loss over classes,
    ``torch.nn.functional.multilabel_soft_margin_loss``.

    ``loss_n = -Σ_c w_c·(t_c·log σ(x_c) + (1-t_c)·log σ(-x_c)) / C`` over the last
    dimension (the classes).

    Args:
      input: logits ``(N, C)`` (or ``(C,)``, or ``(..., C)``).
      target: 0/1 labels (or probabilities), ``input``'s shape.
      weight: per-class weights ``(C,)`` (broadcasts to ``input``).

    Returns:
      ``input.shape[:-1]`` for ``reduction="none"``, else a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, t = jnp.array([[2.0, -1.0, 0.5]]), jnp.array([[1.0, 0.0, 1.0]])
        >>> round(float(losses.multilabel_soft_margin_loss(x, t)), 4)
        0.3048
    """
    warn_if_downcast(input, target, weight, where="multilabel_soft_margin_loss")
    _check_reduction(reduction)
    fn = "multilabel_soft_margin_loss"
    named = [("input", input), ("target", target)] + ([] if weight is None else [("weight", weight)])
    _broadcast_shape(fn, *named)
    loss = -(target * jax.nn.log_sigmoid(input) + (1 - target) * jax.nn.log_sigmoid(-input))
    if weight is not None:
        loss = loss * weight
    # torch's class dimension counts from the front: input.ndim - 1 even when a weight or
    # target of more dimensions broadcasts the loss to more
    return _reduce(jnp.sum(loss, axis=jnp.ndim(input) - 1) / input.shape[-1], reduction)

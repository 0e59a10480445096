"""Loss functions with ``torch.nn.functional``'s exact formulas and options.

Shapes follow torch: ``input: (N, C)`` or ``(N, C, d1, ...)`` (or unbatched ``(C,)``);
class-index ``target: (N,)`` / ``(N, d1, ...)`` of ints; probability ``target`` with
``input``'s shape. ``reduction`` is ``"none" | "mean" | "sum"``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from funcnets._typing import Array

__all__ = ["mse_loss", "l1_loss", "cross_entropy", "nll_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(x: Array, reduction: str) -> Array:
    if reduction == "mean":
        return jnp.mean(x)
    if reduction == "sum":
        return jnp.sum(x)
    return x


def _pointwise(input: Array, target: Array, reduction: str, fn) -> Array:
    _check_reduction(reduction)
    if jnp.shape(input) != jnp.shape(target):
        warnings.warn(
            f"Using a target size ({tuple(jnp.shape(target))}) that is different to the input size "
            f"({tuple(jnp.shape(input))}). This will likely lead to incorrect results due to "
            f"broadcasting. Please ensure they have the same size.",
            stacklevel=3,
        )
    return _reduce(fn(input - target), reduction)


def mse_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """``mean((input - target)**2)`` over all elements (no ½, unlike ``optax.l2_loss``)."""
    return _pointwise(input, target, reduction, jnp.square)


def l1_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """``mean(|input - target|)`` over all elements; gradient 0 where they are equal."""
    # d·sign(d) is |d| with gradient sign(d), 0 at d = 0 as in torch (jnp.abs gives 1 there)
    return _pointwise(input, target, reduction, lambda d: d * jnp.sign(d))


def _class_dim(input: Array) -> int:
    if input.ndim == 0:
        raise ValueError("input must have a class dimension: (C,), (N, C) or (N, C, d1, ...), got a scalar")
    return 0 if input.ndim == 1 else 1


def _check_targets(target: Array, n_classes: int, ignore_index: int) -> None:
    """torch raises on out-of-range class indices; we can only look when not tracing."""
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(
            f"class-index targets must be integers, got dtype {target.dtype}. For class "
            f"probabilities pass a float target with the input's shape."
        )
    if isinstance(target, jax.core.Tracer):
        return
    valid = (target == ignore_index) | ((target >= 0) & (target < n_classes))
    if not bool(jnp.all(valid)):
        bad = target[~valid][0]
        raise ValueError(
            f"Target {int(bad)} is out of bounds: class indices must be in [0, {n_classes}) "
            f"(or equal ignore_index={ignore_index})."
        )


def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of log-probabilities ``input`` at class indices ``target``.

    ``loss_i = -weight[t_i] · input[i, t_i]`` (0 where ``t_i == ignore_index``); ``mean``
    divides by the sum of ``weight[t_i]`` over the non-ignored targets.
    """
    loss, w = _nll(input, target, weight, ignore_index, reduction)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(w)
    return _reduce(loss, reduction)


def _nll(input, target, weight, ignore_index, reduction):
    _check_reduction(reduction)
    cdim = _class_dim(input)
    n_classes = input.shape[cdim]
    expected = input.shape[:cdim] + input.shape[cdim + 1 :]
    if tuple(target.shape) != tuple(expected):
        raise ValueError(
            f"class-index target must have shape {tuple(expected)} for input {tuple(input.shape)}, "
            f"got {tuple(target.shape)}"
        )
    _check_targets(target, n_classes, ignore_index)
    keep = target != ignore_index
    safe = jnp.where(keep, target, 0)
    picked = jnp.take_along_axis(input, jnp.expand_dims(safe, cdim), axis=cdim).squeeze(cdim)
    w = jnp.ones((), input.dtype) if weight is None else weight[safe]
    w = jnp.where(keep, w, jnp.zeros((), input.dtype))
    return -w * picked, w


def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """``torch.nn.functional.cross_entropy`` from unnormalised logits.

    Class-index targets: ``(1-ε)·nll + ε/C · Σ_c(-w_c log p_c)``, with ``mean`` dividing
    both terms by the sum of the target weights (ignored targets excluded).
    Probability targets (float, same shape as ``input``): ``-Σ_c w_c t_c log p_c`` with
    ``t`` smoothed to ``(1-ε)·t + ε/C``; ``mean`` divides by the number of samples.

    Args:
      input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
      target: ``(N,)``/``(N, d1, ...)`` ints, or probabilities shaped like ``input``.
      weight: per-class weights ``(C,)``.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    cdim = _class_dim(input)
    n_classes = input.shape[cdim]
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},), got {tuple(weight.shape)}")
    logp = jax.nn.log_softmax(input, axis=cdim)
    wshape = [1] * input.ndim
    wshape[cdim] = n_classes
    w_b = None if weight is None else weight.reshape(wshape)

    if tuple(target.shape) == tuple(input.shape):  # class probabilities
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(f"Expected floating point type for target with class probabilities, got {target.dtype}")
        if ignore_index >= 0:
            raise ValueError(
                f"ignore_index is not supported for floating point target (got ignore_index={ignore_index}); "
                f"give ignored samples zero probability mass instead."
            )
        t = target if label_smoothing == 0 else target * (1 - label_smoothing) + label_smoothing / n_classes
        prod = logp * t if w_b is None else logp * t * w_b
        loss = -jnp.sum(prod, axis=cdim)
        if reduction == "mean":
            return jnp.sum(loss) / (input.size // n_classes)
        return _reduce(loss, reduction)

    nll, w = _nll(logp, target, weight, ignore_index, reduction)
    if label_smoothing > 0:
        smooth = -jnp.sum(logp if w_b is None else logp * w_b, axis=cdim)
        smooth = jnp.where(target != ignore_index, smooth, jnp.zeros((), smooth.dtype))
        nll = (1 - label_smoothing) * nll + (label_smoothing / n_classes) * smooth
    if reduction == "mean":
        return jnp.sum(nll) / jnp.sum(w)
    return _reduce(nll, reduction)

"""Likelihood and divergence losses: ``kl_div``, ``poisson_nll_loss``,
``gaussian_nll_loss``, with ``torch.nn.functional``'s formulas, options and gradients.

``input`` and ``target`` broadcast together as in torch (usually the same shape);
``reduction`` is ``"none" | "mean" | "sum"`` (and ``"batchmean"`` for ``kl_div``).
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.errors import ShapeError
from funcnets.losses._base import _broadcast_shape, _check_reduction, _reduce, _values

__all__ = ["kl_div", "poisson_nll_loss", "gaussian_nll_loss"]


def kl_div(input: Array, target: Array, reduction: str = "mean", log_target: bool = False) -> Array:
    """Kullback-Leibler divergence ``KL(target ‖ input)``, ``torch.nn.functional.kl_div``.

    ``input`` holds log-probabilities; pointwise ``t·(log t - x)`` (``0`` where ``t = 0``),
    or ``exp(t)·(t - x)`` with ``log_target=True``. ``"batchmean"`` divides the sum by
    ``input.shape[0]`` (the true KL per sample); ``"mean"`` divides by the number of
    elements and warns, as torch does.

    Args:
      input: log-probabilities, e.g. ``(N, C)``.
      target: probabilities (log-probabilities if ``log_target``), broadcasting with ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> logq, p = jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([[0.9, 0.1]])
        >>> round(float(losses.kl_div(logq, p, reduction="batchmean")), 4)  # 0.9 log 1.8 + 0.1 log 0.2
        0.3681
    """
    warn_if_downcast(input, target, where="kl_div")
    _check_reduction(reduction, ("none", "batchmean", "sum", "mean"))
    _broadcast_shape("kl_div", ("input", input), ("target", target))
    if reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support size."
            "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
            "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
            stacklevel=2,
        )
    if log_target:
        loss = jnp.exp(target) * (target - input)
    else:
        loss = xlogy(target, target) - target * input
    if reduction == "batchmean":
        total = jnp.sum(loss)
        return total / input.shape[0] if jnp.ndim(input) else total
    return _reduce(loss, reduction)


def poisson_nll_loss(
    input: Array,
    target: Array,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of a Poisson ``target`` with rate ``input``,
    ``torch.nn.functional.poisson_nll_loss``.

    ``exp(x) - t·x`` for a log-rate (``log_input=True``), else ``x - t·log(x + eps)``.
    ``full`` adds Stirling's approximation of ``log(t!)``,
    ``t·log t - t + ½·log(2πt)``, where ``t > 1`` (0 elsewhere, as torch).

    Args:
      input: (log-)rates, any shape.
      target: counts, broadcasting with ``input``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> log_rate, counts = jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0])
        >>> round(float(losses.poisson_nll_loss(log_rate, counts)), 4)  # mean(exp(x) - t·x)
        0.8591
    """
    warn_if_downcast(input, target, where="poisson_nll_loss")
    _check_reduction(reduction)
    _broadcast_shape("poisson_nll_loss", ("input", input), ("target", target))
    if log_input:
        loss = jnp.exp(input) - target * input
    else:
        loss = input - target * jnp.log(input + eps)
    if full:
        big = target > 1
        t = jnp.where(big, target, 2)  # the masked term must stay finite for the target's gradient
        stirling = t * jnp.log(t) - t + 0.5 * jnp.log(2 * math.pi * t)
        loss = loss + jnp.where(big, stirling, jnp.zeros((), stirling.dtype))
    return _reduce(loss, reduction)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _clamp_min_straight_through(var: Array, eps: float) -> Array:
    return jnp.maximum(var, eps)


@_clamp_min_straight_through.defjvp
def _clamp_jvp(eps, primals, tangents):
    # torch clamps a clone of var under no_grad, so the gradient passes as if unclamped
    return jnp.maximum(primals[0], eps), tangents[0]


def gaussian_nll_loss(
    input: Array,
    target: Array,
    var: Array | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of ``target`` under ``N(input, var)``,
    ``torch.nn.functional.gaussian_nll_loss``.

    ``½·(log max(var, eps) + (input - target)² / max(var, eps))`` (+ ``½·log 2π`` if
    ``full``). The clamp is invisible to the gradient (torch clamps under ``no_grad``).

    Args:
      input: means ``(N, *)``.
      target: samples, broadcasting with ``input``.
      var: variances: ``input``'s shape (heteroscedastic), ``input``'s shape without the
        last dimension or with one dimension of size 1 (shared along it), or a float.

    Raises:
      ValueError: ``var`` of another shape, or (outside ``jit``) a negative ``var``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> mean, target, var = jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), jnp.array([1.0, 0.5])
        >>> round(float(losses.gaussian_nll_loss(mean, target, var)), 4)
        0.0767
    """
    warn_if_downcast(input, target, var, where="gaussian_nll_loss")
    _check_reduction(reduction)
    if isinstance(var, (int, float)):
        if var < 0:
            raise ValueError(f"gaussian_nll_loss: var has negative entry/entries (var={var}); variances must be >= 0.")
        var = jnp.full(jnp.shape(input), var, jnp.result_type(input))
    else:
        v = _values(var)
        if v is not None and np.any(v[0] < 0):
            raise ValueError(
                f"gaussian_nll_loss: var has negative entry/entries (min {v[0].min()}); variances "
                f"must be >= 0: predict e.g. softplus(raw) or exp(log_var)."
            )
        ishape, vshape = jnp.shape(input), jnp.shape(var)
        if vshape != ishape:
            if ishape[:-1] == vshape:  # one variance per sample, shared along the last dimension
                var = var[..., None]
            elif not (len(ishape) == len(vshape) and sum(v for i, v in zip(ishape, vshape) if i != v) == 1):
                raise ShapeError(
                    f"gaussian_nll_loss: var is of incorrect size: input {ishape}, var {vshape}. Give var the "
                    f"input's shape, the input's shape without its last dimension, or size 1 in the one "
                    f"dimension it is shared along."
                )
    _broadcast_shape("gaussian_nll_loss", ("input", input), ("target", target), ("var", var))
    var = _clamp_min_straight_through(var, eps)
    loss = 0.5 * (jnp.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)

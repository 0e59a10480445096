"""Regression losses of ``input - target``: ``mse_loss``, ``l1_loss``, ``smooth_l1_loss``,
``huber_loss``, with ``torch.nn.functional``'s formulas, options and gradients.

``input`` and ``target`` have the same shape (any); a different one broadcasts with
torch's warning. ``reduction`` is ``"none" | "mean" | "sum"``.
"""

from __future__ import annotations

import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.losses._base import _abs, _pointwise

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"]


def mse_loss(input: Array, target: Array, reduction: str = "mean", weight: Array | None = None) -> Array:
    """``mean((input - target)**2)`` over all elements (no ½, unlike ``optax.l2_loss``).

    With ``weight`` (``input``'s shape) each squared error is weighted and ``mean``
    divides by ``Σ weight``, as torch does.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 0.0])
        >>> round(float(losses.mse_loss(x, y)), 4)  # (0 + 4 + 9) / 3, as F.mse_loss gives
        4.3333
        >>> losses.mse_loss(x, y, reduction="none").tolist()
        [0.0, 4.0, 9.0]
    """
    warn_if_downcast(input, target, weight, where="mse_loss")
    return _pointwise(input, target, reduction, jnp.square, weight, fn_name="mse_loss")


def l1_loss(input: Array, target: Array, reduction: str = "mean", weight: Array | None = None) -> Array:
    """``mean(|input - target|)`` over all elements; gradient 0 where they are equal.

    With ``weight`` (``input``'s shape) ``mean`` divides by ``Σ weight``, as torch does.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 0.0])
        >>> round(float(losses.l1_loss(x, y)), 4)  # (0 + 2 + 3) / 3
        1.6667
        >>> float(losses.l1_loss(x, y, reduction="sum"))
        5.0
    """
    warn_if_downcast(input, target, weight, where="l1_loss")
    return _pointwise(input, target, reduction, _abs, weight, fn_name="l1_loss")


def smooth_l1_loss(input: Array, target: Array, reduction: str = "mean", beta: float = 1.0) -> Array:
    """``torch.nn.functional.smooth_l1_loss``: with ``z = |input - target|``,
    ``0.5·z²/β`` where ``z < β``, else ``z - 0.5·β``; ``β = 0`` is ``l1_loss``.

    The gradient is ``clamp(d/β, -1, 1)`` (0 at ``d = 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, y = jnp.array([0.5, 3.0]), jnp.zeros(2)
        >>> losses.smooth_l1_loss(x, y, reduction="none").tolist()  # 0.5·0.5², then 3 - 0.5
        [0.125, 2.5]
        >>> round(float(losses.smooth_l1_loss(x, y)), 4)
        1.3125
    """
    warn_if_downcast(input, target, where="smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got beta={beta}.")
    if beta == 0.0:
        return _pointwise(input, target, reduction, _abs, fn_name="smooth_l1_loss")

    def fn(d):
        z = _abs(d)
        return jnp.where(z < beta, 0.5 * d * d / beta, z - 0.5 * beta)

    return _pointwise(input, target, reduction, fn, fn_name="smooth_l1_loss")


def huber_loss(input: Array, target: Array, reduction: str = "mean", delta: float = 1.0, weight: Array | None = None) -> Array:
    """``torch.nn.functional.huber_loss``: with ``z = |input - target|``, ``0.5·z²`` where
    ``z < δ``, else ``δ·(z - 0.5·δ)`` (``smooth_l1_loss`` times δ, with β = δ).

    With ``weight`` (``input``'s shape) ``mean`` divides by the number of elements (not
    by ``Σ weight`` as mse/l1 do): torch's rule.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, y = jnp.array([0.5, 3.0]), jnp.zeros(2)
        >>> losses.huber_loss(x, y, delta=2.0, reduction="none").tolist()  # 0.5·0.5², then 2·(3 - 1)
        [0.125, 4.0]
        >>> round(float(losses.huber_loss(x, y, delta=2.0)), 4)  # torch: F.huber_loss(x, y, delta=2.0)
        2.0625
    """
    warn_if_downcast(input, target, weight, where="huber_loss")
    if not delta > 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta, got delta={delta}.")

    def fn(d):
        z = _abs(d)
        return jnp.where(z < delta, 0.5 * d * d, delta * (z - 0.5 * delta))

    return _pointwise(input, target, reduction, fn, weight, mean_over_weights=False, fn_name="huber_loss")

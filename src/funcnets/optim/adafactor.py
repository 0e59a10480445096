"""``torch.optim.Adafactor``: second moments factored into row and column means for
parameters with two or more dimensions (over the last two), a step size relative to the
parameter's RMS, and update clipping, with torch's exact arithmetic (``torch/optim/_adafactor.py``).

torch's Adafactor is not ``optax.adafactor``: torch adds ``eps₁`` after the factoring
(``max(mean(R), eps₁)`` and ``max(V̂, eps₁²)``), where the paper and optax add it to ``g²``;
``lr`` caps the relative step (``ρₜ = min(lr, 1/√t)``, the paper's 0.01) and scales the
decoupled weight decay; it has no first moment.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _float_count, _is_dynamic, _static_value

__all__ = ["adafactor", "AdafactorState"]


class AdafactorState(NamedTuple):
    """Adafactor's state. Each tree has the parameters' structure; a parameter keeps either
    its factors (ndim >= 2) or its full second moment (ndim <= 1), and an empty ``(0,)``
    array in the places it does not use, as torch keeps either ``row_var``/``col_var`` or
    ``variance``."""

    count: jax.Array  # () int32, the number of steps taken
    row_var: optax.Updates  # (..., n, 1): EMA of the mean of g² over the last dim
    col_var: optax.Updates  # (..., 1, m): EMA of the mean of g² over the second-to-last dim
    variance: optax.Updates  # like the parameter (ndim <= 1): EMA of g²


def adafactor(
    lr: ScalarOrSchedule = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adafactor``.

    Each step t = 1, 2, ..., per parameter θ with gradient g (``R₀ = C₀ = V₀ = 0``)::

        g ← -g                                  if maximize
        β̂ ← 1 - t^beta2_decay
        ρ ← min(lr, 1/√t)
        α ← max(eps₂, RMS(θ))·ρ                 RMS of θ before this step's decay
        θ ← θ·(1 - lr·wd)
        if θ.ndim >= 2:                         factored over the last two dims (n, m)
            R ← β̂·R + (1-β̂)·mean(g², dim=-1)    (..., n, 1)
            C ← β̂·C + (1-β̂)·mean(g², dim=-2)    (..., 1, m)
            V̂ ← R·C / max(mean(R, dim=-2), eps₁)
        else:                                   0-D and 1-D parameters
            V̂ ← β̂·V̂ + (1-β̂)·g²
        U ← g / √max(V̂, eps₁²)
        θ ← θ - α / max(1, RMS(U)/d) · U

    The EMAs are torch's ``lerp`` with weight ``t^beta2_decay`` (1 at the first step).

    State: :class:`AdafactorState`. ``update`` needs ``params`` (the step is relative to
    RMS(θ)).

    Args:
      lr: the cap on the relative step size ρ and the weight decay's scale, a float or an
        optax schedule of the step count (0 for the first step); not the step size itself.
      beta2_decay: ``τ <= 0``, with ``β̂ₜ = 1 - t^τ``.
      eps: ``(eps₁, eps₂)``: eps₁ bounds the variance estimate from below (``None``: the
        parameter dtype's machine epsilon, ``jnp.finfo(dtype).eps``); eps₂ is the smallest
        RMS(θ) the step is relative to, so that parameters at 0 move.
      d: the clipping threshold on RMS(U), >= 1.
      weight_decay: decoupled, ``θ ← θ·(1 - lr·wd)``.
      maximize: ascend the objective.
      foreach: accepted for torch's signature and ignored; it chooses torch's kernel, not
        the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.5, -0.5])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)
        >>> opt = optim.adafactor(lr=0.1)  # torch.optim.Adafactor([w, b], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].ravel().tolist()]  # torch's w after the same steps
        [0.336, -1.5355, 0.2402, 2.4902]
    """
    del foreach
    _check_adafactor_args(lr, beta2_decay, eps, d, weight_decay)
    eps1, eps2 = eps

    def init_fn(params):
        def factors(p, keep):
            return jnp.zeros(keep(p.shape), p.dtype) if p.ndim >= 2 else jnp.zeros((0,), p.dtype)

        return AdafactorState(
            count=jnp.zeros([], jnp.int32),
            row_var=jax.tree_util.tree_map(lambda p: factors(p, lambda s: (*s[:-1], 1)), params),
            col_var=jax.tree_util.tree_map(lambda p: factors(p, lambda s: (*s[:-2], 1, s[-1])), params),
            variance=jax.tree_util.tree_map(lambda p: jnp.zeros_like(p) if p.ndim < 2 else jnp.zeros((0,), p.dtype), params),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "adafactor's update needs the parameters: its step is relative to RMS(θ); "
                "call opt.update(grads, opt_state, params)"
            )
        count = optax.safe_int32_increment(state.count)
        t = _float_count(count)
        lr_t = _at(lr, state.count)
        # torch computes these step scalars in Python floats: here in the default float
        # dtype, cast to the parameter's dtype where torch passes them to a tensor op
        one_minus_beta2 = t**beta2_decay
        rho = jnp.minimum(lr_t, 1 / t**0.5)
        decay = _is_dynamic(weight_decay) or _is_dynamic(lr) or weight_decay != 0

        def one(g, p, row, col, var):
            g = -g if maximize else g
            e1 = float(jnp.finfo(p.dtype).eps) if eps1 is None else eps1
            alpha = jnp.maximum(eps2, _norm(p).astype(t.dtype) / math.sqrt(p.size)) * rho
            w = jnp.asarray(one_minus_beta2, p.dtype)
            if p.ndim >= 2:
                row = _torch_lerp(row, jnp.mean(g * g, axis=-1, keepdims=True), w)
                col = _torch_lerp(col, jnp.mean(g * g, axis=-2, keepdims=True), w)
                v = row * col / jnp.maximum(jnp.mean(row, axis=-2, keepdims=True), e1)
            else:
                var = _torch_lerp(var, g * g, w)
                v = var
            u = jax.lax.rsqrt(jnp.maximum(v, e1 * e1)) * g
            denom = jnp.maximum(1.0, _norm(u).astype(t.dtype) / (math.sqrt(u.size) * d))
            step = jnp.asarray(-alpha / denom, p.dtype) * u
            if decay:
                step = step - jnp.asarray(lr_t * weight_decay, p.dtype) * p
            return step, row, col, var

        out = jax.tree_util.tree_map(one, updates, params, state.row_var, state.col_var, state.variance)
        treedef = jax.tree_util.tree_structure(updates)
        steps, rows, cols, variances = (jax.tree_util.tree_unflatten(treedef, list(x)) for x in zip(*treedef.flatten_up_to(out)))
        return steps, AdafactorState(count=count, row_var=rows, col_var=cols, variance=variances)

    return optax.GradientTransformation(init_fn, update_fn)


def _norm(x: jax.Array) -> jax.Array:
    """The 2-norm of all of ``x``, in its dtype (torch's ``x.norm(2)``)."""
    return jnp.sqrt(jnp.sum(x * x))


def _torch_lerp(start: jax.Array, end: jax.Array, weight: jax.Array | float) -> jax.Array:
    """torch's ``start.lerp(end, weight)``: ``start + w·(end - start)`` for ``|w| < 0.5``,
    else ``end - (end - start)·(1 - w)``, which is exact at ``w = 1`` (Adafactor's first
    step, Muon's Nesterov blend with momentum near 1 lands next to the buffer)."""
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def _check_adafactor_args(lr, beta2_decay, eps, d, weight_decay) -> None:
    """torch's constructor checks and messages; NaN fails each, as torch's ``not 0 <= x``.
    Schedules and traced values (``optax.inject_hyperparams`` under ``jit``) are not checked."""

    def bad(value, ok) -> bool:
        known = _static_value(value) if not isinstance(value, (int, float)) else value
        return known is not None and not ok(known)

    if bad(lr, lambda v: 0.0 <= v):
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if bad(beta2_decay, lambda v: 0.0 >= v):
        raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise ValueError(f"eps should be a pair (eps1, eps2), eps1 a float or None, but is: {eps!r}")
    if eps[0] is not None and bad(eps[0], lambda v: 0.0 <= v):
        raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
    if bad(eps[1], lambda v: 0.0 <= v):
        raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
    if bad(d, lambda v: 1.0 <= v):
        raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
    if bad(weight_decay, lambda v: 0.0 <= v):
        raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")

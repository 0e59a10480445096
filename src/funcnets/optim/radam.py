"""``torch.optim.RAdam`` (rectified Adam), written out: ``optax.scale_by_radam`` differs
from torch in two places. It rectifies when ``ρₜ >= 5`` (torch: ``ρₜ > 5``), and its
eps is added to the bias-corrected root, ``m̂ / (sqrt(v̂) + eps)``, where torch adds it to
the raw one, ``m̂·sqrt(1-β₂ᵗ) / (sqrt(v) + eps)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _bias_correction, _float_count, _is_dynamic, _torch_chain
from funcnets.optim.adam import _adam_moments, _check_adam_args, _next_step, _pow_complement, _zero_moments

__all__ = ["radam", "scale_by_torch_radam", "TorchRAdamState"]


class TorchRAdamState(NamedTuple):
    exp_avg: Any  # m: pytree like params
    exp_avg_sq: Any  # v: pytree like params
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_radam(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch's RAdam direction (the learning rate is applied after it); ``b1``/``b2`` may
    be schedules of the step count, as in :func:`funcnets.optim.scale_by_torch_adam`::

        m ← β₁m + (1-β₁)g,  v ← β₂v + (1-β₂)g²,  m̂ = m/(1-β₁ᵗ)
        ρ∞ = 2/(1-β₂) - 1,  ρₜ = ρ∞ - 2tβ₂ᵗ/(1-β₂ᵗ)
        u = m̂·rₜ·sqrt(1-β₂ᵗ)/(sqrt(v) + eps)   if ρₜ > 5
        u = m̂                                  otherwise
        rₜ = sqrt((ρₜ-4)(ρₜ-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρₜ))

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_radam()
        >>> state = tx.init(jnp.zeros(1))
        >>> for _ in range(6):
        ...     u, state = tx.update(jnp.array([2.0]), state)
        ...     print(round(float(u[0]), 4), end=" ")  # m̂ until ρₜ > 5 at step 6, then rectified (torch's too)
        2.0 2.0 2.0 2.0 2.0 0.0258
    """
    dynamic = _is_dynamic(b1) or _is_dynamic(b2)

    def init_fn(params):
        return TorchRAdamState(*_zero_moments(params), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        if dynamic:  # torch reads the betas of the group at each step
            beta1, beta2 = _at(b1, state.count), _at(b2, state.count)
            count = optax.safe_int32_increment(state.count)
            t = _float_count(count)
            m, v = _adam_moments(updates, state.exp_avg, state.exp_avg_sq, beta1, beta2)
            bc1, bc2 = _pow_complement(beta1, t), _pow_complement(beta2, t)
        else:
            beta2 = b2
            count, t, m, v = _next_step(updates, state, b1, b2)
            bc1, bc2 = _bias_correction(b1, t), _bias_correction(b2, t)
        rho_inf = 2 / (1 - beta2) - 1
        if _is_dynamic(b2) or not 0 < b2 < 1:
            rho_t = rho_inf - 2 * t * (1 - bc2) / bc2
        else:
            rho_t = _rho(b2, t)
        rectify = rho_t > 5.0
        # the ratio is only meaningful (and positive) where rectifying; elsewhere 1 keeps
        # NaN out of the unused branch, and out of gradients taken through the update
        ratio = jnp.where(rectify, (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 1.0)
        scale = jnp.sqrt(ratio) * jnp.sqrt(bc2)

        def direction(mm, vv):
            m_hat = mm / bc1.astype(mm.dtype)
            return jnp.where(rectify, m_hat * scale.astype(mm.dtype) / (jnp.sqrt(vv) + eps), m_hat)

        out = jax.tree_util.tree_map(direction, m, v)
        return out, TorchRAdamState(m, v, count)

    return optax.GradientTransformation(init_fn, update_fn)


def _rho(b2: float, t: jax.Array) -> jax.Array:
    """``ρₜ = ρ∞ - 2tβ₂ᵗ/(1-β₂ᵗ)`` for a constant ``0 < β₂ < 1``. In float32, without the
    cancellation of its two terms (each ~2/(1-β₂), ρₜ ~ t): the plain formula is ~1e-4 off
    near ρₜ = 5 for β₂ = 0.999, 1e-4 relative in the first rectified steps, where torch
    computes it in Python floats. With ``L = -log β₂``, ``x = tL``,
    ``ρₜ = (ρ∞ - 2/L) + t - (2/L)·h(x)``, ``h(x) = x/(1 - e⁻ˣ) - 1 - x/2`` (its Taylor
    series ``x²/12 - x⁴/720 + ...`` to ``x¹⁰`` for ``x <= 1/4``, within float64's rounding
    there; past it the plain formula, whose terms no longer cancel much)."""
    if jnp.result_type(float) == jnp.float64:
        # torch's own arithmetic: its Python-float ρₜ carries the cancellation too (1e-9
        # for β₂ = 0.9999, 1e-5 for 0.999999), and a float64 step must follow it
        return (2 / (1 - b2) - 1) - 2 * t * b2**t / (1 - b2**t)
    log_b = -math.log(b2)
    const = (2 / (1 - b2) - 1) - 2 / log_b  # on the host, in Python floats
    x = jnp.minimum(t * log_b, 0.25)
    x2 = x * x
    h = x2 * (1 / 12 - x2 * (1 / 720 - x2 * (1 / 30240 - x2 * (1 / 1209600 - x2 / 47900160))))
    series = const + t - (2 / log_b) * h
    bc2 = _bias_correction(b2, t)
    plain = (2 / (1 - b2) - 1) - 2 * t * (1 - bc2) / bc2
    return jnp.where(t * log_b <= 0.25, series, plain)


def radam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.RAdam``.

    Each step t = 1, 2, ..., per parameter θ with gradient g (state ``m₀ = v₀ = 0``)::

        g ← -g                              if maximize
        θ ← θ(1 - lr·wd)                    if weight_decay ≠ 0 and decoupled_weight_decay
        g ← g + wd·θ                        if weight_decay ≠ 0 otherwise
        m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²;  m̂ = m/(1-β₁ᵗ)
        ρ∞ = 2/(1-β₂) - 1;  ρₜ = ρ∞ - 2tβ₂ᵗ/(1-β₂ᵗ)
        if ρₜ > 5:  rₜ = sqrt((ρₜ-4)(ρₜ-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρₜ))
                    θ ← θ - lr·m̂·rₜ·sqrt(1-β₂ᵗ)/(sqrt(v) + eps)
        else:       θ ← θ - lr·m̂

    With the default β₂ = 0.999, ``ρₜ`` first exceeds 5 at step 6 (ρ₅ = 4.996).
    State: :class:`TorchRAdamState`.

    Args:
      lr: learning rate, a float or an optax schedule of the step count.
      betas: ``(β₁, β₂)``, each in [0, 1); either may be a schedule of the step count (0
        for the first step), as torch's ``OneCycleLR``/``CyclicLR`` cycle ``betas[0]``:
        ``radam(lr=sched, betas=(sched.momentum, 0.999))``.
      eps: added to the denominator, outside the square root.
      weight_decay: L2 penalty (coupled) or decay rate (decoupled, as AdamW).
      decoupled_weight_decay: decay the weights directly (RAdamW) instead of adding
        ``wd·θ`` to the gradient.
      maximize: ascend the objective.
      foreach, capturable, differentiable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.radam(lr=0.1)  # torch.optim.RAdam([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # un-rectified first steps: θ -= lr·m̂, SGD with momentum
        [0.4623, -0.9246]
    """
    _check_adam_args(lr, betas, eps, weight_decay)
    core = scale_by_torch_radam(betas[0], betas[1], eps)
    return _torch_chain([core], lr, weight_decay, maximize, decoupled_weight_decay)

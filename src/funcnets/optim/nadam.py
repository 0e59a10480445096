"""``torch.optim.NAdam`` (Dozat's Nesterov Adam with torch's momentum schedule), written
out: ``optax.nadam`` is Adam with a Nesterov look-ahead of constant β₁; torch's NAdam
warms the momentum up, ``μₜ = β₁·(1 - ½·0.96^(t·ψ))``, and divides by the running
product ``Π μᵢ`` (its ``mu_product`` state) instead of ``1 - β₁ᵗ``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import (
    ScalarOrSchedule,
    _at,
    _bias_correction,
    _check,
    _float_count,
    _is_dynamic,
    _torch_chain,
)
from funcnets.optim.adam import _adam_moments, _check_adam_args, _next_step, _pow_complement, _zero_moments

__all__ = ["nadam", "scale_by_torch_nadam", "TorchNAdamState"]


class TorchNAdamState(NamedTuple):
    exp_avg: Any  # m: pytree like params
    exp_avg_sq: Any  # v: pytree like params
    mu_product: jax.Array  # scalar Π_{i≤t} μᵢ, in the default float dtype
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_nadam(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3
) -> optax.GradientTransformation:
    """torch's NAdam direction (the learning rate is applied after it); ``b1``/``b2`` may
    be schedules of the step count, as in :func:`funcnets.optim.scale_by_torch_adam`::

        μₜ = β₁(1 - ½·0.96^(tψ)),  μₜ₊₁ = β₁(1 - ½·0.96^((t+1)ψ)),  Π ← Π·μₜ
        m ← β₁m + (1-β₁)g,  v ← β₂v + (1-β₂)g²,  d = sqrt(v/(1-β₂ᵗ)) + eps
        u = ((1-μₜ)/(1-Π)·g + μₜ₊₁/(1-Π·μₜ₊₁)·m) / d

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_nadam()
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([2.0]), state)
        >>> round(float(u[0]), 4), round(float(state.mu_product), 4)  # torch.optim.NAdam(lr=1)'s first step: 1.0565
        (1.0565, 0.4501)
    """

    def init_fn(params):
        return TorchNAdamState(*_zero_moments(params), jnp.ones([], jnp.result_type(float)), jnp.zeros([], jnp.int32))

    dynamic = _is_dynamic(b1) or _is_dynamic(b2)

    def update_fn(updates, state, params=None):
        if dynamic:  # torch reads the betas of the group at each step: μₜ, μₜ₊₁ from the current β₁
            beta1, beta2 = _at(b1, state.count), _at(b2, state.count)
            count = optax.safe_int32_increment(state.count)
            t = _float_count(count)
            m, v = _adam_moments(updates, state.exp_avg, state.exp_avg_sq, beta1, beta2)
            bc2 = _pow_complement(beta2, t)
        else:
            beta1 = b1
            count, t, m, v = _next_step(updates, state, b1, b2)
            bc2 = _bias_correction(b2, t)
        mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product = state.mu_product * mu
        c_grad = (1 - mu) / (1 - mu_product)
        c_avg = mu_next / (1 - mu_product * mu_next)

        def direction(g, mm, vv):
            denom = jnp.sqrt(vv / bc2.astype(vv.dtype)) + eps
            return (c_grad.astype(g.dtype) * g + c_avg.astype(g.dtype) * mm) / denom

        out = jax.tree_util.tree_map(direction, updates, m, v)
        return out, TorchNAdamState(m, v, mu_product, count)

    return optax.GradientTransformation(init_fn, update_fn)


def nadam(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.NAdam``.

    Each step t = 1, 2, ..., per parameter θ with gradient g (state ``m₀ = v₀ = 0``,
    ``Π₀ = 1``)::

        g ← -g                              if maximize
        θ ← θ(1 - lr·wd)                    if weight_decay ≠ 0 and decoupled_weight_decay
        g ← g + wd·θ                        if weight_decay ≠ 0 otherwise
        μₜ = β₁(1 - ½·0.96^(tψ));  μₜ₊₁ = β₁(1 - ½·0.96^((t+1)ψ));  Π ← Π·μₜ
        m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²
        θ ← θ - lr·(1-μₜ)/(1-Π) · g/d - lr·μₜ₊₁/(1-Π·μₜ₊₁) · m/d,   d = sqrt(v/(1-β₂ᵗ)) + eps

    State: :class:`TorchNAdamState`. torch keeps ``mu_product`` (and its step) in torch's
    default dtype — float32 unless ``torch.set_default_dtype(torch.float64)`` — even for
    float64 parameters; here it is in JAX's default float dtype (float64 under
    ``jax_enable_x64``), so float64 runs match torch run with a float64 default dtype,
    and differ by float32's rounding of ``Π`` (~1e-7 relative in the step) otherwise.

    Args:
      lr: learning rate, a float or an optax schedule of the step count.
      betas: ``(β₁, β₂)``, each in [0, 1); either may be a schedule of the step count (0
        for the first step), as torch's ``OneCycleLR``/``CyclicLR`` cycle ``betas[0]``:
        ``nadam(lr=sched, betas=(sched.momentum, 0.999))``; μₜ and μₜ₊₁ then use the
        current β₁, as torch's.
      eps: added to the denominator, outside the square root.
      weight_decay: L2 penalty (coupled) or decay rate (decoupled, as AdamW).
      momentum_decay: ψ of the momentum schedule.
      decoupled_weight_decay: decay the weights directly (NAdamW) instead of adding
        ``wd·θ`` to the gradient.
      maximize: ascend the objective.
      foreach, capturable, differentiable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.nadam(lr=0.1)  # torch.optim.NAdam([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # torch's w after the same steps
        [0.7527, -1.7475]
    """
    _check_adam_args(lr, betas, eps, weight_decay)
    _check("momentum_decay value", momentum_decay)
    core = scale_by_torch_nadam(betas[0], betas[1], eps, momentum_decay)
    return _torch_chain([core], lr, weight_decay, maximize, decoupled_weight_decay)


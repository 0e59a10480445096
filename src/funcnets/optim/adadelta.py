"""``torch.optim.Adadelta`` on optax's ``scale_by_adadelta``, which is torch's update
(both ``sqrt(Δ + eps) / sqrt(v + eps)·g``, eps inside both roots, and the accumulated
update stored before the learning rate)."""

from __future__ import annotations

import optax

from funcnets.optim._base import ScalarOrSchedule, _check, _torch_chain

__all__ = ["adadelta"]


def adadelta(
    lr: ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adadelta``.

    Each step, per parameter θ with gradient g (state ``v₀ = 0``, ``Δ₀ = 0``)::

        g ← -g                              if maximize
        g ← g + wd·θ                        if weight_decay ≠ 0
        v ← ρ·v + (1-ρ)·g²
        d = sqrt(Δ + eps) / sqrt(v + eps) · g
        Δ ← ρ·Δ + (1-ρ)·d²
        θ ← θ - lr·d

    State: optax's ``ScaleByAdaDeltaState(e_g=v, e_x=Δ)``, pytrees like the parameters.

    Args:
      lr: coefficient of the update (torch's default 1.0), a float or an optax schedule.
      rho: decay ρ of both running averages, in [0, 1].
      eps: added inside both square roots.
      weight_decay: coupled L2 penalty, added to the gradient.
      maximize: ascend the objective.
      foreach, capturable, differentiable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.adadelta(lr=1.0)  # torch.optim.Adadelta([w], lr=1.0)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # small first steps: sqrt(Δ + eps) starts at sqrt(eps)
        [0.9903, -1.9903]
    """
    _check("learning rate", lr)
    _check("rho value", rho, 0.0, 1.0, closed=True)
    _check("epsilon value", eps)
    _check("weight_decay value", weight_decay)
    return _torch_chain([optax.scale_by_adadelta(rho, eps)], lr, weight_decay, maximize)

"""``torch.optim.Adamax`` on optax's ``scale_by_adamax``, which is torch's update
(``u ← max(β₂·u, |g| + eps)``, eps added before the max, and only the first moment
bias-corrected)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _float_count, _is_dynamic, _torch_chain
from funcnets.optim.adam import _check_adam_args, _pow_complement, _zero_moments

__all__ = ["adamax"]


def adamax(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adamax`` (Adam with the infinity norm).

    Each step t = 1, 2, ..., per parameter θ with gradient g (state ``m₀ = 0``, ``u₀ = 0``)::

        g ← -g                          if maximize
        g ← g + wd·θ                    if weight_decay ≠ 0
        m ← β₁·m + (1-β₁)·g
        u ← max(β₂·u, |g| + eps)
        θ ← θ - lr/(1-β₁ᵗ) · m/u

    State: optax's ``ScaleByAdamState(count, mu=m, nu=u)``, pytrees like the parameters.

    Args:
      lr: learning rate, a float or an optax schedule of the step count.
      betas: ``(β₁, β₂)``, each in [0, 1); either may be a schedule of the step count (0
        for the first step), as torch's ``OneCycleLR``/``CyclicLR`` cycle ``betas[0]``:
        ``adamax(lr=sched, betas=(sched.momentum, 0.999))``.
      eps: added to ``|g|`` before the max.
      weight_decay: coupled L2 penalty, added to the gradient.
      maximize: ascend the objective.
      foreach, differentiable, capturable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.adamax(lr=0.1)  # torch.optim.Adamax([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # torch's w after the same steps
        [0.7155, -1.7076]
    """
    _check_adam_args(lr, betas, eps, weight_decay)
    if _is_dynamic(betas[0]) or _is_dynamic(betas[1]):
        core = _scale_by_scheduled_adamax(betas[0], betas[1], eps)
    else:
        core = optax.scale_by_adamax(betas[0], betas[1], eps)
    return _torch_chain([core], lr, weight_decay, maximize)


def _scale_by_scheduled_adamax(b1: ScalarOrSchedule, b2: ScalarOrSchedule, eps: float) -> optax.GradientTransformation:
    """``optax.scale_by_adamax`` with ``β₁``/``β₂`` schedules of the step count (torch's
    OneCycleLR/CyclicLR cycle Adamax's ``betas[0]``): step ``t`` uses the betas of that
    step, and corrects ``m``'s bias with the current β₁, ``1 - β₁(t)^(t+1)``, as torch."""

    def init_fn(params):
        mu, nu = _zero_moments(params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        beta1, beta2 = _at(b1, state.count), _at(b2, state.count)
        count = optax.safe_int32_increment(state.count)
        mu = jax.tree_util.tree_map(
            lambda g, m: jnp.asarray(beta1, m.dtype) * m + jnp.asarray(1 - beta1, g.dtype) * g, updates, state.mu
        )
        nu = jax.tree_util.tree_map(lambda g, u: jnp.maximum(jnp.asarray(beta2, u.dtype) * u, jnp.abs(g) + eps), updates, state.nu)
        bc1 = _pow_complement(beta1, _float_count(count))
        out = jax.tree_util.tree_map(lambda m, u: m / bc1.astype(m.dtype) / u, mu, nu)
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)

"""``torch.optim.Adamax`` on optax's ``scale_by_adamax``, which is torch's update
(``u ← max(β₂·u, |g| + eps)``, eps added before the max, and only the first moment
bias-corrected)."""

from __future__ import annotations

import optax

from funcnets.optim._base import ScalarOrSchedule, _torch_chain
from funcnets.optim.adam import _check_adam_args

__all__ = ["adamax"]


def adamax(
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
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
      betas: ``(β₁, β₂)``, each in [0, 1).
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
    return _torch_chain([optax.scale_by_adamax(betas[0], betas[1], eps)], lr, weight_decay, maximize)

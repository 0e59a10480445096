"""``torch.optim.RMSprop`` on optax's own ``scale_by_rms``/``scale_by_stddev`` and ``trace``.

``optax.rmsprop`` is not torch's: it adds eps *inside* the square root
(``g / sqrt(v + eps)``) and, with momentum, scales by the learning rate before the
momentum buffer. torch divides by ``sqrt(v) + eps`` and multiplies the buffer by lr last;
``scale_by_rms(eps_in_sqrt=False)`` followed by ``trace`` and the lr is exactly that.
"""

from __future__ import annotations

import optax

from funcnets.optim._base import ScalarOrSchedule, _check, _is_dynamic, _torch_chain
from funcnets.optim.sgd import scale_by_torch_momentum

__all__ = ["rmsprop"]


def rmsprop(
    lr: ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: ScalarOrSchedule = 0.0,
    centered: bool = False,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.RMSprop``.

    Each step, per parameter θ with gradient g (state ``v₀ = 0``, ``ḡ₀ = 0``, ``b₀ = 0``)::

        g ← -g                        if maximize
        g ← g + wd·θ                  if weight_decay ≠ 0
        v ← α·v + (1-α)·g²
        ḡ ← α·ḡ + (1-α)·g             if centered
        d ← sqrt(v - ḡ²) + eps        if centered, else sqrt(v) + eps
        b ← μ·b + g/d;  θ ← θ - lr·b  if momentum > 0
        θ ← θ - lr·g/d                otherwise

    The state is optax's: ``ScaleByRmsState(nu=v)`` (or ``ScaleByRStdDevState(mu=ḡ,
    nu=v)`` when centered) and ``TraceState(trace=b)`` with momentum, each a pytree like
    the parameters.

    Args:
      lr: learning rate, a float or an optax schedule of the step count.
      alpha: smoothing constant α of the squared-gradient average.
      eps: added to the denominator, outside the square root (as torch).
      weight_decay: coupled L2 penalty, added to the gradient.
      momentum: momentum factor μ, a float or a schedule of the step count (0 for the
        first step): torch's ``OneCycleLR``/``CyclicLR`` cycle RMSprop's momentum, as
        ``rmsprop(lr=sched, momentum=sched.momentum)`` does.
      centered: normalise by the estimated variance ``v - ḡ²`` instead of ``v``.
      maximize: ascend the objective.
      capturable, foreach, differentiable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.rmsprop(lr=0.01, momentum=0.9)  # torch.optim.RMSprop([w], lr=0.01, momentum=0.9)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # torch's w after the same steps
        [0.5529, -1.5441]
    """
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("momentum value", momentum)
    _check("weight_decay value", weight_decay)
    _check("alpha value", alpha)
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    core = [scale(decay=alpha, eps=eps, eps_in_sqrt=False)]
    if _is_dynamic(momentum):
        # a cycled momentum (OneCycleLR/CyclicLR cycle RMSprop's): torch's SGD buffer is
        # this one too (b₁ = u₁ is μ·0 + u₁), and skips a step whose μ is 0 as torch's does
        core.append(scale_by_torch_momentum(momentum))
    elif momentum > 0:
        # optax.trace is b ← μ·b + u with b₀ = 0: torch's buffer exactly
        core.append(optax.trace(momentum))
    return _torch_chain(core, lr, weight_decay, maximize)

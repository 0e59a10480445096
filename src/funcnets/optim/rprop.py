"""``torch.optim.Rprop`` (resilient backpropagation), written out: ``optax.rprop`` differs
from torch in two places. It applies each step's move one step late (its update is the
``η·sign(g)`` of the previous step, so its first update is 0), and it leaves a step size
unclamped where ``g·prev = 0``, e.g. at the first step, where torch clamps ``lr`` into
``step_sizes`` (an ``lr`` above ``max_step`` moves by ``max_step`` in torch).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _check

__all__ = ["rprop", "scale_by_torch_rprop", "TorchRpropState"]


class TorchRpropState(NamedTuple):
    prev: Any  # pytree like params: the last gradient, 0 where its sign had changed
    step_size: Any  # pytree like params: each entry's own step size, in [min, max]
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_rprop(
    lr: ScalarOrSchedule = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50),
) -> optax.GradientTransformation:
    """torch's Rprop step, the whole update (Rprop has no learning-rate scaling after it:
    ``lr`` is only the initial step size)::

        s = sign(g·prev)
        η ← clamp(η·(η₊ if s > 0, η₋ if s < 0, 1 if s = 0), min, max)
        g ← 0 where s < 0
        u = -sign(g)·η;  prev ← g

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_rprop(lr=0.1)
        >>> state = tx.init(jnp.zeros(1))
        >>> moves = []
        >>> for g in [2.0, 3.0, -1.0, -1.0]:  # same sign: grow by 1.2; a flip: shrink by 0.5, skip
        ...     u, state = tx.update(jnp.array([g]), state)
        ...     moves.append(round(float(u[0]), 4) + 0.0)
        >>> moves
        [-0.1, -0.12, 0.0, 0.06]
    """
    eta_minus, eta_plus = etas
    step_min, step_max = step_sizes

    def init_fn(params):
        # a scheduler changes torch's group lr, but Rprop reads it once, when it creates
        # each parameter's step sizes at the first step: the schedule's value at step 0
        lr0 = lr(jnp.zeros([], jnp.result_type(float))) if callable(lr) else lr
        return TorchRpropState(
            prev=jax.tree_util.tree_map(jnp.zeros_like, params),
            step_size=jax.tree_util.tree_map(lambda p: jnp.full_like(p, lr0), params),
            count=jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None):
        tree_map = jax.tree_util.tree_map
        signs = tree_map(lambda g, prev: jnp.sign(g * prev), updates, state.prev)

        def new_step_size(step, s):
            # torch's three masked assignments; a NaN sign (a NaN gradient) matches none
            # and stays NaN, as in torch
            factor = jnp.where(s > 0, eta_plus, jnp.where(s < 0, eta_minus, jnp.where(s == 0, 1.0, s)))
            return jnp.clip(step * factor.astype(step.dtype), step_min, step_max)

        step_size = tree_map(new_step_size, state.step_size, signs)
        grads = tree_map(lambda g, s: jnp.where(s < 0, jnp.zeros_like(g), g), updates, signs)
        out = tree_map(lambda g, step: -jnp.sign(g) * step, grads, step_size)
        return out, TorchRpropState(grads, step_size, optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def rprop(
    lr: ScalarOrSchedule = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Rprop``.

    Each step, per parameter θ with gradient g (state ``prev₀ = 0``, step sizes ``η₀ = lr``)::

        g ← -g                                      if maximize
        s = sign(g·prev)
        η ← min(η·η₊, max_step)                     where s > 0
        η ← max(η·η₋, min_step);  g ← 0             where s < 0  (a sign change)
        θ ← θ - η·sign(g);  prev ← g

    After a sign change the entry does not move, and since its ``prev`` is 0 the next step
    keeps its step size whatever the gradient's sign.
    State: ``(EmptyState,)*maximize + (`` :class:`TorchRpropState` ``,)``; each entry's step
    size is ``state[-1].step_size``.

    Args:
      lr: the initial step size of every entry. A schedule is read once, at step 0, as
        torch reads its group ``lr`` only when it creates the step sizes.
      etas: ``(η₋, η₊)`` with ``0 < η₋ < 1 < η₊``: the factors that shrink and grow a step size.
      step_sizes: ``(min_step, max_step)``, the clamp of every step size.
      maximize: ascend the objective.
      capturable, foreach, differentiable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.rprop(lr=0.1)  # torch.optim.Rprop([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # steps 0.1, 0.12, 0.144 toward 0
        [0.636, -1.636]
    """
    _check("learning rate", lr)
    if not 0.0 < etas[0] < 1.0 < etas[1]:
        raise ValueError(
            f"Invalid eta values: {etas[0]}, {etas[1]}; they must satisfy 0 < etaminus < 1 < etaplus "
            "(a step size shrinks after a sign change and grows while the sign holds), e.g. etas=(0.5, 1.2)."
        )
    parts = [optax.scale(-1.0)] if maximize else []
    return optax.chain(*parts, scale_by_torch_rprop(lr, etas, step_sizes))

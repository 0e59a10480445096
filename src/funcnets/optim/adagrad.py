"""``torch.optim.Adagrad``, written out: optax's ``scale_by_rss`` is not torch's.

``optax.adagrad`` divides by ``sqrt(s + eps)`` (eps inside the root, default 1e-7,
accumulator starting at 0.1, and a zero update where ``s = 0``) and has no ``lr_decay``;
torch divides by ``sqrt(s) + eps`` (eps 1e-10, accumulator starting at 0) and decays the
learning rate as ``lr / (1 + (t-1)·lr_decay)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _check, _float_count, _torch_chain

__all__ = ["adagrad", "scale_by_torch_adagrad", "TorchAdagradState"]


class TorchAdagradState(NamedTuple):
    sum: Any  # s: pytree like params, the running sum of squared gradients
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_adagrad(
    lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> optax.GradientTransformation:
    """torch's Adagrad direction: ``s ← s + g²``, ``u = g / (sqrt(s) + eps) / (1 + (t-1)·lr_decay)``
    (the learning rate is applied after it).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_adagrad()
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.array([3.0]), state)
        >>> u2, state = tx.update(jnp.array([4.0]), state)
        >>> round(float(u1[0]), 4), round(float(u2[0]), 4)  # 3/sqrt(9), 4/sqrt(9 + 16)
        (1.0, 0.8)
    """

    def init_fn(params):
        return TorchAdagradState(
            optax.tree.full_like(params, initial_accumulator_value), jnp.zeros([], jnp.int32)
        )

    def update_fn(updates, state, params=None):
        count = optax.safe_int32_increment(state.count)
        s = jax.tree_util.tree_map(lambda g, s: s + g * g, updates, state.sum)
        decay = 1 / (1 + (_float_count(count) - 1) * lr_decay)
        out = jax.tree_util.tree_map(
            lambda g, s: g / (jnp.sqrt(s) + eps) * decay.astype(g.dtype), updates, s
        )
        return out, TorchAdagradState(s, count)

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
    lr: ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """``torch.optim.Adagrad``.

    Each step t = 1, 2, ..., per parameter θ with gradient g (state
    ``s₀ = initial_accumulator_value``)::

        g ← -g                          if maximize
        g ← g + wd·θ                    if weight_decay ≠ 0
        γ̃ = lr / (1 + (t-1)·lr_decay)
        s ← s + g²
        θ ← θ - γ̃·g / (sqrt(s) + eps)

    State: :class:`TorchAdagradState` (``sum``, a pytree like the parameters, and the
    step count). torch's sparse-gradient path has no JAX counterpart (gradients are dense).

    Args:
      lr: learning rate, a float or an optax schedule of the step count.
      lr_decay: learning-rate decay per step, as above.
      weight_decay: coupled L2 penalty, added to the gradient.
      initial_accumulator_value: the starting value of ``s``.
      eps: added to the denominator, outside the square root (as torch).
      maximize: ascend the objective.
      foreach, differentiable, fused: accepted for torch's signature and ignored; they
        choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.adagrad(lr=0.1)  # torch.optim.Adagrad([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # torch's w after the same steps
        [0.7805, -1.7758]
    """
    _check("learning rate", lr)
    _check("lr_decay value", lr_decay)
    _check("weight_decay value", weight_decay)
    _check("initial_accumulator_value value", initial_accumulator_value)
    _check("epsilon value", eps)
    return _torch_chain([scale_by_torch_adagrad(lr_decay, initial_accumulator_value, eps)], lr, weight_decay, maximize)

"""``torch.optim.SGD``: torch's momentum buffer (``b₁ = g₁``) and dampening, on optax."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _check, _is_dynamic, _static_value, _torch_chain

__all__ = ["sgd", "scale_by_torch_momentum", "TorchMomentumState"]


class TorchMomentumState(NamedTuple):
    momentum_buffer: Any  # pytree like params
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_momentum(
    momentum: ScalarOrSchedule, dampening: ScalarOrSchedule = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """torch's SGD momentum: ``b₁ = g₁``, then ``b = μ·b + (1-τ)·g``; the update is
    ``g + μ·b`` with nesterov, else ``b``.

    ``momentum`` (and ``dampening``) may be a schedule of the step count ``t`` (0 for the
    first step), e.g. ``OneCycleLR.momentum``: step ``t`` uses ``μ(t)``, the momentum
    torch's OneCycleLR/CyclicLR put in the param group before that ``optimizer.step()``.
    A step whose ``μ(t)`` is 0 returns ``g`` and leaves the buffer as it was, as torch's
    does (the buffer still starts at the first step's gradient; torch's starts at the
    first step with a non-zero momentum, which is the same unless ``μ(0) = 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_momentum(0.9, dampening=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.array([1.0]), state)
        >>> u2, state = tx.update(jnp.array([1.0]), state)
        >>> round(float(u1[0]), 4), round(float(u2[0]), 4)  # b₁ = g, then 0.9·1 + (1 - 0.5)·1, as torch
        (1.0, 1.4)
    """

    def init_fn(params):
        return TorchMomentumState(jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        first = state.count == 0
        mu = _at(momentum, state.count)
        keep = 1 - _at(dampening, state.count)

        # torch skips the momentum at a step whose momentum is 0 (a CyclicLR with
        # base_momentum=0 reaches it): the gradient as is, the buffer left untouched
        active = mu != 0

        def buffer(g, b):  # μ in each leaf's dtype: a float64 schedule must not promote a float32 buffer
            new = jnp.where(first, g, jnp.asarray(mu, b.dtype) * b + jnp.asarray(keep, g.dtype) * g)
            return jnp.where(active, new, b)

        buf = jax.tree_util.tree_map(buffer, updates, state.momentum_buffer)
        if nesterov:
            out = jax.tree_util.tree_map(lambda g, b: g + jnp.asarray(mu, b.dtype) * b, updates, buf)
        else:
            out = buf
        out = jax.tree_util.tree_map(lambda g, u: jnp.where(active, u, g), updates, out)
        return out, TorchMomentumState(buf, optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    lr: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """``torch.optim.SGD``.

    ``g ← -g`` if maximize; ``g ← g + wd·θ``; momentum buffer ``b₁ = g₁``,
    ``b = μ·b + (1-τ)·g``; ``g ← g + μ·b`` (nesterov) or ``b``; ``θ ← θ - lr·g``.

    ``momentum`` may be a schedule of the step count (0 for the first step), as torch's
    ``OneCycleLR``/``CyclicLR`` cycle it: ``sgd(lr=sched, momentum=sched.momentum)``;
    ``optax.inject_hyperparams(sgd)(lr=..., momentum=...)`` works too.

    ``foreach``, ``differentiable`` and ``fused`` are accepted for torch's signature and
    ignored: they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.sgd(lr=0.1, momentum=0.9)  # torch.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # torch's w after the same steps
        [0.062, -0.124]
    """
    _check("learning rate", lr)
    _check("momentum value", momentum)
    _check("weight_decay value", weight_decay)
    mu, tau = _static_value(momentum), _static_value(dampening)
    # a scheduled or traced momentum is checked where it is known (torch checks it once,
    # at construction; a schedule's values are the scheduler's business)
    if nesterov and ((mu is not None and mu <= 0) or (tau is not None and tau != 0)):
        raise ValueError(
            f"Nesterov momentum requires a momentum and zero dampening (got momentum={momentum}, "
            f"dampening={dampening})."
        )
    core = []
    if _is_dynamic(momentum) or _is_dynamic(dampening):
        core.append(scale_by_torch_momentum(momentum, dampening, nesterov))
    elif momentum:
        core.append(
            optax.trace(momentum, nesterov) if dampening == 0 else scale_by_torch_momentum(momentum, dampening, nesterov)
        )
    return _torch_chain(core, lr, weight_decay, maximize)

"""``torch.optim.ASGD`` (averaged SGD), which optax lacks: SGD with a decaying step
``η`` and a ``λ·θ`` decay term, that also keeps ``ax``, a running average of the
parameters which starts after step ``t0``. Training uses ``θ``; ``ax`` is the model to
evaluate, read with :func:`averaged_params` (torch's ``optimizer.state[p]['ax']``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _check, _float_count, _is_dynamic

__all__ = ["asgd", "scale_by_torch_asgd", "averaged_params", "TorchASGDState"]


class TorchASGDState(NamedTuple):
    eta: jax.Array  # scalar (default float dtype): the step size of the next step
    mu: jax.Array  # scalar (default float dtype): the averaging weight of the next step
    ax: Any  # pytree like params: the averaged parameters
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_asgd(
    lr: ScalarOrSchedule = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6
) -> optax.GradientTransformation:
    """torch's ASGD step after maximize and weight decay, the whole update (the learning
    rate enters through ``η``). Step t = 1, 2, ... (state ``η = lr``, ``μ = 1``, ``ax = 0``)::

        θ ← θ(1 - λη) - η·g
        ax ← θ                  if μ = 1
        ax ← ax + μ·(θ - ax)    otherwise
        η ← lr / (1 + λ·lr·t)^α;  μ ← 1 / max(1, t - t0)

    so ``ax`` follows ``θ`` up to step ``t0 + 2`` and from there on is the mean of the
    iterates since step ``t0 + 2`` (``μ`` computed at step t is used at step t + 1).
    ``lr`` may be a schedule of the step count: the ``η`` that step t+1 uses is computed
    with the schedule's value at step t (0 for the first), as torch computes it with the
    group ``lr`` of step t.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_asgd(lr=0.5, lambd=0.0, t0=1)
        >>> theta = jnp.zeros(1)
        >>> state = tx.init(theta)
        >>> history = []
        >>> for g in [-2.0, -4.0, -6.0, -8.0]:  # θ = 1, 3, 6, 10; ax averages from step t0 + 2 = 3 on
        ...     u, state = tx.update(jnp.array([g]), state, theta)
        ...     theta = optax.apply_updates(theta, u)
        ...     history.append((float(theta[0]), float(optim.averaged_params(state)[0])))
        >>> history
        [(1.0, 1.0), (3.0, 3.0), (6.0, 6.0), (10.0, 8.0)]
    """

    def init_fn(params):
        dtype = jnp.result_type(float)  # torch keeps η and μ in its default dtype
        lr0 = _at(lr, jnp.zeros([], jnp.int32))
        return TorchASGDState(
            eta=jnp.asarray(lr0, dtype),
            mu=jnp.ones([], dtype),
            ax=jax.tree_util.tree_map(jnp.zeros_like, params),
            count=jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                "asgd needs the parameters for its decay term λ·θ and for averaging them: "
                "call opt.update(grads, opt_state, params)"
            )
        tree_map = jax.tree_util.tree_map
        eta = state.eta

        def move(g, p):
            eta_p = eta.astype(p.dtype)
            return p * (1 - lambd * eta_p) - eta_p * g - p

        out = tree_map(move, updates, params)
        new = optax.apply_updates(params, out)  # the parameters the caller gets
        ax = tree_map(
            lambda a, p: jnp.where(state.mu == 1, p, a + (p - a) * state.mu.astype(a.dtype)), state.ax, new
        )
        count = optax.safe_int32_increment(state.count)
        t = _float_count(count)
        lr_t = _at(lr, state.count)
        new_eta = (lr_t / (1 + lambd * lr_t * t) ** alpha).astype(eta.dtype)
        new_mu = (1 / jnp.maximum(1.0, t - t0)).astype(state.mu.dtype)
        return out, TorchASGDState(new_eta, new_mu, ax, count)

    return optax.GradientTransformation(init_fn, update_fn)


def asgd(
    lr: ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.ASGD``.

    Each step t = 1, 2, ..., per parameter θ with gradient g (state ``η = lr``, ``μ = 1``,
    ``ax = 0``)::

        g ← -g                      if maximize
        g ← g + wd·θ                if weight_decay ≠ 0
        θ ← θ(1 - λη) - η·g
        ax ← θ if μ = 1, else ax + μ·(θ - ax)
        η ← lr / (1 + λ·lr·t)^α;  μ ← 1 / max(1, t - t0)

    The averaged parameters ``ax`` equal ``θ`` until step ``t0 + 2``, then are the mean
    of the iterates since that step; read them with :func:`averaged_params` (torch's
    ``optimizer.state[p]['ax']``). State: ``(EmptyState,)*maximize +
    (AddDecayedWeightsState,)*(weight_decay ≠ 0) + (`` :class:`TorchASGDState` ``,)``.

    Args:
      lr: learning rate, a float or an optax schedule of the step count (see
        :func:`scale_by_torch_asgd` for the step whose value each ``η`` uses).
      lambd: the decay term λ, of both ``θ`` and ``η``.
      alpha: the power of ``η``'s decay.
      t0: averaging starts at step ``t0 + 2`` (the first ``μ < 1`` is computed at step
        ``t0 + 2`` and used at the next).
      weight_decay: coupled L2 penalty, added to the gradient.
      maximize: ascend the objective.
      foreach, differentiable, capturable: accepted for torch's signature and ignored;
        they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.asgd(lr=0.1, t0=1)  # torch.optim.ASGD([w], lr=0.1, t0=1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(4):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # torch's w
        [0.4096, -0.8192]
        >>> [round(v, 4) for v in optim.averaged_params(opt_state)["w"].tolist()]  # torch's state[w]["ax"]
        [0.4608, -0.9216]
    """
    _check("learning rate", lr)
    _check("weight_decay value", weight_decay)
    parts = [optax.scale(-1.0)] if maximize else []
    # an array weight decay (optax.inject_hyperparams) keeps its transformation even at 0
    if _is_dynamic(weight_decay) or weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts, scale_by_torch_asgd(lr, lambd, alpha, t0))


def averaged_params(opt_state: Any) -> Any:
    """The averaged parameters ``ax`` in an :func:`asgd` state (torch's
    ``optimizer.state[p]['ax']``), a pytree like the parameters.

    ``opt_state`` is the state of :func:`asgd` or :func:`scale_by_torch_asgd`, alone or
    inside other optax states (a chain, ``inject_hyperparams``, :func:`param_groups`, whose
    groups' averages are merged into one tree).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> opt = optim.asgd()
        >>> optim.averaged_params(opt.init({"w": jnp.ones(2)}))  # zeros before the first step, as in torch
        {'w': Array([0., 0.], dtype=float32)}
    """
    found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, TorchASGDState))
             if isinstance(s, TorchASGDState)]
    if not found:
        raise ValueError(
            f"averaged_params expected the state of optim.asgd, got a state without one "
            f"({type(opt_state).__name__}); pass the opt_state that optim.asgd(...).init/update returned"
        )
    if len(found) == 1:
        return found[0].ax
    # parameter groups (optax.partition): each group's ax holds MaskedNode where other
    # groups' parameters are
    masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    return jax.tree_util.tree_map(
        lambda *xs: next((x for x in xs if not masked(x)), xs[0]), *(s.ax for s in found), is_leaf=masked
    )

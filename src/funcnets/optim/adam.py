"""``torch.optim.Adam`` and ``AdamW`` (coupled and decoupled weight decay, torch's AMSGrad)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _bias_correction, _check, _float_count, _is_dynamic, _torch_chain

__all__ = ["adam", "adamw", "scale_by_torch_adam", "TorchAdamState", "scale_by_torch_amsgrad", "TorchAmsgradState"]


class TorchAdamState(NamedTuple):
    exp_avg: Any  # m, like params
    exp_avg_sq: Any  # v, like params
    count: jax.Array  # int32 scalar: steps taken


class TorchAmsgradState(NamedTuple):
    exp_avg: Any  # m, like params
    exp_avg_sq: Any  # v, like params
    max_exp_avg_sq: Any  # max over steps of the raw v
    count: jax.Array


def _pow_complement(beta, t):
    """``1 - βᵗ`` for a traced or scheduled ``β``, as ``-expm1(t·log β)`` (float32's
    precision near β = 1, see ``_base._bias_correction``); β = 0 gives 1."""
    if isinstance(beta, (int, float)):
        # a constant β (β₂ beside a scheduled β₁): log β in Python floats; rounded to
        # float32 first, β₂ = 0.9999 would put 1 - β₂ᵗ 1.7e-4 off torch's
        return _bias_correction(beta, t)
    beta = jnp.asarray(beta, jnp.result_type(float))
    if beta.dtype == jnp.float64:  # torch's own arithmetic, as _base._bias_correction
        return 1 - beta**t
    return -jnp.expm1(t * jnp.log(beta))


def _adam_moments(updates, m, v, b1, b2):
    """``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``, the factors in each leaf's dtype."""
    m = jax.tree_util.tree_map(lambda g, mm: jnp.asarray(b1, mm.dtype) * mm + jnp.asarray(1 - b1, g.dtype) * g, updates, m)
    v = jax.tree_util.tree_map(
        lambda g, vv: jnp.asarray(b2, vv.dtype) * vv + jnp.asarray(1 - b2, g.dtype) * (g * g), updates, v
    )
    return m, v


def _check_adam_args(lr, betas, eps, weight_decay) -> None:
    """torch's argument checks of the Adam family (Adam, AdamW, Adamax, NAdam, RAdam), in
    torch's order."""
    _check("learning rate", lr)
    _check("epsilon value", eps)
    _check("beta parameter at index 0", betas[0], 0.0, 1.0)
    _check("beta parameter at index 1", betas[1], 0.0, 1.0)
    _check("weight_decay value", weight_decay)


def _zero_moments(params) -> tuple[Any, Any]:
    """``(m₀, v₀)``: zeros like the parameters, the first two fields of every Adam-family state."""
    return jax.tree_util.tree_map(jnp.zeros_like, params), jax.tree_util.tree_map(jnp.zeros_like, params)


def _next_step(updates, state, b1: float, b2: float):
    """How an Adam-family step with constant betas (NAdam, RAdam) begins: ``count ← count
    + 1`` and ``t`` (it as a float), ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²`` on
    ``state.exp_avg``/``exp_avg_sq``, with optax's moment updates. (Scheduled betas go
    through :func:`_adam_moments`, which casts them to each leaf's dtype.)"""
    count = optax.safe_int32_increment(state.count)
    m = optax.tree.update_moment(updates, state.exp_avg, b1, 1)
    v = optax.tree.update_moment_per_elem_norm(updates, state.exp_avg_sq, b2, 2)
    return count, _float_count(count), m, v


def _adam_direction(m, v, bc1, bc2, eps):
    """torch's ``(m/(1-β₁ᵗ)) / (sqrt(v)/sqrt(1-β₂ᵗ) + eps)``."""
    bc2_sqrt = jnp.sqrt(bc2)
    return jax.tree_util.tree_map(
        lambda mm, vv: (mm / bc1.astype(mm.dtype)) / (jnp.sqrt(vv) / bc2_sqrt.astype(vv.dtype) + eps), m, v
    )


def scale_by_torch_adam(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch's Adam direction ``(m/(1-β₁ᵗ)) / (sqrt(v)/sqrt(1-β₂ᵗ) + eps)``, with ``β₁``
    (and ``β₂``) possibly a schedule of the step count ``t`` (0 for the first step), as
    torch's OneCycleLR/CyclicLR cycle ``betas[0]``: step ``t`` updates ``m`` with
    ``β₁(t)`` and, as torch does, corrects its bias with the *current* β₁:
    ``1 - β₁(t)^(t+1)``.

    The optax building block behind :func:`adam`/:func:`adamw` when a beta is
    scheduled (``optax.scale_by_adam`` takes constants only, and equals this for
    them up to rounding). Compose it as any ``scale_by_*``::

        sched = lr_scheduler.OneCycleLR(0.01, total_steps=1000)
        opt = optax.chain(optax.clip_by_global_norm(1.0),
                          scale_by_torch_adam(b1=sched.momentum, b2=0.999),
                          optax.scale_by_learning_rate(sched))

    Args:
      b1, b2: the decay rates, floats or ``step -> rate`` schedules, in [0, 1).
      eps: added to the bias-corrected ``sqrt(v)``, outside the square root (torch).

    State: :class:`TorchAdamState` (``exp_avg``, ``exp_avg_sq`` like params; ``count``).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> sched = optim.lr_scheduler.OneCycleLR(0.01, total_steps=100)
        >>> tx = optax.chain(optim.scale_by_torch_adam(b1=sched.momentum), optax.scale_by_learning_rate(sched))
        >>> state = tx.init(jnp.zeros(2))
        >>> updates, state = jax.jit(tx.update)(jnp.array([0.5, -3.0]), state)  # one compile, not op by op
        >>> [round(u, 6) for u in updates.tolist()]  # first Adam step: -lr·sign(g), lr = 0.01/25
        [-0.0004, 0.0004]
    """

    def init_fn(params):
        return TorchAdamState(*_zero_moments(params), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        beta1, beta2 = _at(b1, state.count), _at(b2, state.count)
        count = optax.safe_int32_increment(state.count)
        t = _float_count(count)
        m, v = _adam_moments(updates, state.exp_avg, state.exp_avg_sq, beta1, beta2)
        out = _adam_direction(m, v, _pow_complement(beta1, t), _pow_complement(beta2, t), eps)
        return out, TorchAdamState(m, v, count)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_torch_amsgrad(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch's AMSGrad: ``v̂ = max(v̂, v)`` on the raw second moment, then
    ``m/(1-β₁ᵗ) / (sqrt(v̂)/sqrt(1-β₂ᵗ) + eps)``. ``b1``/``b2`` may be schedules, as in
    :func:`scale_by_torch_adam`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_amsgrad()
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.array([10.0]), state)  # a large gradient, then a small one
        >>> u, state = tx.update(jnp.array([0.1]), state)
        >>> round(float(state.max_exp_avg_sq[0]), 5), round(float(state.exp_avg_sq[0]), 5)  # the max keeps v₁
        (0.1, 0.09991)
    """

    def init_fn(params):
        m, v = _zero_moments(params)
        return TorchAmsgradState(m, v, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        beta1, beta2 = _at(b1, state.count), _at(b2, state.count)
        count = optax.safe_int32_increment(state.count)
        t = _float_count(count)
        m, v = _adam_moments(updates, state.exp_avg, state.exp_avg_sq, beta1, beta2)
        vmax = jax.tree_util.tree_map(jnp.maximum, state.max_exp_avg_sq, v)
        if _is_dynamic(b1) or _is_dynamic(b2):
            bc1, bc2 = _pow_complement(beta1, t), _pow_complement(beta2, t)
        else:
            bc1, bc2 = _bias_correction(beta1, t), _bias_correction(beta2, t)
        out = _adam_direction(m, vmax, bc1, bc2, eps)
        return out, TorchAmsgradState(m, v, vmax, count)

    return optax.GradientTransformation(init_fn, update_fn)


def _scale_by_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """``optax.scale_by_adam`` (its state, its moment updates) with torch's bias
    correction ``1 - βᵗ`` kept to full precision (``_base._bias_correction``): optax's, in
    float32, is 1.3e-5 off for β₂ = 0.999 and 1.3e-4 for β₂ = 0.9999 at the first step,
    where torch computes it in Python floats."""

    def init_fn(params):
        mu, nu = _zero_moments(params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

    def update_fn(updates, state, params=None):
        count = optax.safe_int32_increment(state.count)
        t = _float_count(count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        out = _adam_direction(mu, nu, _bias_correction(b1, t), _bias_correction(b2, t), eps)
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def _adam_core(betas, eps, amsgrad):
    if amsgrad:
        return scale_by_torch_amsgrad(betas[0], betas[1], eps)
    if _is_dynamic(betas[0]) or _is_dynamic(betas[1]):
        return scale_by_torch_adam(betas[0], betas[1], eps)
    return _scale_by_adam(betas[0], betas[1], eps)


def _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
    _check_adam_args(lr, betas, eps, weight_decay)
    return _torch_chain([_adam_core(betas, eps, amsgrad)], lr, weight_decay, maximize, decoupled_weight_decay)


def adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam``: ``g ← g + wd·θ`` (coupled L2), ``m ← β₁m + (1-β₁)g``,
    ``v ← β₂v + (1-β₂)g²``, ``θ ← θ - lr·(m/(1-β₁ᵗ)) / (sqrt(v/(1-β₂ᵗ)) + eps)``.

    ``betas[0]`` may be a schedule of the step count (0 for the first step), as torch's
    ``OneCycleLR``/``CyclicLR`` cycle it: ``adam(lr=sched, betas=(sched.momentum, 0.999))``;
    the bias correction then uses the current β₁, as torch's.

    ``decoupled_weight_decay=True`` is :func:`adamw`. ``foreach``, ``capturable``,
    ``differentiable`` and ``fused`` are accepted for torch's signature and ignored: they
    choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.adam(lr=0.1)  # torch.optim.Adam([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # each step moves ~lr, whatever the gradient's scale
        [0.7016, -1.7006]
    """
    return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay)


def adamw(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW``: decoupled decay ``θ ← θ - lr·wd·θ`` plus the Adam step.
    ``betas[0]`` may be a schedule, as in :func:`adam`.

    ``foreach``, ``capturable``, ``differentiable`` and ``fused`` are accepted for torch's
    signature and ignored: they choose torch's kernels, not the update.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.adamw(lr=0.1, weight_decay=0.1)  # torch.optim.AdamW([w], lr=0.1, weight_decay=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].tolist()]  # Adam's steps plus θ·(1 - lr·wd) each step
        [0.6751, -1.6444]
    """
    return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, True)

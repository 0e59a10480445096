"""``torch.optim`` with torch's exact update rules, as optax ``GradientTransformation``s,
and parameter freezing (the ``requires_grad=False`` analog).

Each factory composes optax's own transformations where they are exact and adds only
what optax lacks:

* ``sgd``: torch's momentum buffer starts at the first gradient (``b₁ = g₁``) and then
  is ``b = μ·b + (1-τ)·g``. ``optax.trace`` equals that only for dampening τ = 0, so
  dampening uses :func:`scale_by_torch_momentum`.
* ``adam``: ``optax.scale_by_adam`` is torch's Adam (eps outside the sqrt) up to
  rounding; torch's ``weight_decay`` is *coupled* L2 (added to the gradient). torch's
  AMSGrad keeps the max of the *raw* second moment and bias-corrects it afterwards,
  whereas ``optax.scale_by_amsgrad`` maxes the bias-corrected one, so AMSGrad uses
  :func:`scale_by_torch_amsgrad`.
* ``adamw``: decoupled decay ``θ ← θ - lr·wd·θ`` (``optax.add_decayed_weights`` placed
  before the learning-rate scaling).

``lr`` may be a float or an optax schedule (a function of the step count, starting at 0).
Updates are applied with ``optax.apply_updates``.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets._typing import Params
from funcnets.torch_io import flatten, unflatten

__all__ = [
    "sgd",
    "adam",
    "adamw",
    "scale_by_torch_momentum",
    "scale_by_torch_amsgrad",
    "select",
    "split",
    "merge",
]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


def _check(name: str, value: float, low: float = 0.0, high: float | None = None) -> None:
    if callable(value):
        return
    if not isinstance(value, (int, float)) or value < low or (high is not None and value >= high):
        rng = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"Invalid {name}: {value!r}; it must be a number {rng}.")


class TorchMomentumState(NamedTuple):
    momentum_buffer: Any  # pytree like params
    count: jax.Array  # int32 scalar: steps taken


def scale_by_torch_momentum(momentum: float, dampening: float = 0.0, nesterov: bool = False) -> optax.GradientTransformation:
    """torch's SGD momentum: ``b₁ = g₁``, then ``b = μ·b + (1-τ)·g``; the update is
    ``g + μ·b`` with nesterov, else ``b``."""

    def init_fn(params):
        return TorchMomentumState(jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        first = state.count == 0
        buf = jax.tree_util.tree_map(
            lambda g, b: jnp.where(first, g, momentum * b + (1 - dampening) * g), updates, state.momentum_buffer
        )
        out = jax.tree_util.tree_map(lambda g, b: g + momentum * b, updates, buf) if nesterov else buf
        return out, TorchMomentumState(buf, optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


class TorchAmsgradState(NamedTuple):
    exp_avg: Any  # m, like params
    exp_avg_sq: Any  # v, like params
    max_exp_avg_sq: Any  # max over steps of the raw v
    count: jax.Array


def scale_by_torch_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """torch's AMSGrad: ``v̂ = max(v̂, v)`` on the raw second moment, then
    ``m/(1-β₁ᵗ) / (sqrt(v̂)/sqrt(1-β₂ᵗ) + eps)``."""

    def init_fn(params):
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
        return TorchAmsgradState(zeros(), zeros(), zeros(), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        count = optax.safe_int32_increment(state.count)
        m = optax.tree.update_moment(updates, state.exp_avg, b1, 1)
        v = optax.tree.update_moment_per_elem_norm(updates, state.exp_avg_sq, b2, 2)
        vmax = jax.tree_util.tree_map(jnp.maximum, state.max_exp_avg_sq, v)
        bc1 = 1 - b1 ** count.astype(jnp.result_type(float))
        bc2_sqrt = jnp.sqrt(1 - b2 ** count.astype(jnp.result_type(float)))
        out = jax.tree_util.tree_map(
            lambda mm, vv: (mm / bc1.astype(mm.dtype)) / (jnp.sqrt(vv) / bc2_sqrt.astype(vv.dtype) + eps), m, vmax
        )
        return out, TorchAmsgradState(m, v, vmax, count)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(
    lr: ScalarOrSchedule = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.SGD``.

    ``g ← -g`` if maximize; ``g ← g + wd·θ``; momentum buffer ``b₁ = g₁``,
    ``b = μ·b + (1-τ)·g``; ``g ← g + μ·b`` (nesterov) or ``b``; ``θ ← θ - lr·g``.

    Example:
      >>> opt = sgd(lr=0.01, momentum=0.9)
      >>> opt_state = opt.init(params)
      >>> updates, opt_state = opt.update(grads, opt_state, params)
      >>> params = optax.apply_updates(params, updates)
    """
    _check("learning rate", lr)
    _check("momentum value", momentum)
    _check("weight_decay value", weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"Nesterov momentum requires a momentum and zero dampening (got momentum={momentum}, "
            f"dampening={dampening})."
        )
    parts = [optax.scale(-1.0)] if maximize else []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    if momentum:
        parts.append(
            optax.trace(momentum, nesterov) if dampening == 0 else scale_by_torch_momentum(momentum, dampening, nesterov)
        )
    parts.append(_scale_by_lr(lr))
    return optax.chain(*parts)


def _scale_by_lr(lr: ScalarOrSchedule) -> optax.GradientTransformation:
    """``-lr·u``. optax passes schedules an int32 step count, and some (e.g.
    ``exponential_decay``) divide it into a float32 learning rate even under
    ``jax_enable_x64``; a count in the default float dtype keeps float64 runs exact."""
    if callable(lr):
        schedule = lr
        return optax.scale_by_learning_rate(lambda count: schedule(count.astype(jnp.result_type(float))))
    return optax.scale_by_learning_rate(lr)


def _adam_core(betas, eps, amsgrad):
    _check("beta parameter at index 0", betas[0], 0.0, 1.0)
    _check("beta parameter at index 1", betas[1], 0.0, 1.0)
    _check("epsilon value", eps)
    if amsgrad:
        return scale_by_torch_amsgrad(betas[0], betas[1], eps)
    return optax.scale_by_adam(betas[0], betas[1], eps)


def adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam``: ``g ← g + wd·θ`` (coupled L2), ``m ← β₁m + (1-β₁)g``,
    ``v ← β₂v + (1-β₂)g²``, ``θ ← θ - lr·(m/(1-β₁ᵗ)) / (sqrt(v/(1-β₂ᵗ)) + eps)``."""
    _check("learning rate", lr)
    _check("weight_decay value", weight_decay)
    parts = [optax.scale(-1.0)] if maximize else []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts += [_adam_core(betas, eps, amsgrad), _scale_by_lr(lr)]
    return optax.chain(*parts)


def adamw(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW``: decoupled decay ``θ ← θ - lr·wd·θ`` plus the Adam step."""
    _check("learning rate", lr)
    _check("weight_decay value", weight_decay)
    parts = [optax.scale(-1.0)] if maximize else []
    parts += [_adam_core(betas, eps, amsgrad)]
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(_scale_by_lr(lr))
    return optax.chain(*parts)


# ----------------------------------------------------------------------------- freezing
Selector = Callable[[str], bool] | str | Iterable[str] | None


def _matcher(sel: Selector) -> Callable[[str], bool]:
    if sel is None:
        return lambda name: False
    if callable(sel):
        return sel
    patterns = [sel] if isinstance(sel, str) else list(sel)
    # "fc" selects the module fc and everything below it, like "fc.*"
    return lambda name: any(fnmatch.fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)


def select(params: Params, include: Selector = None, exclude: Selector = None) -> frozenset[str]:
    """Dotted names of the trainable parameters: those matching ``include`` (default:
    all) and not ``exclude``. Selectors are glob patterns on torch names (``"fc.*"``,
    ``"layer4.*"``), a module prefix (``"fc"``) or a predicate ``name -> bool``.

    The result is a frozenset: hashable, so it can be a static ``jax.jit`` argument.
    Raises if nothing is selected, since a typo would otherwise train nothing.
    """
    names = list(flatten(params))
    inc = (lambda n: True) if include is None else _matcher(include)
    exc = _matcher(exclude)
    chosen = frozenset(n for n in names if inc(n) and not exc(n))
    if not chosen:
        raise ValueError(
            f"no parameter matches include={include!r} exclude={exclude!r}; parameter names look like "
            f"{names[:4]}"
        )
    return chosen


def split(params: Params, trainable: frozenset[str]) -> tuple[dict, dict]:
    """``(trainable_params, frozen_params)`` as two nested dicts."""
    flat = flatten(params)
    return (
        unflatten({k: v for k, v in flat.items() if k in trainable}),
        unflatten({k: v for k, v in flat.items() if k not in trainable}),
    )


def merge(trainable_params: Params, frozen_params: Params) -> dict:
    """Inverse of :func:`split`."""
    return unflatten({**flatten(frozen_params), **flatten(trainable_params)})

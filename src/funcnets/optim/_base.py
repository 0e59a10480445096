"""What every torch-exact optimizer shares: hyperparameter checks and the learning-rate step."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["ScalarOrSchedule"]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


def _is_dynamic(value: object) -> bool:
    """Whether a hyperparameter changes between steps: a schedule (callable of the step
    count) or an array (``optax.inject_hyperparams`` passes every numeric hyperparameter
    as one, a tracer under ``jit``). Such a value takes the general branch of an
    optimizer, so that ``init`` and ``update`` build the same state whatever its value."""
    return callable(value) or isinstance(value, (jax.Array, np.ndarray))


def _static_value(value: object) -> float | None:
    """A hyperparameter's value where it is known when the optimizer is built (a number
    or a concrete array); ``None`` for schedules and tracers."""
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (jax.Array, np.ndarray)) and not isinstance(value, jax.core.Tracer) and np.ndim(value) == 0:
        return float(value)
    return None


def _at(value: ScalarOrSchedule, count: jax.Array) -> jax.Array | float:
    """A hyperparameter's value at step ``count`` (0 for the first step): a schedule is
    called with the count in the default float dtype (as :func:`_scale_by_lr` does)."""
    return value(_float_count(count)) if callable(value) else value


def _check(name: str, value: float, low: float = 0.0, high: float | None = None, *, closed: bool = False) -> None:
    """torch's ``Invalid <name>: <value>`` for a hyperparameter outside ``[low, high)``
    (``[low, high]`` if ``closed``); NaN is refused too, as torch's ``not low <= value``
    refuses it. Schedules (callables) and traced values are not checked; a concrete
    array (``optax.inject_hyperparams`` passes those) is checked by its value."""
    if callable(value):
        return
    if isinstance(value, (jax.Array, np.ndarray)):
        known = _static_value(value)
        if known is None:
            return
        value = known
    ok = isinstance(value, (int, float)) and low <= value
    if ok and high is not None:
        ok = value <= high if closed else value < high
    if not ok:
        rng = f">= {low}" if high is None else f"in [{low}, {high}{']' if closed else ')'}"
        raise ValueError(f"Invalid {name}: {value!r}; it must be a number {rng}.")


def _torch_chain(
    core: list[optax.GradientTransformation],
    lr: ScalarOrSchedule,
    weight_decay: float = 0.0,
    maximize: bool = False,
    decoupled: bool = False,
) -> optax.GradientTransformation:
    """The frame of every ``torch.optim`` step around its ``core`` transformations:
    ``g ← -g`` if ``maximize``; weight decay, coupled (``g ← g + wd·θ`` before ``core``)
    or decoupled (``θ ← θ(1 - lr·wd)``, which is ``wd·θ`` added after ``core``, since
    ``θ(1 - lr·wd) - lr·u = θ - lr·(u + wd·θ)``); then ``-lr``."""
    parts = [optax.scale(-1.0)] if maximize else []
    # an array weight decay (optax.inject_hyperparams) keeps its transformation even at
    # 0, so that the chain's state has one shape whatever the value
    decay = [optax.add_decayed_weights(weight_decay)] if _is_dynamic(weight_decay) or weight_decay else []
    if decoupled:
        parts += [*core, *decay]
    else:
        parts += [*decay, *core]
    return optax.chain(*parts, _scale_by_lr(lr))


def _float_count(count: jax.Array) -> jax.Array:
    """The step count ``t`` in the default float dtype (float64 under ``jax_enable_x64``),
    where torch computes its step scalars (``β**t``, ``lr/(1 + (t-1)·decay)``) in Python
    floats."""
    return count.astype(jnp.result_type(float))


def _bias_correction(beta: float, t: jax.Array) -> jax.Array:
    """``1 - βᵗ`` for a float step ``t >= 1``. In float32 as ``-expm1(t·log β)``, which
    keeps float32's relative precision for β near 1, where ``1 - βᵗ`` in float32 loses
    four digits (β₂ = 0.999 rounds to 0.99900001) and torch, in Python floats, loses none;
    in float64 as torch computes it."""
    if beta == 0:
        return jnp.ones_like(t)
    if t.dtype == jnp.float64:
        # torch's own arithmetic, whose cancellation for β near 1 a float64 step follows
        # (``-expm1`` is 3e-11 away from it for β = 0.999999)
        return 1 - beta**t
    return -jnp.expm1(t * math.log(beta))


# torch's ``foreach``, ``fused``, ``capturable`` and ``differentiable`` arguments are
# accepted by every factory for torch's signature and ignored: they choose torch's kernels
# (a loop per tensor, one fused launch, CUDA-graph capture, autograd through the step),
# not the update; XLA fuses the step anyway and every update here is differentiable.


def _scale_by_lr(lr: ScalarOrSchedule) -> optax.GradientTransformation:
    """``-lr·u``. optax passes schedules an int32 step count, and some (e.g.
    ``exponential_decay``) divide it into a float32 learning rate even under
    ``jax_enable_x64``; a count in the default float dtype keeps float64 runs exact."""
    if callable(lr):
        schedule = lr
        return optax.scale_by_learning_rate(lambda count: schedule(count.astype(jnp.result_type(float))))
    return optax.scale_by_learning_rate(lr)


"""What every torch-exact optimizer shares: hyperparameter checks and the learning-rate step."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["ScalarOrSchedule"]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


def _check(name: str, value: float, low: float = 0.0, high: float | None = None, *, closed: bool = False) -> None:
    """torch's ``Invalid <name>: <value>`` for a hyperparameter outside ``[low, high)``
    (``[low, high]`` if ``closed``); NaN is refused too, as torch's ``not low <= value``
    refuses it. Schedules (callables) are not checked."""
    if callable(value):
        return
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
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
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
    """``1 - βᵗ`` for a float step ``t >= 1``. As ``-expm1(t·log β)`` it keeps float32's
    relative precision for β near 1, where ``1 - βᵗ`` in float32 loses four digits
    (β₂ = 0.999 rounds to 0.99900001) and torch, in Python floats, loses none."""
    if beta == 0:
        return jnp.ones_like(t)
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


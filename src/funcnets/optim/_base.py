"""What every torch-exact optimizer shares: hyperparameter checks and the learning-rate step."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["ScalarOrSchedule"]

ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]


def _check(name: str, value: float, low: float = 0.0, high: float | None = None) -> None:
    if callable(value):
        return
    if not isinstance(value, (int, float)) or value < low or (high is not None and value >= high):
        rng = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"Invalid {name}: {value!r}; it must be a number {rng}.")




def _scale_by_lr(lr: ScalarOrSchedule) -> optax.GradientTransformation:
    """``-lr·u``. optax passes schedules an int32 step count, and some (e.g.
    ``exponential_decay``) divide it into a float32 learning rate even under
    ``jax_enable_x64``; a count in the default float dtype keeps float64 runs exact."""
    if callable(lr):
        schedule = lr
        return optax.scale_by_learning_rate(lambda count: schedule(count.astype(jnp.result_type(float))))
    return optax.scale_by_learning_rate(lr)


"""``torch.nn.init``'s distributions, as functions of a PRNG key and a shape.

torch's default layer initialisation is ``kaiming_uniform_(a=sqrt(5))`` for weights,
which is U(±1/sqrt(fan_in)), and U(±1/sqrt(fan_in)) for biases.
"""

from __future__ import annotations

import math

import jax

from funcnets._typing import Array, PRNGKey

__all__ = ["uniform", "default_bound"]


def uniform(key: PRNGKey, shape: tuple[int, ...], a: float = 0.0, b: float = 1.0) -> Array:
    """U(a, b) samples of ``shape`` (``torch.nn.init.uniform_(t, a, b)``)."""
    return jax.random.uniform(key, shape, minval=a, maxval=b)


def default_bound(fan_in: int) -> float:
    """torch's default weight and bias bound, 1/sqrt(fan_in) (0 for an empty fan-in)."""
    return 1.0 / math.sqrt(fan_in) if fan_in else 0.0

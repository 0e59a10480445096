"""Dropout: ``torch.nn.Dropout`` and ``F.dropout`` with an explicit PRNG key."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnets._typing import Array, PRNGKey
from funcnets.nn.module import Module

__all__ = ["dropout", "Dropout"]


def dropout(x: Array, p: float = 0.5, training: bool = True, key: PRNGKey | None = None) -> Array:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    Randomness is explicit: training with ``0 < p`` needs a PRNG ``key``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    if key is None:
        raise ValueError(
            "dropout in training mode needs a PRNG key: pass key=jax.random.key(seed) "
            "(or train=False for evaluation)."
        )
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


@dataclass(frozen=True, repr=False)
class Dropout(Module):
    """Zero elements with probability ``p`` in training (needs ``key``); identity in eval."""

    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {self.p}")

    def apply(self, params, state, x, *, train=False, key=None):
        return dropout(x, self.p, train, key), state

    def extra_repr(self):
        return f"p={self.p}, inplace=False"



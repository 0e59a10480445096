"""Activations: ``torch.nn.ReLU``, softmax and their functional forms."""

from __future__ import annotations

from dataclasses import dataclass

import jax

from funcnets._typing import Array
from funcnets.autograd import my_relu, relu
from funcnets.nn.module import Module

__all__ = ["relu", "my_relu", "softmax", "log_softmax", "ReLU"]


def log_softmax(x: Array, dim: int = -1) -> Array:
    return jax.nn.log_softmax(x, axis=dim)


def softmax(x: Array, dim: int = -1) -> Array:
    return jax.nn.softmax(x, axis=dim)


@dataclass(frozen=True, repr=False)
class ReLU(Module):
    """``max(x, 0)``, gradient 0 at 0 (``torch.nn.ReLU``)."""

    def apply(self, params, state, x, *, train=False, key=None):
        return relu(x), state



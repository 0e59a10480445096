"""Linear layers: ``torch.nn.Linear``, ``Identity`` and ``F.linear``."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn import init
from funcnets.nn._gemm import times_weight
from funcnets.nn._layout import _check_float
from funcnets.nn.module import Module

__all__ = ["linear", "Linear", "Identity"]


def linear(x: Array, weight: Array, bias: Array | None = None) -> Array:
    """``y = x @ weight.T + bias``.

    Args:
      x: ``(..., in_features)``; weight: ``(out_features, in_features)``;
      bias: ``(out_features,)`` or None.
    Returns:
      ``(..., out_features)``.
    """
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        y = jnp.matmul(x, weight.T)  # jnp's own error for mismatched shapes
    else:
        y = times_weight(x.reshape(-1, x.shape[-1]), weight).reshape(*x.shape[:-1], weight.shape[0])
    return y if bias is None else y + bias



@dataclass(frozen=True, repr=False)
class Linear(Module):
    """``y = x @ weight.T + bias``; ``x: (..., in_features) -> (..., out_features)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Linear(3, 2)
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].shape, params["bias"].shape  # torch's (out_features, in_features)
        ((2, 3), (2,))
        >>> params = {"weight": jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]), "bias": jnp.array([0.0, 1.0])}
        >>> y, _ = m.apply(params, state, jnp.array([[1.0, 2.0, 3.0]]))
        >>> y.tolist()  # x @ weight.T + bias
        [[-2.0, 4.0]]
    """

    in_features: int
    out_features: int
    bias: bool = True

    def param_names(self):
        return ("weight", "bias") if self.bias else ("weight",)

    def init_own(self, key):
        kw, kb = jax.random.split(key)
        bound = init.default_bound(self.in_features)
        params = {"weight": init.uniform(kw, (self.out_features, self.in_features), -bound, bound)}
        if self.bias:
            params["bias"] = init.uniform(kb, (self.out_features,), -bound, bound)
        return params, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_float(self, x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(
                f"{self!r} expected input (..., {self.in_features}), got {tuple(x.shape)}"
            )
        return linear(x, params["weight"], params.get("bias")), state

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias}"


@dataclass(frozen=True, repr=False)
class Identity(Module):
    """``torch.nn.Identity``: returns its input unchanged (a placeholder, e.g. a removed head).

    Shape: any ``x`` -> the same ``x``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.ones((2, 3))
        >>> y, _ = nn.Identity().apply({}, {}, x)
        >>> y is x
        True
    """

    def apply(self, params, state, x, *, train=False, key=None):
        return x, state



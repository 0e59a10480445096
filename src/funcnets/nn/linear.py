"""Linear layers: ``torch.nn.Linear``, ``Bilinear``, ``Identity``, and ``F.linear``/``F.bilinear``."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn import init
from funcnets.nn._gemm import times_weight
from funcnets.nn._layout import _check_float
from funcnets.nn.distance import _two_inputs
from funcnets.nn.module import Module

__all__ = ["linear", "bilinear", "Linear", "Bilinear", "Identity"]


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


def bilinear(
    input1: Array, input2: Array, weight: Array, bias: Array | None = None, *, _layer: str | None = None
) -> Array:
    """``torch.nn.functional.bilinear``: ``y[..., o] = Σ_ij input1[..., i] · weight[o, i, j] · input2[..., j] + bias[o]``.

    Args:
      input1: ``(*, in1_features)``; input2: ``(*, in2_features)`` with the same leading
        dimensions ``*`` (none at all is allowed); weight: ``(out_features, in1_features,
        in2_features)``; bias: ``(out_features,)`` or None.
    Returns:
      ``(*, out_features)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> w = jnp.array([[[1.0, 0.0], [0.0, 2.0]]])  # one output: x1[0]·x2[0] + 2·x1[1]·x2[1]
        >>> F.bilinear(jnp.array([[1.0, 3.0]]), jnp.array([[5.0, 7.0]]), w, jnp.array([0.5])).tolist()
        [[47.5]]
    """
    who = _layer or "bilinear()"
    # torch's checks and messages (aten/src/ATen/native/Linear.cpp), plus the ranks it indexes without checking
    if input1.ndim == 0 or input2.ndim == 0:
        raise ShapeError(
            f"{who}: expected inputs (*, in1_features) and (*, in2_features), got shapes {tuple(input1.shape)} "
            f"and {tuple(input2.shape)}: give each at least its feature dimension"
        )
    if weight.ndim != 3:
        raise ShapeError(
            f"{who}: expected weight (out_features, in1_features, in2_features), got shape {tuple(weight.shape)}"
        )
    if input1.ndim != input2.ndim:
        raise ShapeError(
            f"{who}: input dimensions do not match: got {input1.ndim} and {input2.ndim} "
            f"(shapes {tuple(input1.shape)} and {tuple(input2.shape)}; the leading dimensions must be equal)"
        )
    for d, (a, b) in enumerate(zip(input1.shape[:-1], input2.shape[:-1])):
        if a != b:
            raise ShapeError(
                f"{who}: input batch dimensions do not match at dim {d}: got {a} and {b} "
                f"(shapes {tuple(input1.shape)} and {tuple(input2.shape)})"
            )
    for which, x, axis in (("input1", input1, 1), ("input2", input2, 2)):
        if x.shape[-1] != weight.shape[axis]:
            raise ShapeError(
                f"{who}: {which} size does not match weight size: got {x.shape[-1]} but expected "
                f"{weight.shape[axis]} ({which} has shape {tuple(x.shape)}, weight {tuple(weight.shape)})"
            )
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != weight.shape[0]):
        got = bias.shape[0] if bias.ndim else "()"
        raise ShapeError(f"{who}: bias size does not match weight size: got {got} but expected {weight.shape[0]}")
    # One einsum; jnp.einsum (opt_einsum) picks the order (x1 with the weight, then x2). Measured (jit, float32,
    # forward / forward+backward ms, 2 cores): B, in1, in2, out = 128, 20, 30, 40: 0.22 / 0.76;
    # 64, 256, 256, 64: 15.6 / 39.7; forming x1 ⊗ x2 and one GEMM instead: 0.19 / 0.91 and
    # 10.9 / 78.7 (its backward materialises (B, in1·in2) twice); torch eager: 1.45 / 12.7, 7.2 / 78.
    y = jnp.einsum("...i,oij,...j->...o", input1, weight, input2)
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
class Bilinear(Module):
    """``y = x1^T A x2 + b``: ``x1: (*, in1_features)``, ``x2: (*, in2_features)`` with equal
    leading dimensions ``* -> (*, out_features)``. ``weight`` is ``(out_features,
    in1_features, in2_features)``; weight and bias are drawn from ``U(-1/sqrt(in1_features),
    1/sqrt(in1_features))`` as in torch. Called as ``apply(params, state, x1, x2)`` (or with
    ``x = (x1, x2)``, as :func:`funcnets.from_torch` does).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Bilinear(2, 3, 4)
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].shape, params["bias"].shape
        ((4, 2, 3), (4,))
        >>> y, _ = m.apply(params, state, jnp.ones((5, 2)), jnp.ones((5, 3)))
        >>> y.shape
        (5, 4)
    """

    in1_features: int
    in2_features: int
    out_features: int
    bias: bool = True

    def __post_init__(self):
        if self.in1_features <= 0:  # torch's check: the init bound is 1/sqrt(in1_features)
            raise ValueError(f"in1_features must be > 0, but got (in1_features={self.in1_features})")

    def param_names(self):
        return ("weight", "bias") if self.bias else ("weight",)

    def init_own(self, key):
        kw, kb = jax.random.split(key)
        bound = init.default_bound(self.in1_features)
        shape = (self.out_features, self.in1_features, self.in2_features)
        params = {"weight": init.uniform(kw, shape, -bound, bound)}
        if self.bias:
            params["bias"] = init.uniform(kb, (self.out_features,), -bound, bound)
        return params, {}

    def __call__(self, params, state, x1, x2=None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, x1, x2, train=train, key=key)

    def apply(self, params, state, x1, x2=None, *, train=False, key=None):
        x1, x2 = _two_inputs(self, x1, x2)
        _check_float(self, x1)
        _check_float(self, x2)
        return bilinear(x1, x2, params["weight"], params.get("bias"), _layer=repr(self)), state

    def extra_repr(self):
        return (
            f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
            f"out_features={self.out_features}, bias={self.bias}"
        )


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



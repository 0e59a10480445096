"""``torch.nn.CosineSimilarity``, ``PairwiseDistance`` and ``F.cosine_similarity``,
``F.pairwise_distance``, ``F.pdist``.

Norms here have torch's gradient at zero (0, where ``jnp.linalg.norm``'s is NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn.module import Module

__all__ = ["cosine_similarity", "pairwise_distance", "pdist", "CosineSimilarity", "PairwiseDistance"]


def _norm(x: Array, p: float, axis: int, keepdims: bool = False) -> Array:
    """``torch.linalg.vector_norm`` with its gradient (0 at a zero vector)."""
    a = x * jnp.sign(x)  # |x| with torch's gradient sgn(x), 0 at 0 (lax.abs's is 1 there)
    if p == float("inf"):
        return jnp.max(a, axis=axis, keepdims=keepdims)
    if p == float("-inf"):
        return jnp.min(a, axis=axis, keepdims=keepdims)
    if p == 0:
        return jnp.sum(x != 0, axis=axis, keepdims=keepdims).astype(x.dtype)
    if p == 1:
        return jnp.sum(a, axis=axis, keepdims=keepdims)
    if p == 2:
        s = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    else:
        safe = jnp.where(a == 0, 1, a)
        # a zero entry is 0**p: 0 for p > 0, inf for p < 0 (which makes the norm 0, as torch's)
        s = jnp.sum(jnp.where(a == 0, 0 if p > 0 else jnp.inf, safe**p), axis=axis, keepdims=keepdims)
    zero = s == 0
    r = jnp.where(zero, 1, s)
    return jnp.where(zero, 0, r ** (1 / p) if p != 2 else jnp.sqrt(r))


def _broadcast(x1: Array, x2: Array, name: str) -> tuple[Array, Array]:
    try:
        shape = jnp.broadcast_shapes(x1.shape, x2.shape)
    except ValueError:
        raise ShapeError(
            f"{name}: the inputs {tuple(x1.shape)} and {tuple(x2.shape)} do not broadcast; "
            f"give them the same shape (or size-1 dims where one is shared)"
        ) from None
    return jnp.broadcast_to(x1, shape), jnp.broadcast_to(x2, shape)


def cosine_similarity(x1: Array, x2: Array, dim: int = 1, eps: float = 1e-8, *, _layer: str | None = None) -> Array:
    """``sum(x1 / max(|x1|, eps) * x2 / max(|x2|, eps), dim)`` (torch 2.x's formula: each
    norm clamped separately; the clamp does not enter the gradient, as torch clamps
    under ``no_grad``). Inputs broadcast; ``dim`` is removed."""
    name = _layer or "cosine_similarity"
    x1, x2 = _broadcast(jnp.asarray(x1), jnp.asarray(x2), name)
    if not -x1.ndim <= dim < max(x1.ndim, 1):
        raise ShapeError(f"{name}: dim {dim} is out of range for inputs of shape {tuple(x1.shape)}")

    def clamped(x):
        n = _norm(x, 2, dim, keepdims=True)
        return n + jax.lax.stop_gradient(jnp.maximum(n, eps) - n)

    return jnp.sum((x1 / clamped(x1)) * (x2 / clamped(x2)), axis=dim)


def pairwise_distance(x1: Array, x2: Array, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False,
                      *, _layer: str | None = None) -> Array:
    """``norm(x1 - x2 + eps, p)`` over the last dim (torch's: ``eps`` is added to the
    difference). ``(N, D), (N, D) -> (N,)`` (``(N, 1)`` with ``keepdim``); inputs broadcast."""
    x1, x2 = _broadcast(jnp.asarray(x1), jnp.asarray(x2), _layer or "pairwise_distance")
    return _norm(x1 - x2 + eps, p, -1, keepdim)


def pdist(input: Array, p: float = 2.0) -> Array:
    """``torch.nn.functional.pdist``: the ``p``-norm distance between every pair of rows,
    ``(N, M) -> (N * (N - 1) / 2,)`` in the order of ``i < j`` row-major.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> x = jnp.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
        >>> [round(v, 4) for v in F.pdist(x).tolist()]  # pairs (0, 1), (0, 2), (1, 2)
        [5.0, 10.0, 5.0]
    """
    if input.ndim != 2:
        raise ShapeError(f"pdist only supports 2D tensors (N, M), got {input.ndim}D {tuple(input.shape)}")
    if p < 0:
        raise ValueError("pdist only supports non-negative p values")
    i, j = np.triu_indices(input.shape[0], 1)
    return _norm(input[i] - input[j], p, -1)


def _two_inputs(layer, x1, x2):
    if x2 is None:
        if not (isinstance(x1, tuple) and len(x1) == 2):
            raise ShapeError(f"{layer!r} takes two inputs: call it as layer(params, state, x1, x2) or with x = (x1, x2)")
        x1, x2 = x1
    return x1, x2


@dataclass(frozen=True, repr=False)
class CosineSimilarity(Module):
    """``torch.nn.CosineSimilarity``: ``x1, x2: (*, D, *) -> (*, *)`` along ``dim``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x1, x2 = jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[0.0, 1.0], [2.0, 2.0]])
        >>> y, _ = nn.CosineSimilarity(dim=1).apply({}, {}, x1, x2)
        >>> [round(v, 4) for v in y.tolist()]  # orthogonal, then parallel
        [0.0, 1.0]
    """

    dim: int = 1
    eps: float = 1e-8

    def __call__(self, params, state, x1, x2=None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, x1, x2, train=train, key=key)

    def apply(self, params, state, x1, x2=None, *, train=False, key=None):
        x1, x2 = _two_inputs(self, x1, x2)
        return cosine_similarity(x1, x2, self.dim, self.eps, _layer=repr(self)), state


@dataclass(frozen=True, repr=False)
class PairwiseDistance(Module):
    """``torch.nn.PairwiseDistance``: ``x1, x2: (N, D) -> (N,)``, ``norm(x1 - x2 + eps, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x1, x2 = jnp.array([[0.0, 0.0], [1.0, 1.0]]), jnp.array([[3.0, 4.0], [1.0, 2.0]])
        >>> y, _ = nn.PairwiseDistance().apply({}, {}, x1, x2)
        >>> [round(v, 4) for v in y.tolist()]
        [5.0, 1.0]
    """

    p: float = 2.0
    eps: float = 1e-6
    keepdim: bool = False

    def __call__(self, params, state, x1, x2=None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, x1, x2, train=train, key=key)

    def apply(self, params, state, x1, x2=None, *, train=False, key=None):
        x1, x2 = _two_inputs(self, x1, x2)
        return pairwise_distance(x1, x2, self.p, self.eps, self.keepdim, _layer=repr(self)), state

"""``torch.nn.Flatten``, ``Unflatten``, ``torch.flatten`` and ``torch.unflatten``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn.module import Module

__all__ = ["flatten", "unflatten", "Flatten", "Unflatten"]


def flatten(x: Array, start_dim: int = 1, end_dim: int = -1) -> Array:
    """``torch.flatten``: merge dims ``start_dim..end_dim`` (C, H, W order for images)."""
    nd = x.ndim
    s, e = start_dim % nd, end_dim % nd
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1 :])



@dataclass(frozen=True, repr=False)
class Flatten(Module):
    """Merge dims ``start_dim..end_dim``: ``(N, C, H, W) -> (N, C*H*W)`` in C, H, W order.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.ones((2, 3, 4, 5))
        >>> nn.Flatten().apply({}, {}, x)[0].shape
        (2, 60)
        >>> nn.Flatten(0, 1).apply({}, {}, x)[0].shape
        (6, 4, 5)
    """

    start_dim: int = 1
    end_dim: int = -1

    def apply(self, params, state, x, *, train=False, key=None):
        return flatten(x, self.start_dim, self.end_dim), state

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


def unflatten(x: Array, dim: int, sizes: Sequence[int], *, _layer: str | None = None) -> Array:
    """``torch.unflatten``: split dim ``dim`` into ``sizes`` (one entry may be -1).

    ``(*, prod(sizes), *) -> (*, *sizes, *)``.
    """
    sizes = tuple(int(s) for s in sizes)
    name = _layer or "unflatten"
    if not -x.ndim <= dim < x.ndim:
        raise ShapeError(f"{name}: dim {dim} is out of range for a {x.ndim}-D input {tuple(x.shape)}")
    d = dim % x.ndim
    n = x.shape[d]
    known = 1
    for s in sizes:
        known *= s if s != -1 else 1
    if sizes.count(-1) > 1 or not sizes:
        raise ValueError(f"{name}: unflattened_size must be non-empty with at most one -1, got {sizes}")
    if (-1 in sizes and (known == 0 or n % known)) or (-1 not in sizes and known != n):
        raise ShapeError(
            f"{name}: unflattened_size {sizes} does not multiply to the size {n} of dim {dim} of the input "
            f"{tuple(x.shape)}; choose sizes whose product is {n}"
        )
    return x.reshape(x.shape[:d] + sizes + x.shape[d + 1 :])


@dataclass(frozen=True, repr=False)
class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``: ``(N, C*H*W) -> (N, C, H, W)`` for
    ``Unflatten(1, (C, H, W))``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Unflatten(1, (2, 5)).apply({}, {}, jnp.ones((3, 10)))
        >>> y.shape
        (3, 2, 5)
    """

    dim: int
    unflattened_size: tuple[int, ...]
    _as_list: bool = field(default=False, init=False, compare=False)  # torch's repr keeps the list

    def __post_init__(self):
        if isinstance(self.unflattened_size, list):
            object.__setattr__(self, "_as_list", True)
        if not isinstance(self.unflattened_size, (list, tuple)):
            raise TypeError(f"unflattened_size must be tuple or list, but found type {type(self.unflattened_size).__name__}")
        object.__setattr__(self, "unflattened_size", tuple(int(s) for s in self.unflattened_size))

    def apply(self, params, state, x, *, train=False, key=None):
        return unflatten(x, self.dim, self.unflattened_size, _layer=repr(self)), state

    def extra_repr(self):
        size = list(self.unflattened_size) if self._as_list else self.unflattened_size
        return f"dim={self.dim}, unflattened_size={size}"

"""``torch.nn.Flatten`` and ``torch.flatten``."""

from __future__ import annotations

from dataclasses import dataclass

from funcnets._typing import Array
from funcnets.nn.module import Module

__all__ = ["flatten", "Flatten"]


def flatten(x: Array, start_dim: int = 1, end_dim: int = -1) -> Array:
    """``torch.flatten``: merge dims ``start_dim..end_dim`` (C, H, W order for images)."""
    nd = x.ndim
    s, e = start_dim % nd, end_dim % nd
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1 :])



@dataclass(frozen=True, repr=False)
class Flatten(Module):
    """Merge dims ``start_dim..end_dim``: ``(N, C, H, W) -> (N, C*H*W)`` in C, H, W order."""

    start_dim: int = 1
    end_dim: int = -1

    def apply(self, params, state, x, *, train=False, key=None):
        return flatten(x, self.start_dim, self.end_dim), state

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"



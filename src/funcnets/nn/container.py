"""Containers: ``torch.nn.Sequential``."""

from __future__ import annotations

from dataclasses import dataclass

from funcnets._typing import Params, State
from funcnets.nn.module import Module, Scope

__all__ = ["Sequential"]


@dataclass(frozen=True, repr=False, init=False)
class Sequential(Module):
    """Applies its layers in order; children are named ``"0"``, ``"1"``, ... as in torch."""

    layers: tuple[Module, ...]

    def __init__(self, *layers: Module):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: argument {i} is {type(layer).__name__}, not a Module")
        object.__setattr__(self, "layers", tuple(layers))

    def children(self):
        return [(str(i), m) for i, m in enumerate(self.layers)]

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def apply(self, params: Params, state: State, x, *, train=False, key=None):
        scope = Scope(params, state, train, key)
        for name, layer in self.children():
            x = scope(name, layer, x)
        return x, scope.state

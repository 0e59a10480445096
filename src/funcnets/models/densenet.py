"""torchvision's DenseNet-121/161/169/201 (``torchvision/models/densenet.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 29 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``features`` is conv0 (7×7/2) → norm0 → relu0 → pool0 (3×3/2), then
dense blocks separated by transitions (BatchNorm → ReLU → 1×1 conv halving the channels →
2×2 average pool), then norm5; the head is ReLU → global average pool → ``classifier``.
Each dense layer sees the concatenation (channel axis) of the block's input and every
earlier layer's output: BN → ReLU → 1×1 conv to ``bn_size·growth_rate`` → BN → ReLU → 3×3
conv to ``growth_rate`` (→ dropout ``drop_rate`` in training, with ``key=``).

``memory_efficient=True`` is torch's checkpointing of the bottleneck; here the bottleneck
runs under ``jax.checkpoint`` (recomputed in the backward pass), same numbers.
torchvision's initialisation: convolutions ``kaiming_normal_`` (fan_in, gain sqrt(2)),
BatchNorm γ=1, β=0, the classifier's bias 0 (its weight torch's default).
Weights files from torchvision's downloads use old names (``norm.1``); they are renamed
(``norm1``) on loading, as torchvision's own loader does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from funcnets.models._registry import (
    check_input, constant, kaiming_normal, load_pretrained, register_model, reinit,
)
from funcnets.nn import functional as F
from funcnets.nn import AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU
from funcnets.nn.module import Module, Scope

__all__ = ["DenseNet", "densenet121", "densenet161", "densenet169", "densenet201"]


class _Named(Module):
    """``nn.Sequential(OrderedDict(...))``: named children applied in order. Children are
    attributes (so ``nn.replace`` can swap one); equality and hash go by the children."""

    def __init__(self, *items: tuple[str, Module]):
        object.__setattr__(self, "_names", tuple(n for n, _ in items))
        for n, m in items:
            object.__setattr__(self, n, m)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; use funcnets.nn.replace")

    def children(self):
        return [(n, getattr(self, n)) for n in self._names]

    def __eq__(self, other):
        return type(self) is type(other) and self.children() == other.children()

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.children())))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        for name, m in self.children():
            x = s(name, m, x)
        return x, s.state


@dataclass(frozen=True, repr=False)
class _DenseLayer(Module):
    """``x: (N, C_in, H, W) -> (N, growth_rate, H, W)`` (the block concatenates)."""

    num_input_features: int
    growth_rate: int
    bn_size: int
    drop_rate: float
    memory_efficient: bool = False
    norm1: BatchNorm2d = field(init=False)
    relu1: ReLU = field(init=False)
    conv1: Conv2d = field(init=False)
    norm2: BatchNorm2d = field(init=False)
    relu2: ReLU = field(init=False)
    conv2: Conv2d = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        mid = self.bn_size * self.growth_rate
        set_("norm1", BatchNorm2d(self.num_input_features))
        set_("relu1", ReLU())
        set_("conv1", Conv2d(self.num_input_features, mid, kernel_size=1, stride=1, bias=False))
        set_("norm2", BatchNorm2d(mid))
        set_("relu2", ReLU())
        set_("conv2", Conv2d(mid, self.growth_rate, kernel_size=3, stride=1, padding=1, bias=False))

    def _bottleneck(self, params, state, x, train):
        s = Scope(params, state, train, None)
        return s("conv1", self.conv1, F.relu(s("norm1", self.norm1, x))), s.state

    def apply(self, params, state, x, *, train=False, key=None):
        bottleneck = self._bottleneck
        if self.memory_efficient and train:  # torch checkpoints only when gradients flow
            bottleneck = jax.checkpoint(bottleneck, static_argnums=(3,))
        y, new1 = bottleneck(params, state, x, train)
        s = Scope(params, state, train, None)
        y = s("conv2", self.conv2, F.relu(s("norm2", self.norm2, y)))
        if self.drop_rate > 0:
            y = F.dropout(y, self.drop_rate, train, key)
        return y, {**new1, **s.state}


class _DenseBlock(_Named):
    """``x: (N, C, H, W) -> (N, C + num_layers·growth_rate, H, W)``."""

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        features = [x]
        for name, layer in self.children():
            features.append(s(name, layer, jnp.concatenate(features, axis=1)))
        return jnp.concatenate(features, axis=1), s.state


@dataclass(frozen=True, repr=False)
class _Transition(Module):
    """BN → ReLU → 1×1 conv → 2×2 average pool; ``(N, C_in, H, W) -> (N, C_out, H/2, W/2)``."""

    num_input_features: int
    num_output_features: int
    norm: BatchNorm2d = field(init=False)
    relu: ReLU = field(init=False)
    conv: Conv2d = field(init=False)
    pool: AvgPool2d = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("norm", BatchNorm2d(self.num_input_features))
        set_("relu", ReLU())
        set_("conv", Conv2d(self.num_input_features, self.num_output_features, kernel_size=1, stride=1, bias=False))
        set_("pool", AvgPool2d(kernel_size=2, stride=2))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        x = s("conv", self.conv, F.relu(s("norm", self.norm, x)))
        return s("pool", self.pool, x), s.state


@dataclass(frozen=True, repr=False)
class DenseNet(Module):
    """``torchvision.models.DenseNet(growth_rate=32, block_config=(6, 12, 24, 16),
    num_init_features=64, bn_size=4, drop_rate=0, num_classes=1000, memory_efficient=False)``.

    Replace the head with ``nn.replace(model, params, state, "classifier", Linear(1024, 10), key)``.
    """

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0
    num_classes: int = 1000
    memory_efficient: bool = False
    arch: str = "densenet"
    features: _Named = field(init=False)
    classifier: Linear = field(init=False)

    min_size = 29

    def __post_init__(self):
        object.__setattr__(self, "block_config", tuple(self.block_config))
        items: list[tuple[str, Module]] = [
            ("conv0", Conv2d(3, self.num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", BatchNorm2d(self.num_init_features)),
            ("relu0", ReLU()),
            ("pool0", MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]
        n = self.num_init_features
        for i, num_layers in enumerate(self.block_config):
            layers = [
                (f"denselayer{j + 1}", _DenseLayer(n + j * self.growth_rate, self.growth_rate, self.bn_size,
                                                   float(self.drop_rate), self.memory_efficient))
                for j in range(num_layers)
            ]
            items.append((f"denseblock{i + 1}", _DenseBlock(*layers)))
            n += num_layers * self.growth_rate
            if i != len(self.block_config) - 1:
                items.append((f"transition{i + 1}", _Transition(n, n // 2)))
                n //= 2
        items.append(("norm5", BatchNorm2d(n)))
        object.__setattr__(self, "features", _Named(*items))
        object.__setattr__(self, "classifier", Linear(n, self.num_classes))

    def init_tree(self, key):
        k_default, k_dn = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if isinstance(m, Conv2d):
                return {"weight": kaiming_normal(k, own["weight"], mode="fan_in")}
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            if isinstance(m, Linear):
                return {"bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_dn, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = F.relu(s("features", self.features, x))
        x = F.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return s("classifier", self.classifier, x), s.state


_OLD_NAME = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _rename(sd: dict) -> dict:
    """torchvision's downloads name ``denselayer1.norm.1.weight`` what the model calls
    ``denselayer1.norm1.weight``; torchvision renames on loading, and so does this."""
    out = {}
    for k, v in sd.items():
        m = _OLD_NAME.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _densenet(arch, growth_rate, block_config, num_init_features, weights, **kwargs) -> Any:
    model = DenseNet(growth_rate, block_config, num_init_features, arch=arch, **kwargs)
    return model if weights is None else load_pretrained(model, weights, rename=_rename)


_DOC = """DenseNet-{depth} from "Densely Connected Convolutional Networks".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``, old or new key names); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``DenseNet``'s ``bn_size=4``, ``drop_rate=0``, ``num_classes=1000``,
        ``memory_efficient=False``.
    Returns:
      ``DenseNet``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, growth_rate: int, block_config: tuple[int, ...], num_init_features: int):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        return _densenet(arch, growth_rate, block_config, num_init_features, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(depth=arch[8:])
    return register_model(arch)(build)


densenet121 = _builder("densenet121", 32, (6, 12, 24, 16), 64)
densenet161 = _builder("densenet161", 48, (6, 12, 36, 24), 96)
densenet169 = _builder("densenet169", 32, (6, 12, 32, 32), 64)
densenet201 = _builder("densenet201", 32, (6, 12, 48, 32), 64)

"""torchvision's SqueezeNet 1.0 and 1.1 (``torchvision/models/squeezenet.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 21 (1.0) or ≥ 17 (1.1), torchvision's ``min_size`` →
logits ``(N, num_classes)``. ``features`` alternates max-pools (3×3/2, ceil mode) and
:class:`Fire` modules (a 1×1 squeeze, then 1×1 and 3×3 expansions concatenated on the
channel axis); ``classifier`` is dropout → a 1×1 convolution to ``num_classes`` → ReLU →
global average pool. torchvision's initialisation: ``kaiming_uniform_`` for every
convolution but the last, N(0, 0.01²) for the last, zero biases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from funcnets.models._registry import (
    check_input, constant, kaiming_uniform, load_pretrained, normal, register_model, reinit,
)
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, Conv2d, Dropout, MaxPool2d, ReLU, Sequential
from funcnets.nn.module import Module, Scope

__all__ = ["Fire", "SqueezeNet", "squeezenet1_0", "squeezenet1_1"]


@dataclass(frozen=True, repr=False)
class Fire(Module):
    """``cat([relu(expand1x1(s)), relu(expand3x3(s))], 1)`` with ``s = relu(squeeze(x))``;
    ``x: (N, inplanes, H, W) -> (N, expand1x1_planes + expand3x3_planes, H, W)``."""

    inplanes: int
    squeeze_planes: int
    expand1x1_planes: int
    expand3x3_planes: int
    squeeze: Conv2d = field(init=False)
    squeeze_activation: ReLU = field(init=False)
    expand1x1: Conv2d = field(init=False)
    expand1x1_activation: ReLU = field(init=False)
    expand3x3: Conv2d = field(init=False)
    expand3x3_activation: ReLU = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("squeeze", Conv2d(self.inplanes, self.squeeze_planes, kernel_size=1))
        set_("squeeze_activation", ReLU())
        set_("expand1x1", Conv2d(self.squeeze_planes, self.expand1x1_planes, kernel_size=1))
        set_("expand1x1_activation", ReLU())
        set_("expand3x3", Conv2d(self.squeeze_planes, self.expand3x3_planes, kernel_size=3, padding=1))
        set_("expand3x3_activation", ReLU())

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        x = F.relu(s("squeeze", self.squeeze, x))
        a = F.relu(s("expand1x1", self.expand1x1, x))
        b = F.relu(s("expand3x3", self.expand3x3, x))
        return jnp.concatenate([a, b], axis=1), s.state


_POOL = dict(kernel_size=3, stride=2, ceil_mode=True)


@dataclass(frozen=True, repr=False)
class SqueezeNet(Module):
    """``torchvision.models.SqueezeNet(version="1_0", num_classes=1000, dropout=0.5)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.1", Conv2d(512, 10, 1), key)``.
    """

    version: str = "1_0"
    num_classes: int = 1000
    dropout: float = 0.5
    arch: str = ""
    features: Sequential = field(init=False)
    classifier: Sequential = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.version == "1_0":
            set_("features", Sequential(
                Conv2d(3, 96, kernel_size=7, stride=2), ReLU(), MaxPool2d(**_POOL),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), MaxPool2d(**_POOL),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), MaxPool2d(**_POOL), Fire(512, 64, 256, 256),
            ))  # fmt: skip
        elif self.version == "1_1":
            set_("features", Sequential(
                Conv2d(3, 64, kernel_size=3, stride=2), ReLU(), MaxPool2d(**_POOL),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), MaxPool2d(**_POOL),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), MaxPool2d(**_POOL),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            ))  # fmt: skip
        else:
            raise ValueError(f"Unsupported SqueezeNet version {self.version}: 1_0 or 1_1 expected")
        if not self.arch:
            set_("arch", f"squeezenet{self.version}")
        set_("classifier", Sequential(
            Dropout(p=self.dropout), Conv2d(512, self.num_classes, kernel_size=1), ReLU(), AdaptiveAvgPool2d((1, 1))
        ))  # fmt: skip

    @property
    def min_size(self) -> int:
        return 21 if self.version == "1_0" else 17

    def init_tree(self, key):
        k_default, k_sq = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if not isinstance(m, Conv2d):
                return None
            w = normal(k, own["weight"], 0.01) if name == "classifier.1" else kaiming_uniform(k, own["weight"])
            return {"weight": w, "bias": constant(own["bias"], 0.0)}

        return reinit(self, params, k_sq, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("classifier", self.classifier, s("features", self.features, x))
        return F.flatten(x, 1), s.state


_DOC = """SqueezeNet {v}{extra}.

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``SqueezeNet``'s ``num_classes=1000``, ``dropout=0.5``.
    Returns:
      ``SqueezeNet``, or ``(model, params, state)`` when ``weights`` is given.
    """


@register_model()
def squeezenet1_0(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    model = SqueezeNet("1_0", **kwargs)
    return model if weights is None else load_pretrained(model, weights)


@register_model()
def squeezenet1_1(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    model = SqueezeNet("1_1", **kwargs)
    return model if weights is None else load_pretrained(model, weights)


squeezenet1_0.__doc__ = _DOC.format(v="1.0", extra=', from "SqueezeNet: AlexNet-level accuracy with 50x fewer '
                                    'parameters and <0.5MB model size"')
squeezenet1_1.__doc__ = _DOC.format(v="1.1", extra=" (2.4x less computation than 1.0, as accurate)")

"""torchvision's VGG 11/13/16/19 with and without BatchNorm (``torchvision/models/vgg.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 32 (five 2×2 max-pools) → logits ``(N, num_classes)``.
``features`` is :func:`make_layers` of a configuration (3×3 convolutions, ``"M"`` a 2×2
max-pool), a 7×7 adaptive average pool, then ``classifier``: 25088→4096 → ReLU → dropout
→ 4096→4096 → ReLU → dropout → 4096→num_classes. BatchNorm variants (``_bn``) put a
BatchNorm2d after each convolution; their running statistics are the state.

``init_weights=True`` (torchvision's default) is torchvision's initialisation: convolutions
``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` with zero bias, BatchNorm γ=1, β=0,
linear weights N(0, 0.01²) with zero bias; ``init_weights=False`` keeps torch's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Union

import jax

from funcnets.models._registry import (
    check_input, constant, kaiming_normal, load_pretrained, normal, register_model, reinit,
)
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Sequential
from funcnets.nn.module import Module, Scope

__all__ = [
    "VGG", "make_layers", "cfgs", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn",
]

cfgs: dict[str, tuple[Union[str, int], ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def make_layers(cfg: tuple[Union[str, int], ...] | list[Union[str, int]], batch_norm: bool = False) -> Sequential:
    """VGG's ``features``: for each int a 3×3 convolution (+ BatchNorm2d) + ReLU, for
    ``"M"`` a 2×2 max-pool; indices (``features.3.weight``) are torchvision's."""
    layers: list[Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = Conv2d(in_channels, int(v), kernel_size=3, padding=1)
            layers += [conv, BatchNorm2d(int(v)), ReLU()] if batch_norm else [conv, ReLU()]
            in_channels = int(v)
    return Sequential(*layers)


@dataclass(frozen=True, repr=False)
class VGG(Module):
    """``torchvision.models.VGG(features, num_classes=1000, init_weights=True, dropout=0.5)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.6", Linear(4096, 10), key)``.
    """

    features: Sequential
    num_classes: int = 1000
    init_weights: bool = True
    dropout: float = 0.5
    arch: str = "vgg"
    avgpool: AdaptiveAvgPool2d = field(init=False)
    classifier: Sequential = field(init=False)

    min_size = 32

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("avgpool", AdaptiveAvgPool2d((7, 7)))
        set_("classifier", Sequential(
            Linear(512 * 7 * 7, 4096), ReLU(), Dropout(p=self.dropout),
            Linear(4096, 4096), ReLU(), Dropout(p=self.dropout),
            Linear(4096, self.num_classes),
        ))  # fmt: skip

    def init_tree(self, key):
        k_default, k_vgg = jax.random.split(key)
        params, state = super().init_tree(k_default)
        if not self.init_weights:
            return params, state

        def rule(name, m, k, own):
            if isinstance(m, Conv2d):
                out = {"weight": kaiming_normal(k, own["weight"], mode="fan_out")}
                return out | ({"bias": constant(own["bias"], 0.0)} if "bias" in own else {})
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            if isinstance(m, Linear):
                return {"weight": normal(k, own["weight"], 0.01), "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_vgg, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("avgpool", self.avgpool, s("features", self.features, x))
        return s("classifier", self.classifier, F.flatten(x, 1)), s.state


def _vgg(arch: str, cfg: str, batch_norm: bool, weights: str | os.PathLike | None, **kwargs: Any) -> Any:
    if weights is not None:
        kwargs["init_weights"] = False  # as torchvision: the file's values replace every parameter
    model = VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), arch=arch, **kwargs)
    return model if weights is None else load_pretrained(model, weights)


_DOC = """VGG-{depth}{bn} from "Very Deep Convolutional Networks for Large-Scale Image Recognition".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``VGG``'s ``num_classes=1000``, ``init_weights=True``, ``dropout=0.5``.
    Returns:
      ``VGG``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, cfg: str, batch_norm: bool):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        return _vgg(arch, cfg, batch_norm, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(depth=arch[3:5], bn=" with BatchNorm" if batch_norm else "")
    return register_model(arch)(build)


vgg11 = _builder("vgg11", "A", False)
vgg11_bn = _builder("vgg11_bn", "A", True)
vgg13 = _builder("vgg13", "B", False)
vgg13_bn = _builder("vgg13_bn", "B", True)
vgg16 = _builder("vgg16", "D", False)
vgg16_bn = _builder("vgg16_bn", "D", True)
vgg19 = _builder("vgg19", "E", False)
vgg19_bn = _builder("vgg19_bn", "E", True)

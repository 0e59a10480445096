"""torchvision's MobileNetV2 (``torchvision/models/mobilenetv2.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 1 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``features`` is a 3×3/2 stem (``Conv2dNormActivation`` with ReLU6),
the :class:`InvertedResidual` blocks of ``inverted_residual_setting`` (rows ``t, c, n, s``:
expansion, output channels, repeats, first stride), then a 1×1 conv to ``last_channel``
(1280·max(1, width_mult)); the head is global average pool → ``classifier`` (dropout →
``Linear``). Channel counts are ``c·width_mult`` rounded by :func:`_make_divisible` to a
multiple of ``round_nearest``.

An inverted residual is 1×1 expansion (ReLU6, left out when ``expand_ratio == 1``) →
3×3 depthwise (ReLU6) → linear 1×1 projection → BatchNorm, plus the input when the
stride is 1 and the channels are unchanged.

torchvision's initialisation: convolutions ``kaiming_normal_(mode="fan_out")`` (gain
sqrt(2)) with zero biases, BatchNorm/GroupNorm γ=1, β=0, linears N(0, 0.01²) with zero
biases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax

from funcnets.models._ops import Conv2dNormActivation
from funcnets.models._registry import (
    check_input, constant, kaiming_normal, load_pretrained, normal, register_model, reinit,
)
from funcnets.nn import functional as F
from funcnets.nn import BatchNorm2d, Conv2d, Dropout, GroupNorm, Linear, ReLU6, Sequential
from funcnets.nn.module import Module, Scope

__all__ = ["MobileNetV2", "InvertedResidual", "mobilenet_v2"]


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_utils._make_divisible``: ``v`` rounded to the nearest multiple of
    ``divisor`` (at least ``min_value``), rounded up one step if that lost more than 10%."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _reinit_like_mobilenet(model: Module, params, key, linear_std: float = 0.01):
    """The ``for m in self.modules()`` loop MobileNetV2 and V3 share."""

    def rule(name, m, k, own):
        if isinstance(m, Conv2d):
            new = {"weight": kaiming_normal(k, own["weight"], mode="fan_out")}
            if "bias" in own:
                new["bias"] = constant(own["bias"], 0.0)
            return new
        if isinstance(m, (BatchNorm2d, GroupNorm)) and "weight" in own:
            return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
        if isinstance(m, Linear):
            new = {"weight": normal(k, own["weight"], linear_std)}
            if "bias" in own:
                new["bias"] = constant(own["bias"], 0.0)
            return new
        return None

    return reinit(model, params, key, rule)


@dataclass(frozen=True, repr=False)
class InvertedResidual(Module):
    """``torchvision.models.mobilenetv2.InvertedResidual(inp, oup, stride, expand_ratio, norm_layer=None)``:
    ``x: (N, inp, H, W) -> (N, oup, H/stride, W/stride)``; ``conv`` is [1×1 expand →]
    3×3 depthwise → 1×1 project → norm, added to ``x`` when ``stride == 1 and inp == oup``."""

    inp: int
    oup: int
    stride: int
    expand_ratio: int
    norm_layer: Callable[..., Module] | None = None
    conv: Sequential = field(init=False)

    def __post_init__(self):
        if self.stride not in [1, 2]:
            raise ValueError(f"stride should be 1 or 2 instead of {self.stride}")
        norm_layer = self.norm_layer or BatchNorm2d
        hidden_dim = int(round(self.inp * self.expand_ratio))
        layers: list[Module] = []
        if self.expand_ratio != 1:
            layers.append(Conv2dNormActivation(self.inp, hidden_dim, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=ReLU6))
        layers += [
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=self.stride, groups=hidden_dim,
                                 norm_layer=norm_layer, activation_layer=ReLU6),
            Conv2d(hidden_dim, self.oup, 1, 1, 0, bias=False),
            norm_layer(self.oup),
        ]
        object.__setattr__(self, "conv", Sequential(*layers))

    @property
    def use_res_connect(self) -> bool:
        return self.stride == 1 and self.inp == self.oup

    @property
    def out_channels(self) -> int:
        return self.oup

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        y = s("conv", self.conv, x)
        return (x + y if self.use_res_connect else y), s.state


# t (expansion), c (output channels), n (repeats), s (first stride)
_DEFAULT_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1))


@dataclass(frozen=True, repr=False)
class MobileNetV2(Module):
    """``torchvision.models.MobileNetV2(num_classes=1000, width_mult=1.0,
    inverted_residual_setting=None, round_nearest=8, block=None, norm_layer=None, dropout=0.2)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.1", Linear(1280, 10), key)``.
    """

    num_classes: int = 1000
    width_mult: float = 1.0
    inverted_residual_setting: Sequence[Sequence[int]] | None = None
    round_nearest: int = 8
    block: Callable[..., Module] | None = None
    norm_layer: Callable[..., Module] | None = None
    dropout: float = 0.2
    arch: str = "mobilenet_v2"
    last_channel: int = field(init=False)
    features: Sequential = field(init=False)
    classifier: Sequential = field(init=False)

    min_size = 1

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        block = self.block or InvertedResidual
        norm_layer = self.norm_layer or BatchNorm2d
        setting = self.inverted_residual_setting
        if setting is None:
            setting = _DEFAULT_SETTING
        if len(setting) == 0 or len(setting[0]) != 4:
            raise ValueError(
                f"inverted_residual_setting should be non-empty or a 4-element list, got {setting}"
            )
        set_("inverted_residual_setting", tuple(tuple(row) for row in setting))  # hashable
        input_channel = _make_divisible(32 * self.width_mult, self.round_nearest)
        set_("last_channel", _make_divisible(1280 * max(1.0, self.width_mult), self.round_nearest))
        features: list[Module] = [
            Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer, activation_layer=ReLU6)
        ]
        for t, c, n, s in self.inverted_residual_setting:
            output_channel = _make_divisible(c * self.width_mult, self.round_nearest)
            for i in range(n):
                features.append(block(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t,
                                      norm_layer=norm_layer))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer,
                                             activation_layer=ReLU6))
        set_("features", Sequential(*features))
        set_("classifier", Sequential(Dropout(p=self.dropout), Linear(self.last_channel, self.num_classes)))

    def init_tree(self, key):
        k_default, k_mb = jax.random.split(key)
        params, state = super().init_tree(k_default)
        return _reinit_like_mobilenet(self, params, k_mb), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("features", self.features, x)
        x = F.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return s("classifier", self.classifier, x), s.state


@register_model()
def mobilenet_v2(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    """MobileNetV2 from "MobileNetV2: Inverted Residuals and Linear Bottlenecks".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``MobileNetV2``'s ``num_classes=1000``, ``width_mult=1.0``,
        ``inverted_residual_setting``, ``round_nearest=8``, ``block``, ``norm_layer``,
        ``dropout=0.2``.
    Returns:
      ``MobileNetV2``, or ``(model, params, state)`` when ``weights`` is given.
    """
    model = MobileNetV2(**kwargs)
    return model if weights is None else load_pretrained(model, weights)

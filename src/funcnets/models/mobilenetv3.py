"""torchvision's MobileNetV3 large and small (``torchvision/models/mobilenetv3.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 1 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``features`` is a 3×3/2 stem (Hardswish), one
:class:`InvertedResidual` per :class:`InvertedResidualConfig` (the rows of Tables 1 and 2
of the paper), then a 1×1 conv to 6× the last block's channels (Hardswish); the head is
``avgpool`` (global) → ``classifier`` (Linear → Hardswish → Dropout → Linear).
BatchNorms use eps=0.001, momentum=0.01 unless ``norm_layer`` is given.

An inverted residual is [1×1 expansion →] k×k depthwise (stride, or dilation instead of
stride when dilated) [→ squeeze-excitation, ReLU inside and Hardsigmoid scale] → 1×1
projection (no activation), plus the input when the stride is 1 and the channels are
unchanged; activations are ReLU ("RE") or Hardswish ("HS"). The builders take
``width_mult`` (channels ×, rounded to multiples of 8), ``reduced_tail`` (halves the
last stage) and ``dilated`` (dilation 2 in the last stage, output stride 16).

torchvision's initialisation: convolutions ``kaiming_normal_(mode="fan_out")`` with zero
biases (the squeeze-excitation's too), BatchNorm γ=1, β=0, linears N(0, 0.01²) with
zero biases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import jax

from funcnets.models._ops import Conv2dNormActivation, SqueezeExcitation
from funcnets.models._registry import check_input, load_pretrained, register_model
from funcnets.models.mobilenetv2 import _make_divisible, _reinit_like_mobilenet
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Dropout, Hardsigmoid, Hardswish, Linear, ReLU, Sequential
from funcnets.nn.module import Module, Scope

__all__ = [
    "MobileNetV3", "InvertedResidualConfig", "InvertedResidual", "mobilenet_v3_large", "mobilenet_v3_small",
]


class InvertedResidualConfig:
    """One block's configuration (torchvision's class of the same name): channels are
    multiplied by ``width_mult`` and rounded to a multiple of 8; ``activation`` is ``"RE"``
    (ReLU) or ``"HS"`` (Hardswish)."""

    def __init__(self, input_channels: int, kernel: int, expanded_channels: int, out_channels: int, use_se: bool,
                 activation: str, stride: int, dilation: int, width_mult: float):
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return _make_divisible(channels * width_mult, 8)

    def _key(self) -> tuple:
        return (self.input_channels, self.kernel, self.expanded_channels, self.out_channels, self.use_se,
                self.use_hs, self.stride, self.dilation)

    # the models holding configurations are hashable (static jit arguments)
    def __eq__(self, other):
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return ("InvertedResidualConfig(input_channels={}, kernel={}, expanded_channels={}, out_channels={}, "
                "use_se={}, use_hs={}, stride={}, dilation={})".format(*self._key()))


_SE_LAYER = partial(SqueezeExcitation, scale_activation=Hardsigmoid)
_NORM_LAYER = partial(BatchNorm2d, eps=0.001, momentum=0.01)


@dataclass(frozen=True, repr=False)
class InvertedResidual(Module):
    """``torchvision.models.mobilenetv3.InvertedResidual(cnf, norm_layer, se_layer)``:
    ``x: (N, C_in, H, W) -> (N, C_out, H', W')``; ``block`` is [expand →] depthwise
    [→ SE] → project, added to ``x`` when the stride is 1 and ``C_in == C_out``."""

    cnf: InvertedResidualConfig
    norm_layer: Callable[..., Module]
    se_layer: Callable[..., Module] = _SE_LAYER
    block: Sequential = field(init=False)

    def __post_init__(self):
        cnf = self.cnf
        if not (1 <= cnf.stride <= 2):
            raise ValueError("illegal stride value")
        act = Hardswish if cnf.use_hs else ReLU
        layers: list[Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels, kernel_size=1,
                                               norm_layer=self.norm_layer, activation_layer=act))
        stride = 1 if cnf.dilation > 1 else cnf.stride  # dilation replaces the stride
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels, kernel_size=cnf.kernel,
                                           stride=stride, dilation=cnf.dilation, groups=cnf.expanded_channels,
                                           norm_layer=self.norm_layer, activation_layer=act))
        if cnf.use_se:
            layers.append(self.se_layer(cnf.expanded_channels, _make_divisible(cnf.expanded_channels // 4, 8)))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, kernel_size=1,
                                           norm_layer=self.norm_layer, activation_layer=None))
        object.__setattr__(self, "block", Sequential(*layers))

    @property
    def use_res_connect(self) -> bool:
        return self.cnf.stride == 1 and self.cnf.input_channels == self.cnf.out_channels

    @property
    def out_channels(self) -> int:
        return self.cnf.out_channels

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        y = s("block", self.block, x)
        return (y + x if self.use_res_connect else y), s.state


@dataclass(frozen=True, repr=False)
class MobileNetV3(Module):
    """``torchvision.models.MobileNetV3(inverted_residual_setting, last_channel,
    num_classes=1000, block=None, norm_layer=None, dropout=0.2)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.3", Linear(1024, 10), key)``
    (``last_channel`` inputs: 1280 for large, 1024 for small).
    """

    inverted_residual_setting: Sequence[InvertedResidualConfig]
    last_channel: int
    num_classes: int = 1000
    block: Callable[..., Module] | None = None
    norm_layer: Callable[..., Module] | None = None
    dropout: float = 0.2
    arch: str = "mobilenet_v3"
    features: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    classifier: Sequential = field(init=False)

    min_size = 1

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        setting = self.inverted_residual_setting
        if not setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        if not (isinstance(setting, Sequence) and all(isinstance(s, InvertedResidualConfig) for s in setting)):
            raise TypeError("The inverted_residual_setting should be List[InvertedResidualConfig]")
        set_("inverted_residual_setting", tuple(setting))  # hashable
        block = self.block or InvertedResidual
        norm_layer = self.norm_layer or _NORM_LAYER
        layers: list[Module] = [Conv2dNormActivation(3, setting[0].input_channels, kernel_size=3, stride=2,
                                                     norm_layer=norm_layer, activation_layer=Hardswish)]
        layers += [block(cnf, norm_layer) for cnf in setting]
        lastconv_in = setting[-1].out_channels
        lastconv_out = 6 * lastconv_in
        layers.append(Conv2dNormActivation(lastconv_in, lastconv_out, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=Hardswish))
        set_("features", Sequential(*layers))
        set_("avgpool", AdaptiveAvgPool2d(1))
        set_("classifier", Sequential(Linear(lastconv_out, self.last_channel), Hardswish(), Dropout(p=self.dropout),
                                      Linear(self.last_channel, self.num_classes)))

    def init_tree(self, key):
        k_default, k_mb = jax.random.split(key)
        params, state = super().init_tree(k_default)
        return _reinit_like_mobilenet(self, params, k_mb), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("avgpool", self.avgpool, s("features", self.features, x))
        return s("classifier", self.classifier, F.flatten(x, 1)), s.state


def _mobilenet_v3_conf(arch: str, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False,
                       ) -> tuple[list[InvertedResidualConfig], int]:
    """torchvision's ``_mobilenet_v3_conf``: the block configurations and ``last_channel``."""
    reduce_divider = 2 if reduced_tail else 1
    dilation = 2 if dilated else 1
    bneck_conf = partial(InvertedResidualConfig, width_mult=width_mult)
    adjust_channels = partial(InvertedResidualConfig.adjust_channels, width_mult=width_mult)
    r = reduce_divider
    if arch == "mobilenet_v3_large":
        setting = [
            bneck_conf(16, 3, 16, 16, False, "RE", 1, 1),
            bneck_conf(16, 3, 64, 24, False, "RE", 2, 1),  # C1
            bneck_conf(24, 3, 72, 24, False, "RE", 1, 1),
            bneck_conf(24, 5, 72, 40, True, "RE", 2, 1),  # C2
            bneck_conf(40, 5, 120, 40, True, "RE", 1, 1),
            bneck_conf(40, 5, 120, 40, True, "RE", 1, 1),
            bneck_conf(40, 3, 240, 80, False, "HS", 2, 1),  # C3
            bneck_conf(80, 3, 200, 80, False, "HS", 1, 1),
            bneck_conf(80, 3, 184, 80, False, "HS", 1, 1),
            bneck_conf(80, 3, 184, 80, False, "HS", 1, 1),
            bneck_conf(80, 3, 480, 112, True, "HS", 1, 1),
            bneck_conf(112, 3, 672, 112, True, "HS", 1, 1),
            bneck_conf(112, 5, 672, 160 // r, True, "HS", 2, dilation),  # C4
            bneck_conf(160 // r, 5, 960 // r, 160 // r, True, "HS", 1, dilation),
            bneck_conf(160 // r, 5, 960 // r, 160 // r, True, "HS", 1, dilation),
        ]
        last_channel = adjust_channels(1280 // r)  # C5
    elif arch == "mobilenet_v3_small":
        setting = [
            bneck_conf(16, 3, 16, 16, True, "RE", 2, 1),  # C1
            bneck_conf(16, 3, 72, 24, False, "RE", 2, 1),  # C2
            bneck_conf(24, 3, 88, 24, False, "RE", 1, 1),
            bneck_conf(24, 5, 96, 40, True, "HS", 2, 1),  # C3
            bneck_conf(40, 5, 240, 40, True, "HS", 1, 1),
            bneck_conf(40, 5, 240, 40, True, "HS", 1, 1),
            bneck_conf(40, 5, 120, 48, True, "HS", 1, 1),
            bneck_conf(48, 5, 144, 48, True, "HS", 1, 1),
            bneck_conf(48, 5, 288, 96 // r, True, "HS", 2, dilation),  # C4
            bneck_conf(96 // r, 5, 576 // r, 96 // r, True, "HS", 1, dilation),
            bneck_conf(96 // r, 5, 576 // r, 96 // r, True, "HS", 1, dilation),
        ]
        last_channel = adjust_channels(1024 // r)  # C5
    else:
        raise ValueError(f"Unsupported model type {arch}")
    return setting, last_channel


def _mobilenet_v3(arch: str, weights, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False,
                  **kwargs: Any) -> Any:
    setting, last_channel = _mobilenet_v3_conf(arch, width_mult, reduced_tail, dilated)
    model = MobileNetV3(setting, last_channel, arch=arch, **kwargs)
    return model if weights is None else load_pretrained(model, weights)


_DOC = """MobileNetV3 {size} from "Searching for MobileNetV3".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``width_mult=1.0``, ``reduced_tail=False``, ``dilated=False`` (the
        configuration) and ``MobileNetV3``'s ``num_classes=1000``, ``block``,
        ``norm_layer``, ``dropout=0.2``.
    Returns:
      ``MobileNetV3``, or ``(model, params, state)`` when ``weights`` is given.
    """


@register_model()
def mobilenet_v3_large(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    return _mobilenet_v3("mobilenet_v3_large", weights, **kwargs)


@register_model()
def mobilenet_v3_small(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    return _mobilenet_v3("mobilenet_v3_small", weights, **kwargs)


mobilenet_v3_large.__doc__ = _DOC.format(size="large")
mobilenet_v3_small.__doc__ = _DOC.format(size="small")

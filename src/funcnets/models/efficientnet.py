"""torchvision's EfficientNet B0–B7 and EfficientNetV2 S/M/L (``torchvision/models/efficientnet.py``).

Input ``(N, 3, H, W)`` → logits ``(N, num_classes)``; torchvision's ``min_size`` is 1×1 for
B0–B7 and 33×33 for V2. Structure (``features`` is a ``Sequential``):

- ``features.0``: 3×3/2 :class:`~funcnets.models._ops.Conv2dNormActivation` (conv → norm → SiLU)
  to the first stage's input channels;
- ``features.1`` … ``features.S``: one ``Sequential`` per config of
  ``inverted_residual_setting``, ``num_layers`` blocks each (the first with the config's
  stride and input channels, the rest stride 1, ``out_channels`` → ``out_channels``):
  :class:`MBConv` (1×1 expand → k×k depthwise → squeeze-excitation → 1×1 project) or
  :class:`FusedMBConv` (k×k expand → 1×1 project, or one k×k conv when not expanding);
  a block whose input and output shapes agree adds its input back after stochastic
  depth. Block ``i`` of ``n`` drops with probability ``stochastic_depth_prob · i / n``
  (0 for the first, growing linearly), per sample, in training (``key=``);
- ``features.S+1``: 1×1 Conv2dNormActivation to ``last_channel`` (4× the last stage's
  channels when None: B0–B7; 1280 for V2);
- ``avgpool`` (global), ``classifier`` = Dropout(``dropout``) → Linear.

Norm layers: BatchNorm2d (eps 1e-5, momentum 0.1) for B0–B4, ``eps=1e-3, momentum=0.01`` for
B5–B7, ``eps=1e-3`` for V2, as torchvision's builders pass them.

Initialisation (torchvision's loop): convolutions ``kaiming_normal_(mode="fan_out")`` with
zero biases (the squeeze-excitation 1×1 convs included), BatchNorm/GroupNorm γ=1, β=0,
linear weights U(±1/sqrt(out_features)) with zero biases.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional, Sequence, Union

import jax

from funcnets.models._ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth
from funcnets.models._registry import (
    check_input, constant, kaiming_normal, load_pretrained, register_model, reinit,
)
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, GroupNorm, Linear, Sequential, SiLU
from funcnets.nn.module import Module, Scope

__all__ = [
    "EfficientNet", "MBConv", "FusedMBConv", "MBConvConfig", "FusedMBConvConfig",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
]


def _make_divisible(v: float, divisor: int, min_value: Optional[int] = None) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, never more than
    10% below ``v`` (the original TF repo's channel rounding)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class _MBConvConfig:
    """One stage of blocks (frozen and hashable, so the model is a static jit argument)."""

    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int
    block: Callable[..., Module]

    @staticmethod
    def adjust_channels(channels: int, width_mult: float, min_value: Optional[int] = None) -> int:
        return _make_divisible(channels * width_mult, 8, min_value)

    def _replace(self, **changes: Any) -> "_MBConvConfig":
        # the subclasses' __init__ take width/depth multipliers, so dataclasses.replace cannot
        new = copy.copy(self)
        for k, v in changes.items():
            object.__setattr__(new, k, v)
        return new


class MBConvConfig(_MBConvConfig):
    """``MBConvConfig(expand_ratio, kernel, stride, input_channels, out_channels, num_layers,
    width_mult=1.0, depth_mult=1.0, block=None)``: channels scaled by ``width_mult`` (rounded
    to multiples of 8), ``num_layers`` by ``depth_mult`` (rounded up); ``block`` defaults to
    :class:`MBConv`."""

    def __init__(self, expand_ratio: float, kernel: int, stride: int, input_channels: int, out_channels: int,
                 num_layers: int, width_mult: float = 1.0, depth_mult: float = 1.0,
                 block: Optional[Callable[..., Module]] = None) -> None:
        input_channels = self.adjust_channels(input_channels, width_mult)
        out_channels = self.adjust_channels(out_channels, width_mult)
        num_layers = self.adjust_depth(num_layers, depth_mult)
        super().__init__(expand_ratio, kernel, stride, input_channels, out_channels, num_layers,
                         MBConv if block is None else block)

    @staticmethod
    def adjust_depth(num_layers: int, depth_mult: float) -> int:
        return int(math.ceil(num_layers * depth_mult))


class FusedMBConvConfig(_MBConvConfig):
    """``FusedMBConvConfig(expand_ratio, kernel, stride, input_channels, out_channels,
    num_layers, block=None)``; ``block`` defaults to :class:`FusedMBConv`."""

    def __init__(self, expand_ratio: float, kernel: int, stride: int, input_channels: int, out_channels: int,
                 num_layers: int, block: Optional[Callable[..., Module]] = None) -> None:
        super().__init__(expand_ratio, kernel, stride, input_channels, out_channels, num_layers,
                         FusedMBConv if block is None else block)


def _residual(block: Module, s: Scope, x):
    result = s("block", block.block, x)
    if block.use_res_connect:
        result = s("stochastic_depth", block.stochastic_depth, result) + x
    return result


@dataclass(frozen=True, repr=False)
class MBConv(Module):
    """Inverted residual with squeeze-excitation; ``(N, C_in, H, W) -> (N, C_out, H/s, W/s)``.

    ``block``: [1×1 conv → norm → SiLU to ``C_in·expand_ratio`` (rounded to 8), when that
    differs from ``C_in``] → k×k depthwise conv (stride s) → norm → SiLU →
    SqueezeExcitation(squeeze to max(1, C_in // 4), SiLU) → 1×1 conv → norm. With s = 1 and
    C_in = C_out: ``x + stochastic_depth(block(x))``.
    """

    cnf: _MBConvConfig
    stochastic_depth_prob: float
    norm_layer: Callable[..., Module]
    se_layer: Callable[..., Module] = SqueezeExcitation
    block: Sequential = field(init=False)
    stochastic_depth: StochasticDepth = field(init=False)

    def __post_init__(self):
        cnf = self.cnf
        if not (1 <= cnf.stride <= 2):
            raise ValueError("illegal stride value")
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        layers: list[Module] = []
        if expanded != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, expanded, kernel_size=1,
                                               norm_layer=self.norm_layer, activation_layer=SiLU))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel_size=cnf.kernel, stride=cnf.stride,
                                           groups=expanded, norm_layer=self.norm_layer, activation_layer=SiLU))
        layers.append(self.se_layer(expanded, max(1, cnf.input_channels // 4), activation=SiLU))
        layers.append(Conv2dNormActivation(expanded, cnf.out_channels, kernel_size=1, norm_layer=self.norm_layer,
                                           activation_layer=None))
        object.__setattr__(self, "block", Sequential(*layers))
        object.__setattr__(self, "stochastic_depth", StochasticDepth(self.stochastic_depth_prob, "row"))

    @property
    def use_res_connect(self) -> bool:
        return self.cnf.stride == 1 and self.cnf.input_channels == self.cnf.out_channels

    @property
    def out_channels(self) -> int:
        return self.cnf.out_channels

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        return _residual(self, s, x), s.state


@dataclass(frozen=True, repr=False)
class FusedMBConv(Module):
    """EfficientNetV2's fused block; ``(N, C_in, H, W) -> (N, C_out, H/s, W/s)``.

    ``block``: k×k conv (stride s) → norm → SiLU to ``C_in·expand_ratio`` → 1×1 conv →
    norm; when not expanding, a single k×k conv → norm → SiLU to C_out. With s = 1 and
    C_in = C_out: ``x + stochastic_depth(block(x))``.
    """

    cnf: _MBConvConfig
    stochastic_depth_prob: float
    norm_layer: Callable[..., Module]
    block: Sequential = field(init=False)
    stochastic_depth: StochasticDepth = field(init=False)

    def __post_init__(self):
        cnf = self.cnf
        if not (1 <= cnf.stride <= 2):
            raise ValueError("illegal stride value")
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        if expanded != cnf.input_channels:
            layers = [
                Conv2dNormActivation(cnf.input_channels, expanded, kernel_size=cnf.kernel, stride=cnf.stride,
                                     norm_layer=self.norm_layer, activation_layer=SiLU),
                Conv2dNormActivation(expanded, cnf.out_channels, kernel_size=1, norm_layer=self.norm_layer,
                                     activation_layer=None),
            ]
        else:
            layers = [Conv2dNormActivation(cnf.input_channels, cnf.out_channels, kernel_size=cnf.kernel,
                                           stride=cnf.stride, norm_layer=self.norm_layer, activation_layer=SiLU)]
        object.__setattr__(self, "block", Sequential(*layers))
        object.__setattr__(self, "stochastic_depth", StochasticDepth(self.stochastic_depth_prob, "row"))

    use_res_connect = MBConv.use_res_connect
    out_channels = MBConv.out_channels

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        return _residual(self, s, x), s.state


@dataclass(frozen=True, repr=False)
class EfficientNet(Module):
    """``torchvision.models.EfficientNet(inverted_residual_setting, dropout,
    stochastic_depth_prob=0.2, num_classes=1000, norm_layer=None, last_channel=None)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.1", Linear(1280, 10), key)``.
    """

    inverted_residual_setting: Sequence[Union[MBConvConfig, FusedMBConvConfig]]
    dropout: float
    stochastic_depth_prob: float = 0.2
    num_classes: int = 1000
    norm_layer: Optional[Callable[..., Module]] = None
    last_channel: Optional[int] = None
    arch: str = "efficientnet"
    features: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    classifier: Sequential = field(init=False)

    def __post_init__(self):
        setting = self.inverted_residual_setting
        if not setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        if not (isinstance(setting, Sequence) and all(isinstance(s, _MBConvConfig) for s in setting)):
            raise TypeError("The inverted_residual_setting should be List[MBConvConfig]")
        object.__setattr__(self, "inverted_residual_setting", tuple(setting))
        norm_layer = BatchNorm2d if self.norm_layer is None else self.norm_layer

        layers: list[Module] = [Conv2dNormActivation(3, setting[0].input_channels, kernel_size=3, stride=2,
                                                     norm_layer=norm_layer, activation_layer=SiLU)]
        total_stage_blocks = sum(cnf.num_layers for cnf in setting)
        stage_block_id = 0
        for cnf in setting:
            stage = []
            for _ in range(cnf.num_layers):
                block_cnf = cnf._replace(input_channels=cnf.out_channels, stride=1) if stage else cnf
                # stochastic depth grows linearly with the block's index over the whole network
                sd_prob = self.stochastic_depth_prob * float(stage_block_id) / total_stage_blocks
                stage.append(block_cnf.block(block_cnf, sd_prob, norm_layer))
                stage_block_id += 1
            layers.append(Sequential(*stage))
        last_in = setting[-1].out_channels
        last_out = self.last_channel if self.last_channel is not None else 4 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=SiLU))
        object.__setattr__(self, "features", Sequential(*layers))
        object.__setattr__(self, "avgpool", AdaptiveAvgPool2d(1))
        object.__setattr__(self, "classifier", Sequential(Dropout(p=self.dropout, inplace=True),
                                                          Linear(last_out, self.num_classes)))

    @property
    def min_size(self) -> int:
        """torchvision's ``meta["min_size"]``: 33 for V2's weights, 1 for B0–B7."""
        return 33 if self.arch.startswith("efficientnet_v2") else 1

    def init_tree(self, key):
        k_default, k_tv = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if isinstance(m, Conv2d):
                new = {"weight": kaiming_normal(k, own["weight"], mode="fan_out")}
                if "bias" in own:
                    new["bias"] = constant(own["bias"], 0.0)
                return new
            if isinstance(m, (BatchNorm2d, GroupNorm)):
                return {n: constant(v, 1.0 if n == "weight" else 0.0) for n, v in own.items()}
            if isinstance(m, Linear):
                r = 1.0 / math.sqrt(m.out_features)
                w = own["weight"]
                return {"weight": jax.random.uniform(k, w.shape, w.dtype, -r, r), "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_tv, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; in training ``key`` drives stochastic
        depth and dropout (needed when either probability is nonzero)."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("avgpool", self.avgpool, s("features", self.features, x))
        return s("classifier", self.classifier, F.flatten(x, 1)), s.state


# the builders' norm layers, module-level so that two builds of one architecture are equal
_BN_B5_B7 = partial(BatchNorm2d, eps=0.001, momentum=0.01)
_BN_V2 = partial(BatchNorm2d, eps=1e-03)

_V1_SCALING = {  # arch: (width_mult, depth_mult, dropout)
    "efficientnet_b0": (1.0, 1.0, 0.2), "efficientnet_b1": (1.0, 1.1, 0.2), "efficientnet_b2": (1.1, 1.2, 0.3),
    "efficientnet_b3": (1.2, 1.4, 0.3), "efficientnet_b4": (1.4, 1.8, 0.4), "efficientnet_b5": (1.6, 2.2, 0.4),
    "efficientnet_b6": (1.8, 2.6, 0.5), "efficientnet_b7": (2.0, 3.1, 0.5),
}
_V2_DROPOUT = {"efficientnet_v2_s": 0.2, "efficientnet_v2_m": 0.3, "efficientnet_v2_l": 0.4}


def _efficientnet_conf(arch: str, **kwargs: Any) -> tuple[tuple[_MBConvConfig, ...], Optional[int]]:
    """torchvision's ``_efficientnet_conf``: ``(inverted_residual_setting, last_channel)``."""
    if arch.startswith("efficientnet_b"):
        bneck_conf = partial(MBConvConfig, width_mult=kwargs.pop("width_mult"), depth_mult=kwargs.pop("depth_mult"))
        return (
            bneck_conf(1, 3, 1, 32, 16, 1), bneck_conf(6, 3, 2, 16, 24, 2), bneck_conf(6, 5, 2, 24, 40, 2),
            bneck_conf(6, 3, 2, 40, 80, 3), bneck_conf(6, 5, 1, 80, 112, 3), bneck_conf(6, 5, 2, 112, 192, 4),
            bneck_conf(6, 3, 1, 192, 320, 1),
        ), None
    F_, M_ = FusedMBConvConfig, MBConvConfig
    if arch.startswith("efficientnet_v2_s"):
        return (F_(1, 3, 1, 24, 24, 2), F_(4, 3, 2, 24, 48, 4), F_(4, 3, 2, 48, 64, 4), M_(4, 3, 2, 64, 128, 6),
                M_(6, 3, 1, 128, 160, 9), M_(6, 3, 2, 160, 256, 15)), 1280
    if arch.startswith("efficientnet_v2_m"):
        return (F_(1, 3, 1, 24, 24, 3), F_(4, 3, 2, 24, 48, 5), F_(4, 3, 2, 48, 80, 5), M_(4, 3, 2, 80, 160, 7),
                M_(6, 3, 1, 160, 176, 14), M_(6, 3, 2, 176, 304, 18), M_(6, 3, 1, 304, 512, 5)), 1280
    if arch.startswith("efficientnet_v2_l"):
        return (F_(1, 3, 1, 32, 32, 4), F_(4, 3, 2, 32, 64, 7), F_(4, 3, 2, 64, 96, 7), M_(4, 3, 2, 96, 192, 10),
                M_(6, 3, 1, 192, 224, 19), M_(6, 3, 2, 224, 384, 25), M_(6, 3, 1, 384, 640, 7)), 1280
    raise ValueError(f"Unsupported model type {arch}")


_DOC = """{title}.

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``dropout={dropout}`` and ``EfficientNet``'s ``stochastic_depth_prob=0.2``,
        ``num_classes=1000``{norm}.
    Returns:
      ``EfficientNet``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str):
    v2 = arch.startswith("efficientnet_v2")
    if v2:
        conf: dict[str, Any] = {}
        default_dropout, norm = _V2_DROPOUT[arch], _BN_V2
    else:
        width, depth, default_dropout = _V1_SCALING[arch]
        conf = {"width_mult": width, "depth_mult": depth}
        norm = _BN_B5_B7 if arch in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7") else None

    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        setting, last_channel = _efficientnet_conf(arch, **conf)
        dropout = kwargs.pop("dropout", default_dropout)
        if norm is not None:  # torchvision passes it explicitly: a second norm_layer= is a TypeError there too
            if "norm_layer" in kwargs:
                raise TypeError(f"{arch}() got multiple values for keyword argument 'norm_layer'")
            kwargs["norm_layer"] = norm
        model = EfficientNet(setting, dropout, last_channel=last_channel, arch=arch, **kwargs)
        return model if weights is None else load_pretrained(model, weights)

    name = arch.replace("efficientnet_", "")
    title = (f'EfficientNetV2-{name[3:].upper()} from "EfficientNetV2: Smaller Models and Faster Training"' if v2
             else f'EfficientNet-{name.upper()} from "EfficientNet: Rethinking Model Scaling for Convolutional '
                  'Neural Networks"')
    note = {None: "", _BN_B5_B7: "; norm_layer is BatchNorm2d(eps=0.001, momentum=0.01)",
            _BN_V2: "; norm_layer is BatchNorm2d(eps=1e-3)"}[norm]
    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(title=title, dropout=default_dropout, norm=note)
    return register_model(arch)(build)


efficientnet_b0 = _builder("efficientnet_b0")
efficientnet_b1 = _builder("efficientnet_b1")
efficientnet_b2 = _builder("efficientnet_b2")
efficientnet_b3 = _builder("efficientnet_b3")
efficientnet_b4 = _builder("efficientnet_b4")
efficientnet_b5 = _builder("efficientnet_b5")
efficientnet_b6 = _builder("efficientnet_b6")
efficientnet_b7 = _builder("efficientnet_b7")
efficientnet_v2_s = _builder("efficientnet_v2_s")
efficientnet_v2_m = _builder("efficientnet_v2_m")
efficientnet_v2_l = _builder("efficientnet_v2_l")

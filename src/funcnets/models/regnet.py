"""torchvision's RegNet X and Y (``torchvision/models/regnet.py``): regnet_x_400mf ..
regnet_x_32gf and regnet_y_400mf .. regnet_y_128gf, with torchvision's names and
initialisation.

Input ``(N, 3, H, W)`` with H, W ≥ 1 (torchvision's ``min_size``; the stem and each of
the four stages halve the side, rounding up) → logits ``(N, num_classes)``.

Structure: ``stem`` (:class:`SimpleStemIN`: 3×3/2 conv → BN → ReLU, ``stem_width``
channels) → ``trunk_output`` (stages ``block1`` .. ``block4``, each an :class:`AnyStage`
of :class:`ResBottleneckBlock` named ``block{stage}-{i}``) → global average pool → ``fc``.
A block is ``activation(proj(x) + f(x))`` (``proj``: 1×1 conv → BN when the shape
changes, else the identity) with ``f`` = :class:`BottleneckTransform`: ``a`` (1×1) →
``b`` (3×3, stride, ``groups = w_b / group_width``) → ``se`` (RegNet Y only:
:class:`~funcnets.models._ops.SqueezeExcitation` with ``round(se_ratio · width_in)``
channels) → ``c`` (1×1, no activation). The stage widths, depths and group widths come
from :meth:`BlockParams.from_init_params` (the paper's quantised linear rule; computed in
float32, as torchvision computes them with torch tensors).

Initialisation (torchvision's): convolutions N(0, 2 / (k·k·out_channels)), BatchNorm
γ=1, β=0, ``fc`` weight N(0, 0.01²) and bias 0; the squeeze-excitation convolutions'
biases keep torch's default U(±1/sqrt(fan_in)).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import numpy as np

from funcnets.models._ops import Conv2dNormActivation, SqueezeExcitation, _NamedSequential
from funcnets.models._registry import check_input, constant, load_pretrained, normal, register_model, reinit
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, ReLU, Sequential
from funcnets.nn import functional as F
from funcnets.nn.module import Module, Scope

__all__ = [
    "BlockParams", "SimpleStemIN", "BottleneckTransform", "ResBottleneckBlock", "AnyStage", "RegNet",
    "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf",
    "regnet_y_32gf", "regnet_y_128gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf",
    "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf",
]


class SimpleStemIN(Conv2dNormActivation):
    """Simple stem for ImageNet: 3×3 stride-2 conv → norm → activation.
    ``(N, width_in, H, W) -> (N, width_out, ceil(H/2), ceil(W/2))``."""

    def __init__(self, width_in: int, width_out: int, norm_layer: Callable[..., Module],
                 activation_layer: Callable[..., Module]):
        super().__init__(width_in, width_out, kernel_size=3, stride=2, norm_layer=norm_layer,
                         activation_layer=activation_layer)


class BottleneckTransform(_NamedSequential):
    """1×1 → 3×3 (grouped, strided) [→ squeeze-excitation] → 1×1, children ``a``, ``b``,
    [``se``,] ``c``; ``w_b = round(width_out · bottleneck_multiplier)`` inner channels in
    ``w_b // group_width`` groups. ``(N, width_in, H, W) -> (N, width_out, H', W')``."""

    def __init__(self, width_in: int, width_out: int, stride: int, norm_layer: Callable[..., Module],
                 activation_layer: Callable[..., Module], group_width: int, bottleneck_multiplier: float,
                 se_ratio: float | None):
        layers: OrderedDict[str, Module] = OrderedDict()
        w_b = int(round(width_out * bottleneck_multiplier))
        g = w_b // group_width
        layers["a"] = Conv2dNormActivation(width_in, w_b, kernel_size=1, stride=1, norm_layer=norm_layer,
                                           activation_layer=activation_layer)
        layers["b"] = Conv2dNormActivation(w_b, w_b, kernel_size=3, stride=stride, groups=g, norm_layer=norm_layer,
                                           activation_layer=activation_layer)
        if se_ratio:
            layers["se"] = SqueezeExcitation(input_channels=w_b, squeeze_channels=int(round(se_ratio * width_in)),
                                             activation=activation_layer)
        layers["c"] = Conv2dNormActivation(w_b, width_out, kernel_size=1, stride=1, norm_layer=norm_layer,
                                           activation_layer=None)
        super().__init__(layers)


@dataclass(frozen=True, repr=False)
class ResBottleneckBlock(Module):
    """Residual bottleneck block ``activation(shortcut(x) + f(x))``; ``shortcut`` is ``proj``
    (1×1 conv → norm) when ``width_in != width_out`` or ``stride != 1``, else the identity.
    ``x: (N, width_in, H, W) -> (N, width_out, ceil(H/stride), ceil(W/stride))``."""

    width_in: int
    width_out: int
    stride: int
    norm_layer: Callable[..., Module]
    activation_layer: Callable[..., Module]
    group_width: int = 1
    bottleneck_multiplier: float = 1.0
    se_ratio: float | None = None
    proj: Conv2dNormActivation | None = field(init=False)
    f: BottleneckTransform = field(init=False)
    activation: Module = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        should_proj = self.width_in != self.width_out or self.stride != 1
        set_("proj", Conv2dNormActivation(self.width_in, self.width_out, kernel_size=1, stride=self.stride,
                                          norm_layer=self.norm_layer, activation_layer=None) if should_proj else None)
        set_("f", BottleneckTransform(self.width_in, self.width_out, self.stride, self.norm_layer,
                                      self.activation_layer, self.group_width, self.bottleneck_multiplier,
                                      self.se_ratio))
        set_("activation", self.activation_layer(inplace=True))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        shortcut = x if self.proj is None else s("proj", self.proj, x)
        return s("activation", self.activation, shortcut + s("f", self.f, x)), s.state


class AnyStage(_NamedSequential):
    """AnyNet stage: ``depth`` blocks of the same output width, ``block{stage_index}-{i}``;
    the first takes ``width_in`` and ``stride``."""

    def __init__(self, width_in: int, width_out: int, stride: int, depth: int, block_constructor: Callable[..., Module],
                 norm_layer: Callable[..., Module], activation_layer: Callable[..., Module], group_width: int,
                 bottleneck_multiplier: float, se_ratio: float | None = None, stage_index: int = 0):
        blocks = OrderedDict(
            (f"block{stage_index}-{i}",
             block_constructor(width_in if i == 0 else width_out, width_out, stride if i == 0 else 1, norm_layer,
                               activation_layer, group_width, bottleneck_multiplier, se_ratio))
            for i in range(depth)
        )
        super().__init__(blocks)


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: round ``v`` to a multiple of ``divisor``, never
    below ``min_value`` nor more than 10% down."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class BlockParams:
    """Per-stage settings of a RegNet (``torchvision.models.regnet.BlockParams``): lists of
    stage depths, widths, group widths, bottleneck multipliers and strides, and one
    squeeze-excitation ratio (None for RegNet X). Stored as tuples (hashable)."""

    depths: Sequence[int]
    widths: Sequence[int]
    group_widths: Sequence[int]
    bottleneck_multipliers: Sequence[float]
    strides: Sequence[int]
    se_ratio: float | None = None

    def __post_init__(self):
        for name in ("depths", "widths", "group_widths", "bottleneck_multipliers", "strides"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_init_params(cls, depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                         bottleneck_multiplier: float = 1.0, se_ratio: float | None = None,
                         **kwargs: Any) -> "BlockParams":
        """The per-stage settings from RegNet's parameters: block ``j`` has width
        ``w_0 · w_m^round(log(1 + j·w_a/w_0) / log(w_m))`` quantised to a multiple of 8, and
        consecutive blocks of equal width form a stage (each with stride 2). Widths are then
        made divisible by the group width. Other ``kwargs`` are ignored, as torchvision does."""
        QUANT, STRIDE = 8, 2
        if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % 8 != 0:
            raise ValueError("Invalid RegNet settings")
        # float32 throughout, as torchvision computes it with float32 tensors: the rounding
        # of a block's capacity decides its width
        f32 = np.float32
        widths_cont = np.arange(depth).astype(f32) * f32(w_a) + f32(w_0)
        block_capacity = np.round(np.log(widths_cont / f32(w_0)) / f32(math.log(w_m))).astype(f32)
        block_widths = (np.round(f32(w_0) * np.power(f32(w_m), block_capacity) / f32(QUANT)) * f32(QUANT))
        block_widths = block_widths.astype(np.int32).tolist()
        num_stages = len(set(block_widths))
        split_helper = zip(block_widths + [0], [0] + block_widths, block_widths + [0], [0] + block_widths)
        splits = [w != wp or r != rp for w, wp, r, rp in split_helper]
        stage_widths = [w for w, t in zip(block_widths, splits[:-1]) if t]
        stage_depths = np.diff([d for d, t in enumerate(splits) if t]).astype(int).tolist()
        strides = [STRIDE] * num_stages
        bottleneck_multipliers = [bottleneck_multiplier] * num_stages
        group_widths = [group_width] * num_stages
        stage_widths, group_widths = cls._adjust_widths_groups_compatibilty(stage_widths, bottleneck_multipliers,
                                                                            group_widths)
        return cls(depths=stage_depths, widths=stage_widths, group_widths=group_widths,
                   bottleneck_multipliers=bottleneck_multipliers, strides=strides, se_ratio=se_ratio)

    def _get_expanded_params(self):
        return zip(self.widths, self.strides, self.depths, self.group_widths, self.bottleneck_multipliers)

    @staticmethod
    def _adjust_widths_groups_compatibilty(stage_widths: list[int], bottleneck_ratios: list[float],
                                           group_widths: list[int]) -> tuple[list[int], list[int]]:
        """Bottleneck widths made divisible by their group width (torchvision's spelling)."""
        widths = [int(w * b) for w, b in zip(stage_widths, bottleneck_ratios)]
        group_widths_min = [min(g, w_bot) for g, w_bot in zip(group_widths, widths)]
        ws_bot = [_make_divisible(w_bot, g) for w_bot, g in zip(widths, group_widths_min)]
        stage_widths = [int(w_bot / b) for w_bot, b in zip(ws_bot, bottleneck_ratios)]
        return stage_widths, group_widths_min


@dataclass(frozen=True, repr=False)
class RegNet(Module):
    """``torchvision.models.RegNet(block_params, num_classes=1000, stem_width=32,
    stem_type=None, block_type=None, norm_layer=None, activation=None)``: ``stem_type``
    defaults to :class:`SimpleStemIN`, ``block_type`` to :class:`ResBottleneckBlock`,
    ``norm_layer`` to ``BatchNorm2d``, ``activation`` to ``ReLU`` (factories, called as
    torchvision calls them).

    Replace the head with ``nn.replace(model, params, state, "fc", Linear(model.fc.in_features, 10), key)``.
    """

    block_params: BlockParams
    num_classes: int = 1000
    stem_width: int = 32
    stem_type: Callable[..., Module] | None = None
    block_type: Callable[..., Module] | None = None
    norm_layer: Callable[..., Module] | None = None
    activation: Callable[..., Module] | None = None
    arch: str | None = None  # torchvision's builder name, set by the builders
    stem: Module = field(init=False)
    trunk_output: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    fc: Linear = field(init=False)

    min_size = 1  # torchvision's _COMMON_META["min_size"] = (1, 1)

    def __post_init__(self):
        stem_type = self.stem_type or SimpleStemIN
        norm_layer = self.norm_layer or BatchNorm2d
        block_type = self.block_type or ResBottleneckBlock
        activation = self.activation or ReLU
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("stem", stem_type(3, self.stem_width, norm_layer, activation))
        current_width = self.stem_width
        blocks = []
        for i, (width_out, stride, depth, group_width, bottleneck_multiplier) in enumerate(
            self.block_params._get_expanded_params()
        ):
            blocks.append((f"block{i + 1}", AnyStage(current_width, width_out, stride, depth, block_type, norm_layer,
                                                     activation, group_width, bottleneck_multiplier,
                                                     self.block_params.se_ratio, stage_index=i + 1)))
            current_width = width_out
        set_("trunk_output", Sequential(OrderedDict(blocks)))
        set_("avgpool", AdaptiveAvgPool2d((1, 1)))
        set_("fc", Linear(in_features=current_width, out_features=self.num_classes))

    def init_tree(self, key):
        """torchvision's init: conv weights N(0, 2 / fan_out) with fan_out = k·k·out_channels,
        BatchNorm γ=1, β=0, Linear weight N(0, 0.01²), bias 0; other leaves torch's default."""
        k_default, k_rg = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if isinstance(m, Conv2d):
                kh, kw = own["weight"].shape[2:]
                return {"weight": normal(k, own["weight"], math.sqrt(2.0 / (kh * kw * m.out_channels)))}
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            if isinstance(m, Linear):
                return {"weight": normal(k, own["weight"], 0.01), "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_rg, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("trunk_output", self.trunk_output, s("stem", self.stem, x))
        x = F.flatten(s("avgpool", self.avgpool, x), 1)
        return s("fc", self.fc, x), s.state


def _regnet(arch: str, block_params: BlockParams, weights: str | os.PathLike | None, **kwargs: Any) -> Any:
    # torchvision's default partial(BatchNorm2d, eps=1e-05, momentum=0.1) is BatchNorm2d's own
    # defaults; the class itself keeps equal models equal (and one jit compilation)
    norm_layer = kwargs.pop("norm_layer", BatchNorm2d)
    model = RegNet(block_params, norm_layer=norm_layer, arch=arch, **kwargs)
    return model if weights is None else load_pretrained(model, weights)


_DOC = """RegNet{kind}_{flops} from "Designing Network Design Spaces".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``RegNet``'s ``num_classes=1000``, ``stem_width=32``, ``stem_type``,
        ``block_type``, ``norm_layer``, ``activation``.
    Returns:
      ``RegNet``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, **init_params: Any):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        params = BlockParams.from_init_params(**init_params, **kwargs)
        return _regnet(arch, params, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    kind, flops = arch.split("_")[1:2], "_".join(arch.split("_")[2:])
    build.__doc__ = _DOC.format(kind=kind[0].upper(), flops=flops.upper().replace("_", "."))
    return register_model(arch)(build)


regnet_y_400mf = _builder("regnet_y_400mf", depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25)
regnet_y_800mf = _builder("regnet_y_800mf", depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16, se_ratio=0.25)
regnet_y_1_6gf = _builder("regnet_y_1_6gf", depth=27, w_0=48, w_a=20.71, w_m=2.65, group_width=24, se_ratio=0.25)
regnet_y_3_2gf = _builder("regnet_y_3_2gf", depth=21, w_0=80, w_a=42.63, w_m=2.66, group_width=24, se_ratio=0.25)
regnet_y_8gf = _builder("regnet_y_8gf", depth=17, w_0=192, w_a=76.82, w_m=2.19, group_width=56, se_ratio=0.25)
regnet_y_16gf = _builder("regnet_y_16gf", depth=18, w_0=200, w_a=106.23, w_m=2.48, group_width=112, se_ratio=0.25)
regnet_y_32gf = _builder("regnet_y_32gf", depth=20, w_0=232, w_a=115.89, w_m=2.53, group_width=232, se_ratio=0.25)
regnet_y_128gf = _builder("regnet_y_128gf", depth=27, w_0=456, w_a=160.83, w_m=2.52, group_width=264, se_ratio=0.25)
regnet_x_400mf = _builder("regnet_x_400mf", depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16)
regnet_x_800mf = _builder("regnet_x_800mf", depth=16, w_0=56, w_a=35.73, w_m=2.28, group_width=16)
regnet_x_1_6gf = _builder("regnet_x_1_6gf", depth=18, w_0=80, w_a=34.01, w_m=2.25, group_width=24)
regnet_x_3_2gf = _builder("regnet_x_3_2gf", depth=25, w_0=88, w_a=26.31, w_m=2.25, group_width=48)
regnet_x_8gf = _builder("regnet_x_8gf", depth=23, w_0=80, w_a=49.56, w_m=2.88, group_width=120)
regnet_x_16gf = _builder("regnet_x_16gf", depth=22, w_0=216, w_a=55.59, w_m=2.1, group_width=128)
regnet_x_32gf = _builder("regnet_x_32gf", depth=23, w_0=320, w_a=69.86, w_m=2.0, group_width=168)

"""torchvision's ShuffleNet V2 ×0.5/×1.0/×1.5/×2.0 (``torchvision/models/shufflenetv2.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 1 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``conv1`` (3×3/2 conv → BN → ReLU) → ``maxpool`` (3×3/2, padding
1) → ``stage2``..``stage4`` (one stride-2 :class:`InvertedResidual`, then ``repeats − 1``
stride-1 ones) → ``conv5`` (1×1 conv → BN → ReLU) → the spatial mean → ``fc``.

A stride-1 unit splits the channels in two halves, passes the first through and sends
the second through ``branch2`` (1×1 → BN → ReLU → 3×3 depthwise → BN → 1×1 → BN → ReLU);
a stride-2 unit feeds the whole input to ``branch1`` (3×3/2 depthwise → BN → 1×1 → BN →
ReLU) and ``branch2``. The halves are concatenated and :func:`channel_shuffle`'d with 2
groups.

Initialisation: torch's defaults (torchvision's ShuffleNetV2 re-initialises nothing):
convolutions and the linear U(±1/sqrt(fan_in)) weights and biases, BatchNorm γ=1, β=0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.models._registry import check_input, load_pretrained, register_model
from funcnets.nn import BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential
from funcnets.nn.module import Module, Scope

__all__ = [
    "ShuffleNetV2", "InvertedResidual", "channel_shuffle", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
]


def channel_shuffle(x: Array, groups: int) -> Array:
    """``x: (N, C, H, W)`` with channels ``(g, C/g)`` reordered to ``(C/g, g)``: channel
    ``g·j + i`` of the output is channel ``i·C/g + j`` of the input."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w)
    return jnp.swapaxes(x, 1, 2).reshape(n, c, h, w)


def _depthwise_conv(i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = False) -> Conv2d:
    return Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)


@dataclass(frozen=True, repr=False)
class InvertedResidual(Module):
    """``torchvision.models.shufflenetv2.InvertedResidual(inp, oup, stride)``:
    ``x: (N, inp, H, W) -> (N, oup, H/stride, W/stride)``."""

    inp: int
    oup: int
    stride: int
    branch1: Sequential = field(init=False)
    branch2: Sequential = field(init=False)

    def __post_init__(self):
        if not (1 <= self.stride <= 3):
            raise ValueError("illegal stride value")
        bf = self.oup // 2
        if self.stride == 1 and self.inp != bf << 1:
            raise ValueError(
                f"Invalid combination of stride {self.stride}, inp {self.inp} and oup {self.oup} values. If stride "
                f"== 1 then inp should be equal to oup // 2 << 1."
            )
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.stride > 1:
            set_("branch1", Sequential(
                _depthwise_conv(self.inp, self.inp, kernel_size=3, stride=self.stride, padding=1),
                BatchNorm2d(self.inp),
                Conv2d(self.inp, bf, kernel_size=1, stride=1, padding=0, bias=False), BatchNorm2d(bf), ReLU(),
            ))  # fmt: skip
        else:
            set_("branch1", Sequential())
        set_("branch2", Sequential(
            Conv2d(self.inp if self.stride > 1 else bf, bf, kernel_size=1, stride=1, padding=0, bias=False),
            BatchNorm2d(bf), ReLU(),
            _depthwise_conv(bf, bf, kernel_size=3, stride=self.stride, padding=1), BatchNorm2d(bf),
            Conv2d(bf, bf, kernel_size=1, stride=1, padding=0, bias=False), BatchNorm2d(bf), ReLU(),
        ))  # fmt: skip

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        if self.stride == 1:
            x1, x2 = jnp.split(x, [-(-x.shape[1] // 2)], axis=1)  # torch's chunk(2): the first half rounds up
            out = jnp.concatenate([x1, s("branch2", self.branch2, x2)], axis=1)
        else:
            out = jnp.concatenate([s("branch1", self.branch1, x), s("branch2", self.branch2, x)], axis=1)
        return channel_shuffle(out, 2), s.state


@dataclass(frozen=True, repr=False)
class ShuffleNetV2(Module):
    """``torchvision.models.ShuffleNetV2(stages_repeats, stages_out_channels, num_classes=1000,
    inverted_residual=InvertedResidual)``.

    Replace the head with ``nn.replace(model, params, state, "fc", Linear(1024, 10), key)``.
    """

    stages_repeats: Sequence[int]
    stages_out_channels: Sequence[int]
    num_classes: int = 1000
    inverted_residual: Callable[..., Module] = InvertedResidual
    arch: str = "shufflenet_v2"
    conv1: Sequential = field(init=False)
    maxpool: MaxPool2d = field(init=False)
    stage2: Sequential = field(init=False)
    stage3: Sequential = field(init=False)
    stage4: Sequential = field(init=False)
    conv5: Sequential = field(init=False)
    fc: Linear = field(init=False)

    min_size = 1

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if len(self.stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(self.stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        set_("stages_repeats", tuple(self.stages_repeats))
        set_("stages_out_channels", tuple(self.stages_out_channels))
        c = self.stages_out_channels
        set_("conv1", Sequential(Conv2d(3, c[0], 3, 2, 1, bias=False), BatchNorm2d(c[0]), ReLU()))
        set_("maxpool", MaxPool2d(kernel_size=3, stride=2, padding=1))
        inp = c[0]
        for name, repeats, out in zip(("stage2", "stage3", "stage4"), self.stages_repeats, c[1:]):
            seq = [self.inverted_residual(inp, out, 2)]
            seq += [self.inverted_residual(out, out, 1) for _ in range(repeats - 1)]
            set_(name, Sequential(*seq))
            inp = out
        set_("conv5", Sequential(Conv2d(inp, c[-1], 1, 1, 0, bias=False), BatchNorm2d(c[-1]), ReLU()))
        set_("fc", Linear(c[-1], self.num_classes))

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("maxpool", self.maxpool, s("conv1", self.conv1, x))
        for name in ("stage2", "stage3", "stage4"):
            x = s(name, getattr(self, name), x)
        x = s("conv5", self.conv5, x).mean(axis=(2, 3))
        return s("fc", self.fc, x), s.state


_DOC = """ShuffleNetV2 with {w} output channels, from "ShuffleNet V2: Practical Guidelines for
    Efficient CNN Architecture Design".

    Args:
      weights: None (torch's default initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``ShuffleNetV2``'s ``num_classes=1000``, ``inverted_residual``.
    Returns:
      ``ShuffleNetV2``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, repeats: tuple[int, ...], channels: tuple[int, ...], w: str):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        model = ShuffleNetV2(repeats, channels, arch=arch, **kwargs)
        return model if weights is None else load_pretrained(model, weights)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(w=w)
    return register_model(arch)(build)


shufflenet_v2_x0_5 = _builder("shufflenet_v2_x0_5", (4, 8, 4), (24, 48, 96, 192, 1024), "0.5x")
shufflenet_v2_x1_0 = _builder("shufflenet_v2_x1_0", (4, 8, 4), (24, 116, 232, 464, 1024), "1.0x")
shufflenet_v2_x1_5 = _builder("shufflenet_v2_x1_5", (4, 8, 4), (24, 176, 352, 704, 1024), "1.5x")
shufflenet_v2_x2_0 = _builder("shufflenet_v2_x2_0", (4, 8, 4), (24, 244, 488, 976, 2048), "2.0x")

"""torchvision's ResNet-18/34 (BasicBlock), with torchvision's names and initialisation.

Input ``(N, 3, H, W)`` (H, W ≥ 32) → logits ``(N, num_classes)``. State holds every
BatchNorm's ``running_mean``, ``running_var`` and ``num_batches_tracked``, under the
same names as torchvision's ``state_dict`` (``layer2.0.downsample.1.running_var``).
``apply(..., train=True)`` uses batch statistics and returns updated running stats.

On CPU the trunk (conv1 .. avgpool) runs channels-last inside
(:func:`funcnets.nn.functional.channels_last`): the input, the parameters and the head
keep torch's layouts, and the numbers are the same up to float32 rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax

from funcnets.nn import functional as F
from funcnets.nn import (
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Identity, Linear, MaxPool2d, ReLU, Sequential,
)
from funcnets.nn.module import Module, Scope
from funcnets.torch_io import flatten, unflatten

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet34"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> Conv2d:
    return Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


@dataclass(frozen=True, repr=False)
class BasicBlock(Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))``."""

    inplanes: int
    planes: int
    stride: int = 1
    conv1: Conv2d = field(init=False)
    bn1: BatchNorm2d = field(init=False)
    relu: ReLU = field(init=False)
    conv2: Conv2d = field(init=False)
    bn2: BatchNorm2d = field(init=False)
    downsample: Sequential | None = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv1", _conv3x3(self.inplanes, self.planes, self.stride))
        set_("bn1", BatchNorm2d(self.planes))
        set_("relu", ReLU())
        set_("conv2", _conv3x3(self.planes, self.planes))
        set_("bn2", BatchNorm2d(self.planes))
        needs_ds = self.stride != 1 or self.inplanes != self.planes
        set_("downsample", Sequential(
            Conv2d(self.inplanes, self.planes, 1, stride=self.stride, bias=False), BatchNorm2d(self.planes)
        ) if needs_ds else None)

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        out = F.relu(s("bn1", self.bn1, s("conv1", self.conv1, x)))
        out = s("bn2", self.bn2, s("conv2", self.conv2, out))
        identity = x if self.downsample is None else s("downsample", self.downsample, x)
        return F.relu(out + identity), s.state


@dataclass(frozen=True, repr=False)
class ResNet(Module):
    """ResNet with BasicBlocks; ``layers=(2, 2, 2, 2)`` is ResNet-18.

    Replace the head as in the tutorial (``model.fc = nn.Linear(512, 10)``) with
    ``funcnets.nn.replace(model, params, state, "fc", Linear(512, 10), key)``.
    """

    layers: tuple[int, int, int, int] = (2, 2, 2, 2)
    num_classes: int = 1000
    arch: str = "resnet18"
    conv1: Conv2d = field(init=False)
    bn1: BatchNorm2d = field(init=False)
    relu: ReLU = field(init=False)
    maxpool: MaxPool2d = field(init=False)
    layer1: Sequential = field(init=False)
    layer2: Sequential = field(init=False)
    layer3: Sequential = field(init=False)
    layer4: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    fc: Linear = None  # type: ignore[assignment]

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv1", Conv2d(3, 64, 7, stride=2, padding=3, bias=False))
        set_("bn1", BatchNorm2d(64))
        set_("relu", ReLU())
        set_("maxpool", MaxPool2d(3, stride=2, padding=1))
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), self.layers)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            set_(f"layer{i + 1}", Sequential(*stage))
            inplanes = planes
        set_("avgpool", AdaptiveAvgPool2d((1, 1)))
        if self.fc is None:
            set_("fc", Linear(512, self.num_classes))

    def init_tree(self, key):
        """torchvision's init: convs ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``,
        BatchNorm γ=1, β=0, the fc layer torch's default."""
        k_default, k_conv = jax.random.split(key)
        params, state = super().init_tree(k_default)
        flat = flatten(params)
        convs = [n for n, m in self.named_modules() if isinstance(m, Conv2d)]
        for k, name in zip(jax.random.split(k_conv, len(convs)), convs):
            w = flat[f"{name}.weight"]
            std = math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))
            flat[f"{name}.weight"] = std * jax.random.normal(k, w.shape, w.dtype)
        return unflatten(flat), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``."""
        s = Scope(params, state, train, key)
        if self._trunk_channels_last(x):
            with F.channels_last():
                x = self._trunk(s, x.transpose(0, 2, 3, 1))
            x = x.transpose(0, 3, 1, 2)
        else:
            x = self._trunk(s, x)
        return s("fc", self.fc, F.flatten(x, 1)), s.state

    def _trunk(self, s: Scope, x):
        x = s("maxpool", self.maxpool, F.relu(s("bn1", self.bn1, s("conv1", self.conv1, x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = s(name, getattr(self, name), x)
        return s("avgpool", self.avgpool, x)

    def _trunk_channels_last(self, x) -> bool:
        """Channels-last on CPU, where XLA's convolutions are channels-last (measured in
        ``benchmarks/README.md``), for an NCHW input and a trunk of layers that know the
        layout (a custom module swapped in keeps NCHW); the head always sees NCHW."""
        trunk = [m for name, m in self.named_modules() if name != "fc" and not name.startswith("fc.")]
        return (
            jax.default_backend() == "cpu"
            and x.ndim == 4
            and x.shape[1] == self.conv1.in_channels
            and all(type(m) in _CHANNELS_LAST_LAYERS for m in trunk)
        )


_CHANNELS_LAST_LAYERS = (
    ResNet, BasicBlock, Sequential, Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Identity, Dropout,
)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18. For ``pretrained=True``, load a local torchvision file (nothing is
    downloaded): ``params, state, *_ = funcnets.torch_io.load_weights(path, model)``."""
    return ResNet((2, 2, 2, 2), num_classes, "resnet18")


def resnet34(num_classes: int = 1000) -> ResNet:
    """ResNet-34: BasicBlocks ``(3, 4, 6, 3)``; see :func:`resnet18`."""
    return ResNet((3, 4, 6, 3), num_classes, "resnet34")

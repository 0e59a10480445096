"""torchvision's ResNet family (``torchvision/models/resnet.py``): ResNet-18/34/50/101/152,
ResNeXt-50 32×4d, ResNeXt-101 32×8d/64×4d and Wide ResNet-50-2/101-2, with torchvision's
names and initialisation.

Input ``(N, 3, H, W)`` with H, W ≥ 1 (torchvision's ``min_size``; the stem and every stage
halve the side, rounding up) → logits ``(N, num_classes)``. State holds every BatchNorm's
``running_mean``, ``running_var`` and ``num_batches_tracked``, under the same names as
torchvision's ``state_dict`` (``layer2.0.downsample.1.running_var``).
``apply(..., train=True)`` uses batch statistics and returns updated running stats.

Structure: conv1 (7×7/2, 64) → bn1 → relu → maxpool (3×3/2) → layer1..layer4 (64, 128,
256, 512 planes; stride 2 from layer2 on, or dilation with ``replace_stride_with_dilation``)
→ global average pool → fc. A :class:`BasicBlock` is two 3×3 convs (expansion 1); a
:class:`Bottleneck` is 1×1 → 3×3 (stride and ``groups`` here: torchvision's "ResNet V1.5")
→ 1×1 to ``4·planes``, with inner width ``int(planes · width_per_group / 64) · groups``.
A block whose input and output shapes differ adds ``downsample`` (1×1 conv → norm) to the
identity path.

Initialisation (torchvision's): convolutions ``kaiming_normal_(mode="fan_out",
nonlinearity="relu")``; BatchNorm/GroupNorm γ=1, β=0; fc torch's default;
``zero_init_residual=True`` zeroes γ of each block's last norm layer.

On CPU the trunk (conv1 .. avgpool) runs channels-last inside
(:func:`funcnets.nn.functional.channels_last`): the input, the parameters and the head
keep torch's layouts, and the numbers are the same up to float32 rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import jax

from funcnets.models._registry import check_input, constant, kaiming_normal, load_pretrained, register_model
from funcnets.nn import functional as F
from funcnets.nn import (
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, GroupNorm, Identity, Linear, MaxPool2d, ReLU, Sequential,
)
from funcnets.nn.module import Module, Scope
from funcnets.torch_io import flatten, unflatten

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> Conv2d:
    """3×3 convolution, padding = dilation ("same" at stride 1), no bias."""
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups, bias=False,
                  dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> Conv2d:
    """1×1 convolution, no bias."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


@dataclass(frozen=True, repr=False)
class BasicBlock(Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + identity)``, ``identity = downsample(x)`` when
    given, else ``x``. ``x: (N, inplanes, H, W) -> (N, planes, H', W')``, ``H' = ceil(H / stride)``.

    torchvision's signature: ``BasicBlock(inplanes, planes, stride=1, downsample=None,
    groups=1, base_width=64, dilation=1, norm_layer=None)`` (only groups=1, base_width=64,
    dilation=1 are supported, as in torchvision).
    """

    expansion = 1

    inplanes: int
    planes: int
    stride: int = 1
    conv1: Conv2d = field(init=False)
    bn1: Module = field(init=False)
    relu: ReLU = field(init=False)
    conv2: Conv2d = field(init=False)
    bn2: Module = field(init=False)
    # init fields after the children: torch registers downsample last
    downsample: Module | None = None
    groups: int = 1
    base_width: int = 64
    dilation: int = 1
    norm_layer: Callable[..., Module] | None = None

    def __post_init__(self):
        if self.groups != 1 or self.base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if self.dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        norm = self.norm_layer or BatchNorm2d
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv1", conv3x3(self.inplanes, self.planes, self.stride))
        set_("bn1", norm(self.planes))
        set_("relu", ReLU())
        set_("conv2", conv3x3(self.planes, self.planes))
        set_("bn2", norm(self.planes))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        out = F.relu(s("bn1", self.bn1, s("conv1", self.conv1, x)))
        out = s("bn2", self.bn2, s("conv2", self.conv2, out))
        identity = x if self.downsample is None else s("downsample", self.downsample, x)
        return F.relu(out + identity), s.state


@dataclass(frozen=True, repr=False)
class Bottleneck(Module):
    """``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + identity)``:
    1×1 to ``width`` → 3×3 (``stride``, ``groups``, ``dilation``) → 1×1 to ``4·planes``, with
    ``width = int(planes · base_width / 64) · groups``.
    ``x: (N, inplanes, H, W) -> (N, 4·planes, H', W')``, ``H' = ceil(H / stride)``.

    torchvision's signature: ``Bottleneck(inplanes, planes, stride=1, downsample=None,
    groups=1, base_width=64, dilation=1, norm_layer=None)``.
    """

    expansion = 4

    inplanes: int
    planes: int
    stride: int = 1
    conv1: Conv2d = field(init=False)
    bn1: Module = field(init=False)
    conv2: Conv2d = field(init=False)
    bn2: Module = field(init=False)
    conv3: Conv2d = field(init=False)
    bn3: Module = field(init=False)
    relu: ReLU = field(init=False)
    downsample: Module | None = None
    groups: int = 1
    base_width: int = 64
    dilation: int = 1
    norm_layer: Callable[..., Module] | None = None

    def __post_init__(self):
        norm = self.norm_layer or BatchNorm2d
        width = int(self.planes * (self.base_width / 64.0)) * self.groups
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv1", conv1x1(self.inplanes, width))
        set_("bn1", norm(width))
        set_("conv2", conv3x3(width, width, self.stride, self.groups, self.dilation))
        set_("bn2", norm(width))
        set_("conv3", conv1x1(width, self.planes * self.expansion))
        set_("bn3", norm(self.planes * self.expansion))
        set_("relu", ReLU())

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        out = F.relu(s("bn1", self.bn1, s("conv1", self.conv1, x)))
        out = F.relu(s("bn2", self.bn2, s("conv2", self.conv2, out)))
        out = s("bn3", self.bn3, s("conv3", self.conv3, out))
        identity = x if self.downsample is None else s("downsample", self.downsample, x)
        return F.relu(out + identity), s.state


@dataclass(frozen=True, repr=False)
class ResNet(Module):
    """``torchvision.models.ResNet(block, layers, num_classes=1000, zero_init_residual=False,
    groups=1, width_per_group=64, replace_stride_with_dilation=None, norm_layer=None)``.

    ``ResNet(BasicBlock, (2, 2, 2, 2))`` is ResNet-18, ``ResNet(Bottleneck, (3, 4, 6, 3))``
    ResNet-50. ``norm_layer`` is called as ``norm_layer(channels)`` (e.g.
    ``functools.partial(GroupNorm, 32)``). ``arch`` names the torchvision builder (for the
    message when a weights file is missing); by default the one this configuration is, if
    any. The pre-zoo form ``ResNet(layers, num_classes,
    arch)`` (BasicBlocks) is still accepted.

    Replace the head as in the tutorial (``model.fc = nn.Linear(512, 10)``) with
    ``funcnets.nn.replace(model, params, state, "fc", Linear(512, 10), key)``.
    """

    block: type = BasicBlock
    layers: tuple[int, ...] = (2, 2, 2, 2)
    num_classes: int = 1000
    zero_init_residual: bool = False
    groups: int = 1
    width_per_group: int = 64
    replace_stride_with_dilation: tuple[bool, bool, bool] | None = None
    norm_layer: Callable[..., Module] | None = None
    arch: str | None = None
    conv1: Conv2d = field(init=False)
    bn1: Module = field(init=False)
    relu: ReLU = field(init=False)
    maxpool: MaxPool2d = field(init=False)
    layer1: Sequential = field(init=False)
    layer2: Sequential = field(init=False)
    layer3: Sequential = field(init=False)
    layer4: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    fc: Linear = None  # type: ignore[assignment]

    min_size = 1  # torchvision's meta["min_size"] = (1, 1)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if not isinstance(self.block, type):  # the pre-zoo ResNet(layers, num_classes, arch)
            legacy_arch = self.num_classes if isinstance(self.num_classes, str) else None
            set_("num_classes", self.layers)
            set_("layers", self.block)
            set_("block", BasicBlock)
            set_("arch", legacy_arch)
        set_("layers", tuple(self.layers))
        if self.arch is None:  # torchvision's builder name when the configuration is one of them
            set_("arch", _ARCHS.get((self.block, self.layers, self.groups, self.width_per_group)))
        dilate = self.replace_stride_with_dilation
        if dilate is None:
            dilate = (False, False, False)
        if len(dilate) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or a 3-element tuple, got {dilate}")
        set_("replace_stride_with_dilation", None if self.replace_stride_with_dilation is None else tuple(dilate))
        norm = self.norm_layer or BatchNorm2d
        set_("conv1", Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False))
        set_("bn1", norm(64))
        set_("relu", ReLU())
        set_("maxpool", MaxPool2d(kernel_size=3, stride=2, padding=1))
        # torchvision's _make_layer, with its running inplanes/dilation
        inplanes, dilation, block = 64, 1, self.block
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), self.layers)):
            stride = 1 if i == 0 else 2
            previous_dilation = dilation
            if i > 0 and dilate[i - 1]:
                dilation *= stride
                stride = 1
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = Sequential(conv1x1(inplanes, planes * block.expansion, stride),
                                        norm(planes * block.expansion))
            stage = [block(inplanes, planes, stride, downsample, self.groups, self.width_per_group,
                           previous_dilation, self.norm_layer)]
            inplanes = planes * block.expansion
            stage += [block(inplanes, planes, groups=self.groups, base_width=self.width_per_group,
                            dilation=dilation, norm_layer=self.norm_layer) for _ in range(1, blocks)]
            set_(f"layer{i + 1}", Sequential(*stage))
        set_("avgpool", AdaptiveAvgPool2d((1, 1)))
        if self.fc is None:
            set_("fc", Linear(512 * block.expansion, self.num_classes))

    def init_tree(self, key):
        """torchvision's init: convs ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``,
        BatchNorm/GroupNorm γ=1, β=0, the fc layer torch's default; with
        ``zero_init_residual`` γ=0 in each block's last norm (bn3 / bn2)."""
        k_default, k_conv = jax.random.split(key)
        params, state = super().init_tree(k_default)
        flat = flatten(params)
        modules = list(self.named_modules())
        convs = [n for n, m in modules if isinstance(m, Conv2d)]
        for k, name in zip(jax.random.split(k_conv, len(convs)), convs):
            flat[f"{name}.weight"] = kaiming_normal(k, flat[f"{name}.weight"], mode="fan_out")
        for name, m in modules:
            if isinstance(m, (BatchNorm2d, GroupNorm)) and f"{name}.weight" in flat:
                flat[f"{name}.weight"] = constant(flat[f"{name}.weight"], 1.0)
                flat[f"{name}.bias"] = constant(flat[f"{name}.bias"], 0.0)
        if self.zero_init_residual:
            for name, m in modules:
                last = "bn3" if isinstance(m, Bottleneck) else "bn2" if isinstance(m, BasicBlock) else None
                if last is not None and f"{name}.{last}.weight" in flat:
                    flat[f"{name}.{last}.weight"] = constant(flat[f"{name}.{last}.weight"], 0.0)
        return unflatten(flat), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``."""
        if getattr(self.conv1, "in_channels", None) == 3:  # a replaced stem states its own input
            check_input(self, x, self.min_size)
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
    ResNet, BasicBlock, Bottleneck, Sequential, Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Identity,
    Dropout,
)


_ARCHS = {  # (block, layers, groups, width_per_group): torchvision's builder
    (BasicBlock, (2, 2, 2, 2), 1, 64): "resnet18", (BasicBlock, (3, 4, 6, 3), 1, 64): "resnet34",
    (Bottleneck, (3, 4, 6, 3), 1, 64): "resnet50", (Bottleneck, (3, 4, 23, 3), 1, 64): "resnet101",
    (Bottleneck, (3, 8, 36, 3), 1, 64): "resnet152", (Bottleneck, (3, 4, 6, 3), 32, 4): "resnext50_32x4d",
    (Bottleneck, (3, 4, 23, 3), 32, 8): "resnext101_32x8d", (Bottleneck, (3, 4, 23, 3), 64, 4): "resnext101_64x4d",
    (Bottleneck, (3, 4, 6, 3), 1, 128): "wide_resnet50_2", (Bottleneck, (3, 4, 23, 3), 1, 128): "wide_resnet101_2",
}


def _overwrite_named_param(kwargs: dict[str, Any], param: str, new_value: Any) -> None:
    """torchvision's ``_ovewrite_named_param``: a builder's fixed setting may be passed only
    with the same value."""
    if param in kwargs:
        if kwargs[param] != new_value:
            raise ValueError(f"The parameter '{param}' expected value {new_value} but got {kwargs[param]} instead.")
    else:
        kwargs[param] = new_value


_DOC = """{title}.

    Args:
      num_classes: the size of ``fc``'s output (also accepted positionally, as
        ``resnet18(10)`` always was).
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``ResNet``'s ``zero_init_residual=False``, ``replace_stride_with_dilation=None``,
        ``norm_layer=None``{fixed}.
    Returns:
      ``ResNet``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, block: type, layers: tuple[int, ...], title: str, **fixed: Any):
    def build(num_classes: int = 1000, *, weights: str | os.PathLike | None = None, progress: bool = True,
              **kwargs: Any) -> Any:
        for k, v in fixed.items():
            _overwrite_named_param(kwargs, k, v)
        model = ResNet(block, layers, num_classes, arch=arch, **kwargs)
        return model if weights is None else load_pretrained(model, weights)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    shown = "".join(f", ``{k}={v}`` (fixed)" for k, v in fixed.items())
    build.__doc__ = _DOC.format(title=title, fixed=shown if fixed else ", ``groups=1``, ``width_per_group=64``")
    return register_model(arch)(build)


resnet18 = _builder("resnet18", BasicBlock, (2, 2, 2, 2), "ResNet-18: BasicBlocks (2, 2, 2, 2)")
resnet34 = _builder("resnet34", BasicBlock, (3, 4, 6, 3), "ResNet-34: BasicBlocks (3, 4, 6, 3)")
resnet50 = _builder("resnet50", Bottleneck, (3, 4, 6, 3), "ResNet-50: Bottlenecks (3, 4, 6, 3)")
resnet101 = _builder("resnet101", Bottleneck, (3, 4, 23, 3), "ResNet-101: Bottlenecks (3, 4, 23, 3)")
resnet152 = _builder("resnet152", Bottleneck, (3, 8, 36, 3), "ResNet-152: Bottlenecks (3, 8, 36, 3)")
resnext50_32x4d = _builder("resnext50_32x4d", Bottleneck, (3, 4, 6, 3),
                           "ResNeXt-50 32×4d: Bottlenecks (3, 4, 6, 3), 32 groups of width 4",
                           groups=32, width_per_group=4)
resnext101_32x8d = _builder("resnext101_32x8d", Bottleneck, (3, 4, 23, 3),
                            "ResNeXt-101 32×8d: Bottlenecks (3, 4, 23, 3), 32 groups of width 8",
                            groups=32, width_per_group=8)
resnext101_64x4d = _builder("resnext101_64x4d", Bottleneck, (3, 4, 23, 3),
                            "ResNeXt-101 64×4d: Bottlenecks (3, 4, 23, 3), 64 groups of width 4",
                            groups=64, width_per_group=4)
wide_resnet50_2 = _builder("wide_resnet50_2", Bottleneck, (3, 4, 6, 3),
                           "Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide",
                           width_per_group=128)
wide_resnet101_2 = _builder("wide_resnet101_2", Bottleneck, (3, 4, 23, 3),
                            "Wide ResNet-101-2: ResNet-101 with bottlenecks twice as wide",
                            width_per_group=128)

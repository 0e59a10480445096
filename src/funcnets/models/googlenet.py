"""torchvision's GoogLeNet (Inception v1) (``torchvision/models/googlenet.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 15 (torchvision's ``min_size``) → logits
``(N, num_classes)``; in training with ``aux_logits`` the output is
``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``, as torchvision's. Every
convolution is a :class:`BasicConv2d` (conv without bias → BatchNorm(eps=0.001) → ReLU);
an :class:`Inception` block concatenates (channel axis) a 1×1 branch, two 1×1→3×3
branches (torchvision's "5×5" branch is 3×3, kept for its weights) and a 3×3 max-pool →
1×1 branch. Max-pools use ceil mode. ``transform_input`` maps ImageNet-normalised inputs
to the (x - 0.5) / 0.5 scaling the original weights were trained with.

``init_weights=True`` (torchvision's default, which also warns that the default will
change) is ``trunc_normal_(std=0.01, a=-2, b=2)`` for convolution and linear weights,
BatchNorm γ=1, β=0; linear biases keep torch's default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.models._registry import check_input, constant, register_model, reinit, trunc_normal
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Sequential
from funcnets.nn.module import Module, Scope
from funcnets.torch_io import load_file, load_state_dict

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "BasicConv2d", "Inception", "InceptionAux", "googlenet"]


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output with ``aux_logits``: each ``(N, num_classes)``."""

    logits: Array
    aux_logits2: Optional[Array]
    aux_logits1: Optional[Array]


@dataclass(frozen=True, repr=False)
class BasicConv2d(Module):
    """``relu(bn(conv(x)))``; conv without bias, BatchNorm eps=0.001 (GoogLeNet's and
    Inception v3's, which imports it)."""

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int] = 1
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    conv: Conv2d = field(init=False)
    bn: BatchNorm2d = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "conv", Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                                                stride=self.stride, padding=self.padding, bias=False))
        object.__setattr__(self, "bn", BatchNorm2d(self.out_channels, eps=0.001))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        return F.relu(s("bn", self.bn, s("conv", self.conv, x))), s.state


@dataclass(frozen=True, repr=False)
class Inception(Module):
    """``(N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``."""

    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    branch1: BasicConv2d = field(init=False)
    branch2: Sequential = field(init=False)
    branch3: Sequential = field(init=False)
    branch4: Sequential = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        c = self.in_channels
        set_("branch1", BasicConv2d(c, self.ch1x1, kernel_size=1))
        set_("branch2", Sequential(BasicConv2d(c, self.ch3x3red, kernel_size=1),
                                   BasicConv2d(self.ch3x3red, self.ch3x3, kernel_size=3, padding=1)))
        set_("branch3", Sequential(BasicConv2d(c, self.ch5x5red, kernel_size=1),
                                   BasicConv2d(self.ch5x5red, self.ch5x5, kernel_size=3, padding=1)))
        set_("branch4", Sequential(MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                   BasicConv2d(c, self.pool_proj, kernel_size=1)))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        outs = [s(n, getattr(self, n), x) for n in ("branch1", "branch2", "branch3", "branch4")]
        return jnp.concatenate(outs, axis=1), s.state


@dataclass(frozen=True, repr=False)
class InceptionAux(Module):
    """Auxiliary head: 4×4 adaptive average pool → 1×1 BasicConv2d to 128 → fc1 (2048→1024)
    → ReLU → dropout → fc2; ``(N, in_channels, H, W) -> (N, num_classes)``."""

    in_channels: int
    num_classes: int
    dropout: float = 0.7
    conv: BasicConv2d = field(init=False)
    fc1: Linear = field(init=False)
    fc2: Linear = field(init=False)
    dropout_layer: Dropout = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv", BasicConv2d(self.in_channels, 128, kernel_size=1))
        set_("fc1", Linear(2048, 1024))
        set_("fc2", Linear(1024, self.num_classes))
        set_("dropout_layer", Dropout(p=self.dropout))

    def children(self):
        # torch names the Dropout child "dropout", which here is the rate's field name
        return [("conv", self.conv), ("fc1", self.fc1), ("fc2", self.fc2), ("dropout", self.dropout_layer)]

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        x = s("conv", self.conv, F.adaptive_avg_pool2d(x, (4, 4)))
        x = F.relu(s("fc1", self.fc1, F.flatten(x, 1)))
        return s("fc2", self.fc2, s("dropout", self.dropout_layer, x)), s.state


_BLOCKS = (
    ("inception3a", (192, 64, 96, 128, 16, 32, 32)),
    ("inception3b", (256, 128, 128, 192, 32, 96, 64)),
    ("maxpool3", (3, 2)),
    ("inception4a", (480, 192, 96, 208, 16, 48, 64)),
    ("inception4b", (512, 160, 112, 224, 24, 64, 64)),
    ("inception4c", (512, 128, 128, 256, 24, 64, 64)),
    ("inception4d", (512, 112, 144, 288, 32, 64, 64)),
    ("inception4e", (528, 256, 160, 320, 32, 128, 128)),
    ("maxpool4", (2, 2)),
    ("inception5a", (832, 256, 160, 320, 32, 128, 128)),
    ("inception5b", (832, 384, 192, 384, 48, 128, 128)),
)


@dataclass(frozen=True, repr=False)
class GoogLeNet(Module):
    """``torchvision.models.GoogLeNet(num_classes=1000, aux_logits=True, transform_input=False,
    init_weights=None, dropout=0.2, dropout_aux=0.7)``.

    Replace the head with ``nn.replace(model, params, state, "fc", Linear(1024, 10), key)``.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    init_weights: Optional[bool] = None
    dropout: float = 0.2
    dropout_aux: float = 0.7
    arch: str = "googlenet"
    conv1: BasicConv2d = field(init=False)
    maxpool1: MaxPool2d = field(init=False)
    conv2: BasicConv2d = field(init=False)
    conv3: BasicConv2d = field(init=False)
    maxpool2: MaxPool2d = field(init=False)
    inception3a: Inception = field(init=False)
    inception3b: Inception = field(init=False)
    maxpool3: MaxPool2d = field(init=False)
    inception4a: Inception = field(init=False)
    inception4b: Inception = field(init=False)
    inception4c: Inception = field(init=False)
    inception4d: Inception = field(init=False)
    inception4e: Inception = field(init=False)
    maxpool4: MaxPool2d = field(init=False)
    inception5a: Inception = field(init=False)
    inception5b: Inception = field(init=False)
    aux1: Optional[InceptionAux] = field(init=False)
    aux2: Optional[InceptionAux] = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    dropout_layer: Dropout = field(init=False)
    fc: Linear = field(init=False)

    min_size = 15

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("conv1", BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3))
        set_("maxpool1", MaxPool2d(3, stride=2, ceil_mode=True))
        set_("conv2", BasicConv2d(64, 64, kernel_size=1))
        set_("conv3", BasicConv2d(64, 192, kernel_size=3, padding=1))
        set_("maxpool2", MaxPool2d(3, stride=2, ceil_mode=True))
        for name, args in _BLOCKS:
            set_(name, MaxPool2d(args[0], stride=args[1], ceil_mode=True) if name.startswith("maxpool")
                 else Inception(*args))
        set_("aux1", InceptionAux(512, self.num_classes, dropout=self.dropout_aux) if self.aux_logits else None)
        set_("aux2", InceptionAux(528, self.num_classes, dropout=self.dropout_aux) if self.aux_logits else None)
        set_("avgpool", AdaptiveAvgPool2d((1, 1)))
        set_("dropout_layer", Dropout(p=self.dropout))
        set_("fc", Linear(1024, self.num_classes))

    def children(self):
        # torch names the Dropout child "dropout", which here is the rate's field name
        kids = super().children()
        i = [n for n, _ in kids].index("dropout_layer")
        kids[i] = ("dropout", self.dropout_layer)
        return kids

    def init_tree(self, key):
        k_default, k_g = jax.random.split(key)
        params, state = super().init_tree(k_default)
        if self.init_weights is False:
            return params, state

        def rule(name, m, k, own):
            if isinstance(m, (Conv2d, Linear)):
                return {"weight": trunc_normal(k, own["weight"], 0.01, -2.0, 2.0)}
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_g, rule), state

    def _transform_input(self, x):
        if not self.transform_input:
            return x
        scale = jnp.asarray([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], x.dtype)[:, None, None]
        shift = jnp.asarray([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], x.dtype)[:, None, None]
        return x * scale + shift

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``, or ``GoogLeNetOutputs`` when ``train``
        and ``aux_logits``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = self._transform_input(x)
        for name in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                     "maxpool3", "inception4a"):
            x = s(name, getattr(self, name), x)
        aux1 = s("aux1", self.aux1, x) if self.aux1 is not None and train else None
        for name in ("inception4b", "inception4c", "inception4d"):
            x = s(name, getattr(self, name), x)
        aux2 = s("aux2", self.aux2, x) if self.aux2 is not None and train else None
        for name in ("inception4e", "maxpool4", "inception5a", "inception5b", "avgpool"):
            x = s(name, getattr(self, name), x)
        x = s("fc", self.fc, s("dropout", self.dropout_layer, F.flatten(x, 1)))
        if train and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1), s.state
        return x, s.state


@register_model()
def googlenet(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    """GoogLeNet (Inception v1) from "Going Deeper with Convolutions".

    Args:
      weights: None, or a local torchvision weights file (``.pth``/``.safetensors``;
        nothing is downloaded). As in torchvision, with weights ``transform_input``
        defaults to True, and the auxiliary heads are dropped unless ``aux_logits=True``
        (they are not pretrained); a file without them loads into a model without them.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``GoogLeNet``'s ``num_classes=1000``, ``aux_logits=True``,
        ``transform_input=False``, ``init_weights=None``, ``dropout=0.2``, ``dropout_aux=0.7``.
    Returns:
      ``GoogLeNet``, or ``(model, params, state)`` when ``weights`` is given.
    """
    if weights is None:
        return GoogLeNet(**kwargs)
    kwargs.setdefault("transform_input", True)
    kwargs.setdefault("aux_logits", False)
    kwargs["init_weights"] = False
    model = GoogLeNet(**kwargs)
    sd = load_file(weights, arch="googlenet")
    if not model.aux_logits:  # torchvision loads them, then deletes them
        sd = {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2."))}
    loaded = load_state_dict(model, sd, strict=True)
    return model, loaded.params, loaded.state

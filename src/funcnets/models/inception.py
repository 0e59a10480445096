"""torchvision's Inception v3 (``torchvision/models/inception.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 75 (torchvision's ``min_size``; its weights expect
299×299) → logits ``(N, num_classes)``. In training with ``aux_logits`` the output is
``InceptionOutputs(logits, aux_logits)``, as torchvision's; the auxiliary head (5×5/3
average pool → 1×1 conv → 5×5 conv → global pool → fc) needs a 17×17 ``Mixed_6e`` map,
i.e. 299×299 images, exactly as in torchvision.

Every convolution is a :class:`BasicConv2d` (conv without bias → BatchNorm(eps=0.001) →
ReLU). The stem (``Conv2d_1a_3x3`` … ``maxpool2``) is followed by ``Mixed_5b..5d``
(:class:`InceptionA`: 1×1, 5×5, double 3×3 and 3×3-average-pool branches),
``Mixed_6a`` (:class:`InceptionB`, grid reduction), ``Mixed_6b..6e`` (:class:`InceptionC`,
factorised 1×7/7×1 branches), ``AuxLogits``, ``Mixed_7a`` (:class:`InceptionD`, grid
reduction), ``Mixed_7b..7c`` (:class:`InceptionE`, split 1×3/3×1 branches), global average
pool, dropout and ``fc``. Branches concatenate on the channel axis; average pools count
the padding (torch's default). ``transform_input`` maps ImageNet-normalised inputs to the
(x - 0.5) / 0.5 scaling the original weights were trained with.

``init_weights=True`` (torchvision's default for ``None``, which also warns there that
the default will change) is ``trunc_normal_(std=0.1, a=-2, b=2)`` for every convolution
and linear weight, except ``AuxLogits.fc`` (std 0.001); BatchNorm γ=1, β=0; linear
biases keep torch's default. (torchvision also sets ``stddev = 0.01`` on
``AuxLogits.conv1``, a ``BasicConv2d``; its loop only reads ``stddev`` from the
``nn.Conv2d`` itself, so that convolution gets 0.1 too, and so it does here.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.models._registry import check_input, constant, register_model, reinit, trunc_normal
from funcnets.models.googlenet import BasicConv2d
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d
from funcnets.nn.module import Module, Scope
from funcnets.torch_io import load_file, load_state_dict

__all__ = [
    "Inception3", "InceptionOutputs", "BasicConv2d", "InceptionA", "InceptionB", "InceptionC", "InceptionD",
    "InceptionE", "InceptionAux", "inception_v3",
]

IntOr2 = int | tuple[int, int]


class InceptionOutputs(NamedTuple):
    """Training-mode output with ``aux_logits``: each ``(N, num_classes)``."""

    logits: Array
    aux_logits: Optional[Array]


class _Branches(Module):
    """A block of ``BasicConv2d`` children (set in ``__post_init__`` in torch's order) whose
    ``_forward`` returns the branch outputs, concatenated on the channel axis."""

    def _convs(self, *specs: tuple[str, int, int, dict]) -> None:
        block = self.conv_block or BasicConv2d
        for name, c_in, c_out, kw in specs:
            object.__setattr__(self, name, block(c_in, c_out, **kw))

    def children(self):
        return [(n, getattr(self, n)) for n in self._names]

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)

        def run(*names, start=None):
            # the children ``names`` in turn, from the block's input or from ``start``
            y = x if start is None else start
            for n in names:
                y = s(n, getattr(self, n), y)
            return y

        return jnp.concatenate(self._forward(x, run), axis=1), s.state


@dataclass(frozen=True, repr=False)
class InceptionA(_Branches):
    """``(N, in_channels, H, W) -> (N, 224 + pool_features, H, W)``: 1×1 (64), 1×1 → 5×5 (64),
    1×1 → 3×3 → 3×3 (96), 3×3 average pool → 1×1 (pool_features)."""

    in_channels: int
    pool_features: int
    conv_block: Optional[Callable[..., Module]] = None
    _names = ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
              "branch_pool")

    def __post_init__(self):
        c = self.in_channels
        self._convs(("branch1x1", c, 64, dict(kernel_size=1)),
                    ("branch5x5_1", c, 48, dict(kernel_size=1)),
                    ("branch5x5_2", 48, 64, dict(kernel_size=5, padding=2)),
                    ("branch3x3dbl_1", c, 64, dict(kernel_size=1)),
                    ("branch3x3dbl_2", 64, 96, dict(kernel_size=3, padding=1)),
                    ("branch3x3dbl_3", 96, 96, dict(kernel_size=3, padding=1)),
                    ("branch_pool", c, self.pool_features, dict(kernel_size=1)))

    def _forward(self, x, run):
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [run("branch1x1"), run("branch5x5_1", "branch5x5_2"),
                run("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                run("branch_pool", start=pooled)]


@dataclass(frozen=True, repr=False)
class InceptionB(_Branches):
    """Grid reduction: ``(N, C, H, W) -> (N, 480 + C, (H-3)/2+1, (W-3)/2+1)``: 3×3/2 (384),
    1×1 → 3×3 → 3×3/2 (96), 3×3/2 max pool."""

    in_channels: int
    conv_block: Optional[Callable[..., Module]] = None
    _names = ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")

    def __post_init__(self):
        c = self.in_channels
        self._convs(("branch3x3", c, 384, dict(kernel_size=3, stride=2)),
                    ("branch3x3dbl_1", c, 64, dict(kernel_size=1)),
                    ("branch3x3dbl_2", 64, 96, dict(kernel_size=3, padding=1)),
                    ("branch3x3dbl_3", 96, 96, dict(kernel_size=3, stride=2)))

    def _forward(self, x, run):
        return [run("branch3x3"), run("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                F.max_pool2d(x, kernel_size=3, stride=2)]


@dataclass(frozen=True, repr=False)
class InceptionC(_Branches):
    """``(N, in_channels, H, W) -> (N, 768, H, W)``: 1×1 (192), 1×1 → 1×7 → 7×1 (192),
    1×1 → 7×1 → 1×7 → 7×1 → 1×7 (192), 3×3 average pool → 1×1 (192); the inner
    width is ``channels_7x7``."""

    in_channels: int
    channels_7x7: int
    conv_block: Optional[Callable[..., Module]] = None
    _names = ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1", "branch7x7dbl_2",
              "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool")

    def __post_init__(self):
        c, c7 = self.in_channels, self.channels_7x7
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self._convs(("branch1x1", c, 192, dict(kernel_size=1)),
                    ("branch7x7_1", c, c7, dict(kernel_size=1)),
                    ("branch7x7_2", c7, c7, row),
                    ("branch7x7_3", c7, 192, col),
                    ("branch7x7dbl_1", c, c7, dict(kernel_size=1)),
                    ("branch7x7dbl_2", c7, c7, col),
                    ("branch7x7dbl_3", c7, c7, row),
                    ("branch7x7dbl_4", c7, c7, col),
                    ("branch7x7dbl_5", c7, 192, row),
                    ("branch_pool", c, 192, dict(kernel_size=1)))

    def _forward(self, x, run):
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [run("branch1x1"), run("branch7x7_1", "branch7x7_2", "branch7x7_3"),
                run("branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"),
                run("branch_pool", start=pooled)]


@dataclass(frozen=True, repr=False)
class InceptionD(_Branches):
    """Grid reduction: ``(N, C, H, W) -> (N, 512 + C, (H-3)/2+1, (W-3)/2+1)``: 1×1 → 3×3/2
    (320), 1×1 → 1×7 → 7×1 → 3×3/2 (192), 3×3/2 max pool."""

    in_channels: int
    conv_block: Optional[Callable[..., Module]] = None
    _names = ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4")

    def __post_init__(self):
        c = self.in_channels
        self._convs(("branch3x3_1", c, 192, dict(kernel_size=1)),
                    ("branch3x3_2", 192, 320, dict(kernel_size=3, stride=2)),
                    ("branch7x7x3_1", c, 192, dict(kernel_size=1)),
                    ("branch7x7x3_2", 192, 192, dict(kernel_size=(1, 7), padding=(0, 3))),
                    ("branch7x7x3_3", 192, 192, dict(kernel_size=(7, 1), padding=(3, 0))),
                    ("branch7x7x3_4", 192, 192, dict(kernel_size=3, stride=2)))

    def _forward(self, x, run):
        return [run("branch3x3_1", "branch3x3_2"),
                run("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
                F.max_pool2d(x, kernel_size=3, stride=2)]


@dataclass(frozen=True, repr=False)
class InceptionE(_Branches):
    """``(N, in_channels, H, W) -> (N, 2048, H, W)``: 1×1 (320), 1×1 → [1×3, 3×1] (2·384),
    1×1 → 3×3 → [1×3, 3×1] (2·384), 3×3 average pool → 1×1 (192)."""

    in_channels: int
    conv_block: Optional[Callable[..., Module]] = None
    _names = ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
              "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool")

    def __post_init__(self):
        c = self.in_channels
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self._convs(("branch1x1", c, 320, dict(kernel_size=1)),
                    ("branch3x3_1", c, 384, dict(kernel_size=1)),
                    ("branch3x3_2a", 384, 384, row),
                    ("branch3x3_2b", 384, 384, col),
                    ("branch3x3dbl_1", c, 448, dict(kernel_size=1)),
                    ("branch3x3dbl_2", 448, 384, dict(kernel_size=3, padding=1)),
                    ("branch3x3dbl_3a", 384, 384, row),
                    ("branch3x3dbl_3b", 384, 384, col),
                    ("branch_pool", c, 192, dict(kernel_size=1)))

    def _forward(self, x, run):
        b3 = run("branch3x3_1")
        b3dbl = run("branch3x3dbl_1", "branch3x3dbl_2")
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [run("branch1x1"),
                jnp.concatenate([run("branch3x3_2a", start=b3), run("branch3x3_2b", start=b3)], axis=1),
                jnp.concatenate([run("branch3x3dbl_3a", start=b3dbl), run("branch3x3dbl_3b", start=b3dbl)], axis=1),
                run("branch_pool", start=pooled)]


@dataclass(frozen=True, repr=False)
class InceptionAux(Module):
    """Auxiliary head: 5×5/3 average pool → 1×1 conv (128) → 5×5 conv (768) → global average
    pool → fc; ``(N, in_channels, H, W) -> (N, num_classes)``, H, W ≥ 17."""

    in_channels: int
    num_classes: int
    conv_block: Optional[Callable[..., Module]] = None
    conv0: Module = field(init=False)
    conv1: Module = field(init=False)
    fc: Linear = field(init=False)

    def __post_init__(self):
        block = self.conv_block or BasicConv2d
        object.__setattr__(self, "conv0", block(self.in_channels, 128, kernel_size=1))
        object.__setattr__(self, "conv1", block(128, 768, kernel_size=5))
        object.__setattr__(self, "fc", Linear(768, self.num_classes))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        x = s("conv1", self.conv1, s("conv0", self.conv0, F.avg_pool2d(x, kernel_size=5, stride=3)))
        x = F.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return s("fc", self.fc, x), s.state


_DEFAULT_BLOCKS = (BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionAux)


@dataclass(frozen=True, repr=False)
class Inception3(Module):
    """``torchvision.models.Inception3(num_classes=1000, aux_logits=True, transform_input=False,
    inception_blocks=None, init_weights=None, dropout=0.5)``.

    ``inception_blocks``: seven factories (conv block, A, B, C, D, E, aux), torchvision's
    hook for swapping block types. Replace the head with
    ``nn.replace(model, params, state, "fc", Linear(2048, 10), key)``.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    inception_blocks: Optional[Sequence[Callable[..., Module]]] = None
    init_weights: Optional[bool] = None
    dropout: float = 0.5
    arch: str = "inception_v3"
    Conv2d_1a_3x3: Module = field(init=False)
    Conv2d_2a_3x3: Module = field(init=False)
    Conv2d_2b_3x3: Module = field(init=False)
    maxpool1: MaxPool2d = field(init=False)
    Conv2d_3b_1x1: Module = field(init=False)
    Conv2d_4a_3x3: Module = field(init=False)
    maxpool2: MaxPool2d = field(init=False)
    Mixed_5b: Module = field(init=False)
    Mixed_5c: Module = field(init=False)
    Mixed_5d: Module = field(init=False)
    Mixed_6a: Module = field(init=False)
    Mixed_6b: Module = field(init=False)
    Mixed_6c: Module = field(init=False)
    Mixed_6d: Module = field(init=False)
    Mixed_6e: Module = field(init=False)
    AuxLogits: Optional[Module] = field(init=False)
    Mixed_7a: Module = field(init=False)
    Mixed_7b: Module = field(init=False)
    Mixed_7c: Module = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    dropout_layer: Dropout = field(init=False)
    fc: Linear = field(init=False)

    min_size = 75

    def __post_init__(self):
        blocks = _DEFAULT_BLOCKS if self.inception_blocks is None else tuple(self.inception_blocks)
        if len(blocks) != 7:
            raise ValueError(f"length of inception_blocks should be 7 instead of {len(blocks)}")
        if self.inception_blocks is not None:
            object.__setattr__(self, "inception_blocks", blocks)
        conv, a, b, c, d, e, aux = blocks
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("Conv2d_1a_3x3", conv(3, 32, kernel_size=3, stride=2))
        set_("Conv2d_2a_3x3", conv(32, 32, kernel_size=3))
        set_("Conv2d_2b_3x3", conv(32, 64, kernel_size=3, padding=1))
        set_("maxpool1", MaxPool2d(kernel_size=3, stride=2))
        set_("Conv2d_3b_1x1", conv(64, 80, kernel_size=1))
        set_("Conv2d_4a_3x3", conv(80, 192, kernel_size=3))
        set_("maxpool2", MaxPool2d(kernel_size=3, stride=2))
        set_("Mixed_5b", a(192, pool_features=32))
        set_("Mixed_5c", a(256, pool_features=64))
        set_("Mixed_5d", a(288, pool_features=64))
        set_("Mixed_6a", b(288))
        set_("Mixed_6b", c(768, channels_7x7=128))
        set_("Mixed_6c", c(768, channels_7x7=160))
        set_("Mixed_6d", c(768, channels_7x7=160))
        set_("Mixed_6e", c(768, channels_7x7=192))
        set_("AuxLogits", aux(768, self.num_classes) if self.aux_logits else None)
        set_("Mixed_7a", d(768))
        set_("Mixed_7b", e(1280))
        set_("Mixed_7c", e(2048))
        set_("avgpool", AdaptiveAvgPool2d((1, 1)))
        set_("dropout_layer", Dropout(p=self.dropout))
        set_("fc", Linear(2048, self.num_classes))

    def children(self):
        # torch names the Dropout child "dropout", which here is the rate's field name
        kids = super().children()
        i = [n for n, _ in kids].index("dropout_layer")
        kids[i] = ("dropout", self.dropout_layer)
        return kids

    def init_tree(self, key):
        k_default, k_tv = jax.random.split(key)
        params, state = super().init_tree(k_default)
        if self.init_weights is False:
            return params, state

        def rule(name, m, k, own):
            if isinstance(m, (Conv2d, Linear)):
                std = 0.001 if name == "AuxLogits.fc" else 0.1  # the one module torchvision gives a stddev
                return {"weight": trunc_normal(k, own["weight"], std, -2.0, 2.0)}
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_tv, rule), state

    def _transform_input(self, x):
        if not self.transform_input:
            return x
        scale = jnp.asarray([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], x.dtype)[:, None, None]
        shift = jnp.asarray([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], x.dtype)[:, None, None]
        return x * scale + shift

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``, or ``InceptionOutputs(logits, aux_logits)``
        when ``train`` and ``aux_logits``; ``key`` drives dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = self._transform_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = s(name, getattr(self, name), x)
        aux = s("AuxLogits", self.AuxLogits, x) if self.AuxLogits is not None and train else None
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            x = s(name, getattr(self, name), x)
        x = s("fc", self.fc, F.flatten(s("dropout", self.dropout_layer, x), 1))
        if train and self.aux_logits:
            return InceptionOutputs(x, aux), s.state
        return x, s.state


@register_model()
def inception_v3(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    """Inception v3 from "Rethinking the Inception Architecture for Computer Vision".

    Args:
      weights: None, or a local torchvision weights file (``.pth``/``.safetensors``;
        nothing is downloaded). As in torchvision, with weights ``transform_input``
        defaults to True and ``init_weights`` is False; the file's ``AuxLogits`` head is
        loaded and then dropped unless ``aux_logits`` (default True) stays True.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``Inception3``'s ``num_classes=1000``, ``aux_logits=True``,
        ``transform_input=False``, ``inception_blocks=None``, ``init_weights=None``,
        ``dropout=0.5``.
    Returns:
      ``Inception3``, or ``(model, params, state)`` when ``weights`` is given.
    """
    if weights is None:
        return Inception3(**kwargs)
    original_aux_logits = kwargs.get("aux_logits", True)
    kwargs.setdefault("transform_input", True)
    kwargs["aux_logits"] = True
    kwargs["init_weights"] = False
    sd = load_file(weights, arch="inception_v3")
    loaded = load_state_dict(Inception3(**kwargs), sd, strict=True)  # torchvision loads the aux head strictly
    if original_aux_logits:
        return Inception3(**kwargs), loaded.params, loaded.state
    kwargs["aux_logits"] = False
    drop = lambda t: {k: v for k, v in t.items() if k != "AuxLogits"}  # noqa: E731
    return Inception3(**kwargs), drop(loaded.params), drop(loaded.state)

"""torchvision's ConvNeXt-Tiny/Small/Base/Large (``torchvision/models/convnext.py``).

Input ``(N, 3, H, W)`` with H, W ≥ 32 (torchvision's ``min_size``) → logits
``(N, num_classes)``. ``features``: a 4×4/4 patchify stem (conv with bias → LayerNorm2d),
then per stage (a :class:`CNBlockConfig`) ``num_layers`` :class:`CNBlock` s followed, when
the stage has ``out_channels``, by a downsampling LayerNorm2d → 2×2/2 conv. Each block is
``input + stochastic_depth(layer_scale · block(input))`` with ``block`` = 7×7 depthwise conv
→ (to NHWC) LayerNorm(eps 1e-6) → Linear(C, 4C) → GELU → Linear(4C, C) → (to NCHW);
``layer_scale`` is a learned per-channel ``(C, 1, 1)`` parameter starting at 1e-6. The
stochastic depth probability grows linearly with the block's index, from 0 to
``stochastic_depth_prob`` (torch's "row" mode: a whole sample's branch dropped; in
``train=True`` it needs ``key=``). Head: global average pool → LayerNorm2d → flatten →
``classifier.2`` (Linear).

Initialisation (torchvision's): every Conv2d and Linear weight trunc_normal(std 0.02,
cut at ±2), biases 0; LayerNorms 1/0; ``layer_scale`` the constant ``layer_scale``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from funcnets.models._ops import Conv2dNormActivation, Permute, StochasticDepth
from funcnets.models._registry import check_input, constant, load_pretrained, register_model, reinit, trunc_normal
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, Conv2d, Flatten, GELU, LayerNorm, Linear, Sequential
from funcnets.nn.module import Module, Scope

__all__ = ["LayerNorm2d", "CNBlock", "CNBlockConfig", "ConvNeXt",
           "convnext_tiny", "convnext_small", "convnext_base", "convnext_large"]


@dataclass(frozen=True, repr=False)
class LayerNorm2d(LayerNorm):
    """LayerNorm over the channels of an image: ``(N, C, H, W) -> (N, C, H, W)``, each
    pixel's C values normalised (torchvision permutes to NHWC, normalises, permutes back)."""

    def apply(self, params, state, x, *, train=False, key=None):
        y = F.layer_norm(jnp.transpose(x, (0, 2, 3, 1)), self.normalized_shape, params.get("weight"),
                         params.get("bias"), self.eps)
        return jnp.transpose(y, (0, 3, 1, 2)), state


# torchvision's defaults, one object each so models built with them compare equal
_LAYER_NORM_1E6 = partial(LayerNorm, eps=1e-6)
_LAYER_NORM_2D_1E6 = partial(LayerNorm2d, eps=1e-6)


@dataclass(frozen=True, repr=False)
class CNBlock(Module):
    """``torchvision.models.convnext.CNBlock(dim, layer_scale, stochastic_depth_prob,
    norm_layer=None)``; ``(N, dim, H, W) -> (N, dim, H, W)``."""

    dim: int
    layer_scale: float
    stochastic_depth_prob: float
    norm_layer: Callable[..., Module] | None = None
    block: Sequential = field(init=False)
    stochastic_depth: StochasticDepth = field(init=False)

    def __post_init__(self):
        norm = self.norm_layer if self.norm_layer is not None else _LAYER_NORM_1E6
        d = self.dim
        object.__setattr__(self, "block", Sequential(
            Conv2d(d, d, kernel_size=7, padding=3, groups=d, bias=True), Permute([0, 2, 3, 1]), norm(d),
            Linear(d, 4 * d, bias=True), GELU(), Linear(4 * d, d, bias=True), Permute([0, 3, 1, 2]),
        ))  # fmt: skip
        object.__setattr__(self, "stochastic_depth", StochasticDepth(self.stochastic_depth_prob, "row"))

    def param_names(self):
        return ("layer_scale",)

    def init_own(self, key):
        return {"layer_scale": jnp.full((self.dim, 1, 1), self.layer_scale)}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, dim, H, W) -> (N, dim, H, W)``; ``key`` drives stochastic depth when ``train``."""
        s = Scope(params, state, train, key)
        result = params["layer_scale"] * s("block", self.block, x)
        return s("stochastic_depth", self.stochastic_depth, result) + x, s.state


@dataclass(frozen=True)
class CNBlockConfig:
    """One stage: ``num_layers`` blocks of ``input_channels``, then a downsampling layer to
    ``out_channels`` (``None``: the last stage, no downsampling)."""

    input_channels: int
    out_channels: int | None
    num_layers: int


@dataclass(frozen=True, repr=False)
class ConvNeXt(Module):
    """``torchvision.models.ConvNeXt(block_setting, stochastic_depth_prob=0.0,
    layer_scale=1e-6, num_classes=1000, block=None, norm_layer=None)``.

    Replace the head with ``nn.replace(model, params, state, "classifier.2", Linear(768, 10), key)``.
    """

    block_setting: tuple[CNBlockConfig, ...]
    stochastic_depth_prob: float = 0.0
    layer_scale: float = 1e-6
    num_classes: int = 1000
    block: Callable[..., Module] | None = None
    norm_layer: Callable[..., Module] | None = None
    arch: str = "convnext"
    features: Sequential = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    classifier: Sequential = field(init=False)

    min_size = 32

    def __post_init__(self):
        if not self.block_setting:
            raise ValueError("The block_setting should not be empty")
        if not (isinstance(self.block_setting, Sequence)
                and all(isinstance(s, CNBlockConfig) for s in self.block_setting)):
            raise TypeError("The block_setting should be List[CNBlockConfig]")
        object.__setattr__(self, "block_setting", tuple(self.block_setting))
        block = self.block if self.block is not None else CNBlock
        norm = self.norm_layer if self.norm_layer is not None else _LAYER_NORM_2D_1E6
        layers: list[Module] = [Conv2dNormActivation(
            3, self.block_setting[0].input_channels, kernel_size=4, stride=4, padding=0, norm_layer=norm,
            activation_layer=None, bias=True,
        )]
        total_stage_blocks = sum(cnf.num_layers for cnf in self.block_setting)
        stage_block_id = 0
        for cnf in self.block_setting:
            stage = []
            for _ in range(cnf.num_layers):
                # the probability grows linearly with the block's depth (torchvision's rule)
                sd_prob = self.stochastic_depth_prob * stage_block_id / (total_stage_blocks - 1.0)
                stage.append(block(cnf.input_channels, self.layer_scale, sd_prob))
                stage_block_id += 1
            layers.append(Sequential(*stage))
            if cnf.out_channels is not None:
                layers.append(Sequential(norm(cnf.input_channels),
                                         Conv2d(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2)))
        object.__setattr__(self, "features", Sequential(*layers))
        object.__setattr__(self, "avgpool", AdaptiveAvgPool2d(1))
        last = self.block_setting[-1]
        channels = last.out_channels if last.out_channels is not None else last.input_channels
        object.__setattr__(self, "classifier", Sequential(norm(channels), Flatten(1), Linear(channels, self.num_classes)))

    def init_tree(self, key):
        k_default, k_cn = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if isinstance(m, (Conv2d, Linear)):
                new = {"weight": trunc_normal(k, own["weight"], 0.02, -2.0, 2.0)}
                if "bias" in own:
                    new["bias"] = constant(own["bias"], 0.0)
                return new
            return None

        return reinit(self, params, k_cn, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives stochastic depth when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("avgpool", self.avgpool, s("features", self.features, x))
        return s("classifier", self.classifier, x), s.state


def _convnext(arch: str, block_setting: list[CNBlockConfig], default_sd_prob: float,
              weights: str | os.PathLike | None, **kwargs: Any) -> Any:
    stochastic_depth_prob = kwargs.pop("stochastic_depth_prob", default_sd_prob)
    model = ConvNeXt(tuple(block_setting), stochastic_depth_prob=stochastic_depth_prob, arch=arch, **kwargs)
    return model if weights is None else load_pretrained(model, weights)


_DOC = """ConvNeXt-{size} from "A ConvNet for the 2020s" (stages {stages}).

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``ConvNeXt``'s ``stochastic_depth_prob={sd}``, ``layer_scale=1e-6``,
        ``num_classes=1000``, ``block``, ``norm_layer``.
    Returns:
      ``ConvNeXt``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, setting: tuple[tuple[int, int | None, int], ...], sd_prob: float):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        return _convnext(arch, [CNBlockConfig(*c) for c in setting], sd_prob, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(size=arch[9:].capitalize(), stages=", ".join(
        f"{n}×{c}" for c, _, n in setting), sd=sd_prob)
    return register_model(arch)(build)


convnext_tiny = _builder("convnext_tiny", ((96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)), 0.1)
convnext_small = _builder("convnext_small", ((96, 192, 3), (192, 384, 3), (384, 768, 27), (768, None, 3)), 0.4)
convnext_base = _builder("convnext_base", ((128, 256, 3), (256, 512, 3), (512, 1024, 27), (1024, None, 3)), 0.5)
convnext_large = _builder("convnext_large", ((192, 384, 3), (384, 768, 3), (768, 1536, 27), (1536, None, 3)), 0.5)

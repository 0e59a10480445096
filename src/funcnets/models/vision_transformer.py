"""torchvision's Vision Transformers (``torchvision/models/vision_transformer.py``):
ViT-B/16, B/32, L/16, L/32 and H/14, with torchvision's names and initialisation.

Input ``(N, 3, image_size, image_size)`` (``image_size=224`` by default; torchvision's
model accepts exactly that size, and ``image_size`` must be a multiple of the patch size,
so the smallest model is ``image_size=patch_size``: one patch) → logits ``(N, num_classes)``.

Structure: ``conv_proj`` cuts the image into ``patch_size``² patches and projects each to
``hidden_dim`` (a stride-``patch_size`` convolution, or with ``conv_stem_configs`` a stack of
conv → BN → ReLU blocks and a 1×1 ``conv_last``, arXiv:2106.14881); the patches become a
sequence ``(N, (H/p)·(W/p), hidden_dim)``, a learned ``class_token`` is prepended, then
``encoder``: + ``pos_embedding`` → dropout → ``num_layers`` pre-norm blocks
(``x + dropout(self_attention(ln_1(x)))``, then ``x + mlp(ln_2(x))`` with the MLP
Linear → GELU → Dropout → Linear → Dropout) → LayerNorm (eps 1e-6). The class token's
output goes through ``heads``: ``head`` (Linear), or ``pre_logits`` → Tanh → ``head`` when
``representation_size`` is given.

Initialisation (torchvision's): ``conv_proj`` trunc_normal(std = sqrt(1/fan_in)), zero bias
(with a conv stem: ``conv_last`` N(0, 2/out_channels), zero bias; the stem's other layers
torch's defaults); ``class_token`` 0; ``pos_embedding`` N(0, 0.02²); the MLPs' Linears
xavier_uniform weights and N(0, 1e-6²) biases; attention torch's ``MultiheadAttention``
init; ``pre_logits`` trunc_normal(std = sqrt(1/fan_in)), zero bias; ``head`` all zeros
(so a fresh model's logits are 0, as torchvision's). Dropout and attention dropout need
``key=`` in ``train=True``.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from funcnets.errors import ShapeError
from funcnets.models._ops import MLP, Conv2dNormActivation
from funcnets.models._registry import check_input, constant, normal, register_model, trunc_normal
from funcnets.nn import BatchNorm2d, Conv2d, Dropout, GELU, LayerNorm, Linear, MultiheadAttention, ReLU, Sequential, Tanh
from funcnets.nn.module import Module, Scope
from funcnets.torch_io import load_file, load_state_dict

__all__ = [
    "ConvStemConfig", "MLPBlock", "EncoderBlock", "Encoder", "VisionTransformer",
    "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14",
]

# torchvision's default norm_layer: one object, so models built with the default compare equal
_LAYER_NORM_1E6 = partial(LayerNorm, eps=1e-6)


class ConvStemConfig(NamedTuple):
    """One conv → norm → activation block of a convolutional stem (torchvision's)."""

    out_channels: int
    kernel_size: int
    stride: int
    norm_layer: Callable[..., Module] = BatchNorm2d
    activation_layer: Callable[..., Module] = ReLU


class MLPBlock(MLP):
    """The transformer's MLP: Linear(in_dim, mlp_dim) → GELU → Dropout → Linear(mlp_dim,
    in_dim) → Dropout, children ``"0"``, ``"1"``, ``"2"``, ``"3"``, ``"4"``;
    ``(..., in_dim) -> (..., in_dim)``. Linears: xavier_uniform weights, N(0, 1e-6²) biases."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float):
        super().__init__(in_dim, [mlp_dim, in_dim], activation_layer=GELU, inplace=None, dropout=dropout)

    def init_tree(self, key):
        params, state = super().init_tree(key)
        params = dict(params)
        for k, (name, m) in zip(jax.random.split(key, len(self)), self.children()):
            if isinstance(m, Linear):
                kw, kb = jax.random.split(jax.random.fold_in(k, 1))
                w = params[name]["weight"]
                bound = math.sqrt(6.0 / (m.in_features + m.out_features))  # xavier_uniform_, gain 1
                new = {"weight": jax.random.uniform(kw, w.shape, w.dtype, -bound, bound)}
                if m.bias:
                    new["bias"] = normal(kb, params[name]["bias"], 1e-6)
                params[name] = new
        return params, state


@dataclass(frozen=True, repr=False)
class EncoderBlock(Module):
    """A pre-norm transformer encoder block; ``(N, L, hidden_dim) -> (N, L, hidden_dim)``:
    ``x = input + dropout(attention(ln_1(input)))``, ``out = x + mlp(ln_2(x))``."""

    num_heads: int
    hidden_dim: int
    mlp_dim: int
    dropout: float
    attention_dropout: float
    norm_layer: Callable[..., Module] = _LAYER_NORM_1E6
    ln_1: Module = field(init=False)
    self_attention: MultiheadAttention = field(init=False)
    dropout_layer: Dropout = field(init=False)
    ln_2: Module = field(init=False)
    mlp: MLPBlock = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("ln_1", self.norm_layer(self.hidden_dim))
        set_("self_attention", MultiheadAttention(self.hidden_dim, self.num_heads, dropout=self.attention_dropout,
                                                  batch_first=True))
        set_("dropout_layer", Dropout(self.dropout))
        set_("ln_2", self.norm_layer(self.hidden_dim))
        set_("mlp", MLPBlock(self.hidden_dim, self.mlp_dim, self.dropout))

    def children(self):
        # torch's attribute ``dropout`` is the module; here that name is the probability
        return [("ln_1", self.ln_1), ("self_attention", self.self_attention), ("dropout", self.dropout_layer),
                ("ln_2", self.ln_2), ("mlp", self.mlp)]

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, L, hidden_dim) -> (N, L, hidden_dim)``."""
        if x.ndim != 3:
            raise ShapeError(f"{self!r} expected (batch_size, seq_length, hidden_dim) got {tuple(x.shape)}")
        s = Scope(params, state, train, key)
        y = s("ln_1", self.ln_1, x)
        y, _ = s("self_attention", self.self_attention, {"query": y, "key": y, "value": y, "need_weights": False})
        x = s("dropout", self.dropout_layer, y) + x
        y = s("mlp", self.mlp, s("ln_2", self.ln_2, x))
        return x + y, s.state


@dataclass(frozen=True, repr=False)
class Encoder(Module):
    """``input + pos_embedding`` → dropout → ``layers`` → ``ln``;
    ``(N, seq_length, hidden_dim) -> (N, seq_length, hidden_dim)``."""

    seq_length: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int
    dropout: float
    attention_dropout: float
    norm_layer: Callable[..., Module] = _LAYER_NORM_1E6
    dropout_layer: Dropout = field(init=False)
    layers: Sequential = field(init=False)
    ln: Module = field(init=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("dropout_layer", Dropout(self.dropout))
        set_("layers", Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(self.num_heads, self.hidden_dim, self.mlp_dim, self.dropout,
                                                self.attention_dropout, self.norm_layer))
            for i in range(self.num_layers)
        )))
        set_("ln", self.norm_layer(self.hidden_dim))

    def children(self):
        return [("dropout", self.dropout_layer), ("layers", self.layers), ("ln", self.ln)]

    def param_names(self):
        return ("pos_embedding",)

    def init_own(self, key):
        return {"pos_embedding": 0.02 * jax.random.normal(key, (1, self.seq_length, self.hidden_dim))}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, seq_length, hidden_dim) -> (N, seq_length, hidden_dim)``."""
        if x.ndim != 3 or x.shape[1:] != (self.seq_length, self.hidden_dim):
            raise ShapeError(f"{self!r} expected (batch_size, {self.seq_length}, {self.hidden_dim}), "
                             f"got {tuple(x.shape)}")
        s = Scope(params, state, train, key)
        x = s("dropout", self.dropout_layer, x + params["pos_embedding"])
        return s("ln", self.ln, s("layers", self.layers, x)), s.state


@dataclass(frozen=True, repr=False)
class VisionTransformer(Module):
    """``torchvision.models.VisionTransformer(image_size, patch_size, num_layers, num_heads,
    hidden_dim, mlp_dim, dropout=0.0, attention_dropout=0.0, num_classes=1000,
    representation_size=None, norm_layer=partial(LayerNorm, eps=1e-6), conv_stem_configs=None)``.

    Replace the head with ``nn.replace(model, params, state, "heads.head", Linear(hidden_dim, 10), key)``.
    """

    image_size: int
    patch_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    num_classes: int = 1000
    representation_size: int | None = None
    norm_layer: Callable[..., Module] = _LAYER_NORM_1E6
    conv_stem_configs: tuple[ConvStemConfig, ...] | None = None
    arch: str = "vit"
    conv_proj: Module = field(init=False)
    encoder: Encoder = field(init=False)
    heads: Sequential = field(init=False)

    def __post_init__(self):
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"Input shape indivisible by patch size! image_size={self.image_size} is not a "
                             f"multiple of patch_size={self.patch_size}")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.conv_stem_configs is not None:
            set_("conv_stem_configs", tuple(ConvStemConfig(*c) for c in self.conv_stem_configs))
            stem: OrderedDict[str, Module] = OrderedDict()
            prev = 3
            for i, c in enumerate(self.conv_stem_configs):
                stem[f"conv_bn_relu_{i}"] = Conv2dNormActivation(
                    prev, c.out_channels, kernel_size=c.kernel_size, stride=c.stride,
                    norm_layer=c.norm_layer, activation_layer=c.activation_layer,
                )
                prev = c.out_channels
            stem["conv_last"] = Conv2d(prev, self.hidden_dim, kernel_size=1)
            set_("conv_proj", Sequential(stem))
        else:
            set_("conv_proj", Conv2d(3, self.hidden_dim, kernel_size=self.patch_size, stride=self.patch_size))
        set_("encoder", Encoder(self.seq_length, self.num_layers, self.num_heads, self.hidden_dim, self.mlp_dim,
                                self.dropout, self.attention_dropout, self.norm_layer))
        if self.representation_size is None:
            heads = OrderedDict(head=Linear(self.hidden_dim, self.num_classes))
        else:
            heads = OrderedDict(pre_logits=Linear(self.hidden_dim, self.representation_size), act=Tanh(),
                                head=Linear(self.representation_size, self.num_classes))
        set_("heads", Sequential(heads))

    @property
    def seq_length(self) -> int:
        """The patches and the class token: ``(image_size // patch_size)² + 1``."""
        return (self.image_size // self.patch_size) ** 2 + 1

    def param_names(self):
        return ("class_token",)

    def init_own(self, key):
        return {"class_token": jnp.zeros((1, 1, self.hidden_dim))}, {}

    def init_tree(self, key):
        k_default, k_proj, k_pre = jax.random.split(key, 3)
        params, state = super().init_tree(k_default)
        params = dict(params)
        proj = dict(params["conv_proj"])
        if isinstance(self.conv_proj, Conv2d):
            c = self.conv_proj
            fan_in = c.in_channels * c.kernel_size[0] * c.kernel_size[1]
            proj["weight"] = trunc_normal(k_proj, proj["weight"], math.sqrt(1 / fan_in), -2.0, 2.0)
            proj["bias"] = constant(proj["bias"], 0.0)
        else:
            last = proj["conv_last"]
            proj["conv_last"] = {"weight": normal(k_proj, last["weight"], math.sqrt(2.0 / self.hidden_dim)),
                                 "bias": constant(last["bias"], 0.0)}
        params["conv_proj"] = proj
        heads = dict(params["heads"])
        if self.representation_size is not None:
            pre = heads["pre_logits"]
            heads["pre_logits"] = {"weight": trunc_normal(k_pre, pre["weight"], math.sqrt(1 / self.hidden_dim),
                                                          -2.0, 2.0),
                                   "bias": constant(pre["bias"], 0.0)}
        heads["head"] = {k: constant(v, 0.0) for k, v in heads["head"].items()}
        params["heads"] = heads
        return params, state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, image_size, image_size) -> (N, num_classes)``; ``key`` drives dropout
        when ``train``."""
        check_input(self, x, self.image_size)
        h, w = x.shape[-2:]
        if x.ndim != 4 or h != self.image_size or w != self.image_size:
            raise ShapeError(
                f"VisionTransformer ({self.arch}) built with image_size={self.image_size} accepts images of "
                f"exactly {self.image_size}×{self.image_size} as (N, 3, H, W), got {tuple(x.shape)}; resize the "
                f"images, or build the model with image_size=<the image side> (a multiple of {self.patch_size})."
            )
        n = x.shape[0]
        s = Scope(params, state, train, key)
        p = self.patch_size
        x = s("conv_proj", self.conv_proj, x)  # (N, hidden_dim, H/p, W/p)
        x = jnp.transpose(x.reshape(n, self.hidden_dim, (h // p) * (w // p)), (0, 2, 1))
        token = jnp.broadcast_to(params["class_token"], (n, 1, self.hidden_dim)).astype(x.dtype)
        x = s("encoder", self.encoder, jnp.concatenate([token, x], axis=1))
        return s("heads", self.heads, x[:, 0]), s.state


def _vision_transformer(arch: str, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
                        weights: str | os.PathLike | None, **kwargs: Any) -> Any:
    sd = None
    if weights is not None:
        sd = load_file(weights, arch=arch)
        pos = sd.get("encoder.pos_embedding")
        if "image_size" not in kwargs and pos is not None:
            # torchvision sets image_size from the weights' meta (224, or 384/518 for the
            # SWAG end-to-end weights); a local file says it through its pos_embedding
            kwargs["image_size"] = math.isqrt(pos.shape[1] - 1) * patch_size
    image_size = kwargs.pop("image_size", 224)
    model = VisionTransformer(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim, arch=arch, **kwargs)
    if sd is None:
        return model
    loaded = load_state_dict(model, sd, strict=True)
    return model, loaded.params, loaded.state


_DOC = """ViT-{name} from "An Image is Worth 16x16 Words" (patch size {patch}, {layers} layers,
    {heads} heads, hidden size {hidden}, MLP size {mlp}).

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded. Without ``image_size``, the
        file's ``pos_embedding`` gives it (224, or 384/518 for the SWAG weights).
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``VisionTransformer``'s ``image_size=224``, ``dropout=0.0``,
        ``attention_dropout=0.0``, ``num_classes=1000``, ``representation_size=None``,
        ``norm_layer``, ``conv_stem_configs``.
    Returns:
      ``VisionTransformer``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, patch: int, layers: int, heads: int, hidden: int, mlp: int):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        return _vision_transformer(arch, patch, layers, heads, hidden, mlp, weights, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(name=arch[4:].upper().replace("_", "/"), patch=patch, layers=layers, heads=heads,
                                hidden=hidden, mlp=mlp)
    return register_model(arch)(build)


vit_b_16 = _builder("vit_b_16", 16, 12, 12, 768, 3072)
vit_b_32 = _builder("vit_b_32", 32, 12, 12, 768, 3072)
vit_l_16 = _builder("vit_l_16", 16, 24, 16, 1024, 4096)
vit_l_32 = _builder("vit_l_32", 32, 24, 16, 1024, 4096)
vit_h_14 = _builder("vit_h_14", 14, 32, 16, 1280, 5120)

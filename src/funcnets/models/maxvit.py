"""torchvision's MaxViT (``torchvision/models/maxvit.py``): ``maxvit_t``.

MaxViT is built for one input size, ``input_size`` (default 224×224): its grid attention
partitions each feature map into a fixed number of cells, so the model takes images
whose feature maps have the sizes ``input_size`` gives (torchvision fails deep inside
otherwise; here a ``ShapeError`` says which ``input_size`` to build with). Each block's
input side (the image halved, rounding up, twice for the first block and once more per
block) must be divisible by ``partition_size`` (7 for ``maxvit_t``): the smallest
``maxvit_t`` input is 223×223 (feature maps 112, 56, 28, 14, 7). Output ``(N, num_classes)``.

Structure: ``stem`` = 3×3/2 conv → BatchNorm(eps 1e-3, momentum 0.01) → GELU, then a 3×3
conv with bias; ``blocks``: per block, ``n_layers`` MaxViT layers, each an ``MBConv``
(pre-norm → 1×1 expand → 3×3 depthwise (stride 2 in a block's first layer) → SE (SiLU) →
1×1 project, plus a shortcut: 3×3/2 average pool and 1×1 conv where the shape changes)
followed by window attention (non-overlapping ``partition_size²`` windows) and grid
attention (a ``partition_size × partition_size`` grid dilated over the whole map), each
``x + sd(attn(LN(x)))``, ``x + sd(mlp(LN(x)))`` with relative position bias; stochastic
depth rises linearly over the layers from 0 to ``stochastic_depth_prob``. ``classifier``:
global average pool → flatten → LayerNorm → Linear → Tanh → Linear (no bias).

Initialisation (torchvision's): convolutions and Linears N(0, 0.02²) with zero biases,
BatchNorm γ=1, β=0, the relative position bias tables ``trunc_normal_(std=0.02)``,
LayerNorm γ=1, β=0.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.models._ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth
from funcnets.models._registry import (
    check_input, constant, load_pretrained, normal, register_model, reinit, trunc_normal,
)
from funcnets.nn import functional as F
from funcnets.nn import (
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GELU, Identity, LayerNorm, Linear,
    ModuleList, Sequential, SiLU, Tanh,
)
from funcnets.nn.module import Module, Scope

__all__ = [
    "MaxVit", "MaxVitBlock", "MaxVitLayer", "MBConv", "PartitionAttentionLayer",
    "RelativePositionalMultiHeadAttention", "SwapAxes", "WindowPartition", "WindowDepartition", "maxvit_t",
]


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass


def _get_conv_output_shape(input_size: tuple[int, int], kernel_size: int, stride: int, padding: int) -> tuple[int, int]:
    return ((input_size[0] - kernel_size + 2 * padding) // stride + 1,
            (input_size[1] - kernel_size + 2 * padding) // stride + 1)


def _make_block_input_shapes(input_size: tuple[int, int], n_blocks: int) -> list[tuple[int, int]]:
    """Each block's feature-map size after its stride-2 first layer."""
    shapes = []
    shape = _get_conv_output_shape(input_size, 3, 2, 1)
    for _ in range(n_blocks):
        shape = _get_conv_output_shape(shape, 3, 2, 1)
        shapes.append(shape)
    return shapes


def _get_relative_position_index(height: int, width: int) -> np.ndarray:
    """``(H·W, H·W)``: the row of the bias table for each pair of positions in a window."""
    coords = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0).copy()
    rel[:, :, 0] += height - 1
    rel[:, :, 1] += width - 1
    rel[:, :, 0] *= 2 * width - 1
    return rel.sum(-1).astype(np.int64)


@dataclass(frozen=True, repr=False)
class MBConv(Module):
    """Mobile inverted bottleneck: ``proj(x) + sd(layers(x))``;
    ``(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)``.

    ``layers`` = pre_norm → conv_a (1×1 to ``out·expansion_ratio``, norm, act) → conv_b
    (3×3 depthwise, ``stride``) → squeeze_excitation (``out·squeeze_ratio``, SiLU) → conv_c
    (1×1 to ``out``); ``proj`` = [3×3/2 average pool] → 1×1 conv when the shape changes,
    else the identity; ``sd`` stochastic depth (``p_stochastic_dropout``, per sample).
    """

    in_channels: int
    out_channels: int
    expansion_ratio: float
    squeeze_ratio: float
    stride: int
    activation_layer: Callable[..., Module]
    norm_layer: Callable[..., Module]
    p_stochastic_dropout: float = 0.0
    proj: Module = field(init=False)
    stochastic_depth: Module = field(init=False)
    layers: Sequential = field(init=False)

    def __post_init__(self):
        if self.stride != 1 or self.in_channels != self.out_channels:
            proj: list[Module] = [Conv2d(self.in_channels, self.out_channels, kernel_size=1, stride=1, bias=True)]
            if self.stride == 2:
                proj = [AvgPool2d(kernel_size=3, stride=self.stride, padding=1), *proj]
            _set(self, "proj", Sequential(*proj))
        else:
            _set(self, "proj", Identity())
        mid = int(self.out_channels * self.expansion_ratio)
        sqz = int(self.out_channels * self.squeeze_ratio)
        _set(self, "stochastic_depth", StochasticDepth(self.p_stochastic_dropout, mode="row")
             if self.p_stochastic_dropout else Identity())
        _set(self, "layers", Sequential(OrderedDict([
            ("pre_norm", self.norm_layer(self.in_channels)),
            ("conv_a", Conv2dNormActivation(self.in_channels, mid, kernel_size=1, stride=1, padding=0,
                                            activation_layer=self.activation_layer, norm_layer=self.norm_layer,
                                            inplace=None)),
            ("conv_b", Conv2dNormActivation(mid, mid, kernel_size=3, stride=self.stride, padding=1,
                                            activation_layer=self.activation_layer, norm_layer=self.norm_layer,
                                            groups=mid, inplace=None)),
            ("squeeze_excitation", SqueezeExcitation(mid, sqz, activation=SiLU)),
            ("conv_c", Conv2d(mid, self.out_channels, kernel_size=1, bias=True)),
        ])))

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, C_in, H, W) -> (N, C_out, H', W')``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"MBConv({self.in_channels}, {self.out_channels}) expected input "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        s = Scope(params, state, train, key)
        res = s("proj", self.proj, x)
        y = s("stochastic_depth", self.stochastic_depth, s("layers", self.layers, x))
        return res + y, s.state


@dataclass(frozen=True, repr=False)
class RelativePositionalMultiHeadAttention(Module):
    """Multi-head self-attention with a learned relative position bias;
    ``x: (B, G, P, D) -> (B, G, P, D)`` (attention over the P positions of each of G groups).

    ``softmax(q·(k·D^-½)ᵀ + bias)·v`` (torchvision scales by the feature dimension D, not
    the head dimension), then ``merge``. Parameter ``relative_position_bias_table``
    ``((2s-1)², heads)`` with ``s = √max_seq_len``; buffer ``relative_position_index`` ``(s², s²)``.
    """

    feat_dim: int
    head_dim: int
    max_seq_len: int
    to_qkv: Linear = field(init=False)
    merge: Linear = field(init=False)

    def __post_init__(self):
        if self.feat_dim % self.head_dim != 0:
            raise ValueError(f"feat_dim: {self.feat_dim} must be divisible by head_dim: {self.head_dim}")
        _set(self, "to_qkv", Linear(self.feat_dim, self.n_heads * self.head_dim * 3))
        _set(self, "merge", Linear(self.head_dim * self.n_heads, self.feat_dim))

    @property
    def n_heads(self) -> int:
        return self.feat_dim // self.head_dim

    @property
    def size(self) -> int:
        return int(math.sqrt(self.max_seq_len))

    def param_names(self):
        return ("relative_position_bias_table",)

    def buffer_names(self):
        return ("relative_position_index",)

    def init_own(self, key):
        table = trunc_normal(key, jnp.zeros(((2 * self.size - 1) ** 2, self.n_heads)), 0.02, -2.0, 2.0)
        index = _get_relative_position_index(self.size, self.size)
        return ({"relative_position_bias_table": table},
                {"relative_position_index": jnp.asarray(index.astype(jax.dtypes.canonicalize_dtype(np.int64)))})

    def get_relative_positional_bias(self, params, state) -> Array:
        """``(1, heads, max_seq_len, max_seq_len)``."""
        index = state["relative_position_index"].reshape(-1)
        bias = params["relative_position_bias_table"][index].reshape(self.max_seq_len, self.max_seq_len, -1)
        return jnp.transpose(bias, (2, 0, 1))[None]

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (B, G, P, D) -> (B, G, P, D)`` with ``P = max_seq_len``, ``D = feat_dim``."""
        if x.ndim != 4 or x.shape[-1] != self.feat_dim or x.shape[-2] != self.max_seq_len:
            raise ShapeError(f"RelativePositionalMultiHeadAttention({self.feat_dim}, {self.head_dim}, "
                             f"{self.max_seq_len}) expected input (B, G, {self.max_seq_len}, {self.feat_dim}), "
                             f"got {tuple(x.shape)}")
        b, g, p, d = x.shape
        h, dh = self.n_heads, self.head_dim
        s = Scope(params, state, train, None)
        q, k, v = jnp.split(s("to_qkv", self.to_qkv, x), 3, axis=-1)
        q, k, v = (t.reshape(b, g, p, h, dh).transpose(0, 1, 3, 2, 4) for t in (q, k, v))
        k = k * self.feat_dim ** -0.5
        dot = jnp.einsum("bghid,bghjd->bghij", q, k)
        dot = F.softmax(dot + self.get_relative_positional_bias(params, state), dim=-1)
        out = jnp.einsum("bghij,bghjd->bghid", dot, v).transpose(0, 1, 3, 2, 4).reshape(b, g, p, d)
        return s("merge", self.merge, out), state


@dataclass(frozen=True, repr=False)
class SwapAxes(Module):
    """``torch.swapaxes(x, a, b)`` as a module."""

    a: int
    b: int

    def apply(self, params, state, x, *, train=False, key=None):
        return jnp.swapaxes(x, self.a, self.b), state


@dataclass(frozen=True, repr=False)
class WindowPartition(Module):
    """``(B, C, H, W) -> (B, (H/P)·(W/P), P·P, C)``: non-overlapping P×P windows.
    ``apply``'s input is the pair ``(x, p)``."""

    def forward(self, x: Array, p: int) -> Array:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p, c)

    def apply(self, params, state, inputs, *, train=False, key=None):
        return self.forward(*inputs), state


@dataclass(frozen=True, repr=False)
class WindowDepartition(Module):
    """``(B, HP·WP, P·P, C) -> (B, C, HP·P, WP·P)``, the inverse of :class:`WindowPartition`.
    ``apply``'s input is ``(x, p, h_partitions, w_partitions)``."""

    def forward(self, x: Array, p: int, h_partitions: int, w_partitions: int) -> Array:
        b, _, _, c = x.shape
        x = x.reshape(b, h_partitions, w_partitions, p, p, c).transpose(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, h_partitions * p, w_partitions * p)

    def apply(self, params, state, inputs, *, train=False, key=None):
        return self.forward(*inputs), state


@dataclass(frozen=True, repr=False)
class PartitionAttentionLayer(Module):
    """Window (``partition_type="window"``) or grid (``"grid"``) attention;
    ``(B, C, H, W) -> (B, C, H, W)`` with ``(H, W) == grid_size``.

    The map is cut into ``partition_size``² windows ("window") or a ``partition_size``²
    grid of positions spread over the whole map ("grid", the window partition with the
    two middle axes swapped); then ``x + sd(attn_layer(x))``, ``x + sd(mlp_layer(x))``.
    """

    in_channels: int
    head_dim: int
    partition_size: int
    partition_type: str
    grid_size: tuple[int, int]
    mlp_ratio: int
    activation_layer: Callable[..., Module]
    norm_layer: Callable[..., Module]
    attention_dropout: float
    mlp_dropout: float
    p_stochastic_dropout: float
    partition_op: WindowPartition = field(init=False)
    departition_op: WindowDepartition = field(init=False)
    partition_swap: Module = field(init=False)
    departition_swap: Module = field(init=False)
    attn_layer: Sequential = field(init=False)
    mlp_layer: Sequential = field(init=False)
    stochastic_dropout: StochasticDepth = field(init=False)

    def __post_init__(self):
        _set(self, "grid_size", tuple(self.grid_size))
        if self.partition_type not in ("grid", "window"):
            raise ValueError("partition_type must be either 'grid' or 'window'")
        grid = self.partition_type == "grid"
        c = self.in_channels
        _set(self, "partition_op", WindowPartition())
        _set(self, "departition_op", WindowDepartition())
        _set(self, "partition_swap", SwapAxes(-2, -3) if grid else Identity())
        _set(self, "departition_swap", SwapAxes(-2, -3) if grid else Identity())
        # the sequence is always partition_size² long: the grid case swaps the axes
        _set(self, "attn_layer", Sequential(
            self.norm_layer(c),
            RelativePositionalMultiHeadAttention(c, self.head_dim, self.partition_size ** 2),
            Dropout(self.attention_dropout),
        ))
        _set(self, "mlp_layer", Sequential(
            LayerNorm(c), Linear(c, c * self.mlp_ratio), self.activation_layer(), Linear(c * self.mlp_ratio, c),
            Dropout(self.mlp_dropout),
        ))
        _set(self, "stochastic_dropout", StochasticDepth(self.p_stochastic_dropout, mode="row"))

    @property
    def n_heads(self) -> int:
        return self.in_channels // self.head_dim

    @property
    def p(self) -> int:
        """The window side the map is cut into (the grid's cell count for "grid")."""
        n_partitions = self.grid_size[0] // self.partition_size
        return self.partition_size if self.partition_type == "window" else n_partitions

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (B, C, H, W) -> (B, C, H, W)``; ``key`` drives dropout and stochastic depth."""
        p = self.p
        if self.grid_size[0] % p != 0 or self.grid_size[1] % p != 0:
            raise ShapeError(f"Grid size must be divisible by partition size. Got grid size of {self.grid_size} "
                             f"and partition size of {p}")
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.grid_size:
            raise ShapeError(f"PartitionAttentionLayer({self.partition_type}) expected input "
                             f"(B, {self.in_channels}, {self.grid_size[0]}, {self.grid_size[1]}), got {tuple(x.shape)}")
        gh, gw = self.grid_size[0] // p, self.grid_size[1] // p
        s = Scope(params, state, train, key)
        x = self.partition_op.forward(x, p)
        x = s("partition_swap", self.partition_swap, x)
        x = x + s("stochastic_dropout", self.stochastic_dropout, s("attn_layer", self.attn_layer, x))
        x = x + s("stochastic_dropout", self.stochastic_dropout, s("mlp_layer", self.mlp_layer, x))
        x = s("departition_swap", self.departition_swap, x)
        return self.departition_op.forward(x, p, gh, gw), s.state


@dataclass(frozen=True, repr=False)
class MaxVitLayer(Module):
    """``MBconv`` → ``window_attention`` → ``grid_attention``;
    ``(N, C_in, H, W) -> (N, C_out, H/stride, W/stride)``."""

    in_channels: int
    out_channels: int
    squeeze_ratio: float
    expansion_ratio: float
    stride: int
    norm_layer: Callable[..., Module]
    activation_layer: Callable[..., Module]
    head_dim: int
    mlp_ratio: int
    mlp_dropout: float
    attention_dropout: float
    p_stochastic_dropout: float
    partition_size: int
    grid_size: tuple[int, int]
    layers: Sequential = field(init=False)

    def __post_init__(self):
        _set(self, "grid_size", tuple(self.grid_size))
        attn = dict(in_channels=self.out_channels, head_dim=self.head_dim, partition_size=self.partition_size,
                    grid_size=self.grid_size, mlp_ratio=self.mlp_ratio, activation_layer=self.activation_layer,
                    norm_layer=LayerNorm, attention_dropout=self.attention_dropout, mlp_dropout=self.mlp_dropout,
                    p_stochastic_dropout=self.p_stochastic_dropout)
        _set(self, "layers", Sequential(OrderedDict([
            ("MBconv", MBConv(self.in_channels, self.out_channels, self.expansion_ratio, self.squeeze_ratio,
                              self.stride, self.activation_layer, self.norm_layer, self.p_stochastic_dropout)),
            ("window_attention", PartitionAttentionLayer(partition_type="window", **attn)),
            ("grid_attention", PartitionAttentionLayer(partition_type="grid", **attn)),
        ])))

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params, state, train, key)
        return s("layers", self.layers, x), s.state


@dataclass(frozen=True, repr=False)
class MaxVitBlock(Module):
    """``n_layers`` MaxViT layers, the first with stride 2; ``grid_size`` is the block's
    feature-map size (``input_grid_size`` halved, rounding up)."""

    in_channels: int
    out_channels: int
    squeeze_ratio: float
    expansion_ratio: float
    norm_layer: Callable[..., Module]
    activation_layer: Callable[..., Module]
    head_dim: int
    mlp_ratio: int
    mlp_dropout: float
    attention_dropout: float
    partition_size: int
    input_grid_size: tuple[int, int]
    n_layers: int
    p_stochastic: tuple[float, ...]
    layers: ModuleList = field(init=False)

    def __post_init__(self):
        _set(self, "input_grid_size", tuple(self.input_grid_size))
        _set(self, "p_stochastic", tuple(self.p_stochastic))
        if len(self.p_stochastic) != self.n_layers:
            raise ValueError(f"p_stochastic must have length n_layers={self.n_layers}, "
                             f"got p_stochastic={list(self.p_stochastic)}.")
        _set(self, "layers", ModuleList([
            MaxVitLayer(self.in_channels if i == 0 else self.out_channels, self.out_channels, self.squeeze_ratio,
                        self.expansion_ratio, 2 if i == 0 else 1, self.norm_layer, self.activation_layer,
                        self.head_dim, self.mlp_ratio, self.mlp_dropout, self.attention_dropout, p,
                        self.partition_size, self.grid_size)
            for i, p in enumerate(self.p_stochastic)
        ]))

    @property
    def grid_size(self) -> tuple[int, int]:
        return _get_conv_output_shape(self.input_grid_size, kernel_size=3, stride=2, padding=1)

    def apply(self, params, state, x, *, train=False, key=None):
        s = Scope(params.get("layers", {}), state.get("layers", {}), train, key)
        for name, layer in self.layers.children():
            x = s(name, layer, x)
        return x, ({"layers": s.state} if s.state else {})


@dataclass(frozen=True, repr=False)
class MaxVit(Module):
    """``torchvision.models.MaxVit(input_size, stem_channels, partition_size, block_channels,
    block_layers, head_dim, stochastic_depth_prob, norm_layer=None, activation_layer=GELU,
    squeeze_ratio=0.25, expansion_ratio=4, mlp_ratio=4, mlp_dropout=0.0,
    attention_dropout=0.0, num_classes=1000)``.

    ``norm_layer=None`` is BatchNorm2d(eps=1e-3, momentum=0.01) (the convolutions only;
    attention uses LayerNorm). Replace the head with
    ``nn.replace(model, params, state, "classifier.5", Linear(block_channels[-1], 10, bias=False), key)``.
    """

    input_size: tuple[int, int]
    stem_channels: int
    partition_size: int
    block_channels: tuple[int, ...]
    block_layers: tuple[int, ...]
    head_dim: int
    stochastic_depth_prob: float
    norm_layer: Callable[..., Module] | None = None
    activation_layer: Callable[..., Module] = GELU
    squeeze_ratio: float = 0.25
    expansion_ratio: float = 4
    mlp_ratio: int = 4
    mlp_dropout: float = 0.0
    attention_dropout: float = 0.0
    num_classes: int = 1000
    arch: str = "maxvit"
    stem: Sequential = field(init=False)
    blocks: ModuleList = field(init=False)
    classifier: Sequential = field(init=False)

    def __post_init__(self):
        for name in ("input_size", "block_channels", "block_layers"):
            _set(self, name, tuple(int(v) for v in getattr(self, name)))
        norm_layer = self.norm_layer or partial(BatchNorm2d, eps=1e-3, momentum=0.01)
        sizes = _make_block_input_shapes(self.input_size, len(self.block_channels))
        for idx, size in enumerate(sizes):
            if size[0] % self.partition_size != 0 or size[1] % self.partition_size != 0:
                raise ValueError(
                    f"Input size {size} of block {idx} is not divisible by partition size {self.partition_size}. "
                    f"Consider changing the partition size or the input size.\n"
                    f"Current configuration yields the following block input sizes: {sizes}."
                )
        _set(self, "stem", Sequential(
            Conv2dNormActivation(3, self.stem_channels, 3, stride=2, norm_layer=norm_layer,
                                 activation_layer=self.activation_layer, bias=False, inplace=None),
            Conv2dNormActivation(self.stem_channels, self.stem_channels, 3, stride=1, norm_layer=None,
                                 activation_layer=None, bias=True),
        ))
        grid = _get_conv_output_shape(self.input_size, kernel_size=3, stride=2, padding=1)
        p_stochastic = np.linspace(0, self.stochastic_depth_prob, sum(self.block_layers)).tolist()
        blocks, p_idx = [], 0
        in_channels = (self.stem_channels, *self.block_channels[:-1])
        for cin, cout, n in zip(in_channels, self.block_channels, self.block_layers):
            block = MaxVitBlock(cin, cout, self.squeeze_ratio, self.expansion_ratio, norm_layer,
                                self.activation_layer, self.head_dim, self.mlp_ratio, self.mlp_dropout,
                                self.attention_dropout, self.partition_size, grid, n, p_stochastic[p_idx:p_idx + n])
            blocks.append(block)
            grid = block.grid_size
            p_idx += n
        _set(self, "blocks", ModuleList(blocks))
        c = self.block_channels[-1]
        _set(self, "classifier", Sequential(
            AdaptiveAvgPool2d(1), Flatten(), LayerNorm(c), Linear(c, c), Tanh(), Linear(c, self.num_classes, bias=False),
        ))

    @property
    def min_size(self) -> int:
        """The smallest side that gives the same feature-map sizes as ``input_size``."""
        side = min(self.input_size)
        n = len(self.block_channels)
        while side > 1 and _make_block_input_shapes((side - 1, side - 1), n) == _make_block_input_shapes((side, side), n):
            side -= 1
        return side

    def init_tree(self, key):
        k_default, k_tv = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if isinstance(m, (Conv2d, Linear)):
                new = {"weight": normal(k, own["weight"], 0.02)}
                if "bias" in own:
                    new["bias"] = constant(own["bias"], 0.0)
                return new
            if isinstance(m, BatchNorm2d):
                return {"weight": constant(own["weight"], 1.0), "bias": constant(own["bias"], 0.0)}
            return None

        return reinit(self, params, k_tv, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)`` with (H, W) mapping to the feature-map sizes
        of ``input_size``; ``key`` drives stochastic depth and dropout when ``train``."""
        check_input(self, x, self.min_size)
        n = len(self.block_channels)
        got = tuple(x.shape[-2:])
        if _make_block_input_shapes(got, n) != _make_block_input_shapes(self.input_size, n):
            raise ShapeError(
                f"MaxVit ({self.arch}) was built for input_size={self.input_size}, got images {got[0]}×{got[1]} "
                f"(input {tuple(x.shape)}): its grid attention fixes the feature-map sizes; build the model with "
                f"input_size={got} (if the partition size divides its feature maps) or resize the images."
            )
        s = Scope(params, state, train, key)
        x = s("stem", self.stem, x)
        bs = Scope(params.get("blocks", {}), state.get("blocks", {}), train, jax.random.fold_in(key, 1)
                   if key is not None else None)
        for name, block in self.blocks.children():
            x = bs(name, block, x)
        x = s("classifier", self.classifier, x)
        new = dict(s.state)
        if bs.state:
            new["blocks"] = bs.state
        return x, new


def maxvit_t(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
    """MaxViT-T from "MaxViT: Multi-Axis Vision Transformer".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded. torchvision's weights were
        trained at 224×224 (build with the default ``input_size``).
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``MaxVit``'s ``input_size=(224, 224)``, ``num_classes``, ``norm_layer``,
        ``activation_layer``, ``squeeze_ratio``, ``expansion_ratio``, ``mlp_ratio``,
        ``mlp_dropout``, ``attention_dropout``.
    Returns:
      ``MaxVit``, or ``(model, params, state)`` when ``weights`` is given.
    """
    input_size = kwargs.pop("input_size", (224, 224))
    model = MaxVit(input_size=input_size, stem_channels=64, block_channels=(64, 128, 256, 512),
                   block_layers=(2, 2, 5, 2), head_dim=32, stochastic_depth_prob=0.2, partition_size=7,
                   arch="maxvit_t", **kwargs)
    return model if weights is None else load_pretrained(model, weights)


register_model("maxvit_t")(maxvit_t)

"""torchvision's Swin Transformer V1 and V2 (``torchvision/models/swin_transformer.py``):
``swin_t``/``swin_s``/``swin_b`` and ``swin_v2_t``/``swin_v2_s``/``swin_v2_b``.

Input ``(N, 3, H, W)`` with H, W ≥ the patch size (4): every feature map is padded to a
multiple of the window inside the attention and to an even size before patch merging, so
any size from 4×4 runs, as in torchvision (its weights were trained at 224×224 / 256×256,
``meta["min_size"]``). Output logits ``(N, num_classes)``.

Structure (activations are ``(N, H, W, C)`` between the stem and the head, as torchvision's):
``features.0`` = 4×4/4 patch convolution → ``Permute`` to NHWC → LayerNorm; then per stage a
``Sequential`` of blocks and, between stages, patch merging (the 2×2 neighbourhoods
concatenated to 4C → Linear to 2C, LayerNorm before (V1) or after (V2) the Linear). A block
is ``x + sd(attn(norm1(x)))``, ``x + sd(mlp(norm2(x)))`` (V1) or ``x + sd(norm1(attn(x)))``,
``x + sd(norm2(mlp(x)))`` (V2), with ``sd`` stochastic depth (per sample, probability rising
linearly from 0 to ``stochastic_depth_prob`` over the blocks). Attention is within windows
of ``window_size``; every second block shifts the windows by half a window (a cyclic roll)
and masks pairs of tokens that come from different regions of the rolled map with -100.
V1 adds a learned relative position bias (``relative_position_bias_table`` indexed by the
``relative_position_index`` buffer); V2 uses cosine attention scaled by
``exp(min(logit_scale, log 100))`` and a bias ``16·σ(cpb_mlp(relative_coords_table))``.
Head: LayerNorm → Permute to NCHW → global average pool → flatten → ``head`` Linear.

Initialisation (torchvision's): every Linear ``trunc_normal_(std=0.02)`` with zero bias
(overriding the blocks' own xavier_uniform MLP init, which a standalone
:class:`SwinTransformerBlock` keeps), the bias tables ``trunc_normal_(std=0.02)``,
``logit_scale = log 10``, LayerNorm γ=1, β=0, the patch convolution torch's default.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array, PRNGKey
from funcnets.errors import ShapeError
from funcnets.models._ops import MLP, Permute, StochasticDepth
from funcnets.models._registry import check_input, load_pretrained, register_model, reinit, trunc_normal
from funcnets.nn import functional as F
from funcnets.nn import AdaptiveAvgPool2d, Conv2d, Flatten, GELU, LayerNorm, Linear, ReLU, Sequential
from funcnets.nn.module import Module, Scope

__all__ = [
    "SwinTransformer", "SwinTransformerBlock", "SwinTransformerBlockV2", "PatchMerging", "PatchMergingV2",
    "ShiftedWindowAttention", "ShiftedWindowAttentionV2", "shifted_window_attention",
    "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b",
]


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass


def _check_nhwc(module: Module, x: Array, dim: int) -> None:
    if x.ndim != 4 or x.shape[-1] != dim:
        raise ShapeError(f"{module!r} expected input (N, H, W, {dim}) (channels last), got {tuple(x.shape)}")


def _patch_merging_pad(x: Array) -> Array:
    """``(..., H, W, C) -> (..., ⌈H/2⌉, ⌈W/2⌉, 4C)``: odd sizes padded with zeros at the end,
    then the four 2×2 phases concatenated in torchvision's order (0,0), (1,0), (0,1), (1,1)."""
    h, w = x.shape[-3], x.shape[-2]
    pads = [(0, 0)] * (x.ndim - 3) + [(0, h % 2), (0, w % 2), (0, 0)]
    x = jnp.pad(x, pads)
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return jnp.concatenate([x0, x1, x2, x3], axis=-1)


@dataclass(frozen=True, repr=False)
class PatchMerging(Module):
    """``(..., H, W, C) -> (..., ⌈H/2⌉, ⌈W/2⌉, 2C)``: the 2×2 neighbourhoods concatenated,
    LayerNorm(4C), then ``reduction`` Linear(4C, 2C, bias=False)."""

    dim: int
    norm_layer: Callable[..., Module] = LayerNorm
    reduction: Linear = field(init=False)
    norm: Module = field(init=False)

    _norm_dim = 4  # LayerNorm over 4C before the reduction (V2: 2C after it)

    def __post_init__(self):
        _set(self, "reduction", Linear(4 * self.dim, 2 * self.dim, bias=False))
        _set(self, "norm", self.norm_layer(self._norm_dim * self.dim))

    def apply(self, params, state, x, *, train=False, key=None):
        if x.ndim < 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"{self!r} expected input (..., H, W, {self.dim}), got {tuple(x.shape)}")
        s = Scope(params, state, train, None)
        x = _patch_merging_pad(x)
        x = s("reduction", self.reduction, s("norm", self.norm, x))
        return x, s.state


@dataclass(frozen=True, repr=False)
class PatchMergingV2(PatchMerging):
    """Swin V2's patch merging: Linear(4C, 2C, bias=False), then LayerNorm(2C)."""

    _norm_dim = 2

    def apply(self, params, state, x, *, train=False, key=None):
        if x.ndim < 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"{self!r} expected input (..., H, W, {self.dim}), got {tuple(x.shape)}")
        s = Scope(params, state, train, None)
        x = _patch_merging_pad(x)
        x = s("norm", self.norm, s("reduction", self.reduction, x))
        return x, s.state


def _l2_normalize(x: Array, eps: float = 1e-12) -> Array:
    """``F.normalize(x, dim=-1)``: ``x / max(‖x‖₂, eps)``. The norm of a zero vector (a
    padded token's key) has gradient 0 here, as torch's clamp gives, never NaN."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    big = sq > eps * eps
    norm = jnp.where(big, jnp.sqrt(jnp.where(big, sq, 1.0)), eps)
    return x / norm


def _shift_mask(pad_h: int, pad_w: int, window: tuple[int, int], shift: tuple[int, int], dtype) -> np.ndarray:
    """The shifted-window mask ``(num_windows, Wh·Ww, Wh·Ww)``: 0 within a region of the
    rolled map, -100 between regions (torchvision's numbers; a constant of the shapes)."""
    ids = np.zeros((pad_h, pad_w))
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            ids[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    nw = (pad_h // window[0]) * (pad_w // window[1])
    ids = ids.reshape(pad_h // window[0], window[0], pad_w // window[1], window[1])
    ids = ids.transpose(0, 2, 1, 3).reshape(nw, window[0] * window[1])
    diff = ids[:, None, :] - ids[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(dtype)


def shifted_window_attention(
    input: Array,
    qkv_weight: Array,
    proj_weight: Array,
    relative_position_bias: Array,
    window_size: Sequence[int],
    num_heads: int,
    shift_size: Sequence[int],
    attention_dropout: float = 0.0,
    dropout: float = 0.0,
    qkv_bias: Array | None = None,
    proj_bias: Array | None = None,
    logit_scale: Array | None = None,
    training: bool = True,
    key: PRNGKey | None = None,
) -> Array:
    """``torchvision.models.swin_transformer.shifted_window_attention``: (shifted) window
    multi-head self-attention with a relative position bias.

    The map is padded (zeros, bottom/right) to multiples of the window; if the padded map
    is larger than the window it is rolled by ``-shift_size`` and tokens from different
    regions are masked (-100) before the softmax; attention is
    ``softmax(q·kᵀ/√d + bias [+ mask])·v`` (V1) or, with ``logit_scale``,
    ``softmax(cos(q, k)·exp(min(logit_scale, log 100)) + bias [+ mask])·v`` with the key
    part of ``qkv_bias`` zeroed (V2); then ``proj``, the roll back and the crop.

    Args:
      input: ``(N, H, W, C)``; qkv_weight: ``(3C, C)``; proj_weight: ``(C, C)``;
        relative_position_bias: ``(1, num_heads, Wh·Ww, Wh·Ww)``;
        logit_scale: ``(num_heads, 1, 1)`` or None; key: PRNG key for the dropouts when
        ``training`` and a rate is positive.
    Returns:
      ``(N, H, W, C)``.
    """
    b, h, w, c = input.shape
    wh, ww = window_size
    pad_r = (ww - w % ww) % ww
    pad_b = (wh - h % wh) % wh
    x = jnp.pad(input, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
    pad_h, pad_w = x.shape[1], x.shape[2]
    shift = list(shift_size)
    if wh >= pad_h:  # a window covering the whole map: shifting would change nothing
        shift[0] = 0
    if ww >= pad_w:
        shift[1] = 0
    if sum(shift) > 0:
        x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))

    nw = (pad_h // wh) * (pad_w // ww)
    x = x.reshape(b, pad_h // wh, wh, pad_w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(b * nw, wh * ww, c)
    n = wh * ww

    if logit_scale is not None and qkv_bias is not None:
        length = qkv_bias.shape[0] // 3
        qkv_bias = jnp.concatenate([qkv_bias[:length], jnp.zeros_like(qkv_bias[length:2 * length]),
                                    qkv_bias[2 * length:]])
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(b * nw, n, 3, num_heads, c // num_heads).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if logit_scale is not None:
        attn = _l2_normalize(q) @ jnp.swapaxes(_l2_normalize(k), -2, -1)
        attn = attn * jnp.exp(jnp.minimum(logit_scale, math.log(100.0)))
    else:
        q = q * (c // num_heads) ** -0.5
        attn = q @ jnp.swapaxes(k, -2, -1)
    attn = attn + relative_position_bias

    if sum(shift) > 0:
        mask = jnp.asarray(_shift_mask(pad_h, pad_w, (wh, ww), tuple(shift), np.dtype(attn.dtype)))
        attn = attn.reshape(b, nw, num_heads, n, n) + mask[None, :, None]
        attn = attn.reshape(-1, num_heads, n, n)

    k_attn, k_out = jax.random.split(key) if key is not None else (None, None)
    attn = F.softmax(attn, dim=-1)
    attn = F.dropout(attn, attention_dropout, training, k_attn)
    x = jnp.swapaxes(attn @ v, 1, 2).reshape(b * nw, n, c)
    x = F.linear(x, proj_weight, proj_bias)
    x = F.dropout(x, dropout, training, k_out)

    x = x.reshape(b, pad_h // wh, pad_w // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sum(shift) > 0:
        x = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))
    return x[:, :h, :w, :]


def _relative_position_index(window: tuple[int, int]) -> np.ndarray:
    """``(Wh·Ww·Wh·Ww,)`` int64: the row of the bias table for each pair of tokens."""
    coords = np.stack(np.meshgrid(np.arange(window[0]), np.arange(window[1]), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0).copy()
    rel[:, :, 0] += window[0] - 1
    rel[:, :, 1] += window[1] - 1
    rel[:, :, 0] *= 2 * window[1] - 1
    return rel.sum(-1).reshape(-1).astype(np.int64)


def _gather_bias(table: Array, index: Array, window: tuple[int, int]) -> Array:
    """``table[index]`` as ``(1, heads, N, N)``, N = Wh·Ww."""
    n = window[0] * window[1]
    return jnp.transpose(table[index.reshape(-1)].reshape(n, n, -1), (2, 0, 1))[None]


def _int_index(a: np.ndarray) -> Array:
    return jnp.asarray(a.astype(jax.dtypes.canonicalize_dtype(np.int64)))


@dataclass(frozen=True, repr=False)
class ShiftedWindowAttention(Module):
    """Window attention with a learned relative position bias (Swin V1);
    ``(N, H, W, dim) -> (N, H, W, dim)``. See :func:`shifted_window_attention`.

    Parameters ``relative_position_bias_table`` ``((2Wh-1)(2Ww-1), num_heads)``, ``qkv``,
    ``proj``; buffer ``relative_position_index`` ``(Wh·Ww·Wh·Ww,)``.
    """

    dim: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]
    num_heads: int
    qkv_bias: bool = True
    proj_bias: bool = True
    attention_dropout: float = 0.0
    dropout: float = 0.0
    qkv: Linear = field(init=False)
    proj: Linear = field(init=False)

    def __post_init__(self):
        if len(self.window_size) != 2 or len(self.shift_size) != 2:
            raise ValueError("window_size and shift_size must be of length 2")
        _set(self, "window_size", tuple(int(w) for w in self.window_size))
        _set(self, "shift_size", tuple(int(s) for s in self.shift_size))
        _set(self, "qkv", Linear(self.dim, self.dim * 3, bias=self.qkv_bias))
        _set(self, "proj", Linear(self.dim, self.dim, bias=self.proj_bias))

    def param_names(self):
        return ("relative_position_bias_table",)

    def buffer_names(self):
        return ("relative_position_index",)

    def init_own(self, key):
        wh, ww = self.window_size
        table = trunc_normal(key, jnp.zeros(((2 * wh - 1) * (2 * ww - 1), self.num_heads)), 0.02, -2.0, 2.0)
        return ({"relative_position_bias_table": table},
                {"relative_position_index": _int_index(_relative_position_index(self.window_size))})

    def get_relative_position_bias(self, params, state) -> Array:
        """``(1, num_heads, Wh·Ww, Wh·Ww)``."""
        return _gather_bias(params["relative_position_bias_table"], state["relative_position_index"],
                            self.window_size)

    def _logit_scale(self, params):
        return None

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, H, W, dim) -> (N, H, W, dim)``; ``key`` drives the dropouts when ``train``."""
        _check_nhwc(self, x, self.dim)
        bias = self.get_relative_position_bias(params, state)
        y = shifted_window_attention(
            x, params["qkv"]["weight"], params["proj"]["weight"], bias, self.window_size, self.num_heads,
            self.shift_size, self.attention_dropout, self.dropout, params["qkv"].get("bias"),
            params["proj"].get("bias"), self._logit_scale(params), train, key,
        )
        return y, state

    def extra_repr(self):
        return ""


@dataclass(frozen=True, repr=False)
class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """Swin V2's window attention: cosine attention scaled by ``exp(min(logit_scale, log 100))``
    and a continuous position bias ``16·σ(cpb_mlp(relative_coords_table))``.

    Parameter ``logit_scale`` ``(num_heads, 1, 1)``; buffers ``relative_coords_table``
    ``(1, 2Wh-1, 2Ww-1, 2)`` (log-spaced offsets) and ``relative_position_index``;
    ``cpb_mlp`` = Linear(2, 512) → ReLU → Linear(512, num_heads, bias=False).
    """

    cpb_mlp: Sequential = field(init=False)

    def __post_init__(self):
        super().__post_init__()
        _set(self, "cpb_mlp", Sequential(Linear(2, 512, bias=True), ReLU(), Linear(512, self.num_heads, bias=False)))

    def param_names(self):
        return ("logit_scale",)

    def buffer_names(self):
        return ("relative_coords_table", "relative_position_index")

    def _coords_table(self) -> np.ndarray:
        wh, ww = self.window_size
        h = np.arange(-(wh - 1), wh, dtype=np.float32)
        w = np.arange(-(ww - 1), ww, dtype=np.float32)
        t = np.stack(np.meshgrid(h, w, indexing="ij")).transpose(1, 2, 0)[None].copy()
        t[..., 0] /= np.float32(wh - 1)
        t[..., 1] /= np.float32(ww - 1)
        t *= np.float32(8)  # normalised to [-8, 8]
        return (np.sign(t) * np.log2(np.abs(t) + np.float32(1.0)) / np.float32(3.0)).astype(np.float32)

    def init_own(self, key):
        return ({"logit_scale": jnp.log(10 * jnp.ones((self.num_heads, 1, 1)))},
                {"relative_coords_table": jnp.asarray(self._coords_table()),
                 "relative_position_index": _int_index(_relative_position_index(self.window_size))})

    def init_tree(self, key):
        params, state = super().init_tree(key)
        if self.qkv_bias:  # torchvision zeroes the key part of the qkv bias
            b = params["qkv"]["bias"]
            n = b.shape[0] // 3
            params["qkv"] = {**params["qkv"], "bias": b.at[n:2 * n].set(0.0)}
        return params, state

    def get_relative_position_bias(self, params, state) -> Array:
        table, _ = self.cpb_mlp(params["cpb_mlp"], {}, state["relative_coords_table"])
        bias = _gather_bias(table.reshape(-1, self.num_heads), state["relative_position_index"], self.window_size)
        return 16 * jax.nn.sigmoid(bias)

    def _logit_scale(self, params):
        return params["logit_scale"]


@dataclass(frozen=True, repr=False)
class SwinTransformerBlock(Module):
    """``x + sd(attn(norm1(x)))``, then ``x + sd(mlp(norm2(x)))``; ``(N, H, W, dim) -> same``.

    ``mlp`` is torchvision's ``MLP(dim, [dim·mlp_ratio, dim], GELU, dropout)``; ``sd`` is
    per-sample stochastic depth with ``stochastic_depth_prob`` (needs ``key=`` in training
    when positive). Standalone init: the MLP's Linears xavier_uniform, biases N(0, 1e-6).
    """

    dim: int
    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    stochastic_depth_prob: float = 0.0
    norm_layer: Callable[..., Module] = LayerNorm
    attn_layer: Callable[..., Module] = ShiftedWindowAttention
    norm1: Module = field(init=False)
    attn: Module = field(init=False)
    stochastic_depth: StochasticDepth = field(init=False)
    norm2: Module = field(init=False)
    mlp: MLP = field(init=False)

    def __post_init__(self):
        _set(self, "window_size", tuple(self.window_size))
        _set(self, "shift_size", tuple(self.shift_size))
        _set(self, "norm1", self.norm_layer(self.dim))
        _set(self, "attn", self.attn_layer(self.dim, self.window_size, self.shift_size, self.num_heads,
                                           attention_dropout=self.attention_dropout, dropout=self.dropout))
        _set(self, "stochastic_depth", StochasticDepth(self.stochastic_depth_prob, "row"))
        _set(self, "norm2", self.norm_layer(self.dim))
        _set(self, "mlp", MLP(self.dim, [int(self.dim * self.mlp_ratio), self.dim], activation_layer=GELU,
                              inplace=None, dropout=self.dropout))

    def init_tree(self, key):
        k_default, k_mlp = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if not isinstance(m, Linear):
                return None
            kw, kb = jax.random.split(k)
            w = own["weight"]
            bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))  # xavier_uniform_
            new = {"weight": jax.random.uniform(kw, w.shape, w.dtype, -bound, bound)}
            if "bias" in own:
                new["bias"] = 1e-6 * jax.random.normal(kb, own["bias"].shape, own["bias"].dtype)
            return new

        params = {**params, "mlp": reinit(self.mlp, params["mlp"], k_mlp, rule)}
        return params, state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, H, W, dim) -> (N, H, W, dim)``."""
        s = Scope(params, state, train, key)
        x = x + s("stochastic_depth", self.stochastic_depth, s("attn", self.attn, s("norm1", self.norm1, x)))
        x = x + s("stochastic_depth", self.stochastic_depth, s("mlp", self.mlp, s("norm2", self.norm2, x)))
        return x, s.state


@dataclass(frozen=True, repr=False)
class SwinTransformerBlockV2(SwinTransformerBlock):
    """Swin V2's block (post-norm): ``x + sd(norm1(attn(x)))``, ``x + sd(norm2(mlp(x)))``."""

    attn_layer: Callable[..., Module] = ShiftedWindowAttentionV2

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, H, W, dim) -> (N, H, W, dim)``."""
        s = Scope(params, state, train, key)
        x = x + s("stochastic_depth", self.stochastic_depth, s("norm1", self.norm1, s("attn", self.attn, x)))
        x = x + s("stochastic_depth", self.stochastic_depth, s("norm2", self.norm2, s("mlp", self.mlp, x)))
        return x, s.state


@dataclass(frozen=True, repr=False)
class SwinTransformer(Module):
    """``torchvision.models.SwinTransformer(patch_size, embed_dim, depths, num_heads,
    window_size, mlp_ratio=4.0, dropout=0.0, attention_dropout=0.0,
    stochastic_depth_prob=0.1, num_classes=1000, norm_layer=None, block=None,
    downsample_layer=PatchMerging)``.

    ``block=None`` is :class:`SwinTransformerBlock`; V2 is ``block=SwinTransformerBlockV2,
    downsample_layer=PatchMergingV2``. Replace the head with
    ``nn.replace(model, params, state, "head", Linear(num_features, 10), key)``.
    """

    patch_size: tuple[int, int]
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: tuple[int, int]
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    stochastic_depth_prob: float = 0.1
    num_classes: int = 1000
    norm_layer: Callable[..., Module] | None = None
    block: Callable[..., Module] | None = None
    downsample_layer: Callable[..., Module] = PatchMerging
    arch: str = "swin_transformer"
    features: Sequential = field(init=False)
    norm: Module = field(init=False)
    permute: Permute = field(init=False)
    avgpool: AdaptiveAvgPool2d = field(init=False)
    flatten: Flatten = field(init=False)
    head: Linear = field(init=False)

    def __post_init__(self):
        for name in ("patch_size", "depths", "num_heads", "window_size"):
            _set(self, name, tuple(int(v) for v in getattr(self, name)))
        block = self.block or SwinTransformerBlock
        norm_layer = self.norm_layer or LayerNorm  # torchvision: partial(nn.LayerNorm, eps=1e-5)
        layers: list[Module] = [Sequential(
            Conv2d(3, self.embed_dim, kernel_size=self.patch_size, stride=self.patch_size),
            Permute((0, 2, 3, 1)),
            norm_layer(self.embed_dim),
        )]
        total = sum(self.depths)
        block_id = 0
        for i_stage, depth in enumerate(self.depths):
            dim = self.embed_dim * 2 ** i_stage
            stage = []
            for i_layer in range(depth):
                # stochastic depth rises linearly over all blocks (torchvision divides by total - 1)
                sd_prob = self.stochastic_depth_prob * float(block_id) / (total - 1)
                stage.append(block(
                    dim, self.num_heads[i_stage], window_size=self.window_size,
                    shift_size=tuple(0 if i_layer % 2 == 0 else w // 2 for w in self.window_size),
                    mlp_ratio=self.mlp_ratio, dropout=self.dropout, attention_dropout=self.attention_dropout,
                    stochastic_depth_prob=sd_prob, norm_layer=norm_layer,
                ))
                block_id += 1
            layers.append(Sequential(*stage))
            if i_stage < len(self.depths) - 1:
                layers.append(self.downsample_layer(dim, norm_layer))
        num_features = self.embed_dim * 2 ** (len(self.depths) - 1)
        _set(self, "features", Sequential(*layers))
        _set(self, "norm", norm_layer(num_features))
        _set(self, "permute", Permute((0, 3, 1, 2)))
        _set(self, "avgpool", AdaptiveAvgPool2d(1))
        _set(self, "flatten", Flatten(1))
        _set(self, "head", Linear(num_features, self.num_classes))

    @property
    def min_size(self) -> int:
        return max(self.patch_size)

    def init_tree(self, key):
        k_default, k_tv = jax.random.split(key)
        params, state = super().init_tree(k_default)

        def rule(name, m, k, own):
            if not isinstance(m, Linear):
                return None
            new = {"weight": trunc_normal(k, own["weight"], 0.02, -2.0, 2.0)}
            if "bias" in own:
                new["bias"] = jnp.zeros_like(own["bias"])
            return new

        return reinit(self, params, k_tv, rule), state

    def apply(self, params, state, x, *, train=False, key=None):
        """``x: (N, 3, H, W) -> (N, num_classes)``; ``key`` drives stochastic depth and
        dropout when ``train``."""
        check_input(self, x, self.min_size)
        s = Scope(params, state, train, key)
        x = s("features", self.features, x)
        x = s("norm", self.norm, x)
        x = s("permute", self.permute, x)
        x = s("flatten", self.flatten, s("avgpool", self.avgpool, x))
        return s("head", self.head, x), s.state


_DOC = """{title} from "{paper}".

    Args:
      weights: None (torchvision's initialisation) or a local torchvision weights file
        (``.pth``/``.safetensors``); nothing is downloaded.
      progress: accepted for torchvision's signature; unused.
      **kwargs: ``SwinTransformer``'s ``mlp_ratio``, ``dropout``, ``attention_dropout``,
        ``stochastic_depth_prob`` (default {sd}), ``num_classes``, ``norm_layer``.
    Returns:
      ``SwinTransformer``, or ``(model, params, state)`` when ``weights`` is given.
    """


def _builder(arch: str, embed_dim: int, depths, num_heads, window: int, sd: float, v2: bool):
    def build(*, weights: str | os.PathLike | None = None, progress: bool = True, **kwargs: Any) -> Any:
        extra = {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2} if v2 else {}
        kwargs.setdefault("stochastic_depth_prob", sd)
        model = SwinTransformer((4, 4), embed_dim, depths, num_heads, (window, window), arch=arch, **extra, **kwargs)
        return model if weights is None else load_pretrained(model, weights)

    build.__name__ = build.__qualname__ = arch
    build.__module__ = __name__
    build.__doc__ = _DOC.format(
        title=f"{arch} (Swin Transformer{' V2' if v2 else ''}, {arch.rsplit('_', 1)[-1]})",
        paper="Swin Transformer V2: Scaling Up Capacity and Resolution" if v2 else
        "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", sd=sd)
    return register_model(arch)(build)


swin_t = _builder("swin_t", 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, 0.2, False)
swin_s = _builder("swin_s", 96, (2, 2, 18, 2), (3, 6, 12, 24), 7, 0.3, False)
swin_b = _builder("swin_b", 128, (2, 2, 18, 2), (4, 8, 16, 32), 7, 0.5, False)
swin_v2_t = _builder("swin_v2_t", 96, (2, 2, 6, 2), (3, 6, 12, 24), 8, 0.2, True)
swin_v2_s = _builder("swin_v2_s", 96, (2, 2, 18, 2), (3, 6, 12, 24), 8, 0.3, True)
swin_v2_b = _builder("swin_v2_b", 128, (2, 2, 18, 2), (4, 8, 16, 32), 8, 0.5, True)

"""Transformers: ``torch.nn.TransformerEncoderLayer``, ``TransformerDecoderLayer``,
``TransformerEncoder``, ``TransformerDecoder`` and ``Transformer``.

Each is torch's slow (reference) path, step by step, on :class:`MultiheadAttention`,
:class:`Linear`, :class:`Dropout` and :class:`LayerNorm`; parameter names are torch's
``state_dict`` keys (``layers.0.self_attn.in_proj_weight``, ``norm.weight``, ...).

Calling them: each layer has ``forward(params, ...)`` with torch's ``forward`` arguments
after ``params`` (and ``train=``, ``key=`` for dropout), e.g.
``enc.forward(params, src, mask=m, src_key_padding_mask=pad, train=True, key=k)``.
The module contract's ``apply(params, state, x)`` takes ``x`` as the one tensor the layer
needs (``src``), a tuple of the tensors (``(tgt, memory)``, ``(src, tgt)``) or a dict of
``forward``'s arguments by name, and returns ``(output, state)``.

Where torch differs from itself, funcnets follows torch's reference path:

* torch's inference fast paths (``_transformer_encoder_layer_fwd``, and the nested-tensor
  encoder, taken in eval mode without autograd for ``batch_first`` models) agree with the
  reference path up to rounding, except that the nested-tensor encoder returns 0 (then the
  final norm of 0) at padded positions of ``src_key_padding_mask``, and the fast path gives
  NaN for a fully padded sequence where the reference path gives ``out_proj``'s bias.
  funcnets always computes the reference path's numbers.
* torch's ``is_causal=None`` detects whether a mask is the causal mask to use a faster
  kernel; both give the same numbers, so funcnets uses the mask as given. An explicit
  ``is_causal=True`` is torch's *hint*: as in torch, the causal mask is then used in
  place of the given one where no key padding mask is given.
* ``TransformerEncoder``/``TransformerDecoder`` deep-copy the layer, so at init all
  layers have the same weights, as in torch; ``Transformer`` then re-initialises every
  parameter with more than one dimension xavier-uniform (torch's ``_reset_parameters``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp

from funcnets._typing import Array, Params, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn.activation import gelu, relu
from funcnets.nn.attention import MultiheadAttention, _call_args, _canonical_mask, _warn_mismatch
from funcnets.nn.container import ModuleList
from funcnets.nn.dropout import Dropout
from funcnets.nn.init import xavier_uniform
from funcnets.nn.linear import Linear
from funcnets.nn.module import Module, Scope
from funcnets.nn.normalization import LayerNorm

__all__ = [
    "Transformer", "TransformerEncoder", "TransformerDecoder",
    "TransformerEncoderLayer", "TransformerDecoderLayer",
    "generate_square_subsequent_mask",
]

Activation = str | Callable[[Array], Array] | Module


def generate_square_subsequent_mask(sz: int, dtype: Any = None) -> Array:
    """The causal mask ``(sz, sz)``: ``-inf`` above the diagonal, 0 elsewhere (torch's)."""
    dtype = jnp.asarray(0.0).dtype if dtype is None else dtype
    return jnp.triu(jnp.full((sz, sz), -jnp.inf, dtype), k=1)


def _activation_fn(activation: Activation) -> Callable[[Array], Array] | None:
    """torch's ``_get_activation_fn``; None for a Module (it is a child and goes through Scope)."""
    if isinstance(activation, Module):
        return None
    if isinstance(activation, str):
        if activation == "relu":
            return relu
        if activation == "gelu":
            return gelu
        raise ValueError(f"activation should be relu/gelu, not {activation}")
    if not callable(activation):
        raise TypeError(f"activation should be 'relu', 'gelu', a callable or a funcnets Module, got {activation!r}")
    return activation


def _keys(key: PRNGKey | None, n: int) -> list:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _check_seq(who: str, x: Array, d_model: int, batch_first: bool, name: str) -> Array:
    x = jnp.asarray(x)
    layout = "(N, S, E)" if batch_first else "(S, N, E)"
    if x.ndim not in (2, 3) or x.shape[-1] != d_model:
        raise ShapeError(
            f"{who} expected {name} of shape {layout.replace('E', str(d_model))} or unbatched "
            f"(S, {d_model}), got {tuple(x.shape)}. The last axis holds the d_model={d_model} features"
            f"{'; batch_first=True puts the batch first' if batch_first else '; batch_first=False puts the sequence first'}."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ShapeError(f"{who} expected a floating-point {name}, got dtype {x.dtype}. Convert it first.")
    return x


# ------------------------------------------------------------------------ layers
@dataclass(frozen=True, repr=False)
class _Layer(Module):
    """Shared frame of the encoder and decoder layers: children, activation, feed-forward."""

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: Activation = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True

    _attn_names = ("self_attn",)
    _norms = 2

    def __post_init__(self):
        _activation_fn(self.activation)  # validate now, as torch does
        kids: dict[str, Module | None] = {}
        for name in self._attn_names:
            kids[name] = MultiheadAttention(
                self.d_model, self.nhead, dropout=self.dropout, bias=self.bias, batch_first=self.batch_first
            )
        kids["linear1"] = Linear(self.d_model, self.dim_feedforward, bias=self.bias)
        kids["dropout"] = Dropout(self.dropout)
        kids["linear2"] = Linear(self.dim_feedforward, self.d_model, bias=self.bias)
        for i in range(1, self._norms + 1):
            kids[f"norm{i}"] = LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias)
        for i in range(1, self._norms + 1):
            kids[f"dropout{i}"] = Dropout(self.dropout)
        kids["activation"] = self.activation if isinstance(self.activation, Module) else None
        object.__setattr__(self, "_kids", kids)

    def children(self):
        return [(n, m) for n, m in self.__dict__["_kids"].items() if m is not None]

    def __getattr__(self, name):  # layer.self_attn, layer.linear1, ... as in torch
        kids = self.__dict__.get("_kids", {})
        if name in kids and name not in ("dropout", "activation"):
            return kids[name]
        raise AttributeError(name)

    def _who(self) -> str:
        return (
            f"{type(self).__name__}(d_model={self.d_model}, nhead={self.nhead}, batch_first={self.batch_first}, "
            f"norm_first={self.norm_first})"
        )

    def _ff_block(self, scope: Scope, x: Array, last_dropout: str) -> Array:
        x = scope("linear1", self.linear1, x)
        fn = _activation_fn(self.activation)
        x = fn(x) if fn is not None else scope("activation", self.activation, x)
        x = scope("linear2", self.linear2, scope("dropout", self.__dict__["_kids"]["dropout"], x))
        return scope(last_dropout, self.__dict__["_kids"][last_dropout], x)

    def _attn_block(self, scope: Scope, name: str, drop: str, x, mem, attn_mask, kpm, is_causal) -> Array:
        out, _ = scope(name, self.__dict__["_kids"][name], {
            "query": x, "key": mem, "value": mem, "attn_mask": attn_mask, "key_padding_mask": kpm,
            "need_weights": False, "is_causal": is_causal,
        })
        return scope(drop, self.__dict__["_kids"][drop], out)


@dataclass(frozen=True, repr=False)
class TransformerEncoderLayer(_Layer):
    """Self-attention and feed-forward, each with a residual and LayerNorm
    (``torch.nn.TransformerEncoderLayer``).

    Post-norm (default): ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``; ``norm_first``:
    ``x = x + sa(norm1(x)); x = x + ff(norm2(x))`` with
    ``ff(x) = dropout2(linear2(dropout(activation(linear1(x)))))`` and
    ``sa(x) = dropout1(self_attn(x, x, x))``.

    ``activation`` is ``"relu"``, ``"gelu"``, a function of an array, or a funcnets
    activation module (then a child named ``activation``, as in torch).

    Args (``forward``): src ``(S, N, E)`` (``(N, S, E)`` with ``batch_first``, ``(S, E)``
    unbatched); src_mask ``(S, S)`` or ``(N·nhead, S, S)``, bool (True = ignore) or
    float (added); src_key_padding_mask ``(N, S)``, bool (True = padding) or float.
    Returns the output with ``src``'s shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.ones((2, 5, 8)))
        >>> y.shape
        (2, 5, 8)
    """

    def forward(
        self,
        params: Params,
        src: Array,
        src_mask: Array | None = None,
        src_key_padding_mask: Array | None = None,
        is_causal: bool = False,
        *,
        train: bool = False,
        key: PRNGKey | None = None,
    ) -> Array:
        return self._run(params, {}, src, src_mask, src_key_padding_mask, is_causal, train, key)[0]

    def apply(self, params, state, x, *, train=False, key=None):
        a = _call_args(self._who(), x, ("src", "src_mask", "src_key_padding_mask", "is_causal"), 1)
        return self._run(
            params, state, a["src"], a.get("src_mask"), a.get("src_key_padding_mask"), a.get("is_causal", False),
            train, key,
        )

    def _run(self, params, state, src, src_mask, kpm, is_causal, train, key):
        x = _check_seq(self._who(), src, self.d_model, self.batch_first, "src")
        _warn_mismatch(kpm, src_mask, "src_key_padding_mask", "src_mask")
        kpm = _canonical_mask(kpm, "src_key_padding_mask", x.dtype, self._who())
        src_mask = _canonical_mask(src_mask, "src_mask", x.dtype, self._who())
        scope = Scope(params, state, train, key)
        sa = lambda y: self._attn_block(scope, "self_attn", "dropout1", y, y, src_mask, kpm, bool(is_causal))  # noqa: E731
        if self.norm_first:
            x = x + sa(scope("norm1", self.norm1, x))
            x = x + self._ff_block(scope, scope("norm2", self.norm2, x), "dropout2")
        else:
            x = scope("norm1", self.norm1, x + sa(x))
            x = scope("norm2", self.norm2, x + self._ff_block(scope, x, "dropout2"))
        return x, scope.state


_DEC_ARGS = (
    "tgt", "memory", "tgt_mask", "memory_mask", "tgt_key_padding_mask", "memory_key_padding_mask",
    "tgt_is_causal", "memory_is_causal",
)


@dataclass(frozen=True, repr=False)
class TransformerDecoderLayer(_Layer):
    """Self-attention, attention over ``memory`` and feed-forward, each with a residual and
    LayerNorm (``torch.nn.TransformerDecoderLayer``).

    Post-norm: ``x = norm1(x + sa(x)); x = norm2(x + mha(x, memory)); x = norm3(x + ff(x))``;
    ``norm_first`` normalises each block's input instead. ``activation`` as in
    :class:`TransformerEncoderLayer`.

    Args (``forward``): tgt ``(T, N, E)`` (``(N, T, E)`` with ``batch_first``, ``(T, E)``
    unbatched); memory ``(S, N, E)``; tgt_mask ``(T, T)``/``(N·nhead, T, T)``;
    memory_mask ``(T, S)``/``(N·nhead, T, S)``; tgt/memory_key_padding_mask ``(N, T)``/``(N, S)``.
    Returns the output with ``tgt``'s shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.TransformerDecoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
        >>> params, state = m.init(jax.random.key(0))
        >>> tgt, memory = jnp.ones((2, 3, 8)), jnp.ones((2, 5, 8))
        >>> y, state = m.apply(params, state, (tgt, memory))
        >>> y.shape
        (2, 3, 8)
    """

    _attn_names = ("self_attn", "multihead_attn")
    _norms = 3

    def forward(
        self,
        params: Params,
        tgt: Array,
        memory: Array,
        tgt_mask: Array | None = None,
        memory_mask: Array | None = None,
        tgt_key_padding_mask: Array | None = None,
        memory_key_padding_mask: Array | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
        *,
        train: bool = False,
        key: PRNGKey | None = None,
    ) -> Array:
        return self._run(params, {}, dict(
            tgt=tgt, memory=memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal,
        ), train, key)[0]

    def apply(self, params, state, x, *, train=False, key=None):
        return self._run(params, state, _call_args(self._who(), x, _DEC_ARGS, 2), train, key)

    def _run(self, params, state, a, train, key):
        x = _check_seq(self._who(), a["tgt"], self.d_model, self.batch_first, "tgt")
        mem = _check_seq(self._who(), a["memory"], self.d_model, self.batch_first, "memory")
        scope = Scope(params, state, train, key)
        tgt_causal, mem_causal = bool(a.get("tgt_is_causal") or False), bool(a.get("memory_is_causal") or False)
        sa = lambda y: self._attn_block(  # noqa: E731
            scope, "self_attn", "dropout1", y, y, a.get("tgt_mask"), a.get("tgt_key_padding_mask"), tgt_causal
        )
        mha = lambda y: self._attn_block(  # noqa: E731
            scope, "multihead_attn", "dropout2", y, mem, a.get("memory_mask"), a.get("memory_key_padding_mask"),
            mem_causal,
        )
        if self.norm_first:
            x = x + sa(scope("norm1", self.norm1, x))
            x = x + mha(scope("norm2", self.norm2, x))
            x = x + self._ff_block(scope, scope("norm3", self.norm3, x), "dropout3")
        else:
            x = scope("norm1", self.norm1, x + sa(x))
            x = scope("norm2", self.norm2, x + mha(x))
            x = scope("norm3", self.norm3, x + self._ff_block(scope, x, "dropout3"))
        return x, scope.state


# ------------------------------------------------------------------------ stacks
@dataclass(frozen=True, repr=False)
class _Stack(Module):
    """Shared frame of TransformerEncoder/Decoder: ``layers`` (equal copies at init) and ``norm``."""

    def children(self):
        kids = [("layers", ModuleList([self._layer()] * self.num_layers))]
        return kids + ([("norm", self.norm)] if self.norm is not None else [])

    def init_tree(self, key):
        # torch deep-copies one initialised layer: every layer starts with the same weights
        k_layer, k_norm = jax.random.split(key)
        p, s = self._layer().init_tree(k_layer)
        params = {"layers": {str(i): p for i in range(self.num_layers)}} if p else {}
        state = {"layers": {str(i): s for i in range(self.num_layers)}} if s else {}
        if self.norm is not None:
            np_, ns = self.norm.init_tree(k_norm)
            if np_:
                params["norm"] = np_
            if ns:
                state["norm"] = ns
        return params, state

    def _stack(self, params, state, x, layer_args: dict, train, key):
        keys = _keys(key, self.num_layers + 1)
        layer = self._layer()
        new_state: dict = {}
        for i in range(self.num_layers):
            try:
                x, s = layer.apply(
                    params.get("layers", {}).get(str(i), {}), state.get("layers", {}).get(str(i), {}),
                    {**layer_args, self._first: x}, train=train, key=keys[i],
                )
            except ShapeError as e:
                raise e.at(str(i)).at("layers") from None
            if s:
                new_state.setdefault("layers", {})[str(i)] = s
        if self.norm is not None:
            scope = Scope(params, state, train, keys[-1])
            x = scope("norm", self.norm, x)
            new_state.update(scope.state)
        return x, new_state


@dataclass(frozen=True, repr=False)
class TransformerEncoder(_Stack):
    """``num_layers`` encoder layers and an optional final ``norm``
    (``torch.nn.TransformerEncoder``): ``x = norm(layer_{n-1}(... layer_0(src)))``.

    Every layer gets the same ``mask``, ``src_key_padding_mask`` and ``is_causal``.
    ``enable_nested_tensor``/``mask_check`` choose torch's inference fast path and are
    accepted for the signature; funcnets has one path (see the module docstring).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16)
        >>> m = nn.TransformerEncoder(layer, num_layers=2)
        >>> params, state = m.init(jax.random.key(0))
        >>> sorted(params["layers"])
        ['0', '1']
        >>> y, state = m.apply(params, state, jnp.ones((5, 2, 8)))   # (S, N, E)
        >>> y.shape
        (5, 2, 8)
    """

    encoder_layer: Module
    num_layers: int
    norm: Module | None = None
    enable_nested_tensor: bool = True
    mask_check: bool = True

    _first = "src"

    def _layer(self):
        return self.encoder_layer

    def forward(
        self,
        params: Params,
        src: Array,
        mask: Array | None = None,
        src_key_padding_mask: Array | None = None,
        is_causal: bool | None = None,
        *,
        train: bool = False,
        key: PRNGKey | None = None,
    ) -> Array:
        """``src (S, N, E)`` -> same shape; masks as in :class:`TransformerEncoderLayer`."""
        return self._run(params, {}, dict(src=src, mask=mask, src_key_padding_mask=src_key_padding_mask,
                                          is_causal=is_causal), train, key)[0]

    def apply(self, params, state, x, *, train=False, key=None):
        return self._run(params, state, _call_args("TransformerEncoder", x, (
            "src", "mask", "src_key_padding_mask", "is_causal"), 1), train, key)

    def _run(self, params, state, a, train, key):
        src = jnp.asarray(a["src"])
        mask, kpm = a.get("mask"), a.get("src_key_padding_mask")
        _warn_mismatch(kpm, mask, "src_key_padding_mask", "mask")
        kpm = _canonical_mask(kpm, "src_key_padding_mask", src.dtype, "TransformerEncoder")
        mask = _canonical_mask(mask, "mask", src.dtype, "TransformerEncoder")
        args = {"src_mask": mask, "src_key_padding_mask": kpm, "is_causal": a.get("is_causal") is True}
        return self._stack(params, state, src, args, train, key)


@dataclass(frozen=True, repr=False)
class TransformerDecoder(_Stack):
    """``num_layers`` decoder layers and an optional final ``norm``
    (``torch.nn.TransformerDecoder``); every layer attends to the same ``memory``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> layer = nn.TransformerDecoderLayer(d_model=8, nhead=2, dim_feedforward=16)
        >>> m = nn.TransformerDecoder(layer, num_layers=2, norm=nn.LayerNorm(8))
        >>> params, state = m.init(jax.random.key(0))
        >>> tgt, memory = jnp.ones((3, 2, 8)), jnp.ones((5, 2, 8))   # (T, N, E), (S, N, E)
        >>> y, state = m.apply(params, state, (tgt, memory))
        >>> y.shape
        (3, 2, 8)
    """

    decoder_layer: Module
    num_layers: int
    norm: Module | None = None

    _first = "tgt"

    def _layer(self):
        return self.decoder_layer

    def forward(
        self,
        params: Params,
        tgt: Array,
        memory: Array,
        tgt_mask: Array | None = None,
        memory_mask: Array | None = None,
        tgt_key_padding_mask: Array | None = None,
        memory_key_padding_mask: Array | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
        *,
        train: bool = False,
        key: PRNGKey | None = None,
    ) -> Array:
        """``tgt (T, N, E)``, ``memory (S, N, E)`` -> ``(T, N, E)``; masks as in the layer."""
        return self._run(params, {}, dict(
            tgt=tgt, memory=memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal,
        ), train, key)[0]

    def apply(self, params, state, x, *, train=False, key=None):
        return self._run(params, state, _call_args("TransformerDecoder", x, _DEC_ARGS, 2), train, key)

    def _run(self, params, state, a, train, key):
        args = dict(a)
        tgt = args.pop("tgt")
        args["tgt_is_causal"] = args.get("tgt_is_causal") is True
        return self._stack(params, state, jnp.asarray(tgt), args, train, key)


_TF_ARGS = (
    "src", "tgt", "src_mask", "tgt_mask", "memory_mask", "src_key_padding_mask", "tgt_key_padding_mask",
    "memory_key_padding_mask", "src_is_causal", "tgt_is_causal", "memory_is_causal",
)


@dataclass(frozen=True, repr=False)
class Transformer(Module):
    """Encoder-decoder transformer (``torch.nn.Transformer``): ``decoder(tgt, encoder(src))``,
    each stack with a final LayerNorm. Every parameter with more than one dimension is
    initialised xavier-uniform (torch's ``_reset_parameters``).

    Args (``forward``): src ``(S, N, E)``, tgt ``(T, N, E)`` (batch first with
    ``batch_first``); masks as in the encoder and decoder. Returns ``(T, N, E)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
        ...                    dim_feedforward=16, batch_first=True)
        >>> params, state = m.init(jax.random.key(0))
        >>> src, tgt = jnp.ones((2, 5, 8)), jnp.ones((2, 3, 8))
        >>> y, state = m.apply(params, state, (src, tgt))
        >>> y.shape
        (2, 3, 8)
    """

    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: Activation = "relu"
    custom_encoder: Module | None = None
    custom_decoder: Module | None = None
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    encoder: Module = field(init=False, compare=False)
    decoder: Module = field(init=False, compare=False)

    def __post_init__(self):
        common = (self.d_model, self.nhead, self.dim_feedforward, self.dropout, self.activation,
                  self.layer_norm_eps, self.batch_first, self.norm_first, self.bias)
        norm = LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias)
        enc = self.custom_encoder if self.custom_encoder is not None else TransformerEncoder(TransformerEncoderLayer(*common), self.num_encoder_layers, norm)
        dec = self.custom_decoder if self.custom_decoder is not None else TransformerDecoder(TransformerDecoderLayer(*common), self.num_decoder_layers, norm)
        object.__setattr__(self, "encoder", enc)
        object.__setattr__(self, "decoder", dec)

    def children(self):
        return [("encoder", self.encoder), ("decoder", self.decoder)]

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)

    def init_tree(self, key):
        k_tree, k_xavier = jax.random.split(key)
        params, state = super().init_tree(k_tree)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(k_xavier, max(len(leaves), 1))
        leaves = [xavier_uniform(k, p.shape) if p.ndim > 1 else p for k, p in zip(keys, leaves)]
        return jax.tree_util.tree_unflatten(treedef, leaves), state

    def forward(
        self,
        params: Params,
        src: Array,
        tgt: Array,
        src_mask: Array | None = None,
        tgt_mask: Array | None = None,
        memory_mask: Array | None = None,
        src_key_padding_mask: Array | None = None,
        tgt_key_padding_mask: Array | None = None,
        memory_key_padding_mask: Array | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
        *,
        train: bool = False,
        key: PRNGKey | None = None,
    ) -> Array:
        """``src (S, N, E)``, ``tgt (T, N, E)`` -> ``(T, N, E)``."""
        args = dict(zip(_TF_ARGS, (src, tgt, src_mask, tgt_mask, memory_mask, src_key_padding_mask,
                                   tgt_key_padding_mask, memory_key_padding_mask, src_is_causal, tgt_is_causal,
                                   memory_is_causal)))
        return self._run(params, {}, args, train, key)[0]

    def apply(self, params, state, x, *, train=False, key=None):
        return self._run(params, state, _call_args("Transformer", x, _TF_ARGS, 2), train, key)

    def _run(self, params, state, a, train, key):
        src, tgt = jnp.asarray(a["src"]), jnp.asarray(a["tgt"])
        who = f"Transformer(d_model={self.d_model}, nhead={self.nhead}, batch_first={self.batch_first})"
        b = 0 if self.batch_first else 1
        if src.ndim == 3 and (tgt.ndim != 3 or src.shape[b] != tgt.shape[b]):
            raise ShapeError(
                f"{who}: the batch number of src and tgt must be equal, got src {tuple(src.shape)} and tgt "
                f"{tuple(tgt.shape)} (batch axis {b}{' with batch_first' if self.batch_first else ''})."
            )
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ShapeError(
                f"{who}: the feature number of src and tgt must be equal to d_model={self.d_model}, got src "
                f"{tuple(src.shape)} and tgt {tuple(tgt.shape)}."
            )
        scope = Scope(params, state, train, key)
        memory = scope("encoder", self.encoder, {
            "src": src, "mask": a.get("src_mask"), "src_key_padding_mask": a.get("src_key_padding_mask"),
            "is_causal": a.get("src_is_causal"),
        })
        out = scope("decoder", self.decoder, {
            "tgt": tgt, "memory": memory, "tgt_mask": a.get("tgt_mask"), "memory_mask": a.get("memory_mask"),
            "tgt_key_padding_mask": a.get("tgt_key_padding_mask"),
            "memory_key_padding_mask": a.get("memory_key_padding_mask"),
            "tgt_is_causal": a.get("tgt_is_causal"), "memory_is_causal": a.get("memory_is_causal") or False,
        })
        return out, scope.state

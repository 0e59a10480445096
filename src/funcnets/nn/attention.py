"""Attention: ``torch.nn.MultiheadAttention``, ``F.scaled_dot_product_attention`` and
``F.multi_head_attention_forward``.

torch keeps ``MultiheadAttention`` in ``nn/modules/activation.py``; here it has its own
family module. The computation is torch's ``multi_head_attention_forward`` step by step:
in-projection (packed ``in_proj_weight`` ``(3E, E)`` when ``kdim == vdim == E``, else
``q/k/v_proj_weight``), ``bias_k``/``bias_v`` appended to the keys and values, a zero
key/value with ``add_zero_attn``, masks turned into additive float masks (a bool ``True``
= *ignore* becomes ``-inf``), heads split, attention, heads merged, ``out_proj``.

Two of torch's paths, reproduced as torch runs them:

* ``need_weights=True`` computes ``softmax(q·kᵀ/√d + mask)`` with an ordinary softmax, so
  a query row whose keys are all masked is ``NaN`` (output and weights), as in torch.
* ``need_weights=False`` (what the transformer layers use) goes through
  :func:`scaled_dot_product_attention`, whose softmax gives a fully masked row zero
  weights (torch's ``_safe_softmax``): the attention output of that row is 0 (then
  ``out_proj``'s bias), with zero gradients, as in torch.

Randomness is explicit: attention dropout in training needs a PRNG key. Because torch
calls the key *tensor* ``key``, the functional forms and :meth:`MultiheadAttention.forward`
take the PRNG key as ``dropout_key``; the module contract's ``apply(..., key=)`` is the
PRNG key as everywhere else.

These are sequence layers: inputs are ``(L, N, E)`` / ``(N, L, E)`` / unbatched ``(L, E)``,
which the image layout contexts (``channels_last``/``batch_last``, 4-D only) leave alone.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from funcnets._typing import Array, Params, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn.dropout import dropout as _dropout
from funcnets.nn.init import xavier_normal, xavier_uniform
from funcnets.nn.linear import Linear, linear
from funcnets.nn.module import Module

__all__ = [
    "scaled_dot_product_attention", "multi_head_attention_forward",
    "MultiheadAttention", "NonDynamicallyQuantizableLinear",
]


# ----------------------------------------------------------------------------- helpers
def _is_float(a: Array) -> bool:
    return jnp.issubdtype(a.dtype, jnp.floating)


def _canonical_mask(mask: Any, name: str, dtype: Any, who: str) -> Array | None:
    """torch's ``F._canonical_mask``: bool (True = ignore) -> additive ``-inf``/0, float as is."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype == jnp.bool_:
        return jnp.where(mask, jnp.asarray(-jnp.inf, dtype), jnp.zeros((), dtype))
    if not _is_float(mask):
        raise ShapeError(
            f"{who}: only bool and floating types of {name} are supported, got dtype {mask.dtype}. "
            f"Pass a bool mask (True = ignore) or an additive float mask (-inf = ignore)."
        )
    return mask.astype(dtype)


def _warn_mismatch(mask: Any, other: Any, name: str, other_name: str) -> None:
    if mask is not None and other is not None and jnp.asarray(mask).dtype != jnp.asarray(other).dtype:
        warnings.warn(
            f"Support for mismatched {name} and {other_name} is deprecated. Use same type for both instead.",
            UserWarning,
            stacklevel=4,
        )


@jax.custom_jvp
def _safe_softmax(x: Array) -> Array:
    """Softmax over the last axis whose all-``-inf`` rows are 0 (torch's ``_safe_softmax``).

    The row maximum is replaced by 0 where it is ``-inf`` (so ``x - max`` is ``-inf``, not
    ``NaN``) and an all-zero row is divided by 1; every other row is the ordinary softmax.
    Its derivative is the closed form on the saved output ``w``, ``dw = w·(dx - Σ w·dx)``
    (torch's ``_softmax_backward_data``): reverse mode keeps only ``w`` and makes one
    reduction and one elementwise pass, where autodiff through ``exp``/``sum``/divide keeps
    the exponentials and the row sums and makes more passes over the ``(N, H, L, S)`` scores.
    """
    m = jnp.max(x, axis=-1, keepdims=True, initial=-jnp.inf)  # initial: no keys (S = 0) is valid
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), x.dtype))
    e = jnp.exp(x - m)
    s = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(s == 0, jnp.ones((), x.dtype), s)


@_safe_softmax.defjvp
def _safe_softmax_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    w = _safe_softmax(x)
    wt = w * t
    return w, wt - w * jnp.sum(wt, axis=-1, keepdims=True)


# ------------------------------------------------------------------ scaled dot product
def scaled_dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    attn_mask: Array | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    dropout_key: PRNGKey | None = None,
) -> Array:
    """``torch.nn.functional.scaled_dot_product_attention``.

    ``softmax(query @ keyᵀ · scale + mask) @ value`` with ``scale = 1/sqrt(E)`` by default.
    A bool ``attn_mask`` says where attention *is allowed* (True = attend, torch's SDPA
    convention, the opposite of MultiheadAttention's); a float mask is added to the
    scores. ``is_causal`` masks with the top-left aligned lower triangle
    ``ones(L, S).tril()``. A query row with every key masked gets zero weights (output 0),
    as torch's ``_safe_softmax`` gives. ``enable_gqa`` lets ``key``/``value`` have fewer
    heads (dim -3) than ``query``; each is repeated ``Hq // Hkv`` times.

    Args:
      query: ``(*, Hq, L, E)`` or ``(*, L, E)``; key: ``(*, Hkv, S, E)``;
      value: ``(*, Hkv, S, Ev)``; attn_mask: broadcastable to ``(*, Hq, L, S)``;
      dropout_p: dropout on the attention weights (``1/(1-p)`` scaling);
      dropout_key: PRNG key, needed when ``dropout_p > 0`` (torch's ``key`` name is taken).
    Returns:
      ``(*, Hq, L, Ev)``.
    """
    q, k, v = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    who = "scaled_dot_product_attention"
    for name, a in (("query", q), ("key", k), ("value", v)):
        if a.ndim < 2 or not _is_float(a):
            raise ShapeError(
                f"{who} expected floating-point {name} of at least 2 dims (*, L, E), got shape "
                f"{tuple(a.shape)} and dtype {a.dtype}."
            )
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ShapeError(
            f"{who} expected query (*, L, E), key (*, S, E) and value (*, S, Ev) with matching E and S, "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}."
        )
    if enable_gqa and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        hq, hkv = q.shape[-3], k.shape[-3]
        if hkv == 0 or hq % hkv or v.shape[-3] != hkv:
            raise ShapeError(
                f"{who} with enable_gqa needs the number of query heads ({hq}) to be a multiple of "
                f"the key/value heads, got key {tuple(k.shape)} and value {tuple(v.shape)}."
            )
        k = jnp.repeat(k, hq // hkv, axis=-3)
        v = jnp.repeat(v, hq // hkv, axis=-3)
    if is_causal and attn_mask is not None:
        raise ValueError(
            "scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True "
            "(pass one or the other)."
        )
    L, S = q.shape[-2], k.shape[-2]
    try:
        scores = jnp.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]) + (L, S)
    except ValueError:
        raise ShapeError(
            f"{who} expected query, key and value whose leading dims (*) broadcast together, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}."
            + (" With fewer key/value heads than query heads, pass enable_gqa=True." if not enable_gqa else "")
        ) from None
    if attn_mask is not None:
        attn_mask = jnp.asarray(attn_mask)
        extra = max(attn_mask.ndim - len(scores), 0)
        if extra and all(d == 1 for d in attn_mask.shape[:extra]):  # torch drops leading ones
            attn_mask = attn_mask.reshape(attn_mask.shape[extra:])
        try:  # the scores' shape, not a wider one: torch adds the mask in place
            ok = jnp.broadcast_shapes(attn_mask.shape, scores) == scores
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(
                f"{who}: attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the "
                f"attention scores {scores} (*, L, S). Give it shape (L, S) = ({L}, {S}) "
                f"or one that broadcasts to the scores."
            )
        if attn_mask.dtype == jnp.bool_:
            attn_mask = jnp.where(attn_mask, jnp.zeros((), q.dtype), jnp.asarray(-jnp.inf, q.dtype))
        elif not _is_float(attn_mask):
            raise ShapeError(f"{who}: attn_mask must be bool or floating point, got dtype {attn_mask.dtype}.")
    elif is_causal:
        attn_mask = jnp.where(jnp.tril(jnp.ones((L, S), bool)), jnp.zeros((), q.dtype), jnp.asarray(-jnp.inf, q.dtype))
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _attend(q, k, v, attn_mask, s, dropout_p, dropout_key, safe=True)[0]


def _attend(
    q: Array, k: Array, v: Array, mask: Array | None, scale: float, dropout_p: float,
    key: PRNGKey | None, *, safe: bool, layout: str | None = None,
) -> tuple[Array, Array]:
    """``(softmax(q·kᵀ·scale + mask) @ v, weights)``; ``safe`` gives all-masked rows 0.

    ``layout`` None: ``(*, L, E)`` operands, weights ``(*, L, S)``. ``"lnhd"``/``"nlhd"``:
    multi-head attention's heads in place, ``q (L, N, H, D)``/``(N, L, H, D)``, ``k``, ``v``
    likewise with ``S``; weights ``(N, H, L, S)``, output in ``q``'s layout.
    """
    q = q * jnp.asarray(scale, q.dtype)
    if layout is None:
        scores = jnp.matmul(q, jnp.swapaxes(k, -1, -2))
    else:
        kv = layout.replace("l", "s")
        scores = jnp.einsum(f"{layout},{kv}->nhls", q, k)
    if mask is not None:
        scores = scores + mask.astype(scores.dtype)
    w = _safe_softmax(scores) if safe else jax.nn.softmax(scores, axis=-1)
    w_drop = _dropout(w, dropout_p, True, key) if dropout_p > 0.0 else w
    out = jnp.matmul(w_drop, v) if layout is None else jnp.einsum(f"nhls,{kv}->{layout}", w_drop, v)
    return out, w_drop  # torch's need_weights returns the weights it used: after dropout


# ------------------------------------------------------------------ multi-head attention
def multi_head_attention_forward(
    query: Array,
    key: Array,
    value: Array,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: Array | None,
    in_proj_bias: Array | None,
    bias_k: Array | None,
    bias_v: Array | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: Array,
    out_proj_bias: Array | None,
    training: bool = True,
    key_padding_mask: Array | None = None,
    need_weights: bool = True,
    attn_mask: Array | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: Array | None = None,
    k_proj_weight: Array | None = None,
    v_proj_weight: Array | None = None,
    static_k: Array | None = None,
    static_v: Array | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    *,
    dropout_key: PRNGKey | None = None,
    _who: str = "multi_head_attention_forward",
    _batch_first: bool = False,
) -> tuple[Array, Array | None]:
    """``torch.nn.functional.multi_head_attention_forward`` (sequence-first layout).

    Args:
      query: ``(L, N, E)`` or unbatched ``(L, E)``.
      key: ``(S, N, kdim)``.
      value: ``(S, N, vdim)``.
      key_padding_mask: ``(N, S)`` / ``(S,)``, bool (True = ignore) or float (added).
      attn_mask: ``(L, S)`` or ``(N·num_heads, L, S)``, bool (True = ignore) or float
        (added).
      is_causal: a hint that ``attn_mask`` is causal (used instead of it when no
        ``key_padding_mask`` is given and ``need_weights`` is False, as torch does).
      dropout_key: PRNG key for attention dropout in training.
    Returns:
      ``(attn_output (L, N, E), attn_weights)``; the weights are ``(N, L, S)`` averaged over
      heads, ``(N, num_heads, L, S)`` with ``average_attn_weights=False``, None when
      ``need_weights`` is False (unbatched: without the ``N`` axis).
    """
    # _batch_first (MultiheadAttention(batch_first=True) on a batched input): query, key,
    # value and the output are (N, L, E). Each layout is computed in place, the heads as a
    # (…, H, head_dim) split of the last axis and the attention as einsums over them, so
    # no (L, N, E) <-> (N, L, E) or head transposes are written in the program; XLA places
    # the few its dots need. Same numbers as torch's view/transpose sequence.
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    is_batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads, _who)
    if not is_batched:
        _batch_first = False
        query, key, value = query[:, None], key[:, None], value[:, None]
        if key_padding_mask is not None:
            key_padding_mask = jnp.asarray(key_padding_mask)[None]
    sa = 1 if _batch_first else 0  # the sequence axis; the batch axis is 1 - sa
    layout = "nlhd" if _batch_first else "lnhd"
    tgt_len, bsz, embed_dim = query.shape[sa], query.shape[1 - sa], query.shape[2]
    src_len = key.shape[sa]
    dtype = query.dtype

    _warn_mismatch(key_padding_mask, attn_mask, "key_padding_mask", "attn_mask")
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", dtype, _who)
    if is_causal and attn_mask is None:
        raise ValueError(
            f"{_who}: need attn_mask if specifying the is_causal hint. You may use the Transformer "
            f"module method `generate_square_subsequent_mask` to create this mask."
        )
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # torch lets scaled_dot_product_attention build the causal mask
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", dtype, _who)
        if key_padding_mask is not None:
            is_causal = False

    if embed_dim != embed_dim_to_check:
        raise ShapeError(
            f"{_who} expected query of embedding dimension {embed_dim_to_check} (the last axis), got "
            f"{embed_dim} in query shape {tuple(query.shape)}."
        )
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise ValueError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if (key.shape[:2] != value.shape[:2]) if use_separate_proj_weight else (key.shape != value.shape):
        raise ShapeError(
            f"{_who} expected key and value of the same "
            f"{'sequence length and batch' if use_separate_proj_weight else 'shape'}, got key "
            f"{tuple(key.shape)} and value {tuple(value.shape)}."
        )
    if key.shape[1 - sa] != bsz:
        raise ShapeError(
            f"{_who} expected key/value with batch size {bsz} (query {tuple(query.shape)}), got "
            f"{tuple(key.shape)}."
        )

    # in-projection
    b_q = b_k = b_v = None
    if in_proj_bias is not None:
        b_q, b_k, b_v = jnp.split(in_proj_bias, 3)
    if not use_separate_proj_weight:
        w_q, w_k, w_v = jnp.split(in_proj_weight, 3)
    else:
        w_q, w_k, w_v = q_proj_weight, k_proj_weight, v_proj_weight
    for name, x, w in (("query", query, w_q), ("key", key, w_k), ("value", value, w_v)):
        if x.shape[-1] != w.shape[1]:
            raise ShapeError(
                f"{_who} expected {name} with {w.shape[1]} features (the last axis), got shape "
                f"{tuple(x.shape)}."
            )
    q, k, v = linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)

    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if attn_mask.shape != (tgt_len, src_len):
                raise ShapeError(
                    f"{_who}: the shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but should be "
                    f"(L, S) = {(tgt_len, src_len)} (query length, key length)."
                )
            attn_mask = attn_mask[None, None]
        elif attn_mask.shape != (bsz * num_heads, tgt_len, src_len):
            raise ShapeError(
                f"{_who}: the shape of the 3D attn_mask is {tuple(attn_mask.shape)}, but should be "
                f"(N*num_heads, L, S) = {(bsz * num_heads, tgt_len, src_len)}; one mask per batch "
                f"element and head, batch-major (mask.repeat_interleave(num_heads, 0) of an (N, L, S) mask)."
            )
        else:
            attn_mask = attn_mask.reshape(bsz, num_heads, tgt_len, src_len)

    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise ValueError("bias cannot be added to static key or value.")
        one = (bsz, 1, embed_dim) if _batch_first else (1, bsz, embed_dim)
        k = jnp.concatenate([k, jnp.broadcast_to(bias_k, one).astype(k.dtype)], axis=sa)
        v = jnp.concatenate([v, jnp.broadcast_to(bias_v, one).astype(v.dtype)], axis=sa)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    elif bias_k is not None or bias_v is not None:
        raise ValueError("bias_k and bias_v must be given together")

    # heads: (…, E) -> (…, num_heads, head_dim), torch's view (its transpose is left to the einsums)
    q = q.reshape(q.shape[:2] + (num_heads, head_dim))
    k = _heads(k, static_k, bsz, num_heads, head_dim, _batch_first, "static_k")
    v = _heads(v, static_v, bsz, num_heads, head_dim, _batch_first, "static_v")

    if add_zero_attn:
        zeros = jnp.zeros(k.shape[:sa] + (1,) + k.shape[sa + 1:], dtype)
        k = jnp.concatenate([k, zeros], axis=sa)
        v = jnp.concatenate([v, zeros], axis=sa)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    src_len = k.shape[sa]

    if key_padding_mask is not None:
        if key_padding_mask.shape != (bsz, src_len):
            raise ShapeError(
                f"{_who} expected key_padding_mask of shape (N, S) = {(bsz, key.shape[sa])}, got "
                f"{tuple(key_padding_mask.shape)}: one entry per batch element and key position."
            )
        kpm = key_padding_mask[:, None, None, :]
        attn_mask = kpm if attn_mask is None else attn_mask + kpm

    if not training:
        dropout_p = 0.0

    scale = 1.0 / math.sqrt(head_dim)
    if need_weights:
        out, w = _attend(q, k, v, attn_mask, scale, dropout_p, dropout_key, safe=False, layout=layout)
        if average_attn_weights:
            w = w.mean(axis=1)
    else:  # torch's scaled_dot_product_attention path, its safe softmax and causal mask
        if is_causal:
            attn_mask = jnp.where(jnp.tril(jnp.ones((tgt_len, src_len), bool)), jnp.zeros((), dtype),
                                  jnp.asarray(-jnp.inf, dtype))
        out, _ = _attend(q, k, v, attn_mask, scale, dropout_p, dropout_key, safe=True, layout=layout)
        w = None
    out = linear(out.reshape(out.shape[:2] + (embed_dim,)), out_proj_weight, out_proj_bias)
    if not is_batched:
        out = out[:, 0]
        if w is not None:
            w = w[0]
    return out, w


def _pad_last(mask: Array | None) -> Array | None:
    """``F.pad(mask, (0, 1))``: one more key position, not masked."""
    if mask is None:
        return None
    return jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])


def _heads(x: Array, static: Array | None, bsz: int, num_heads: int, head_dim: int, batch_first: bool,
           name: str) -> Array:
    """The projected keys or values as heads, ``(S, N, H, head_dim)`` (``(N, S, H,
    head_dim)`` batch-first); a given ``static_k``/``static_v`` ``(N·H, S, head_dim)`` (torch's
    layout) is brought to the same."""
    if static is None:
        return x.reshape(x.shape[:2] + (num_heads, head_dim))
    static = jnp.asarray(static)
    if static.ndim != 3 or static.shape[0] != bsz * num_heads or static.shape[2] != head_dim:
        raise ShapeError(
            f"multi_head_attention_forward expected {name} of shape (N*num_heads, S, head_dim) = "
            f"({bsz * num_heads}, S, {head_dim}), got {tuple(static.shape)}."
        )
    static = static.reshape(bsz, num_heads, static.shape[1], head_dim)
    return static.transpose((0, 2, 1, 3) if batch_first else (2, 0, 1, 3))


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads, who) -> bool:
    """torch's ``_mha_shape_check``: is the input batched; ranks of inputs and masks."""
    kpm_ndim = None if key_padding_mask is None else jnp.ndim(key_padding_mask)
    am_ndim = None if attn_mask is None else jnp.ndim(attn_mask)
    for name, a in (("query", query), ("key", key), ("value", value)):
        if not _is_float(a):
            raise ShapeError(
                f"{who} expected a floating-point {name}, got dtype {a.dtype}. Convert it first, "
                f"e.g. x.astype(jnp.float32)."
            )
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise ShapeError(
                f"{who}: for batched (3-D) query {tuple(query.shape)}, expected key and value to be 3-D, "
                f"got {tuple(key.shape)} and {tuple(value.shape)}."
            )
        if kpm_ndim not in (None, 2):
            raise ShapeError(
                f"{who}: for batched (3-D) query, expected key_padding_mask to be None or 2-D (N, S), "
                f"got shape {tuple(jnp.shape(key_padding_mask))}."
            )
        if am_ndim not in (None, 2, 3):
            raise ShapeError(
                f"{who}: expected attn_mask to be None, 2-D (L, S) or 3-D (N*num_heads, L, S), got shape "
                f"{tuple(jnp.shape(attn_mask))}."
            )
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise ShapeError(
                f"{who}: for unbatched (2-D) query {tuple(query.shape)}, expected key and value to be 2-D, "
                f"got {tuple(key.shape)} and {tuple(value.shape)}."
            )
        if kpm_ndim not in (None, 1):
            raise ShapeError(
                f"{who}: for unbatched (2-D) query, expected key_padding_mask to be None or 1-D (S,), "
                f"got shape {tuple(jnp.shape(key_padding_mask))}."
            )
        if am_ndim not in (None, 2, 3):
            raise ShapeError(
                f"{who}: expected attn_mask to be None, 2-D (L, S) or 3-D (num_heads, L, S), got shape "
                f"{tuple(jnp.shape(attn_mask))}."
            )
        if am_ndim == 3 and tuple(jnp.shape(attn_mask)) != (num_heads, query.shape[0], key.shape[0]):
            raise ShapeError(
                f"{who}: expected the 3-D attn_mask of an unbatched query to have shape (num_heads, L, S) = "
                f"{(num_heads, query.shape[0], key.shape[0])}, got {tuple(jnp.shape(attn_mask))}."
            )
        return False
    raise ShapeError(
        f"{who}: query should be unbatched 2-D (L, E) or batched 3-D (L, N, E) / (N, L, E) with "
        f"batch_first, got shape {tuple(query.shape)}."
    )


@dataclass(frozen=True, repr=False)
class NonDynamicallyQuantizableLinear(Linear):
    """torch's ``out_proj`` class: a :class:`Linear` under another name (for quantization).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets.nn.attention import NonDynamicallyQuantizableLinear
        >>> m = NonDynamicallyQuantizableLinear(8, 4)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.ones((2, 8)))
        >>> y.shape
        (2, 4)
    """


_MHA_ARGS = (
    "query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal",
)


@dataclass(frozen=True, repr=False)
class MultiheadAttention(Module):
    """Multi-head attention, ``torch.nn.MultiheadAttention``.

    ``out = concat_h(softmax(q_h·k_hᵀ/sqrt(d) + mask) v_h) · W_oᵀ + b_o`` with
    ``q_h, k_h, v_h`` the heads of the projected query, key and value
    (``d = embed_dim / num_heads``).

    Parameters (torch's names and order): ``in_proj_weight (3E, E)`` when
    ``kdim == vdim == embed_dim``, else ``q_proj_weight (E, E)``, ``k_proj_weight (E, kdim)``,
    ``v_proj_weight (E, vdim)``; ``in_proj_bias (3E,)`` if ``bias``; ``bias_k``, ``bias_v``
    ``(1, 1, E)`` if ``add_bias_kv``; the child ``out_proj`` (``weight (E, E)``, ``bias``).
    Init as torch: xavier-uniform projections, zero ``in_proj_bias`` and ``out_proj.bias``,
    ``out_proj.weight`` Linear's default, xavier-normal ``bias_k``/``bias_v``.

    Calling it: :meth:`forward` is torch's ``forward`` with the params first::

        out, weights = mha.forward(params, q, k, v, key_padding_mask=pad, need_weights=False)

    The module contract's ``apply(params, state, x)`` takes ``x`` as a tuple
    ``(query, key, value)`` or a dict of ``forward``'s arguments by name (``{"query": q,
    "key": k, "value": v, "attn_mask": m, ...}``) and returns ``((out, weights), state)``.

    Shapes: query ``(L, N, E)`` (``(N, L, E)`` with ``batch_first``, ``(L, E)``
    unbatched), key ``(S, N, kdim)``, value ``(S, N, vdim)``; out like query; weights
    ``(N, L, S)`` (``(N, num_heads, L, S)`` with ``average_attn_weights=False``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
        >>> params, state = m.init(jax.random.key(0))
        >>> x = jnp.ones((2, 5, 8))                        # (N, L, E)
        >>> (out, weights), state = m.apply(params, state, (x, x, x))
        >>> out.shape, weights.shape
        ((2, 5, 8), (2, 5, 5))
    """

    embed_dim: int
    num_heads: int
    dropout: float = 0.0
    bias: bool = True
    add_bias_kv: bool = False
    add_zero_attn: bool = False
    kdim: int | None = None
    vdim: int | None = None
    batch_first: bool = False
    out_proj: NonDynamicallyQuantizableLinear = field(init=False, compare=False)

    def __post_init__(self):
        if self.embed_dim <= 0 or self.num_heads <= 0:
            raise ValueError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={self.embed_dim} "
                f"and num_heads={self.num_heads} instead"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim must be divisible by num_heads, got embed_dim="
                f"{self.embed_dim} and num_heads={self.num_heads}; each head gets embed_dim // num_heads "
                f"features. Choose num_heads among the divisors of {self.embed_dim}."
            )
        object.__setattr__(self, "kdim", self.embed_dim if self.kdim is None else self.kdim)
        object.__setattr__(self, "vdim", self.embed_dim if self.vdim is None else self.vdim)
        object.__setattr__(self, "out_proj", NonDynamicallyQuantizableLinear(self.embed_dim, self.embed_dim, self.bias))

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def _qkv_same_embed_dim(self) -> bool:
        return self.kdim == self.embed_dim and self.vdim == self.embed_dim

    def _who(self) -> str:
        extra = "" if self._qkv_same_embed_dim else f", kdim={self.kdim}, vdim={self.vdim}"
        return (
            f"MultiheadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads}{extra}, "
            f"batch_first={self.batch_first})"
        )

    def param_names(self):
        names = ("in_proj_weight",) if self._qkv_same_embed_dim else ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        if self.bias:
            names += ("in_proj_bias",)
        if self.add_bias_kv:
            names += ("bias_k", "bias_v")
        return names

    def init_own(self, key):
        k = jax.random.split(key, 5)
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            params = {"in_proj_weight": xavier_uniform(k[0], (3 * E, E))}
        else:
            params = {
                "q_proj_weight": xavier_uniform(k[0], (E, E)),
                "k_proj_weight": xavier_uniform(k[1], (E, self.kdim)),
                "v_proj_weight": xavier_uniform(k[2], (E, self.vdim)),
            }
        if self.bias:
            params["in_proj_bias"] = jnp.zeros((3 * E,))
        if self.add_bias_kv:
            params["bias_k"] = xavier_normal(k[3], (1, 1, E))
            params["bias_v"] = xavier_normal(k[4], (1, 1, E))
        return params, {}

    def init_tree(self, key):
        params, state = super().init_tree(key)
        if self.bias:  # torch's _reset_parameters zeroes out_proj.bias after Linear's init
            params["out_proj"] = {**params["out_proj"], "bias": jnp.zeros((self.embed_dim,))}
        return params, state

    def forward(
        self,
        params: Params,
        query: Array,
        key: Array,
        value: Array,
        key_padding_mask: Array | None = None,
        need_weights: bool = True,
        attn_mask: Array | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        *,
        train: bool = False,
        dropout_key: PRNGKey | None = None,
    ) -> tuple[Array, Array | None]:
        """torch's ``forward``: ``(attn_output, attn_weights or None)``.

        Args:
          params: this layer's parameters.
          query, key, value: see the class docstring.
          key_padding_mask: ``(N, S)`` (``(S,)`` unbatched), bool True = ignore, or float
            (added).
          attn_mask: ``(L, S)`` or ``(N·num_heads, L, S)``, bool True = ignore or float
            (added).
          need_weights: also return the attention weights.
          average_attn_weights: average them over the heads.
          is_causal: hint that ``attn_mask`` is the causal mask (torch's semantics: it
            needs ``attn_mask``).
          train: torch's ``training`` (attention dropout).
          dropout_key: its PRNG key.
        """
        who = self._who()
        query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
        batched = query.ndim == 3
        if self.batch_first and batched:
            if key.ndim != 3 or value.ndim != 3:
                raise ShapeError(
                    f"{who}: for batched (3-D) query {tuple(query.shape)}, expected key and value to be 3-D, "
                    f"got {tuple(key.shape)} and {tuple(value.shape)}."
                )
        separate = not self._qkv_same_embed_dim
        out_p = params["out_proj"]
        out, w = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads,
            params.get("in_proj_weight"), params.get("in_proj_bias"),
            params.get("bias_k"), params.get("bias_v"), self.add_zero_attn, self.dropout,
            out_p["weight"], out_p.get("bias"),
            training=train, key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, use_separate_proj_weight=separate,
            q_proj_weight=params.get("q_proj_weight"), k_proj_weight=params.get("k_proj_weight"),
            v_proj_weight=params.get("v_proj_weight"), average_attn_weights=average_attn_weights,
            is_causal=is_causal, dropout_key=dropout_key, _who=who, _batch_first=self.batch_first and batched,
        )
        return out, w

    def apply(self, params, state, x, *, train=False, key=None):
        return self.forward(params, **_call_args(self._who(), x, _MHA_ARGS, 3), train=train, dropout_key=key), state


def _call_args(who: str, x: Any, names: tuple[str, ...], n_positional: int) -> dict:
    """``apply``'s ``x``: a tuple of the first positional arguments, or a dict by name."""
    if isinstance(x, Mapping):
        unknown = set(x) - set(names)
        missing = [n for n in names[:n_positional] if n not in x]
        if unknown or missing:
            raise TypeError(
                f"{who}.apply: x as a dict takes the arguments {names}; "
                f"{'unknown ' + str(sorted(unknown)) if unknown else ''}"
                f"{' missing ' + str(missing) if missing else ''}"
            )
        return dict(x)
    if isinstance(x, (tuple, list)):
        if len(x) != n_positional:
            raise TypeError(
                f"{who}.apply expected x = ({', '.join(names[:n_positional])}), a tuple of {n_positional}, "
                f"got {len(x)} items; pass the other arguments in a dict by name."
            )
        return dict(zip(names, x))
    if n_positional == 1:
        return {names[0]: x}
    raise TypeError(
        f"{who}.apply expected x = ({', '.join(names[:n_positional])}) or a dict of "
        f"{names}, got {type(x).__name__}."
    )

"""Sparse layers: ``torch.nn.Embedding``, ``EmbeddingBag`` and ``F.embedding``,
``F.embedding_bag``, ``F.one_hot``.

``max_norm``: torch renormalises the looked-up rows of the weight *in place* (under
``no_grad``) before the lookup, so the stored weight changes. A pure function cannot
change its argument, so here the lookup returns the renormalised rows and the stored
weight is left as it was; the gradient is torch's (the rows' gradient reaches the weight
unscaled, as it does to torch's renormalised leaf). To reproduce torch's change of the
stored weight, apply :func:`embedding_renorm` to the params yourself::

    params = {**params, "weight": F.embedding_renorm(params["weight"], idx, max_norm)}

The two agree whenever every row a batch looks up already has norm <= ``max_norm``
(after the first torch step on those rows, or when they are renormalised as above).
"""

from __future__ import annotations

from dataclasses import dataclass
import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.module import Module

__all__ = [
    "embedding", "embedding_bag", "embedding_renorm", "one_hot", "Embedding", "EmbeddingBag",
]


# --- helpers ----------------------------------------------------------------------
def _check_layout(layer: object) -> None:
    if _LAYOUT.get() != "NCHW":
        raise ShapeError(
            f"{layer!r} does not support the {_LAYOUT.get()} layout context "
            f"(channels_last / batch_last); call it outside that context."
        )


def _check_indices(idx: Array, num: int, what: str) -> None:
    if not jnp.issubdtype(jnp.asarray(idx).dtype, jnp.integer):
        raise ShapeError(
            f"{what} expected integer indices, got dtype {jnp.asarray(idx).dtype}. "
            f"Convert them first, e.g. idx.astype(jnp.int32)."
        )
    if isinstance(idx, jax.core.Tracer):
        return  # under jit an out-of-range index reads NaN (see _lookup)
    a = np.asarray(idx)
    if a.size and (a.min() < 0 or a.max() >= num):
        bad = a[(a < 0) | (a >= num)].ravel()[0]
        raise IndexError(
            f"{what}: index {int(bad)} is out of range for {num} embeddings (valid: 0..{num - 1})."
        )


def _norm_padding_idx(padding_idx: int | None, num: int, msg: str = "Padding_idx") -> int | None:
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ValueError(f"{msg} must be within num_embeddings (got {padding_idx} for {num} embeddings)")
    return padding_idx + num if padding_idx < 0 else padding_idx


@jax.custom_vjp
def _scale_grad(x: Array, s: Array) -> Array:
    """``x`` forward; its gradient multiplied by ``s`` (torch's ``scale_grad_by_freq``)."""
    return x


def _scale_grad_fwd(x, s):
    return x, s


def _scale_grad_bwd(s, g):
    return g * s, jnp.zeros_like(s)


_scale_grad.defvjp(_scale_grad_fwd, _scale_grad_bwd)


def _renorm_scale(weight: Array, idx: Array, max_norm: float, norm_type: float) -> Array:
    """Per looked-up row, torch's ``embedding_renorm_`` factor ``max_norm / (norm + 1e-7)``
    where ``norm > max_norm``, else 1 (no gradient: torch renormalises under no_grad)."""
    rows = jax.lax.stop_gradient(jnp.take(weight, idx, axis=0, mode="clip"))
    norm = jnp.linalg.norm(rows, ord=norm_type, axis=-1, keepdims=True)
    return jnp.where(norm > max_norm, max_norm / (norm + 1e-7), 1.0).astype(weight.dtype)


def _lookup(
    weight: Array, idx: Array, padding_idx: int | None, max_norm: float | None,
    norm_type: float, scale_grad_by_freq: bool,
) -> Array:
    idx = jnp.asarray(idx)
    # torch raises on an out-of-range index; under jit we cannot, so such a row reads NaN
    rows = jnp.take(weight, idx, axis=0, mode="fill", fill_value=jnp.nan)
    if max_norm is not None:
        # straight-through: the value is the renormalised row, the gradient reaches the
        # weight unscaled, as it reaches torch's renormalised-in-place leaf
        scaled = rows * _renorm_scale(weight, idx, max_norm, norm_type)
        rows = rows + jax.lax.stop_gradient(scaled - rows)
    mult = None
    if scale_grad_by_freq:
        counts = jnp.zeros((weight.shape[0],), weight.dtype).at[idx.ravel()].add(1, mode="drop")
        mult = (1.0 / jnp.take(counts, idx, mode="clip"))[..., None]
    if padding_idx is not None:
        keep = (idx != padding_idx)[..., None].astype(weight.dtype)
        mult = keep if mult is None else mult * keep
    if mult is not None:
        rows = _scale_grad(rows, mult.astype(weight.dtype))
    return rows


# --- functional forms ---------------------------------------------------------------
def embedding(
    input: Array, weight: Array, padding_idx: int | None = None, max_norm: float | None = None,
    norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
) -> Array:
    """``torch.nn.functional.embedding``: rows of ``weight`` at ``input``.

    Args:
      input: integer indices, any shape ``(*)``.
      weight: ``(num_embeddings, embedding_dim)``.
      padding_idx: the row that gets no gradient (negative counts from the end).
      max_norm: rows looked up with a ``norm_type`` norm above it are rescaled to norm
        ``max_norm`` (``max_norm / (norm + 1e-7)``); the stored weight is not changed
        (see the module docstring and :func:`embedding_renorm`).
      scale_grad_by_freq: divide each row's gradient by its count in ``input``.
      sparse: accepted for torch's signature; the gradient is dense.
    Returns:
      ``(*, embedding_dim)``.
    """
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(weight.shape)}")
    pad = _norm_padding_idx(padding_idx, weight.shape[0])
    _check_indices(input, weight.shape[0], "embedding")
    return _lookup(weight, input, pad, max_norm, norm_type, scale_grad_by_freq)


def embedding_renorm(weight: Array, input: Array, max_norm: float, norm_type: float = 2.0) -> Array:
    """The weight after torch's in-place ``embedding_renorm_``: each row indexed by
    ``input`` whose ``norm_type`` norm exceeds ``max_norm`` is scaled by
    ``max_norm / (norm + 1e-7)``; other rows are unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> weight = jnp.array([[3.0, 4.0], [0.3, 0.4]])
        >>> w = F.embedding_renorm(weight, jnp.array([0, 1]), max_norm=1.0)
        >>> [[round(v, 4) for v in row] for row in w.tolist()]  # row 0 (norm 5) scaled to norm 1; row 1 kept
        [[0.6, 0.8], [0.3, 0.4]]
    """
    idx = jnp.asarray(input).ravel()
    scale = _renorm_scale(weight, idx, max_norm, norm_type)
    return weight.at[idx].set(jnp.take(weight, idx, axis=0, mode="clip") * scale, mode="drop")


def one_hot(tensor: Array, num_classes: int = -1) -> Array:
    """``torch.nn.functional.one_hot``: ``(*) -> (*, num_classes)`` of integer 0/1.

    ``num_classes=-1`` takes ``max(tensor) + 1``, which needs a concrete tensor (not
    under ``jax.jit``); pass ``num_classes`` there. The dtype is JAX's default integer
    (int64 with x64, int32 otherwise; torch's is int64).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.nn import functional as F
        >>> F.one_hot(jnp.array([0, 2]), num_classes=3).tolist()
        [[1, 0, 0], [0, 0, 1]]
    """
    t = jnp.asarray(tensor)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"one_hot is only applicable to index tensor of integer dtype, got {t.dtype}")
    concrete = not isinstance(tensor, jax.core.Tracer)
    if num_classes == -1:
        if not concrete:
            raise ValueError("one_hot: num_classes=-1 infers the count from the values, which jax.jit cannot; pass num_classes")
        num_classes = int(np.max(np.asarray(t))) + 1 if t.size else 0
    if concrete and t.size:
        a = np.asarray(t)
        if a.min() < 0:
            raise ValueError("Class values must be non-negative.")
        if a.max() >= num_classes:
            raise ValueError("Class values must be smaller than num_classes.")
    return (t[..., None] == jnp.arange(num_classes)).astype(jnp.asarray(0).dtype)


_MODES = {"sum": 0, "mean": 1, "max": 2}


def embedding_bag(
    input: Array, weight: Array, offsets: Array | None = None, max_norm: float | None = None,
    norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
    per_sample_weights: Array | None = None, include_last_offset: bool = False, padding_idx: int | None = None,
) -> Array:
    """``torch.nn.functional.embedding_bag``: sums, means or maxima of bags of rows.

    Args:
      input: ``(B, N)`` integer indices (``B`` bags of ``N``, ``offsets`` must be None),
        or ``(L,)`` with ``offsets: (B,)`` the start of each bag (``(B + 1,)`` with
        ``include_last_offset``, whose last entry should be ``L``; as torch on CPU, the last
        bag runs to the end of ``input`` whatever that entry says).
      weight: ``(num_embeddings, embedding_dim)``.
      mode: ``"sum"``, ``"mean"`` or ``"max"`` (per feature).
      per_sample_weights: same shape as ``input``, multiplies each row (``"sum"`` only).
      padding_idx: entries equal to it are left out of their bag (and of its count).
    Returns:
      ``(B, embedding_dim)``; an empty bag gives zeros, as in torch.
    """
    input = jnp.asarray(input)
    if weight.ndim != 2:
        raise ShapeError(f"embedding_bag: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(weight.shape)}")
    num, dim = weight.shape
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(
                "if input is 2D, then offsets has to be None, as input is treated is a mini-batch of "
                f"fixed length sequences. However, found offsets of type {type(offsets)}"
            )
        bags, per = input.shape
        seg = jnp.repeat(jnp.arange(bags), per)
        valid = jnp.ones((bags * per,), bool)
        input = input.reshape(-1)
        if per_sample_weights is not None:
            per_sample_weights = jnp.asarray(per_sample_weights).reshape(-1)
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        offsets = jnp.asarray(offsets)
        if offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor")
        if not isinstance(offsets, jax.core.Tracer) and offsets.size:
            o = np.asarray(offsets)
            if o[0] != 0:
                raise ValueError(f"embedding_bag: offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to start from position 0. However, got {int(o[0])}")
            if (np.diff(o) < 0).any() or o[-1] > input.shape[0]:
                raise ValueError(f"embedding_bag: offsets must be non-decreasing and at most len(input)={input.shape[0]}, got {o.tolist()}")
        bags = offsets.shape[0] - (1 if include_last_offset else 0)
        pos = jnp.arange(input.shape[0])
        seg = jnp.searchsorted(offsets, pos, side="right") - 1
        if include_last_offset:
            # torch (CPU) does not read the last offset: the last bag runs to the end of input
            seg = jnp.minimum(seg, bags - 1)
        valid = jnp.ones(pos.shape, bool)
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}")
    if mode not in _MODES:
        raise ValueError("mode has to be one of sum, mean or max")
    if mode == "max" and scale_grad_by_freq:
        raise ValueError("max mode does not support scaling the gradient by the frequency")
    if mode == "max" and sparse:
        raise ValueError("max mode does not support sparse weights")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(
            "embedding_bag: per_sample_weights was not None. per_sample_weights is only supported for "
            f"mode='sum' (got mode='{mode}'). Please open a feature request on GitHub."
        )
    if per_sample_weights is not None and per_sample_weights.shape != input.shape:
        raise ShapeError(
            f"embedding_bag: per_sample_weights must have the shape of input {tuple(input.shape)}, "
            f"got {tuple(per_sample_weights.shape)}"
        )
    pad = _norm_padding_idx(padding_idx, num, "padding_idx")
    _check_indices(input, num, "embedding_bag")
    if pad is not None:
        valid = valid & (input != pad)
    rows = _lookup(weight, input, None, max_norm, norm_type, scale_grad_by_freq)
    seg = jnp.where(valid, seg, bags)  # left-out entries go to a dropped extra segment
    if bags == 0:
        return jnp.zeros((0, dim), weight.dtype)
    if mode == "max":
        count = jax.ops.segment_sum(jnp.ones_like(seg), seg, num_segments=bags + 1)[:bags]
        if rows.shape[0] == 0:
            return jnp.zeros((bags, dim), weight.dtype)
        # torch's gradient goes to each feature's first maximal entry of the bag (input
        # order), where segment_max's would be shared among ties: pick that entry, then gather
        best = jax.ops.segment_max(jax.lax.stop_gradient(rows), seg, num_segments=bags + 1)
        pos = jnp.arange(rows.shape[0])[:, None]
        first = jax.ops.segment_min(
            jnp.where(rows == best[seg], pos, rows.shape[0]), seg, num_segments=bags + 1
        )[:bags]
        out = jnp.take_along_axis(rows, jnp.minimum(first, rows.shape[0] - 1), axis=0)
        return jnp.where((count > 0)[:, None], out, jnp.zeros((), weight.dtype))
    if per_sample_weights is not None:
        rows = rows * per_sample_weights[:, None].astype(weight.dtype)
    out = jax.ops.segment_sum(rows, seg, num_segments=bags + 1)[:bags]
    if mode == "mean":
        count = jax.ops.segment_sum(jnp.ones(seg.shape, weight.dtype), seg, num_segments=bags + 1)[:bags]
        out = out / jnp.maximum(count, 1)[:, None]
    return out


# --- layers ---------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class Embedding(Module):
    """A lookup table: ``input: (*)`` integer indices -> ``(*, embedding_dim)``.

    ``weight: (num_embeddings, embedding_dim)`` drawn from N(0, 1), the ``padding_idx``
    row zero (and it gets no gradient). ``max_norm``: see the module docstring (the
    renormalised rows are returned; the stored weight is not modified).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Embedding(10, 3, padding_idx=0)
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].shape, params["weight"][0].tolist()  # the padding row is zero
        ((10, 3), [0.0, 0.0, 0.0])
        >>> y, _ = m.apply(params, state, jnp.array([[0, 2], [4, 0]]))
        >>> y.shape
        (2, 2, 3)
        >>> bool((y[1, 0] == params["weight"][4]).all())
        True
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False

    def __post_init__(self):
        pad = _norm_padding_idx(self.padding_idx, self.num_embeddings)
        object.__setattr__(self, "padding_idx", pad)

    def param_names(self):
        return ("weight",)

    def init_own(self, key):
        w = jax.random.normal(key, (self.num_embeddings, self.embedding_dim))
        if self.padding_idx is not None:
            w = w.at[self.padding_idx].set(0.0)
        return {"weight": w}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        _check_layout(self)
        _check_indices(x, self.num_embeddings, repr(self))
        w = params["weight"]
        return _lookup(w, x, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq), state

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s


@dataclass(frozen=True, repr=False)
class EmbeddingBag(Module):
    """Sums, means or maxima of bags of embeddings without the intermediate
    ``(*, embedding_dim)`` tensor; see :func:`embedding_bag` for ``input``/``offsets``.

    Call it as ``bag(params, state, input, offsets, per_sample_weights)`` or with
    ``x = (input, offsets)`` / ``(input, offsets, per_sample_weights)`` (in a
    ``Sequential``). ``weight: (num_embeddings, embedding_dim)`` drawn from N(0, 1), the
    ``padding_idx`` row zero.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> bag = nn.EmbeddingBag(5, 2, mode="sum")
        >>> params, state = bag.init(jax.random.key(0))
        >>> params = {"weight": jnp.arange(10.0).reshape(5, 2)}  # rows [0, 1], [2, 3], ..., [8, 9]
        >>> y, _ = bag.apply(params, state, jnp.array([0, 1, 4, 2]), jnp.array([0, 3]))  # bags [0, 1, 4] and [2]
        >>> y.tolist()
        [[10.0, 13.0], [4.0, 5.0]]
    """

    num_embeddings: int
    embedding_dim: int
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    mode: str = "mean"
    sparse: bool = False
    include_last_offset: bool = False
    padding_idx: int | None = None

    def __post_init__(self):
        pad = _norm_padding_idx(self.padding_idx, self.num_embeddings, "padding_idx")
        object.__setattr__(self, "padding_idx", pad)
        if self.mode not in _MODES:
            raise ValueError("mode has to be one of sum, mean or max")

    def param_names(self):
        return ("weight",)

    def init_own(self, key):
        return Embedding(self.num_embeddings, self.embedding_dim, self.padding_idx).init_own(key)

    def __call__(self, params, state, x, offsets=None, per_sample_weights=None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, x, offsets, per_sample_weights,
                          train=train, key=key)

    def apply(self, params, state, x, offsets=None, per_sample_weights=None, *, train=False, key=None):
        _check_layout(self)
        if isinstance(x, tuple):
            x, offsets, per_sample_weights = (*x, None, None)[:3]
        try:
            y = embedding_bag(
                x, params["weight"], offsets, self.max_norm, self.norm_type, self.scale_grad_by_freq,
                self.mode, self.sparse, per_sample_weights, self.include_last_offset, self.padding_idx,
            )
        except (ShapeError, ValueError, IndexError) as e:
            raise type(e)(f"{self!r}: {e}") from None
        return y, state

    def extra_repr(self):
        s = f"{self.num_embeddings!r}, {self.embedding_dim!r}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm!r}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type!r}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq!r}"
        s += f", mode={self.mode!r}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx!r}"
        return s


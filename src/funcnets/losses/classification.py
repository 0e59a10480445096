"""Multi-class losses: ``nll_loss``, ``cross_entropy``, ``linear_cross_entropy``,
``multi_margin_loss`` and ``multilabel_margin_loss``, with ``torch.nn.functional``'s
formulas and options.

Shapes follow torch: ``input: (N, C)`` or ``(N, C, d1, ...)`` (or unbatched ``(C,)``);
class-index ``target: (N,)`` / ``(N, d1, ...)`` of ints; probability ``target`` with
``input``'s shape. ``reduction`` is ``"none" | "mean" | "sum"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.errors import ShapeError
from funcnets.losses._base import _check_class_indices, _check_reduction, _hinge, _reduce

__all__ = ["nll_loss", "cross_entropy", "linear_cross_entropy", "multi_margin_loss", "multilabel_margin_loss"]


def _class_dim(input: Array) -> int:
    if input.ndim == 0:
        raise ValueError("input must have a class dimension: (C,), (N, C) or (N, C, d1, ...), got a scalar")
    return 0 if input.ndim == 1 else 1


def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of log-probabilities ``input`` at class indices ``target``.

    ``loss_i = -weight[t_i] · input[i, t_i]`` (0 where ``t_i == ignore_index``); ``mean``
    divides by the sum of ``weight[t_i]`` over the non-ignored targets.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import losses
        >>> logp = jnp.array([[-0.2, -1.7, -3.2], [-2.0, -0.3, -1.9]])
        >>> round(float(losses.nll_loss(logp, jnp.array([0, 1]))), 4)  # (0.2 + 0.3) / 2
        0.25
        >>> w = jnp.array([1.0, 3.0, 1.0])  # mean divides by the targets' weights: (0.2 + 3·0.3) / 4
        >>> round(float(losses.nll_loss(logp, jnp.array([0, 1]), weight=w)), 4)
        0.275
        >>> round(float(losses.nll_loss(logp, jnp.array([0, -100]))), 4)  # ignore_index=-100 drops the second
        0.2
    """
    warn_if_downcast(input, weight, where="nll_loss")
    loss, w = _nll(input, target, weight, ignore_index, reduction)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(w)
    return _reduce(loss, reduction)


def _nll(input, target, weight, ignore_index, reduction):
    _check_reduction(reduction)
    cdim = _class_dim(input)
    n_classes = input.shape[cdim]
    expected = input.shape[:cdim] + input.shape[cdim + 1 :]
    if cdim == 0 and tuple(target.shape) == (1,):  # torch also takes (1,) for one unbatched sample
        target = target.reshape(())
    if tuple(target.shape) != tuple(expected):
        raise ShapeError(
            f"class-index target must have shape {tuple(expected)} for input {tuple(input.shape)}, "
            f"got {tuple(target.shape)}: one class index per sample (and position), the class "
            f"dimension of the input removed."
        )
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(
            f"weight must have shape ({n_classes},), one per class of the input {tuple(input.shape)}, got "
            f"{tuple(weight.shape)}."
        )
    _check_class_indices("nll_loss", target, n_classes, (ignore_index,), f" (or equal ignore_index={ignore_index})")
    keep = target != ignore_index
    safe = jnp.where(keep, target, 0)
    picked = jnp.take_along_axis(input, jnp.expand_dims(safe, cdim), axis=cdim).squeeze(cdim)
    dtype = jnp.result_type(input)  # JAX's dtype for a NumPy input (float32 for float64 with x64 off)
    w = jnp.ones((), dtype) if weight is None else weight[safe]
    zero = jnp.zeros((), dtype)
    w = jnp.where(keep, w, zero)
    # masked, not multiplied by w = 0: with every target ignored ``mean`` divides by 0, and
    # torch's gradient is still 0 at the ignored targets (0 · inf would give NaN)
    return jnp.where(keep, -w * picked, zero), w


def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """``torch.nn.functional.cross_entropy`` from unnormalised logits.

    Class-index targets: ``(1-ε)·nll + ε/C · Σ_c(-w_c log p_c)``, with ``mean`` dividing
    both terms by the sum of the target weights (ignored targets excluded).
    Probability targets (float, same shape as ``input``): ``-Σ_c w_c t_c log p_c`` with
    ``t`` smoothed to ``(1-ε)·t + ε/C``; ``mean`` divides by the number of samples.

    Args:
      input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
      target: ``(N,)``/``(N, d1, ...)`` ints, or probabilities shaped like ``input``.
      weight: per-class weights ``(C,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> logits, target = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0])
        >>> round(float(losses.cross_entropy(logits, target)), 4)  # torch's F.cross_entropy: 0.2413
        0.2413
        >>> round(float(losses.cross_entropy(logits, target, label_smoothing=0.1)), 4)
        0.3913
        >>> probs = jnp.array([[0.8, 0.2, 0.0]])  # class probabilities as the target
        >>> round(float(losses.cross_entropy(logits, probs)), 4)  # -(0.8 log p0 + 0.2 log p1)
        0.5413
    """
    warn_if_downcast(input, target, weight, where="cross_entropy")
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    cdim = _class_dim(input)
    n_classes = input.shape[cdim]
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},), got {tuple(weight.shape)}")
    logp = jax.nn.log_softmax(input, axis=cdim)
    wshape = [1] * input.ndim
    wshape[cdim] = n_classes
    w_b = None if weight is None else weight.reshape(wshape)

    if tuple(target.shape) == tuple(input.shape):  # class probabilities
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(f"Expected floating point type for target with class probabilities, got {target.dtype}")
        if ignore_index >= 0:
            raise ValueError(
                f"ignore_index is not supported for floating point target (got ignore_index={ignore_index}); "
                f"give ignored samples zero probability mass instead."
            )
        t = target if label_smoothing == 0 else target * (1 - label_smoothing) + label_smoothing / n_classes
        prod = logp * t if w_b is None else logp * t * w_b
        loss = -jnp.sum(prod, axis=cdim)
        if reduction == "mean":
            return jnp.sum(loss) / (input.size // n_classes)
        return _reduce(loss, reduction)

    if cdim == 0 and tuple(target.shape) == (1,):  # one unbatched sample, as _nll takes it
        target = target.reshape(())
    nll, w = _nll(logp, target, weight, ignore_index, reduction)
    if label_smoothing > 0:
        smooth = -jnp.sum(logp if w_b is None else logp * w_b, axis=cdim)
        smooth = jnp.where(target != ignore_index, smooth, jnp.zeros((), smooth.dtype))
        nll = (1 - label_smoothing) * nll + (label_smoothing / n_classes) * smooth
    if reduction == "mean":
        return jnp.sum(nll) / jnp.sum(w)
    return _reduce(nll, reduction)


def linear_cross_entropy(
    input: Array,
    linear_weight: Array,
    target: Array,
    *,
    linear_bias: Array | None = None,
    weight: Array | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: None = None,
) -> Array:
    """``torch.nn.functional.linear_cross_entropy``: :func:`cross_entropy` of the logits
    ``input @ linear_weight.T + linear_bias``, the class dimension second.

    With ``linear_weight`` ``(C, d1, ..., dK, in_features)`` (K ≥ 1) the logits are
    ``(N, C, d1, ..., dK)``: a K-dimensional loss from one feature vector per sample.
    ``target`` holds class probabilities when its shape is the logits' (then
    ``ignore_index`` must stay None), else class indices; ``ignore_index=None`` means
    torch's ``-100``.

    torch's ``options`` only picks how torch computes (chunking the classes to save
    memory), never the result; only its default, None, is taken here (XLA plans the
    memory of the one product).

    Args:
      input: ``(N, in_features)`` or ``(in_features,)`` (the latter only with K = 0).
      linear_weight: ``(C, in_features)`` or ``(C, d1, ..., dK, in_features)``.
      target: class indices ``(N,)`` / ``()`` / ``(N, d1, ..., dK)`` (ints), or
        probabilities ``(N, C, d1, ..., dK)`` / ``(C,)``.
      linear_bias: ``(C, d1, ..., dK)`` or None.
      weight: per-class weights ``(C,)``.

    Returns:
      the target's shape (without the class dimension) for ``reduction="none"``, else a
      scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x, w = jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # logits [1, 2, 0]
        >>> round(float(losses.linear_cross_entropy(x, w, jnp.array([1]))), 4)  # log(e + e² + 1) - 2
        0.4076
    """
    warn_if_downcast(input, linear_weight, linear_bias, weight, where="linear_cross_entropy")
    if options is not None:
        raise ValueError(
            "linear_cross_entropy: options (torch's LinearCrossEntropyOptions, a chunking strategy) is not "
            "taken; it changes only how torch computes, not the loss. Pass options=None."
        )
    input, linear_weight, target = jnp.asarray(input), jnp.asarray(linear_weight), jnp.asarray(target)
    if input.ndim not in (1, 2):
        raise ShapeError(
            f"linear_cross_entropy: expected input with dimensionality 1 or 2, got {input.ndim} "
            f"({tuple(input.shape)}); flatten extra dimensions into the batch, input.reshape(-1, in_features)."
        )
    if linear_weight.ndim < 2:
        raise ShapeError(
            f"linear_cross_entropy: expected linear_weight with dimensionality at least 2, got "
            f"{linear_weight.ndim} ({tuple(linear_weight.shape)}); it is (C, in_features) or "
            f"(C, d1, ..., dK, in_features)."
        )
    batch, in_features = input.shape[:-1], input.shape[-1]
    if in_features != linear_weight.shape[-1]:
        raise ShapeError(
            f"linear_cross_entropy: expected equal input and linear_weight last dimensions (in_features), got "
            f"{in_features} and {linear_weight.shape[-1]}, respectively."
        )
    n_classes, out_features = linear_weight.shape[0], tuple(linear_weight.shape[1:-1])
    if linear_bias is not None and tuple(jnp.shape(linear_bias)) != (n_classes, *out_features):
        raise ShapeError(
            f"linear_cross_entropy: expected linear_bias shape {(n_classes, *out_features)}, got "
            f"{tuple(jnp.shape(linear_bias))}."
        )
    if out_features and not batch:
        raise ShapeError(
            f"linear_cross_entropy: K-dimensional loss defined by linear_weight shape "
            f"{tuple(linear_weight.shape)} requires batched input, (N, {in_features}), got unbatched input "
            f"with shape {tuple(input.shape)}; use input[None] and a target with a batch dimension."
        )
    logits_shape = (*batch, n_classes, *out_features)
    if tuple(target.shape) == logits_shape and ignore_index is not None:
        raise ValueError("linear_cross_entropy: ignore_index cannot be specified when target contains probabilities.")
    flat_w = linear_weight.reshape(-1, in_features)
    logits = input @ flat_w.T
    if linear_bias is not None:
        logits = logits + jnp.reshape(linear_bias, -1)
    return cross_entropy(
        logits.reshape(logits_shape), target, weight=weight, reduction=reduction,
        ignore_index=-100 if ignore_index is None else ignore_index, label_smoothing=label_smoothing,
    )


def _margin_input(fn: str, input: Array) -> Array:
    """torch's margin losses take ``(C,)`` or ``(N, C)``; the unbatched form is one row."""
    if input.ndim not in (1, 2) or input.shape[-1] == 0:
        raise ShapeError(
            f"{fn}: expected a non-empty input (C,) or (N, C) of class scores, got {tuple(input.shape)}; "
            f"flatten extra dimensions into the batch (input.reshape(-1, C))."
        )
    return input if input.ndim == 2 else input[None]


def multi_margin_loss(
    input: Array,
    target: Array,
    p: int = 1,
    margin: float = 1.0,
    weight: Array | None = None,
    reduction: str = "mean",
) -> Array:
    """Multi-class hinge loss, ``torch.nn.functional.multi_margin_loss``.

    ``loss_n = Σ_{j≠y} w_y · max(0, margin - x[y] + x[j])^p / C`` with ``y = target[n]``;
    no gradient at an exact tie (``margin - x[y] + x[j] == 0``), as in torch.

    Args:
      input: scores ``(N, C)`` or ``(C,)``.
      target: class indices ``(N,)`` (``()`` or ``(1,)`` for an unbatched input).
      p: 1 or 2.
      weight: per-class weights ``(C,)``, applied by the target's class.

    Returns:
      ``(N,)`` for ``reduction="none"`` (target's shape for an unbatched input), else a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> round(float(losses.multi_margin_loss(x, jnp.array([3]))), 4)  # (0.3 + 0.4 + 0.6) / 4
        0.325
    """
    warn_if_downcast(input, weight, where="multi_margin_loss")
    _check_reduction(reduction)
    if p not in (1, 2):
        raise ValueError(f"only p == 1 and p == 2 supported, got p={p}")
    x = _margin_input("multi_margin_loss", input)
    n, c = x.shape
    out_shape = (n,) if input.ndim == 2 else jnp.shape(target)
    if jnp.shape(target) != (n,) and not (input.ndim == 1 and jnp.shape(target) in ((), (1,))):
        raise ShapeError(
            f"multi_margin_loss: target must hold one class index per sample, shape ({n},), for input "
            f"{tuple(input.shape)}; got {tuple(jnp.shape(target))}."
        )
    if weight is not None and jnp.shape(weight) != (c,):
        raise ShapeError(f"multi_margin_loss: weight must have shape ({c},) (one per class), got {tuple(jnp.shape(weight))}.")
    _check_class_indices("multi_margin_loss", target, c)
    y = jnp.reshape(target, (n, 1))
    z = margin - jnp.take_along_axis(x, y, axis=1) + x
    h = _hinge(z)
    if p == 2:
        h = h * h
    h = jnp.where(jnp.arange(c) != y, h, jnp.zeros((), h.dtype))
    if weight is not None:
        h = h * weight[y]
    loss = jnp.sum(h, axis=1) / c
    return _reduce(loss.reshape(out_shape), reduction)


def multilabel_margin_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """Multi-label hinge loss, ``torch.nn.functional.multilabel_margin_loss``.

    ``target[n]`` lists the sample's classes, ended by the first ``-1`` (the rest is
    ignored): ``loss_n = Σ_{j listed} Σ_{k not a target} max(0, 1 - (x[j] - x[k])) / C``;
    a class listed twice counts twice, as in torch; no gradient at an exact tie.

    Args:
      input: scores ``(N, C)`` or ``(C,)``.
      target: ints in ``[-1, C)`` with ``input``'s shape.

    Returns:
      ``(N,)`` for ``reduction="none"`` (a scalar for an unbatched input), else a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> x = jnp.array([[0.1, 0.2, 0.4, 0.8]])
        >>> y = jnp.array([[3, 0, -1, 1]])  # classes 3 and 0; the list ends at -1
        >>> round(float(losses.multilabel_margin_loss(x, y)), 4)  # torch's example: 0.85
        0.85
    """
    warn_if_downcast(input, where="multilabel_margin_loss")
    _check_reduction(reduction)
    x = _margin_input("multilabel_margin_loss", input)
    if jnp.shape(target) != jnp.shape(input):
        raise ShapeError(
            f"multilabel_margin_loss: target must have the input's shape {tuple(input.shape)} (class "
            f"indices padded with -1), got {tuple(jnp.shape(target))}."
        )
    c = x.shape[1]
    _check_class_indices("multilabel_margin_loss", target, c, (-1,), " (or -1 to end the list)")
    t = jnp.reshape(target, x.shape)
    listed = jnp.cumprod(t >= 0, axis=1).astype(bool)  # entries before the first -1
    t = jnp.where(listed, t, 0)
    is_target = jnp.any(listed[:, :, None] & (t[:, :, None] == jnp.arange(c)), axis=1)
    z = 1 - jnp.take_along_axis(x, t, axis=1)[:, :, None] + x[:, None, :]
    keep = listed[:, :, None] & ~is_target[:, None, :]
    loss = jnp.sum(jnp.where(keep, _hinge(z), jnp.zeros((), z.dtype)), axis=(1, 2)) / c
    return _reduce(loss if input.ndim == 2 else loss[0], reduction)

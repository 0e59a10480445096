"""Adaptive softmax (Grave et al., "Efficient softmax approximation for GPUs"), the
computation of ``torch.nn.AdaptiveLogSoftmaxWithLoss`` as pure functions of its weights.

The classes ``[0, n_classes)`` are split by ``cutoffs`` ``c_0 < c_1 < ... < c_{k-1}``:
the *head* scores the shortlist ``[0, c_0)`` and one logit per tail cluster; tail
cluster ``i`` (classes ``[c_i, c_{i+1})``, with ``c_k = n_classes``) scores its own
classes through a low-rank projection ``proj_i: (h_i, in_features)`` then
``out_i: (c_{i+1} - c_i, h_i)``. So for a class ``y`` in cluster ``i``::

    log p(y | x) = log_softmax(head(x))[c_0 + i] + log_softmax(out_i(proj_i(x)))[y - c_i]

and for ``y < c_0`` just ``log_softmax(head(x))[y]``. torch evaluates a cluster only on
the rows whose target falls in it (data-dependent shapes); under ``jit`` every cluster
is evaluated on every row and the unused rows masked out, which gives the same values
and gradients.

The weights are torch's ``state_dict`` tensors: ``head.weight`` ``(c_0 + k, in_features)``,
``head.bias`` (optional), and per cluster ``tail.{i}.0.weight`` (``proj_i``) and
``tail.{i}.1.weight`` (``out_i``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.errors import ShapeError
from funcnets.losses._base import _values

__all__ = ["adaptive_log_softmax_with_loss", "adaptive_log_prob", "adaptive_predict"]


class _ASMoutput(NamedTuple):
    """torch's ``_ASMoutput``: ``output`` the target log-probabilities ``(N,)`` (``()``
    unbatched), ``loss`` their negated mean (a scalar)."""

    output: Array
    loss: Array


def _check_cutoffs(cutoffs: Sequence[int], n_classes: int) -> tuple[int, ...]:
    """torch's constructor check: unique positive integers, increasing, below n_classes."""
    cutoffs = list(cutoffs)
    if len(cutoffs) == 0:
        raise ValueError("cutoffs should be a sequence of length larger than 0")
    if (
        cutoffs != sorted(cutoffs)
        or min(cutoffs) <= 0
        or max(cutoffs) > n_classes - 1
        or len(set(cutoffs)) != len(cutoffs)
        or any(int(c) != c for c in cutoffs)
    ):
        raise ValueError(
            "cutoffs should be a sequence of unique, positive integers sorted in an increasing order, where "
            f"each value is between 1 and n_classes-1 (n_classes={n_classes}), got {cutoffs}"
        )
    return tuple(int(c) for c in cutoffs)


def _weights(
    fn: str, head_weight: Array, tail_weights: Sequence[tuple[Array, Array]], cutoffs: Sequence[int],
    head_bias: Array | None,
) -> tuple[tuple[int, ...], int]:
    """The full cutoffs ``(c_0, ..., c_{k-1}, n_classes)`` and ``in_features``, after
    checking that the weights fit together (n_classes is the last cluster's end)."""
    k = len(tail_weights)
    if len(cutoffs) != k or k == 0:
        raise ValueError(
            f"{fn}: one (projection, output) weight pair per cutoff, got {len(cutoffs)} cutoffs and {k} pairs."
        )
    n_classes = int(cutoffs[-1]) + int(jnp.shape(tail_weights[-1][1])[0])
    cuts = (*_check_cutoffs(cutoffs, n_classes), n_classes)
    if jnp.ndim(head_weight) != 2 or jnp.shape(head_weight)[0] != cuts[0] + k:
        raise ShapeError(
            f"{fn}: head_weight must be (shortlist + clusters, in_features) = ({cuts[0] + k}, in_features), "
            f"got {tuple(jnp.shape(head_weight))}."
        )
    in_features = int(jnp.shape(head_weight)[1])
    if head_bias is not None and tuple(jnp.shape(head_bias)) != (cuts[0] + k,):
        raise ShapeError(f"{fn}: head_bias must be ({cuts[0] + k},), got {tuple(jnp.shape(head_bias))}.")
    for i, (proj, out) in enumerate(tail_weights):
        ps, os_ = tuple(jnp.shape(proj)), tuple(jnp.shape(out))
        if len(ps) != 2 or len(os_) != 2 or ps[1] != in_features or os_ != (cuts[i + 1] - cuts[i], ps[0]):
            raise ShapeError(
                f"{fn}: tail cluster {i} needs weights (h, {in_features}) and ({cuts[i + 1] - cuts[i]}, h) "
                f"(classes [{cuts[i]}, {cuts[i + 1]})), got {ps} and {os_}."
            )
    return cuts, in_features


def _head_logits(input: Array, head_weight: Array, head_bias: Array | None) -> Array:
    logits = input @ head_weight.T
    return logits if head_bias is None else logits + head_bias


def _head_log_softmax(input: Array, head_weight: Array, head_bias: Array | None) -> Array:
    return jax.nn.log_softmax(_head_logits(input, head_weight, head_bias), axis=-1)


def _cluster_log_softmax(input: Array, proj: Array, out: Array) -> Array:
    return jax.nn.log_softmax((input @ proj.T) @ out.T, axis=-1)


def _check_input_2d(fn: str, input: Array, in_features: int) -> None:
    if input.ndim != 2 or input.shape[1] != in_features:
        raise ShapeError(
            f"{fn}: expected input (N, {in_features}), got {tuple(input.shape)}"
            + ("; add the batch dimension, input[None]." if input.ndim == 1 else ".")
        )


def adaptive_log_softmax_with_loss(
    input: Array,
    target: Array,
    head_weight: Array,
    tail_weights: Sequence[tuple[Array, Array]],
    cutoffs: Sequence[int],
    head_bias: Array | None = None,
) -> _ASMoutput:
    """``torch.nn.AdaptiveLogSoftmaxWithLoss.forward`` given its weights.

    Args:
      input: ``(N, in_features)``, or ``(in_features,)`` with a scalar target.
      target: class indices ``(N,)`` (``()`` unbatched), ints in ``[0, n_classes)``.
      head_weight: ``(cutoffs[0] + len(cutoffs), in_features)``.
      tail_weights: per cluster ``(proj (h_i, in_features), out (c_{i+1} - c_i, h_i))``.
      cutoffs: the constructor's cutoffs (without ``n_classes``, which is the last
        cutoff plus the last cluster's size).
      head_bias: ``(cutoffs[0] + len(cutoffs),)`` or None.

    Returns:
      ``_ASMoutput(output, loss)``: ``output`` ``(N,)`` (``()`` unbatched) the
      log-probability of each target, ``loss`` the mean of ``-output``.

    Raises:
      ShapeError: input and target shapes that do not go together (torch's messages).
      ValueError: a target outside ``[0, n_classes)``, when the values can be seen (not
        under ``jit``, where such a row's output is NaN instead).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> head = jnp.zeros((3, 4))                        # shortlist {0, 1} + one cluster
        >>> tail = [(jnp.zeros((1, 4)), jnp.zeros((2, 1)))]  # classes {2, 3}
        >>> out, loss = losses.adaptive_log_softmax_with_loss(jnp.ones((2, 4)), jnp.array([0, 3]), head, tail, [2])
        >>> [round(v, 4) for v in out.tolist()]  # log(1/3), log(1/3 · 1/2)
        [-1.0986, -1.7918]
    """
    fn = "AdaptiveLogSoftmaxWithLoss"
    warn_if_downcast(input, head_weight, head_bias, where="adaptive_log_softmax_with_loss")
    input, target = jnp.asarray(input), jnp.asarray(target)
    cuts, in_features = _weights(fn, head_weight, tail_weights, cutoffs, head_bias)
    if target.ndim == 1:
        if input.ndim == 0 or input.shape[0] != target.shape[0]:
            raise ShapeError(
                f"{fn}: Input and target should have the same size in the batch dimension; got input "
                f"{tuple(input.shape)} and target {tuple(target.shape)}."
            )
        if input.ndim != 2:
            raise ShapeError(
                f"{fn}: 1D target tensor expects 2D input tensors, but found inputs with size {tuple(input.shape)}."
            )
    elif target.ndim == 0:
        if input.ndim != 1:
            raise ShapeError(
                f"{fn}: 0D target tensor expects 1D input tensors, but found inputs with size {tuple(input.shape)}."
            )
    else:
        raise ShapeError(
            f"{fn}: 0D or 1D target tensor expected, multi-target not supported; got target {tuple(target.shape)}. "
            f"Flatten the positions into the batch: input.reshape(-1, {in_features}), target.reshape(-1)."
        )
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: target must hold integer class indices, got dtype {target.dtype}; use target.astype(int)."
        )
    batched = target.ndim == 1
    x = input if batched else input[None]
    t = target if batched else target[None]
    if x.shape[1] != in_features:
        raise ShapeError(f"{fn}: expected input (N, {in_features}) (or ({in_features},)), got {tuple(input.shape)}.")
    n_classes = cuts[-1]
    vals = _values(t)
    if vals is not None and t.size and (vals[0].min() < 0 or vals[0].max() >= n_classes):
        raise ValueError(
            f"{fn}: Target values should be in [0, {n_classes - 1}], but values in range "
            f"[{int(vals[0].min())}, {int(vals[0].max())}] were found."
        )

    output, loss = _forward(x, t, head_weight, head_bias, list(tail_weights), cuts)
    return _ASMoutput(output if batched else output[0], loss)


# The computations are compiled whole (cutoffs static): run eagerly, op by op, the
# cluster loop is some sixty small XLA programs, each compiled on first use at every new shape.
@functools.partial(jax.jit, static_argnames="cuts")
def _forward(x, t, head_weight, head_bias, tail_weights, cuts):
    shortlist, n_classes = cuts[0], cuts[-1]
    head_logprob = _head_log_softmax(x, head_weight, head_bias)
    # the head's column for each row: the class itself in the shortlist, else its cluster's logit
    head_col = jnp.where(t < shortlist, t, 0)
    zero = jnp.zeros((), head_logprob.dtype)
    tail_part = jnp.zeros(t.shape, head_logprob.dtype)
    for i, (proj, out) in enumerate(tail_weights):
        lo, hi = cuts[i], cuts[i + 1]
        in_cluster = (t >= lo) & (t < hi)
        head_col = jnp.where(in_cluster, shortlist + i, head_col)
        cluster_logprob = _cluster_log_softmax(x, proj, out)
        rel = jnp.where(in_cluster, t - lo, 0)
        picked = jnp.take_along_axis(cluster_logprob, rel[:, None], axis=1)[:, 0]
        tail_part = tail_part + jnp.where(in_cluster, picked, zero)
    output = jnp.take_along_axis(head_logprob, head_col[:, None], axis=1)[:, 0] + tail_part
    # under jit a target out of range cannot raise: its row (and so the loss) is NaN, not a silent number
    valid = (t >= 0) & (t < n_classes)
    output = jnp.where(valid, output, jnp.asarray(jnp.nan, output.dtype))
    return output, jnp.mean(-output)


def adaptive_log_prob(
    input: Array,
    head_weight: Array,
    tail_weights: Sequence[tuple[Array, Array]],
    cutoffs: Sequence[int],
    head_bias: Array | None = None,
) -> Array:
    """``AdaptiveLogSoftmaxWithLoss.log_prob``: the log-probabilities of all classes,
    ``(N, in_features) -> (N, n_classes)`` (arguments as
    :func:`adaptive_log_softmax_with_loss`; torch takes only a batch here too).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> head, tail = jnp.zeros((3, 4)), [(jnp.zeros((1, 4)), jnp.zeros((2, 1)))]
        >>> [round(v, 4) for v in jnp.exp(losses.adaptive_log_prob(jnp.ones((1, 4)), head, tail, [2]))[0].tolist()]
        [0.3333, 0.3333, 0.1667, 0.1667]
    """
    fn = "AdaptiveLogSoftmaxWithLoss.log_prob"
    warn_if_downcast(input, head_weight, head_bias, where="adaptive_log_prob")
    input = jnp.asarray(input)
    cuts, in_features = _weights(fn, head_weight, tail_weights, cutoffs, head_bias)
    _check_input_2d(fn, input, in_features)
    return _log_prob(input, head_weight, head_bias, list(tail_weights), cuts)


@functools.partial(jax.jit, static_argnames="cuts")
def _log_prob(input, head_weight, head_bias, tail_weights, cuts):
    return _full_log_prob(input, _head_log_softmax(input, head_weight, head_bias), tail_weights, cuts)


def _full_log_prob(input: Array, head_logprob: Array, tail_weights, cuts: tuple[int, ...]) -> Array:
    shortlist = cuts[0]
    parts = [head_logprob[:, :shortlist]]
    for i, (proj, out) in enumerate(tail_weights):
        parts.append(_cluster_log_softmax(input, proj, out) + head_logprob[:, shortlist + i, None])
    return jnp.concatenate(parts, axis=1)


def adaptive_predict(
    input: Array,
    head_weight: Array,
    tail_weights: Sequence[tuple[Array, Array]],
    cutoffs: Sequence[int],
    head_bias: Array | None = None,
) -> Array:
    """``AdaptiveLogSoftmaxWithLoss.predict``: the most probable class of each row,
    ``(N, in_features) -> (N,)``.

    As torch: the head's argmax where it is a shortlist class (no tail class can then be
    more probable), else the argmax of the full :func:`adaptive_log_prob`; so ties break
    as torch's do.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> head = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # shortlist {0, 1} + one cluster
        >>> tail = [(jnp.ones((1, 2)), jnp.array([[0.0], [1.0]]))]  # classes {2, 3}
        >>> losses.adaptive_predict(jnp.array([[3.0, 0.0], [0.0, 3.0]]), head, tail, [2]).tolist()
        [1, 3]
    """
    fn = "AdaptiveLogSoftmaxWithLoss.predict"
    warn_if_downcast(input, head_weight, head_bias, where="adaptive_predict")
    input = jnp.asarray(input)
    cuts, in_features = _weights(fn, head_weight, tail_weights, cutoffs, head_bias)
    _check_input_2d(fn, input, in_features)
    return _predict(input, head_weight, head_bias, list(tail_weights), cuts)


@functools.partial(jax.jit, static_argnames="cuts")
def _predict(input, head_weight, head_bias, tail_weights, cuts):
    head_logits = _head_logits(input, head_weight, head_bias)
    head_best = jnp.argmax(head_logits, axis=1)  # of the logits, as torch: log_softmax's rounding could tie them
    head_logprob = jax.nn.log_softmax(head_logits, axis=1)
    full_best = jnp.argmax(_full_log_prob(input, head_logprob, tail_weights, cuts), axis=1)
    return jnp.where(head_best < cuts[0], head_best, full_best)


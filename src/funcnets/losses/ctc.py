"""Connectionist Temporal Classification, ``torch.nn.functional.ctc_loss``: the forward
algorithm in log space as a ``lax.scan`` over time; the gradient is JAX's autodiff of it.

Gradients: funcnets returns the true derivative with respect to ``log_probs``
(minus the posterior occupancy of each label). torch's kernel returns it plus
``exp(log_probs)``, a term that assumes ``log_probs`` came from ``log_softmax`` and
cancels in its backward; through ``log_softmax`` (how CTC is used) the two agree.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnets._typing import Array
from funcnets.config import warn_if_downcast
from funcnets.errors import ShapeError
from funcnets.losses._base import _check_reduction, _values

__all__ = ["ctc_loss"]


def _logsumexp(*xs: Array) -> Array:
    """``log Σ exp(xs)`` elementwise, ``-inf`` when every term is ``-inf``, with finite
    (zero) gradients then too, so that an impossible path adds nothing to the gradient
    (where ``jax.nn.logsumexp`` would give NaN)."""
    m = functools.reduce(jnp.maximum, xs)
    m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
    s = sum(jnp.exp(x - m) for x in xs)
    pos = s > 0
    return jnp.where(pos, m + jnp.log(jnp.where(pos, s, 1)), -jnp.inf)


@jax.custom_jvp
def _nan_grad_where_inf(nll: Array, frames: Array) -> Array:
    """``nll``, whose gradient is NaN over the sample's frames where ``nll`` is infinite:
    torch's gradient of an impossible alignment (use ``zero_infinity`` to avoid it)."""
    return nll


@_nan_grad_where_inf.defjvp
def _nan_grad_jvp(primals, tangents):
    nll, _ = primals
    d_nll, d_frames = tangents
    poison = jnp.where(jnp.isinf(nll), jnp.nan, 0).astype(nll.dtype)
    return nll, d_nll + poison * d_frames


def _as_int_array(fn: str, name: str, x) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{fn}: {name} must be integers, got dtype {x.dtype}; convert with .astype(int).")
    return x


def ctc_loss(
    log_probs: Array,
    targets: Array,
    input_lengths: Array | Sequence[int] | int,
    target_lengths: Array | Sequence[int] | int,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Array:
    """CTC loss, ``torch.nn.functional.ctc_loss``: ``-log Σ_paths p(path)`` over every
    alignment of ``targets[n]`` (blanks between and around labels, repeats merged) to
    the first ``input_lengths[n]`` frames.

    Forward algorithm over the extended label ``l' = (blank, l1, blank, l2, …, blank)``:
    ``α_t(s) = lp_t(l'_s) + logsumexp(α_{t-1}(s), α_{t-1}(s-1), α_{t-1}(s-2))``, the last
    term only where ``l'_s`` is a label different from ``l'_{s-2}``; the loss is
    ``-logsumexp(α_{T-1}(2L), α_{T-1}(2L-1))``.

    Args:
      log_probs: ``(T, N, C)`` log-probabilities (``log_softmax`` over C), or ``(T, C)``
        unbatched.
      targets: label indices in ``[0, C)``: padded ``(N, S)``, or all targets
        concatenated, ``(sum(target_lengths),)`` (unbatched: ``(target_length,)``).
      input_lengths: ``(N,)`` frames used per sample, each ``<= T``.
      target_lengths: ``(N,)`` labels per sample, each ``<= S``.
      blank: the blank's class index.
      reduction: ``"mean"`` divides each loss by its target length (at least 1) and
        averages over the batch; ``"sum"``; ``"none"`` gives ``(N,)``.
      zero_infinity: an impossible alignment (input too short) gives loss 0 and zero
        gradient instead of ``inf`` (and torch's NaN gradient).

    Raises:
      ValueError: lengths or labels out of range (checked where their values are known,
        outside ``jit``), a blank outside ``[0, C)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import losses
        >>> probs = jnp.array([[[0.7, 0.2, 0.1]], [[0.1, 0.8, 0.1]], [[0.6, 0.2, 0.2]]])  # (T=3, N=1, C=3)
        >>> log_probs = jnp.log(probs)
        >>> round(float(losses.ctc_loss(log_probs, jnp.array([[1]]), [3], [1])), 4)  # label 1, blank 0
        0.5075
    """
    warn_if_downcast(log_probs, where="ctc_loss")
    fn = "ctc_loss"
    _check_reduction(reduction)
    log_probs = jnp.asarray(log_probs)
    if log_probs.ndim not in (2, 3):
        raise ShapeError(
            f"{fn}: log_probs must be (T, N, C) (or (T, C) unbatched), got {tuple(log_probs.shape)}; "
            f"a batch-first (N, T, C) tensor needs .transpose(1, 0, 2)."
        )
    targets = _as_int_array(fn, "targets", targets)
    input_lengths = _as_int_array(fn, "input_lengths", input_lengths)
    target_lengths = _as_int_array(fn, "target_lengths", target_lengths)
    unbatched = log_probs.ndim == 2
    if unbatched:
        log_probs = log_probs[:, None]
        if targets.ndim != 1:
            raise ShapeError(f"{fn}: unbatched log_probs (T, C) take targets (S,), got {tuple(targets.shape)}.")
        # torch reads them as the concatenated form of one sample: S == target_length
        input_lengths, target_lengths = input_lengths.reshape(1), target_lengths.reshape(1)
    t_max, n, c = log_probs.shape
    if not 0 <= blank < c:
        raise ValueError(f"{fn}: blank must be in label range [0, {c}), got blank={blank}.")
    for name, v in (("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if v.shape != (n,):
            raise ShapeError(f"{fn}: {name} must have shape ({n},) (one per sample), got {tuple(v.shape)}.")

    concatenated = targets.ndim == 1
    if concatenated:
        width = targets.shape[0]
        known = _values(target_lengths)
        if known is not None:
            width = int(known[0].max(initial=0))
    elif targets.ndim == 2 and targets.shape[0] == n:
        width = targets.shape[1]
    else:
        raise ShapeError(
            f"{fn}: targets must be padded (N, S) = ({n}, S) or concatenated (sum(target_lengths),), "
            f"got {tuple(targets.shape)}."
        )
    _check_ctc_values(fn, targets, input_lengths, target_lengths, t_max, width, c, concatenated)
    if concatenated:
        offsets = jnp.cumsum(target_lengths) - target_lengths
        idx = offsets[:, None] + jnp.arange(width)
        if targets.shape[0]:
            targets = targets[jnp.clip(idx, 0, targets.shape[0] - 1)]
        else:  # every target empty
            targets = jnp.zeros((n, 0), targets.dtype)

    nll = _ctc_nll(log_probs, targets, input_lengths, target_lengths, blank)
    if zero_infinity:
        nll = jnp.where(jnp.isinf(nll), jnp.zeros((), nll.dtype), nll)
    else:
        used = (jnp.arange(t_max)[:, None] < input_lengths)[:, :, None]
        nll = _nan_grad_where_inf(nll, jnp.sum(jnp.where(used, log_probs, 0), axis=(0, 2)))
    if reduction == "mean":
        return jnp.mean(nll / jnp.maximum(target_lengths, 1).astype(nll.dtype))
    if reduction == "sum":
        return jnp.sum(nll)
    return nll[0] if unbatched else nll


def _check_ctc_values(fn, targets, input_lengths, target_lengths, t_max, width, c, concatenated) -> None:
    """torch's argument checks, where the values can be seen (not under jit)."""
    vals = _values(targets, input_lengths, target_lengths)
    if vals is None:
        return
    targets, input_lengths, target_lengths = vals
    for name, v, high, what in (
        ("input_lengths", input_lengths, t_max, "the number of frames T"),
        ("target_lengths", target_lengths, None if concatenated else width, "the padded target width S"),
    ):
        if v.size and v.min() < 0:
            raise ValueError(f"{fn}: Expected {name} to have value at least 0, but got value {v.min()}.")
        if high is not None and v.size and v.max() > high:
            raise ValueError(
                f"{fn}: Expected {name} to have value at most {high} ({what}), but got value {v.max()}."
            )
    if concatenated:
        total = int(target_lengths.sum())
        if total != targets.shape[0]:
            raise ValueError(
                f"{fn}: concatenated targets hold {targets.shape[0]} labels but target_lengths sum to {total}; "
                f"pass every sample's labels back to back, or padded (N, S) targets."
            )
        used = targets
    else:
        used = targets[np.arange(width) < target_lengths[:, None]]
    if used.size and not np.all((used >= 0) & (used < c)):
        bad = int(used[(used < 0) | (used >= c)][0])
        raise ValueError(f"{fn}: target label {bad} is out of range: labels must be in [0, {c}) (C = {c} classes).")


@jax.jit  # one compiled scan per shape, also when called eagerly
def _ctc_nll(log_probs: Array, targets: Array, input_lengths: Array, target_lengths: Array, blank: int) -> Array:
    """``-log p(targets | log_probs)`` per sample, ``(N,)``; ``targets: (N, S)`` padded."""
    t_max, n, _ = log_probs.shape
    width = targets.shape[1]
    ext_len = 2 * width + 1
    s = jnp.arange(ext_len)
    # the extended label l': blanks at even positions, the targets at odd ones; positions
    # past each sample's 2L+1 never reach its result (α(s) depends only on s' <= s) and
    # read the blank so that padding of any value is harmless
    label = targets[:, jnp.clip((s - 1) // 2, 0, max(width - 1, 0))] if width else jnp.zeros((n, ext_len), int)
    ext = jnp.where((s % 2 == 1) & (s < 2 * target_lengths[:, None] + 1), label, blank)
    prev2 = jnp.pad(ext, ((0, 0), (2, 0)), constant_values=-1)[:, :ext_len]
    can_skip = (s % 2 == 1) & (ext != prev2)
    lp_ext = jnp.take_along_axis(log_probs, jnp.broadcast_to(ext[None], (t_max, n, ext_len)), axis=2)

    neg_inf = jnp.asarray(-jnp.inf, log_probs.dtype)

    def shift(a, k):
        return jnp.pad(a, ((0, 0), (k, 0)), constant_values=-jnp.inf)[:, :ext_len]

    def step(alpha, frame):
        lp_t, t = frame
        skip = jnp.where(can_skip, shift(alpha, 2), neg_inf)
        new = lp_t + _logsumexp(alpha, shift(alpha, 1), skip)
        return jnp.where((t < input_lengths)[:, None], new, alpha), None

    # a virtual state before the first frame, in front of l'_0: the first step then
    # starts paths at l'_0 and l'_1, and a zero-length input keeps it (loss 0 iff L = 0)
    alpha0 = jnp.broadcast_to(jnp.where(s == 0, 0, neg_inf), (n, ext_len)).astype(log_probs.dtype)
    alpha, _ = lax.scan(step, alpha0, (lp_ext, jnp.arange(t_max)))
    end = 2 * target_lengths
    last = jnp.take_along_axis(alpha, end[:, None], axis=1)[:, 0]
    before = jnp.take_along_axis(alpha, jnp.maximum(end - 1, 0)[:, None], axis=1)[:, 0]
    before = jnp.where(target_lengths > 0, before, neg_inf)
    return -_logsumexp(last, before)

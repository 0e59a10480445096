"""``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``: plain functions over a
gradient pytree, and optax transformations for an optimizer chain.

torch's semantics, exactly: the total norm is the ``norm_type``-norm of the per-tensor
norms (``inf``: the largest ``|g|``; ``0``: torch's count of non-zeros, applied twice),
and every gradient is scaled by ``min(max_norm / (total_norm + 1e-6), 1)``; value
clipping clamps each element to ``[-clip_value, clip_value]``::

    opt = optax.chain(clip_grad_norm(1.0), optim.sgd(0.1, momentum=0.9))

``error_if_nonfinite``: torch raises inside ``clip_grad_norm_``, which a jitted step
cannot. The transformation computes the step as torch would without the flag, and records
in its state the first optimizer step whose gradient norm was not finite and which
gradients were; :func:`check_finite` raises from that on the host, with the step and
the parameter names (call it after a step or an epoch; the train step's metrics report
``grad_norm`` from the same state).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets._typing import Array

__all__ = [
    "get_total_norm",
    "clip_grads_with_norm_",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grad_norm",
    "clip_grad_value",
    "ClipGradNormState",
    "check_finite",
    "grad_norm_of",
]


def _vector_norm(x: Array, p: float) -> Array:
    """``torch.linalg.vector_norm(x, p)`` over all elements."""
    a = jnp.abs(x)
    if p == math.inf:
        return jnp.max(a, initial=0.0).astype(x.dtype)
    if p == -math.inf:
        return jnp.min(a, initial=math.inf).astype(x.dtype)
    if p == 0:
        return jnp.sum(x != 0).astype(x.dtype)
    if p == 1:
        return jnp.sum(a)
    if p == 2:
        return jnp.sqrt(jnp.sum(a * a))
    return jnp.sum(a**p) ** (1.0 / p)


def _check_norm_type(norm_type: float) -> float:
    p = float(norm_type)
    if math.isnan(p):
        raise ValueError(f"norm_type must be a number or inf, got {norm_type!r}")
    return p


def _leaf_norms(tree: Any, p: float) -> Any:
    return jax.tree_util.tree_map(lambda g: _vector_norm(g, p), tree)


def _total(norms: Any, p: float) -> Array:
    """The norm of the per-tensor norms, as if they were one vector (torch's stack)."""
    leaves = jax.tree_util.tree_leaves(norms)
    if not leaves:
        return jnp.zeros((), jnp.result_type(float))
    return _vector_norm(jnp.stack(leaves), p)


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Array:
    """``torch.nn.utils.get_total_norm``: the norm of the per-tensor norms of a pytree.

    Args:
      tensors: a pytree of arrays (e.g. gradients keyed like params).
      norm_type: ``p`` of the p-norm; ``float('inf')`` for the max norm.
      error_if_nonfinite: raise (outside ``jit``) if the total norm is nan or inf.
    Returns:
      a scalar in the tensors' dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
        >>> float(optim.get_total_norm(grads)), float(optim.get_total_norm(grads, norm_type=float("inf")))
        (5.0, 4.0)
    """
    p = _check_norm_type(norm_type)
    norms = _leaf_norms(tensors, p)
    total = _total(norms, p)
    if error_if_nonfinite:
        _raise_now(total, norms, p)
    return total


def _raise_now(total: Array, norms: Any, p: float) -> None:
    try:
        finite = bool(jnp.isfinite(total))
    except jax.errors.ConcretizationTypeError:
        raise ValueError(
            "error_if_nonfinite=True cannot raise inside jax.jit (the norm is not known while tracing). "
            "Use the optax transformation clip_grad_norm(..., error_if_nonfinite=True) in the optimizer "
            "and funcnets.optim.check_finite(opt_state) after the step."
        ) from None
    if not finite:
        bad = [n for n, v in _named(norms) if not bool(jnp.isfinite(v))]
        raise RuntimeError(_message(p, None, bad))


def _named(tree: Any) -> list[tuple[str, Any]]:
    """``(dotted torch name, leaf)`` for a params-like pytree."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        out.append((".".join(parts), leaf))
    return out


def _message(p: float | None, step: int | None, bad: list[str]) -> str:
    order = f" of order {p}" if p is not None else ""
    where = f" at optimizer step {step} (counting from 0)" if step is not None else ""
    which = (
        f"; non-finite gradients: {', '.join(bad)}"
        if bad
        else "; every gradient is finite on its own, their total norm overflowed"
    )
    return (
        f"The total norm{order} for gradients from `parameters` is non-finite{where}, so it cannot "
        f"be clipped{which}. To disable this error and scale the gradients by the non-finite norm anyway, "
        "set `error_if_nonfinite=False`"
    )


def clip_grads_with_norm_(grads: Any, max_norm: float, total_norm: Array) -> Any:
    """``torch.nn.utils.clip_grads_with_norm_``: ``g · min(max_norm / (total_norm + 1e-6), 1)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
        >>> clipped = optim.clip_grads_with_norm_(grads, 1.0, optim.get_total_norm(grads))
        >>> round(float(clipped["a"][0]), 4), round(float(clipped["b"][0]), 4)  # 3/5, 4/5
        (0.6, 0.8)
    """
    coef = jnp.minimum(max_norm / (total_norm + 1e-6), 1.0)
    return jax.tree_util.tree_map(lambda g: g * coef.astype(g.dtype), grads)


def clip_grad_norm_(
    grads: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> tuple[Any, Array]:
    """``torch.nn.utils.clip_grad_norm_`` on a gradient pytree: ``(clipped, total_norm)``
    (torch modifies ``.grad`` in place and returns the total norm; here the clipped
    gradients are returned). ``error_if_nonfinite`` raises outside ``jit`` only; under
    ``jit`` use :func:`clip_grad_norm` and :func:`check_finite`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
        >>> clipped, total = optim.clip_grad_norm_(grads, max_norm=1.0)  # torch returns total, clips .grad
        >>> float(total), round(float(clipped["a"][0]), 4), round(float(clipped["b"][0]), 4)
        (5.0, 0.6, 0.8)
    """
    _check_max_norm(max_norm)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    return clip_grads_with_norm_(grads, max_norm, total), total


def clip_grad_value_(grads: Any, clip_value: float) -> Any:
    """``torch.nn.utils.clip_grad_value_``: every element clamped to
    ``[-clip_value, clip_value]`` (NaN stays NaN, as in torch).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> optim.clip_grad_value_({"w": jnp.array([-3.0, 0.5, 2.0])}, clip_value=1.0)["w"].tolist()
        [-1.0, 0.5, 1.0]
    """
    _check_clip_value(clip_value)
    v = float(clip_value)
    return jax.tree_util.tree_map(lambda g: jnp.minimum(jnp.maximum(g, -v), v), grads)


def _check_max_norm(max_norm: float) -> None:
    if not isinstance(max_norm, (int, float)) or not max_norm >= 0:
        raise ValueError(f"max_norm must be a number >= 0, got {max_norm!r} (a negative one would flip the gradients)")


def _check_clip_value(clip_value: float) -> None:
    if not isinstance(clip_value, (int, float)) or not clip_value >= 0:
        raise ValueError(f"clip_value must be a number >= 0, got {clip_value!r}")


class ClipGradNormState(NamedTuple):
    """State of :func:`clip_grad_norm`."""

    total_norm: Array  # scalar: the norm of the latest gradients, before clipping
    count: Array  # int32: optimizer steps seen
    nonfinite_step: Array | None  # int32: first step with a non-finite norm, -1 if none (error_if_nonfinite)
    nonfinite: Any  # bool per gradient at that step, like params (error_if_nonfinite), else None


def clip_grad_norm(
    max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_`` as an optax transformation (put it first in
    the chain, where torch calls it: between ``backward()`` and ``optimizer.step()``).

    ``state.total_norm`` is the norm before clipping (torch's return value). With
    ``error_if_nonfinite`` the state also keeps the first step whose norm was not finite
    and which gradients were; :func:`check_finite` raises from it.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> opt = optax.chain(optim.clip_grad_norm(1.0), optim.sgd(lr=0.1))
        >>> params = {"a": jnp.array([0.0]), "b": jnp.array([0.0])}
        >>> opt_state = opt.init(params)
        >>> updates, opt_state = opt.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, opt_state, params)
        >>> round(float(updates["a"][0]), 4), round(float(updates["b"][0]), 4)  # -0.1·(0.6, 0.8)
        (-0.06, -0.08)
        >>> float(opt_state[0].total_norm)  # the norm before clipping (torch's return value)
        5.0
    """
    _check_max_norm(max_norm)
    p = _check_norm_type(norm_type)

    def init_fn(params):
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(params)) if jax.tree_util.tree_leaves(params) else float
        zero = jnp.zeros([], jnp.int32)
        flags = jax.tree_util.tree_map(lambda _: jnp.zeros([], bool), params) if error_if_nonfinite else None
        return ClipGradNormState(
            jnp.zeros([], dtype), zero, jnp.full([], -1, jnp.int32) if error_if_nonfinite else None, flags
        )

    def update_fn(updates, state, params=None):
        norms = _leaf_norms(updates, p)
        total = _total(norms, p).astype(state.total_norm.dtype)
        clipped = clip_grads_with_norm_(updates, max_norm, total)
        first, flags = state.nonfinite_step, state.nonfinite
        if error_if_nonfinite:
            new_bad = (first < 0) & ~jnp.isfinite(total)
            first = jnp.where(new_bad, state.count, first)
            flags = jax.tree_util.tree_map(lambda old, n: jnp.where(new_bad, ~jnp.isfinite(n), old), flags, norms)
        return clipped, ClipGradNormState(total, optax.safe_int32_increment(state.count), first, flags)

    return optax.GradientTransformation(init_fn, update_fn)


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_value_`` as an optax transformation.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> opt = optax.chain(optim.clip_grad_value(1.0), optim.sgd(lr=0.1))
        >>> params = {"w": jnp.zeros(2)}
        >>> updates, _ = opt.update({"w": jnp.array([-3.0, 0.5])}, opt.init(params), params)
        >>> [round(u, 4) for u in updates["w"].tolist()]
        [0.1, -0.05]
    """
    _check_clip_value(clip_value)
    return optax.stateless(lambda updates, params=None: clip_grad_value_(updates, clip_value))


def _is_clip_state(x) -> bool:
    return isinstance(x, ClipGradNormState)


def _clip_states(opt_state: Any) -> list[ClipGradNormState]:
    return [x for x in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_clip_state) if _is_clip_state(x)]


def grad_norm_of(opt_state: Any) -> Array | None:
    """The total gradient norm :func:`clip_grad_norm` recorded in ``opt_state`` (the
    latest step's, before clipping), or None if the optimizer does not clip by norm.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> opt = optax.chain(optim.clip_grad_norm(10.0), optim.sgd(lr=0.1))
        >>> params = {"w": jnp.zeros(2)}
        >>> _, opt_state = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init(params), params)
        >>> float(optim.clip_grad.grad_norm_of(opt_state))
        5.0
    """
    states = _clip_states(opt_state)
    return states[0].total_norm if states else None


def check_finite(opt_state: Any, norm_type: float | None = None) -> None:
    """Raise ``RuntimeError`` (on the host) if a :func:`clip_grad_norm` built with
    ``error_if_nonfinite=True`` saw a non-finite gradient norm: the message names the
    optimizer step and the parameters whose gradients were not finite. Does nothing
    otherwise (also when no such transformation is in the optimizer).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> opt = optax.chain(optim.clip_grad_norm(1.0, error_if_nonfinite=True), optim.sgd(lr=0.1))
        >>> params = {"w": jnp.zeros(2)}
        >>> _, opt_state = opt.update({"w": jnp.array([jnp.inf, 1.0])}, opt.init(params), params)
        >>> optim.check_finite(opt_state)
        Traceback (most recent call last):
            ...
        RuntimeError: The total norm for gradients from `parameters` is non-finite at optimizer step 0 (counting from 0), so it cannot be clipped; non-finite gradients: w. ...
    """
    for s in _clip_states(opt_state):
        if s.nonfinite_step is None:
            continue
        step = int(s.nonfinite_step)
        if step >= 0:
            bad = [n for n, flag in _named(s.nonfinite) if bool(flag)]
            raise RuntimeError(_message(norm_type, step, bad))

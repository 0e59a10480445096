"""Gradient accumulation: one optimizer step from ``k`` micro-batches.

torch's loop::

    for i, (x, y) in enumerate(loader):              # micro-batches of N/k
        (criterion(model(x), y) / k).backward()       # .grad sums g_i / k
        if (i + 1) % k == 0:
            optimizer.step(); optimizer.zero_grad()

With a mean-reduced loss and equal micro-batches, the accumulated gradient ``Σ g_i / k``
is the gradient of the whole batch of ``N``, so the update equals the large-batch one.
BatchNorm is the exception, as in torch: each micro-batch's forward normalises with its
own statistics and updates the running statistics, ``k`` updates per optimizer step.

Here the train step does it (``make_train_step(..., accumulate_steps=k)``): it takes the
whole batch, splits it into ``k`` consecutive micro-batches (torch's ``x.chunk(k)``), and
runs them through ``lax.scan``, so only one micro-batch's activations are alive at a
time. ``optax.MultiSteps`` is the alternative when micro-batches arrive one call at a
time (its accumulator is float32 unless told otherwise).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from funcnets._typing import Array, Params, PRNGKey, State

__all__ = ["split_microbatches", "accumulate_gradients"]


def split_microbatches(batch: Any, k: int) -> Any:
    """``batch`` (every leaf ``(N, ...)``) as ``k`` consecutive micro-batches: every leaf
    ``(k, N/k, ...)`` (torch's ``x.chunk(k)``, stacked).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import split_microbatches
        >>> x, y = jnp.zeros((8, 3)), jnp.arange(8)
        >>> mx, my = split_microbatches((x, y), 4)  # torch's x.chunk(4), stacked
        >>> mx.shape, my[1].tolist()
        ((4, 2, 3), [2, 3])
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"accumulate_steps must be an integer >= 1, got {k!r}")

    def split(x):
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] % k:
            got = "a scalar" if x.ndim == 0 else f"a batch of {x.shape[0]} (leaf shape {tuple(x.shape)})"
            raise ValueError(
                f"accumulate_steps={k} splits the batch into {k} equal micro-batches, but got {got}: "
                f"use a batch size divisible by {k}"
            )
        return x.reshape((k, x.shape[0] // k) + x.shape[1:])

    return jax.tree_util.tree_map(split, batch)


def accumulate_gradients(
    value_and_grad_fn: Callable[[Params, State, Any, PRNGKey], tuple[tuple[Array, tuple[State, dict]], Params]],
    params: Params,
    model_state: State,
    batch: Any,
    key: PRNGKey,
    k: int,
) -> tuple[Params, State, dict]:
    """The mean of the gradients of ``k`` micro-batches, computed one after the other.

    Args:
      value_and_grad_fn: ``(params, model_state, micro_batch, key) -> ((loss, (model_state,
        metrics)), grads)`` (``jax.value_and_grad(loss_fn, has_aux=True)``).
      batch: every leaf ``(N, ...)``, ``N`` divisible by ``k``.
      key: split into one key per micro-batch (dropout).
    Returns:
      ``(grads, model_state, metrics)``: ``Σ g_i / k``; the state after the ``k``
      forwards (BatchNorm updated ``k`` times); each metric the mean over micro-batches.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets.optim import accumulate_gradients
        >>> def loss_fn(params, state, batch, key):  # a mean over the micro-batch
        ...     return jnp.mean(params["w"] * batch), (state, {})
        >>> vg = jax.value_and_grad(loss_fn, has_aux=True)
        >>> batch = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> grads, _, _ = accumulate_gradients(vg, {"w": jnp.array(0.0)}, {}, batch, jax.random.key(0), k=2)
        >>> float(grads["w"]), float(jnp.mean(batch))  # the mean of the micro-batch gradients = the batch's
        (2.5, 2.5)
    """
    micro = split_microbatches(batch, k)
    keys = jax.random.split(key, k)

    def body(carry, xs):
        acc, state = carry
        mb, sub = xs
        (_, (state, metrics)), grads = value_and_grad_fn(params, state, mb, sub)
        return (jax.tree_util.tree_map(jnp.add, acc, grads), state), metrics

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    (acc, state), metrics = lax.scan(body, (zeros, model_state), (micro, keys))
    grads = jax.tree_util.tree_map(lambda g: g / k, acc)
    return grads, state, jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0), metrics)

"""The tutorial's two-layer network, ``y = relu(x @ w1) @ w2``, as pure functions.

Shapes: ``x: (N, D_in)``, ``w1: (D_in, H)``, ``w2: (H, D_out)``, ``y: (N, D_out)``.
Loss: the sum of squares ``sum((y_pred - y)**2)``. Plain gradient descent
``w -= lr * grad``. The progression of "PyTorch with examples" is reproduced by
:func:`manual_grads` (a hand-written backward pass that runs on NumPy or JAX arrays),
``jax.grad(loss)``, and ``loss(..., relu=my_relu)`` (the custom autograd Function).
:func:`train` runs all steps as one compiled program (``lax.scan``); ``train(...,
relu=my_relu)`` trains with the custom ReLU.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from funcnets._typing import Array, PRNGKey
from funcnets.autograd import relu as torch_relu
from funcnets.config import warn_if_downcast

__all__ = ["init", "data", "forward", "loss", "manual_grads", "grads", "sgd_step", "train"]

Weights = dict[str, Array]  # {"w1": (D_in, H), "w2": (H, D_out)}


def _as_arrays(where: str, *trees):
    """JAX arrays of the inputs, warning once if float64 NumPy data would become float32."""
    warn_if_downcast(*trees, where=where)
    return jax.tree_util.tree_map(jnp.asarray, trees)


def data(key: PRNGKey, n: int = 64, d_in: int = 1000, d_out: int = 10, dtype=None) -> tuple[Array, Array]:
    """Random inputs and targets, ``torch.randn(N, D_in)``, ``torch.randn(N, D_out)``."""
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, d_in), dtype), jax.random.normal(ky, (n, d_out), dtype)


def init(key: PRNGKey, d_in: int = 1000, h: int = 100, d_out: int = 10, dtype=None) -> Weights:
    """``w1 = randn(D_in, H)``, ``w2 = randn(H, D_out)`` as in the tutorial."""
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (d_in, h), dtype), "w2": jax.random.normal(k2, (h, d_out), dtype)}


def forward(w: Weights, x: Array, relu: Callable[[Array], Array] = torch_relu) -> Array:
    """``relu(x @ w1) @ w2``: ``(N, D_in) -> (N, D_out)``."""
    w, x = _as_arrays("two_layer.forward", w, x)
    return relu(x @ w["w1"]) @ w["w2"]


def loss(w: Weights, x: Array, y: Array, relu: Callable[[Array], Array] = torch_relu) -> Array:
    """``sum((forward(x) - y)**2)``, a scalar."""
    w, x, y = _as_arrays("two_layer.loss", w, x, y)
    return jnp.sum((forward(w, x, relu) - y) ** 2)


def manual_grads(w: Weights, x, y, xp=jnp) -> tuple[Weights, Array]:
    """The tutorial's hand-written backward pass; ``xp`` is ``numpy`` or ``jax.numpy``.

    Returns ``(grads, loss)`` with ``grads`` shaped like ``w``.
    """
    h = x @ w["w1"]
    h_relu = xp.maximum(h, 0)
    y_pred = h_relu @ w["w2"]
    loss_value = xp.sum((y_pred - y) ** 2)
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T @ grad_y_pred
    grad_h_relu = grad_y_pred @ w["w2"].T
    grad_h = xp.where(h < 0, 0, grad_h_relu)  # grad_h[h < 0] = 0
    return {"w1": x.T @ grad_h, "w2": grad_w2}, loss_value


def grads(w: Weights, x: Array, y: Array, relu: Callable[[Array], Array] = torch_relu) -> tuple[Weights, Array]:
    """``(grads, loss)`` by autograd (``jax.value_and_grad``)."""
    w, x, y = _as_arrays("two_layer.grads", w, x, y)
    value, g = jax.value_and_grad(loss)(w, x, y, relu)
    return g, value


def sgd_step(w: Weights, g: Weights, lr: float) -> Weights:
    """``w -= lr * grad`` for each weight."""
    return jax.tree_util.tree_map(lambda p, d: p - lr * d, w, g)


def train(
    w: Weights,
    x: Array,
    y: Array,
    lr: float,
    steps: int = 500,
    relu: Callable[[Array], Array] = torch_relu,
    grad_fn: Callable | None = None,
) -> tuple[Weights, Array]:
    """All ``steps`` of gradient descent as one XLA program (``lax.scan``).

    Args:
      w: ``{"w1": (D_in, H), "w2": (H, D_out)}``.
      x: inputs ``(N, D_in)``.
      y: targets ``(N, D_out)``.
      lr: the learning rate of ``w -= lr * grad``.
      steps: the number of steps.
      relu: the activation, e.g. :func:`funcnets.autograd.my_relu` (the tutorial's
        ``MyReLU.apply``). It is a static argument: the program is compiled once per
        function object, so pass the same function each call (not a new ``lambda`` or
        ``functools.partial``).
      grad_fn: ``(w, x, y) -> (grads, loss)`` replacing autograd, e.g. a hand-written
        backward such as :func:`manual_grads`; static like ``relu``. Default:
        :func:`grads` with ``relu``.

    Returns:
      ``(w, losses)``: the final weights and ``losses: (steps,)``, where ``losses[t]`` is
      the loss computed at step ``t`` before its update, the value the tutorial prints
      as ``print(t, loss.item())`` (so ``losses[99]`` is its first printed line).

    Example:
      >>> from funcnets.autograd import my_relu
      >>> w = init(jax.random.PRNGKey(0), 8, 4, 2)
      >>> x, y = data(jax.random.PRNGKey(1), 16, 8, 2)
      >>> w, losses = train(w, x, y, 1e-3, steps=100, relu=my_relu)
      >>> losses.shape, bool(losses[-1] < losses[0])
      ((100,), True)
    """
    w, x, y = _as_arrays("two_layer.train", w, x, y)
    return _train(w, x, y, lr, steps, relu, grad_fn)


@partial(jax.jit, static_argnames=("steps", "relu", "grad_fn"))
def _train(w: Weights, x: Array, y: Array, lr: float, steps: int, relu: Callable, grad_fn: Callable | None):
    def step(w, _):
        g, value = grad_fn(w, x, y) if grad_fn is not None else grads(w, x, y, relu)
        return sgd_step(w, g, lr), value

    return lax.scan(step, w, None, length=steps)

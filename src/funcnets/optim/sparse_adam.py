"""``torch.optim.SparseAdam``: Adam that updates the moments and the parameters only
where the gradient is *present*, leaving every other entry, its moments included, as it is.

In torch "present" means the indices stored in a sparse-layout gradient: for
``nn.Embedding(sparse=True)`` the rows looked up in the batch (all their columns, even
a column whose gradient is 0, and never the ``padding_idx`` row); for a dense gradient
converted with ``grad.to_sparse()`` the nonzero entries. JAX gradients are dense, so here
"present" is chosen by the caller, per step, with ``update``'s ``mask`` argument:

* no ``mask`` (the default): the entries whose gradient is nonzero, ``g != 0``, which is
  torch on ``grad.to_sparse()`` and what torch's documentation calls the intended
  semantics. An entry whose gradient is exactly 0 is absent, so a looked-up embedding row
  whose gradient is 0 in some column does not move there, where torch moves it (its ``m``
  decays and ``θ`` takes ``m̂/(sqrt(v̂) + eps)``); pass a mask for torch's row semantics.
* ``mask=``: a pytree like the gradients of boolean arrays that broadcast to each leaf,
  True where present; :func:`present_rows` builds an embedding's ``(num_embeddings, 1)``
  mask from the indices looked up, which is exactly ``nn.Embedding(sparse=True)``'s set.
  Entries outside the mask are absent whatever their gradient.

The step count is the number of ``update`` calls, as torch counts every step on a
parameter with a gradient, even an empty one. (torch skips a parameter whose ``.grad``
is ``None``; in JAX every parameter has a gradient, so use ``param_groups`` or
``optax.partition`` to leave parameters to other optimizers, as torch's SparseAdam takes
only parameters with sparse gradients.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _bias_correction, _check, _float_count, _scale_by_lr, _static_value

__all__ = ["sparse_adam", "scale_by_torch_sparse_adam", "present_rows", "TorchSparseAdamState"]


class TorchSparseAdamState(NamedTuple):
    exp_avg: Any  # m: pytree like params
    exp_avg_sq: Any  # v: pytree like params
    count: jax.Array  # int32 scalar: steps taken


def present_rows(indices: jax.Array, num_embeddings: int, padding_idx: int | None = None) -> jax.Array:
    """The ``mask`` of an embedding's rows that torch's sparse gradient holds: True at the
    rows ``indices`` looks up, but for ``padding_idx``.

    Args:
      indices: the embedding's input, integers of any shape.
      num_embeddings: the table's rows.
      padding_idx: the embedding's ``padding_idx`` (negative counts from the end), whose
        row gets no gradient in torch.

    Returns:
      ``(num_embeddings, 1)`` booleans, which broadcast to the weight ``(num_embeddings, embedding_dim)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> optim.present_rows(jnp.array([[3, 0], [3, 1]]), 5, padding_idx=0)[:, 0].tolist()
        [False, True, False, True, False]
    """
    mask = jnp.zeros((num_embeddings, 1), bool).at[jnp.ravel(indices)].set(True, mode="drop")
    if padding_idx is not None:
        mask = mask.at[padding_idx % num_embeddings].set(False)
    return mask


def scale_by_torch_sparse_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformationExtraArgs:
    """torch's SparseAdam direction (the learning rate is applied after it). Step t, where
    the gradient is present (see the module docstring for ``mask``)::

        m ← m + (g - m)(1-β₁);  v ← v + (g² - v)(1-β₂)
        u = sqrt(1-β₂ᵗ)/(1-β₁ᵗ) · m/(sqrt(v) + eps)

    and elsewhere ``m``, ``v`` unchanged and ``u = 0``. ``update(g, state, params, mask=...)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> tx = optim.scale_by_torch_sparse_adam()
        >>> state = tx.init(jnp.zeros(3))
        >>> u, state = tx.update(jnp.array([2.0, 0.0, -1.0]), state)  # the 0 is absent
        >>> [round(v, 4) for v in u.tolist()], [round(v, 4) for v in state.exp_avg.tolist()]
        ([1.0, 0.0, -1.0], [0.2, 0.0, -0.1])
        >>> u, state = tx.update(jnp.array([2.0, 0.0, -1.0]), state, mask=jnp.array([True, True, False]))
        >>> [round(v, 4) for v in state.exp_avg.tolist()]  # the middle entry is present (m = 0.9·0), the last one is not
        [0.38, 0.0, -0.1]
    """

    def init_fn(params):
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
        return TorchSparseAdamState(zeros(), zeros(), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, mask=None, **extra_args):
        tree_map = jax.tree_util.tree_map
        if mask is None:
            present = tree_map(lambda g: g != 0, updates)
        else:
            if jax.tree_util.tree_structure(mask) != jax.tree_util.tree_structure(updates):
                raise ValueError(
                    f"sparse_adam's mask must be a pytree like the gradients, {jax.tree_util.tree_structure(updates)}, "
                    f"got {jax.tree_util.tree_structure(mask)}: give every leaf a boolean array that broadcasts "
                    "to it (True where present; jnp.array(True) for a whole leaf, present_rows for an embedding)"
                )
            present = tree_map(lambda g, k: jnp.broadcast_to(jnp.asarray(k, bool), g.shape), updates, mask)
        count = optax.safe_int32_increment(state.count)
        t = _float_count(count)
        scale = jnp.sqrt(_bias_correction(b2, t)) / _bias_correction(b1, t)
        # torch's own arithmetic, old + (new - old)(1-β)
        m = tree_map(lambda g, m, k: jnp.where(k, m + (g - m) * (1 - b1), m), updates, state.exp_avg, present)
        v = tree_map(lambda g, v, k: jnp.where(k, v + (g * g - v) * (1 - b2), v), updates, state.exp_avg_sq, present)

        def direction(m, v, k):
            # v is 0 at an absent entry never seen: sqrt's infinite slope there would make
            # a gradient taken through the update NaN, though the entry is unused
            denom = jnp.sqrt(jnp.where(k, v, 1)) + eps
            return jnp.where(k, m / denom * scale.astype(m.dtype), 0)

        return tree_map(direction, m, v, present), TorchSparseAdamState(m, v, count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_positive(name: str, value: Any, fix: str) -> None:
    """torch's ``Invalid <name>: <value>`` for a hyperparameter that is not > 0 (SparseAdam
    refuses 0, where the rest of torch.optim's checks allow it); schedules and traced
    values (``optax.inject_hyperparams`` under ``jit``) are not checked."""
    known = None if callable(value) else _static_value(value)
    if known is not None and not 0.0 < known:
        raise ValueError(f"Invalid {name}: {value!r}; {fix}.")


def sparse_adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """``torch.optim.SparseAdam``: Adam on the present entries only (the module docstring
    says which entries are present: by default the nonzero gradients, or a ``mask`` passed
    to ``update``).

    Each step t = 1, 2, ..., per present entry of θ with gradient g (state ``m₀ = v₀ = 0``)::

        g ← -g                                  if maximize
        m ← m + (g - m)(1-β₁);  v ← v + (g² - v)(1-β₂)
        θ ← θ - lr·sqrt(1-β₂ᵗ)/(1-β₁ᵗ) · m/(sqrt(v) + eps)

    Absent entries keep ``θ``, ``m`` and ``v``; ``t`` counts every step. There is no
    weight decay, as in torch. State: ``(EmptyState,)*maximize + (``
    :class:`TorchSparseAdamState` ``, ScaleByLearningRateState)``.

    Args:
      lr: learning rate (> 0), a float or an optax schedule of the step count.
      betas: ``(β₁, β₂)``, each in [0, 1).
      eps: added to the denominator (> 0), outside the square root.
      maximize: ascend the objective.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import nn, optim
        >>> emb = nn.Embedding(4, 2)  # torch: nn.Embedding(4, 2, sparse=True) + SparseAdam
        >>> params = {"weight": jnp.ones((4, 2))}
        >>> idx = jnp.array([1, 3])
        >>> loss = lambda p: jnp.sum(jax.nn.relu(emb.apply(p, {}, idx)[0] * jnp.array([1.0, -1.0])))
        >>> opt = optim.sparse_adam(lr=0.1)
        >>> opt_state = opt.init(params)
        >>> g = jax.grad(loss)(params)  # rows 1 and 3 present, column 1 has gradient 0
        >>> updates, opt_state = opt.update(g, opt_state, params, mask={"weight": optim.present_rows(idx, 4)})
        >>> [[round(v, 4) for v in row] for row in optax.apply_updates(params, updates)["weight"].tolist()]  # torch's: rows 0, 2 untouched
        [[1.0, 1.0], [0.9, 1.0], [1.0, 1.0], [0.9, 1.0]]
    """
    _check_positive("learning rate", lr, "SparseAdam's lr must be a number > 0")
    _check_positive("epsilon value", eps, "SparseAdam's eps must be > 0 (it keeps m/(sqrt(v) + eps) finite)")
    _check("beta parameter at index 0", betas[0], 0.0, 1.0)
    _check("beta parameter at index 1", betas[1], 0.0, 1.0)
    parts = [optax.scale(-1.0)] if maximize else []
    return optax.chain(*parts, scale_by_torch_sparse_adam(betas[0], betas[1], eps), _scale_by_lr(lr))

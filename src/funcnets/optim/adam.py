"""``torch.optim.Adam`` and ``AdamW`` (coupled and decoupled weight decay, torch's AMSGrad)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _check, _torch_chain

__all__ = ["adam", "adamw", "scale_by_torch_amsgrad", "TorchAmsgradState"]


class TorchAmsgradState(NamedTuple):
    exp_avg: Any  # m, like params
    exp_avg_sq: Any  # v, like params
    max_exp_avg_sq: Any  # max over steps of the raw v
    count: jax.Array


def scale_by_torch_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """torch's AMSGrad: ``v̂ = max(v̂, v)`` on the raw second moment, then
    ``m/(1-β₁ᵗ) / (sqrt(v̂)/sqrt(1-β₂ᵗ) + eps)``."""

    def init_fn(params):
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
        return TorchAmsgradState(zeros(), zeros(), zeros(), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        count = optax.safe_int32_increment(state.count)
        m = optax.tree.update_moment(updates, state.exp_avg, b1, 1)
        v = optax.tree.update_moment_per_elem_norm(updates, state.exp_avg_sq, b2, 2)
        vmax = jax.tree_util.tree_map(jnp.maximum, state.max_exp_avg_sq, v)
        bc1 = 1 - b1 ** count.astype(jnp.result_type(float))
        bc2_sqrt = jnp.sqrt(1 - b2 ** count.astype(jnp.result_type(float)))
        out = jax.tree_util.tree_map(
            lambda mm, vv: (mm / bc1.astype(mm.dtype)) / (jnp.sqrt(vv) / bc2_sqrt.astype(vv.dtype) + eps), m, vmax
        )
        return out, TorchAmsgradState(m, v, vmax, count)

    return optax.GradientTransformation(init_fn, update_fn)



def _adam_core(betas, eps, amsgrad):
    _check("beta parameter at index 0", betas[0], 0.0, 1.0)
    _check("beta parameter at index 1", betas[1], 0.0, 1.0)
    _check("epsilon value", eps)
    if amsgrad:
        return scale_by_torch_amsgrad(betas[0], betas[1], eps)
    return optax.scale_by_adam(betas[0], betas[1], eps)


def _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay):
    _check("learning rate", lr)
    _check("weight_decay value", weight_decay)
    return _torch_chain([_adam_core(betas, eps, amsgrad)], lr, weight_decay, maximize, decoupled_weight_decay)


def adam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam``: ``g ← g + wd·θ`` (coupled L2), ``m ← β₁m + (1-β₁)g``,
    ``v ← β₂v + (1-β₂)g²``, ``θ ← θ - lr·(m/(1-β₁ᵗ)) / (sqrt(v/(1-β₂ᵗ)) + eps)``.

    ``decoupled_weight_decay=True`` is :func:`adamw`. ``foreach``, ``capturable``,
    ``differentiable`` and ``fused`` are accepted for torch's signature and ignored: they
    choose torch's kernels, not the update.
    """
    return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay)


def adamw(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW``: decoupled decay ``θ ← θ - lr·wd·θ`` plus the Adam step.

    ``foreach``, ``capturable``, ``differentiable`` and ``fused`` are accepted for torch's
    signature and ignored: they choose torch's kernels, not the update.
    """
    return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, True)

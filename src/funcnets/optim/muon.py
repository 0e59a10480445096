"""``torch.optim.Muon``: momentum, then the update orthogonalised by a quintic
Newton-Schulz iteration in bfloat16, for 2-D parameters only (``torch/optim/_muon.py``).

Muon is for the weight matrices of hidden layers; torch refuses any other parameter, and
so does :func:`muon` (at ``init``, naming it). Give the rest (biases, norms, embeddings,
convolution kernels) to another optimizer, as torch's docs pair ``Muon`` with ``AdamW``::

    labels = jax.tree_util.tree_map(lambda p: "muon" if p.ndim == 2 else "adamw", params)
    opt = optax.partition({"muon": optim.muon(lr=0.02), "adamw": optim.adamw(lr=3e-4)}, labels)

(``optax.multi_transform`` in older optax), or by torch name with
:func:`funcnets.optim.select` / :func:`funcnets.optim.param_group_labels`.

The Newton-Schulz iteration runs in bfloat16 as torch's does, each matrix product summed in
float32 and rounded to bfloat16 once (torch's CPU ``mm``/``addmm``, fused ``β·C + α·A@B``).
Sums in another order round a few entries to the neighbouring bfloat16, which the next
products spread: the result is within about two bfloat16 ulps of torch's (bitwise equal for
small matrices), not bitwise equal.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets.optim._base import ScalarOrSchedule, _at, _is_dynamic, _static_value
from funcnets.optim.adafactor import _torch_lerp

__all__ = ["muon", "MuonState", "zeropower_via_newtonschulz"]

# Keller Jordan's coefficients and step count, torch's defaults
_NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)
_ADJUST_LR_FNS = ("original", "match_rms_adamw", "spectral_unclamped")


class MuonState(NamedTuple):
    """Muon's state."""

    count: jax.Array  # () int32, the number of steps taken (for lr schedules)
    momentum_buffer: optax.Updates  # like the parameters


def muon(
    lr: ScalarOrSchedule = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = _NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
) -> optax.GradientTransformation:
    """``torch.optim.Muon``, for a tree of 2-D parameters ``θ: (A, B)``.

    Each step, per parameter θ with gradient g (``b₀ = 0``)::

        b ← lerp(b, g, 1-μ) = μ·b + (1-μ)·g       an EMA, as torch's code (its docs say μ·b + g)
        ũ ← lerp(g, b, μ) = (1-μ)·g + μ·b         if nesterov, else b
        O ← NS(ũ)                                 zeropower_via_newtonschulz, in bfloat16
        θ ← θ·(1 - lr·wd)                         decoupled, with the unadjusted lr
        θ ← θ - lr·r(A, B)·O

    with ``r = √max(1, A/B)`` (``adjust_lr_fn`` ``None`` or ``"original"``, Keller Jordan's),
    ``0.2·√max(A, B)`` (``"match_rms_adamw"``, Moonshot's, which lets Muon reuse AdamW's lr
    and weight decay) or ``√(A/B)`` (``"spectral_unclamped"``).

    State: :class:`MuonState`.

    Args:
      lr: learning rate, a float or an optax schedule of the step count (0 for the first step).
      weight_decay: decoupled weight decay (default 0.1, as torch's).
      momentum: μ >= 0.
      nesterov: use the Nesterov blend of the gradient and the buffer.
      ns_coefficients: ``(a, b, c)`` of the quintic ``X ← a·X + (b·S + c·S²)·X``, ``S = X·Xᵀ``.
      eps: the floor of the Frobenius norm ũ is divided by.
      ns_steps: Newton-Schulz iterations, fewer than 100.
      adjust_lr_fn: ``None``, ``"original"``, ``"match_rms_adamw"`` or ``"spectral_unclamped"``.

    Raises:
      ValueError: at ``init``, for a parameter that is not 2-D (torch's message, with its name).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"w": jnp.array([[1.0, -2.0, 0.5], [0.5, 3.0, -1.0]])}
        >>> loss = lambda p: jnp.sum(p["w"] ** 2)
        >>> opt = optim.muon(lr=0.1)  # torch.optim.Muon([w], lr=0.1)
        >>> opt_state = opt.init(params)
        >>> for _ in range(3):
        ...     updates, opt_state = opt.update(jax.grad(loss)(params), opt_state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> [round(v, 4) for v in params["w"].ravel().tolist()]  # torch's w after the same steps
        [0.7752, -1.8228, 0.4728, 0.3638, 2.733, -0.8991]
    """
    _check_muon_args(lr, weight_decay, momentum, ns_coefficients, ns_steps, adjust_lr_fn)
    decay = _is_dynamic(weight_decay) or _is_dynamic(lr) or weight_decay != 0

    def init_fn(params):
        _check_2d(params)
        return MuonState(count=jnp.zeros([], jnp.int32), momentum_buffer=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        _check_2d(updates)
        if decay and params is None:
            raise ValueError(
                "muon's update needs the parameters for its weight decay; call "
                "opt.update(grads, opt_state, params), or pass weight_decay=0.0"
            )
        lr_t = _at(lr, state.count)
        buffers = jax.tree_util.tree_map(
            lambda g, b: _torch_lerp(b, g, jnp.asarray(1 - momentum, b.dtype)), updates, state.momentum_buffer
        )

        def one(g, b, p):
            u = _torch_lerp(g, b, jnp.asarray(momentum, g.dtype)) if nesterov else b
            o = zeropower_via_newtonschulz(u, ns_coefficients, ns_steps, eps).astype(g.dtype)
            step = -jnp.asarray(lr_t * _lr_ratio(adjust_lr_fn, *g.shape), g.dtype) * o
            if decay:
                step = step - jnp.asarray(lr_t * weight_decay, g.dtype) * p
            return step

        steps = jax.tree_util.tree_map(one, updates, buffers, params if decay else updates)
        return steps, MuonState(count=optax.safe_int32_increment(state.count), momentum_buffer=buffers)

    return optax.GradientTransformation(init_fn, update_fn)


def zeropower_via_newtonschulz(
    grad: jax.Array, ns_coefficients: tuple[float, float, float] = _NS_COEFFICIENTS, ns_steps: int = 5, eps: float = 1e-7
) -> jax.Array:
    """torch's ``_zeropower_via_newtonschulz``: an approximate ``U·Vᵀ`` of ``grad = U·S·Vᵀ``
    (singular values pushed into about [0.7, 1.2], not to 1), in bfloat16.

    ``X ← grad / max(‖grad‖_F, eps)`` (transposed if it has more rows than columns, so that
    ``X·Xᵀ`` is the smaller Gram matrix), then ``ns_steps`` times ``X ← a·X + (b·S + c·S²)·X``
    with ``S = X·Xᵀ``.

    Args:
      grad: (A, B), any float dtype.

    Returns:
      (A, B) bfloat16.
    """
    if grad.ndim != 2:
        raise ValueError(f"Input tensor gradient must be a 2D matrix, got shape {tuple(grad.shape)}")
    a, b, c = ns_coefficients
    # Each bfloat16 rounding of torch's is an explicit ``reduce_precision`` of float32
    # values: XLA (``xla_allow_excess_precision``, on by default) drops a float32 → bfloat16
    # → float32 round trip inside a jitted function, which made a compiled step part from
    # an eager one (and from torch) by bfloat16 ulps. The products of bfloat16-valued
    # float32 matrices are exact in float32 and in TF32 (GPU) or one bfloat16 pass (TPU),
    # and are summed in float32, as torch's kernels sum them.
    # torch converts float64 to bfloat16 through float32 (c10::BFloat16 takes a float):
    # rounding twice, which now and then lands on the other neighbour of rounding once
    x = _round_to_bfloat16(grad.astype(jnp.float32))
    tall = grad.shape[0] > grad.shape[1]
    if tall:
        x = x.T
    norm = _round_to_bfloat16(jnp.sqrt(jnp.sum(x * x)))
    x = _round_to_bfloat16(x / jnp.maximum(norm, _round_to_bfloat16(jnp.float32(eps))))
    for _ in range(ns_steps):
        gram = _round_to_bfloat16(x @ x.T)
        gram_update = _round_to_bfloat16(b * gram + c * (gram @ gram))  # torch's addmm: one rounding
        x = _round_to_bfloat16(a * x + gram_update @ x)
    x = x.astype(jnp.bfloat16)  # exact: every value is a bfloat16 already
    return x.T if tall else x


def _round_to_bfloat16(x: jax.Array) -> jax.Array:
    """float32 ``x`` rounded to the nearest bfloat16 (ties to even), kept in float32."""
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)


def _lr_ratio(adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """torch's ``_adjust_lr`` factor for a (rows, cols) parameter."""
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(rows / cols)  # "spectral_unclamped"


def _check_2d(tree) -> None:
    for path, p in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if p.ndim != 2:
            name = jax.tree_util.keystr(path, simple=True, separator=".")
            raise ValueError(
                f"Muon only supports 2D parameters whereas we found a parameter with size: {tuple(p.shape)} "
                f"({name!r}). Give Muon the weight matrices only and the rest to another optimizer, e.g. "
                "optax.partition({'muon': optim.muon(...), 'adamw': optim.adamw(...)}, labels) with "
                "labels = jax.tree_util.tree_map(lambda p: 'muon' if p.ndim == 2 else 'adamw', params)"
            )


def _check_muon_args(lr, weight_decay, momentum, ns_coefficients, ns_steps, adjust_lr_fn) -> None:
    """torch's checks and messages: the constructor's, and the two its first step makes
    (``ns_steps`` and ``ns_coefficients``), here when the optimizer is built."""

    def bad(value) -> bool:
        known = _static_value(value) if not isinstance(value, (int, float)) else value
        return known is not None and not 0.0 <= known

    if bad(lr):
        raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
    if bad(momentum):
        raise ValueError(f"momentum should be >= 0 but is: {momentum}")
    if bad(weight_decay):
        raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
    if adjust_lr_fn is not None and adjust_lr_fn not in _ADJUST_LR_FNS:
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")

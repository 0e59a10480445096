"""``torch.amp.GradScaler``: dynamic loss scaling for float16 compute with float32
master weights, as pure functions and an optax wrapper.

float16 gradients underflow; torch multiplies the loss by a scale (``2**16`` at first)
before the backward pass, divides the gradients by it before the optimizer step, skips
the step when a gradient is inf/NaN (and halves the scale), and doubles the scale after
``growth_interval`` clean steps. Here:

* ``opt = scaler.wrap(optim.sgd(0.1))``: ``scaler.step(optimizer)`` + ``scaler.update()``
  as one optax transformation. It takes the *scaled* gradients, unscales them, and on
  overflow leaves the parameters and the inner optimizer state untouched (a skipped
  step, as torch's; only a learning-rate schedule's step count advances, as torch's
  ``scheduler.step()`` still runs), then updates the scale.
* the loss must be scaled inside the differentiated function, with the current scale:
  ``scaler.scale(scaler.state_of(opt_state), loss)``.
* :func:`cast_floating` casts float32 master weights (and inputs) to the compute dtype
  inside the loss, so gradients arrive in float32 for the master weights.

A step, float16 compute::

    scaler = GradScaler()
    opt = scaler.wrap(optim.sgd(0.1, momentum=0.9))

    def loss_fn(params, x, y, scale_state):
        logits = model.apply(cast_floating(params, jnp.float16), {}, x.astype(jnp.float16))[0]
        loss = cross_entropy(logits.astype(jnp.float32), y)
        return scaler.scale(scale_state, loss), loss

    @jax.jit
    def step(params, opt_state, x, y):
        grads, loss = jax.grad(loss_fn, has_aux=True)(params, x, y, scaler.state_of(opt_state))
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

bfloat16 has float32's exponent range and needs no scaling (torch's autocast with
bfloat16 does not use a GradScaler either): cast and train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnets._typing import Array

__all__ = ["GradScaler", "GradScalerState", "ScaledState", "cast_floating"]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Every floating-point leaf of ``tree`` cast to ``dtype`` (integer leaves, e.g.
    ``num_batches_tracked``, unchanged): float32 master weights to the compute dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import cast_floating
        >>> tree = {"weight": jnp.ones(2), "num_batches_tracked": jnp.array(3)}
        >>> {k: str(v.dtype) for k, v in cast_floating(tree, jnp.bfloat16).items()}
        {'num_batches_tracked': 'int32', 'weight': 'bfloat16'}
    """
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree
    )


class GradScalerState(NamedTuple):
    scale: Array  # float32 scalar: the loss scale (torch's _scale)
    growth_tracker: Array  # int32: clean steps since the last change (torch's _growth_tracker)
    found_inf: Array  # bool: the latest step had an inf/NaN gradient and was skipped


class ScaledState(NamedTuple):
    scaler: GradScalerState
    inner: optax.OptState  # the wrapped optimizer's state


_SCHEDULE_STATES = (optax.ScaleByScheduleState, optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _skipped(new: Any, old: Any, found: Array) -> Any:
    """The inner optimizer state after a step that ``found`` an inf/NaN: the old state,
    as torch skips ``optimizer.step()``, but for the step counts of learning-rate (and
    ``inject_hyperparams``) schedules, which advance: torch's ``scheduler.step()`` runs
    after a skipped step too, so the next step's lr is the schedule's next value."""

    def merge(n, o):
        if isinstance(n, optax.ScaleByScheduleState):
            return n
        if isinstance(n, _SCHEDULE_STATES):
            return n._replace(inner_state=_skipped(n.inner_state, o.inner_state, found))
        return jnp.where(found, o, n)

    return jax.tree_util.tree_map(merge, new, old, is_leaf=lambda x: isinstance(x, _SCHEDULE_STATES))


@dataclass(frozen=True)
class GradScaler:
    """``torch.amp.GradScaler(init_scale, growth_factor, backoff_factor,
    growth_interval, enabled)``; see the module docstring for a step.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> scaler = optim.GradScaler(init_scale=2.0**16)
        >>> opt = scaler.wrap(optim.sgd(lr=0.1))
        >>> params = {"w": jnp.ones(2)}
        >>> opt_state = opt.init(params)
        >>> float(scaler.scale(scaler.state_of(opt_state), jnp.float32(1.0)))  # scaler.scale(loss)
        65536.0
        >>> scaled_grads = {"w": jnp.array([65536.0, jnp.inf])}  # an overflow: the step is skipped
        >>> updates, opt_state = opt.update(scaled_grads, opt_state, params)
        >>> updates["w"].tolist(), float(scaler.state_of(opt_state).scale)  # scale halved
        ([0.0, 0.0], 32768.0)
        >>> updates, opt_state = opt.update({"w": jnp.array([32768.0, 0.0])}, opt_state, params)
        >>> [round(p, 4) for p in optax.apply_updates(params, updates)["w"].tolist()]  # unscaled g = (1, 0)
        [0.9, 1.0]
    """

    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    enabled: bool = True

    def __post_init__(self):
        if self.growth_factor <= 1.0:
            raise ValueError("The growth factor must be > 1.0.")
        if self.backoff_factor >= 1.0:
            raise ValueError("The backoff factor must be < 1.0.")
        if not self.backoff_factor > 0 or not self.init_scale > 0:
            raise ValueError(
                f"GradScaler: init_scale and backoff_factor must be > 0, got {self.init_scale}, {self.backoff_factor}"
            )
        if not isinstance(self.growth_interval, int) or self.growth_interval < 1:
            raise ValueError(f"GradScaler: growth_interval must be an integer >= 1, got {self.growth_interval!r}")

    def init(self) -> GradScalerState:
        return GradScalerState(
            jnp.asarray(self.init_scale if self.enabled else 1.0, jnp.float32),
            jnp.zeros([], jnp.int32),
            jnp.zeros([], bool),
        )

    def scale(self, state: GradScalerState, loss: Array) -> Array:
        """``scaler.scale(loss)``: ``loss · scale`` (float32, as torch's float32 scale
        promotes a float16 loss)."""
        return loss * state.scale if self.enabled else loss

    def unscale(self, state: GradScalerState, grads: Any) -> tuple[Any, Array]:
        """``scaler.unscale_``: ``(grads · (1/scale), found_inf)``; ``found_inf`` if any
        scaled gradient is inf or NaN. torch takes the reciprocal in float64, then float32."""
        if not self.enabled:
            return grads, jnp.zeros([], bool)
        inv = (1.0 / state.scale.astype(jnp.result_type(float))).astype(jnp.float32)
        leaves = jax.tree_util.tree_leaves(grads)
        found = jnp.any(jnp.stack([~jnp.all(jnp.isfinite(g)) for g in leaves])) if leaves else jnp.zeros([], bool)
        return jax.tree_util.tree_map(lambda g: g * inv.astype(g.dtype), grads), found

    def update(self, state: GradScalerState, found_inf: Array) -> GradScalerState:
        """``scaler.update()`` (torch's ``_amp_update_scale_``): on inf ``scale ·=
        backoff_factor`` and the tracker resets; after ``growth_interval`` clean steps
        ``scale ·= growth_factor`` if that is still finite."""
        if not self.enabled:
            return state._replace(found_inf=found_inf)
        clean = state.growth_tracker + 1
        grow = clean == self.growth_interval
        grown = state.scale * jnp.float32(self.growth_factor)
        scale = jnp.where(
            found_inf,
            state.scale * jnp.float32(self.backoff_factor),
            jnp.where(grow & jnp.isfinite(grown), grown, state.scale),
        )
        tracker = jnp.where(found_inf | grow, 0, clean).astype(jnp.int32)
        return GradScalerState(scale, tracker, found_inf)

    def wrap(self, optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
        """``optimizer`` taking the scaled gradients: unscale, skip the step on inf/NaN
        (zero updates, the inner state kept but for the step counts of its learning-rate
        schedules, which advance as torch's ``scheduler.step()`` does after a skipped
        step), then update the scale."""

        def init_fn(params):
            return ScaledState(self.init(), optimizer.init(params))

        def update_fn(updates, state, params=None):
            grads, found = self.unscale(state.scaler, updates)
            new_updates, inner = optimizer.update(grads, state.inner, params)
            new_updates = jax.tree_util.tree_map(lambda u: jnp.where(found, jnp.zeros_like(u), u), new_updates)
            return new_updates, ScaledState(self.update(state.scaler, found), _skipped(inner, state.inner, found))

        return optax.GradientTransformation(init_fn, update_fn)

    @staticmethod
    def state_of(opt_state: Any) -> GradScalerState:
        """The :class:`GradScalerState` inside an optimizer state built by :meth:`wrap`."""
        for x in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, GradScalerState)):
            if isinstance(x, GradScalerState):
                return x
        raise ValueError("the optimizer state holds no GradScaler; build the optimizer with scaler.wrap(...)")

"""``torch.optim.swa_utils``: weight averaging (SWA, EMA), ``update_bn`` and ``SWALR``.

torch's ``AveragedModel`` is a module holding a copy of the model's parameters (and
buffers) and a counter ``n_averaged``; here that copy is an :class:`AveragedState`
pytree and :meth:`AveragedModel.update_parameters` a pure, jittable function::

    swa = AveragedModel(model)                                  # equal average (SWA)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    avg = swa.init(params, state)
    for ...:
        train_state, _ = step(train_state, batch)
        avg = swa.update_parameters(avg, train_state.params, train_state.model_state)
    state = update_bn(loader, model, avg.params, avg.buffers)  # BatchNorm statistics
    logits, _ = swa(avg, x)                                     # the averaged model's forward

The averaging formulas are torch's own, including its float rounding: the default
(no function) is ``avg + (p - avg)/(n + 1)`` per tensor (torch's CPU path); the
``multi`` EMA/SWA functions use ``lerp`` as torch's ``_foreach_lerp_`` does; integer
buffers (``num_batches_tracked`` with ``use_buffers=True``) are averaged in float32 and
truncated back, as torch's ``copy_`` into an int64 tensor does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp

from funcnets import nn
from funcnets._typing import Array, Params, PRNGKey, State
from funcnets.nn.module import Module, _replace_module
from funcnets.optim.lr_scheduler import _PY, LRScheduler, _check_lr, _schedule

__all__ = [
    "AveragedModel",
    "AveragedState",
    "update_bn",
    "SWALR",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "get_ema_avg_fn",
    "get_swa_avg_fn",
]


def _is_float(x: Array) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


def _via_float32(fn: Callable[..., Array], avg: Array, *args) -> Array:
    """torch's arithmetic on an integer tensor: promoted to the default float32, then
    ``copy_`` back into the integer tensor (truncation toward zero)."""
    return fn(avg.astype(jnp.float32), *args).astype(avg.dtype)


def _lerp(a: Array, b: Array, w) -> Array:
    """ATen's ``lerp``: ``a + w·(b - a)`` for ``|w| < 0.5``, else ``b - (b - a)·(1 - w)``."""
    w = jnp.asarray(w, a.dtype)
    d = b - a
    return jnp.where(jnp.abs(w) < 0.5, a + w * d, b - d * (1 - w))


def _check_decay(decay: float) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[Any, Any, Array], Any]:
    """torch's EMA over all parameters at once: ``lerp(ema, p, 1 - decay)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import swa_utils
        >>> ema = swa_utils.get_ema_multi_avg_fn(decay=0.9)
        >>> round(float(ema({"w": jnp.array(1.0)}, {"w": jnp.array(2.0)}, 1)["w"]), 4)  # 0.9·1 + 0.1·2
        1.1
    """
    _check_decay(decay)

    def ema_update(ema: Any, current: Any, num_averaged: Array) -> Any:
        def one(e, p):
            if _is_float(e):
                return _lerp(e, p, 1 - decay)
            return _via_float32(lambda a, b: a * decay + b.astype(jnp.float32) * (1 - decay), e, p)

        return jax.tree_util.tree_map(one, ema, current)

    return ema_update


def get_swa_multi_avg_fn() -> Callable[[Any, Any, Array], Any]:
    """torch's SWA over all parameters at once: ``lerp(avg, p, 1/(n + 1))`` (the weight is
    torch's float32 ``1 / (n_averaged + 1)``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import swa_utils
        >>> swa = swa_utils.get_swa_multi_avg_fn()
        >>> float(swa({"w": jnp.array(1.0)}, {"w": jnp.array(4.0)}, jnp.array(2))["w"])  # (2·1 + 4) / 3
        2.0
    """

    def swa_update(avg: Any, current: Any, num_averaged: Array) -> Any:
        w = 1 / (num_averaged + 1).astype(jnp.float32)

        def one(a, p):
            if _is_float(a):
                return _lerp(a, p, w.astype(jnp.float64) if a.dtype == jnp.float64 else w)
            return a + (p - a) // (num_averaged + 1).astype(a.dtype)  # torch refuses this (addcdiv)

        return jax.tree_util.tree_map(one, avg, current)

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Array, Array, Array], Array]:
    """torch's per-tensor EMA: ``decay·ema + (1 - decay)·p``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import swa_utils
        >>> ema = swa_utils.get_ema_avg_fn(decay=0.9)
        >>> round(float(ema(jnp.array(1.0), jnp.array(2.0), 1)), 4)  # 0.9·1 + 0.1·2
        1.1
    """
    _check_decay(decay)

    def ema_update(ema: Array, current: Array, num_averaged: Array) -> Array:
        if _is_float(ema):
            return decay * ema + (1 - decay) * current
        return _via_float32(lambda a, b: decay * a + (1 - decay) * b.astype(jnp.float32), ema, current)

    return ema_update


def get_swa_avg_fn() -> Callable[[Array, Array, Array], Array]:
    """torch's per-tensor equal average: ``avg + (p - avg)/(n + 1)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import swa_utils
        >>> swa = swa_utils.get_swa_avg_fn()
        >>> float(swa(jnp.array(1.0), jnp.array(4.0), jnp.array(2)))  # 1 + (4 - 1)/3
        2.0
    """

    def swa_update(avg: Array, current: Array, num_averaged: Array) -> Array:
        if _is_float(avg):
            return avg + (current - avg) / (num_averaged + 1).astype(avg.dtype)
        return _via_float32(lambda a, b: a + (b - a.astype(b.dtype)).astype(jnp.float32) / (num_averaged + 1), avg, current)

    return swa_update


class AveragedState(NamedTuple):
    """The averaged copy (torch's ``AveragedModel.module`` and its ``n_averaged``)."""

    params: Params  # averaged parameters, torch names
    buffers: State  # averaged buffers (use_buffers=True) or the model's latest ones
    n_averaged: Array  # int: models averaged so far


@dataclass(frozen=True)
class AveragedModel:
    """``torch.optim.swa_utils.AveragedModel`` (SWA by default; EMA with
    ``multi_avg_fn=get_ema_multi_avg_fn(decay)`` or ``avg_fn=get_ema_avg_fn(decay)``).

    Args:
      model: the module whose parameters are averaged (for :meth:`__call__`).
      avg_fn: ``(averaged, current, n_averaged) -> averaged`` per tensor.
      multi_avg_fn: the same over the whole pytree at once.
      use_buffers: average the buffers too (else they follow the model's).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> from funcnets.optim import swa_utils
        >>> model = nn.Linear(2, 1)
        >>> params, state = model.init(jax.random.key(0))
        >>> swa = swa_utils.AveragedModel(model)
        >>> avg = swa.init(params, state)
        >>> for v in (1.0, 2.0, 6.0):  # three snapshots of the weights during training
        ...     snapshot = jax.tree_util.tree_map(lambda p: jnp.full_like(p, v), params)
        ...     avg = swa.update_parameters(avg, snapshot, state)
        >>> float(avg.params["bias"][0]), int(avg.n_averaged)  # their equal average
        (3.0, 3)
        >>> y, _ = swa(avg, jnp.ones((1, 2)))  # the averaged model's forward: 3·1 + 3·1 + 3
        >>> float(y[0, 0])
        9.0
    """

    model: Module
    avg_fn: Callable[[Array, Array, Array], Array] | None = None
    multi_avg_fn: Callable[[Any, Any, Array], Any] | None = None
    use_buffers: bool = False

    def __post_init__(self):
        if self.avg_fn is not None and self.multi_avg_fn is not None:
            raise ValueError("Only one of avg_fn and multi_avg_fn should be provided")

    def init(self, params: Params, model_state: State | None = None) -> AveragedState:
        """torch's constructor: a copy of the model, ``n_averaged = 0``."""
        params, buffers = jax.tree_util.tree_map(jnp.copy, (params, model_state or {}))
        return AveragedState(params, buffers, jnp.zeros([], jnp.result_type(int)))

    def update_parameters(self, avg: AveragedState, params: Params, model_state: State | None = None) -> AveragedState:
        """torch's ``update_parameters(model)``: the first call copies the model, later
        ones average into the copy; ``n_averaged += 1``. Pure and jittable."""
        model_state = model_state or {}
        n = avg.n_averaged
        mine = (avg.params, avg.buffers) if self.use_buffers else avg.params
        theirs = (params, model_state) if self.use_buffers else params
        if self.multi_avg_fn is not None:
            averaged = self.multi_avg_fn(mine, theirs, n)
        else:
            fn = self.avg_fn if self.avg_fn is not None else get_swa_avg_fn()
            averaged = jax.tree_util.tree_map(lambda a, p: fn(a, p, n), mine, theirs)
        # the first update copies the model (torch: n_averaged == 0)
        new = jax.tree_util.tree_map(lambda a, old, p: jnp.where(n == 0, p, a).astype(old.dtype), averaged, mine, theirs)
        new_params, new_buffers = new if self.use_buffers else (new, model_state)
        return AveragedState(new_params, new_buffers, n + 1)

    def __call__(self, avg: AveragedState, x: Any, *, train: bool = False, key: PRNGKey | None = None):
        """The averaged model's forward: ``model.apply(avg.params, avg.buffers, x)``."""
        return self.model.apply(avg.params, avg.buffers, x, train=train, key=key)


def update_bn(
    loader: Iterable[Any], model: Module, params: Params, state: State, key: PRNGKey | None = None
) -> State:
    """``torch.optim.swa_utils.update_bn``: recompute every BatchNorm's running statistics
    with one pass over ``loader`` in train mode, as a cumulative average (momentum=None).

    Args:
      loader: batches ``x`` or tuples whose first element is ``x``.
      model, params, state: the (averaged) model; ``state`` holds its buffers.
      key: for dropout during the pass (torch runs the model in train mode).
    Returns:
      the new ``state``: BatchNorm buffers reset, then updated once per batch
      (``num_batches_tracked`` counts the batches); other buffers as the train-mode
      forward leaves them.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> from funcnets.optim import swa_utils
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> params, state = model.init(jax.random.key(0))
        >>> params["0"] = {"weight": jnp.eye(2), "bias": jnp.zeros(2)}  # BatchNorm sees x itself
        >>> loader = [jnp.array([[0.0, 1.0], [2.0, 3.0]]), jnp.array([[4.0, 5.0], [6.0, 7.0]])]
        >>> state = swa_utils.update_bn(loader, model, params, state)
        >>> state["1"]["running_mean"].tolist(), int(state["1"]["num_batches_tracked"])  # the mean over both batches
        ([3.0, 4.0], 2)
    """
    # torch's isinstance(module, _BatchNorm): BatchNorm1d/2d/3d, not InstanceNorm
    kinds = tuple(getattr(nn, k) for k in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d") if hasattr(nn, k))
    paths = [name for name, m in model.named_modules() if isinstance(m, kinds) and getattr(m, "track_running_stats", True)]
    if not paths:
        return state
    modules = dict(model.named_modules())
    cumulative = model
    for path in paths:
        bn = dataclasses.replace(modules[path], momentum=None)
        cumulative = _replace_module(cumulative, path.split("."), bn) if path else bn
    state = _reset_bn(state, paths)
    forward = jax.jit(lambda p, s, x, k: cumulative.apply(p, s, x, train=True, key=k)[1])
    key = key if key is not None else jax.random.PRNGKey(0)
    for batch in loader:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        key, sub = jax.random.split(key)
        state = forward(params, state, jnp.asarray(x), sub)
    return state


def _reset_bn(state: State, paths: list[str]) -> State:
    """torch's ``reset_running_stats``: mean 0, var 1, ``num_batches_tracked`` 0."""
    state = jax.tree_util.tree_map(lambda a: a, state)  # a copy of the dict structure

    def node(tree, parts):
        for p in parts:
            tree = tree[p]
        return tree

    for path in paths:
        bn = node(state, path.split(".") if path else [])
        bn["running_mean"] = jnp.zeros_like(bn["running_mean"])
        bn["running_var"] = jnp.ones_like(bn["running_var"])
        bn["num_batches_tracked"] = jnp.zeros_like(bn["num_batches_tracked"])
    return state


@_schedule
class SWALR(LRScheduler):
    """``torch.optim.swa_utils.SWALR``: anneal from ``base_lr`` to ``swa_lr`` over
    ``anneal_epochs`` epochs (``cos`` or ``linear``), then hold ``swa_lr``. torch's
    recursion anneals from whatever learning rate it takes over, so inside a
    ``SequentialLR`` it needs ``total_epochs``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import swa_utils
        >>> sched = swa_utils.SWALR(0.1, swa_lr=0.05, anneal_epochs=3, anneal_strategy="linear")
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.0833, 0.0667, 0.05, 0.05, 0.05]
    """

    base_lr: float
    swa_lr: float
    anneal_epochs: int = 10
    anneal_strategy: str = "cos"

    _sequential_closed_ok = False

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        _check_lr("swa_lr", self.swa_lr)
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {self.anneal_strategy}")
        if not isinstance(self.anneal_epochs, int) or self.anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {self.anneal_epochs}")

    def _anneal(self, t, xp):
        return (1 - xp.cos(xp.pi * t)) / 2 if self.anneal_strategy == "cos" else t

    def _closed(self, epoch, base_lr, xp):
        a = self.anneal_epochs
        step = xp.maximum(1, epoch) if a == 0 else epoch
        t = xp.maximum(0, xp.minimum(1, step / max(1, a)))
        alpha = self._anneal(t, xp)
        return self.swa_lr * alpha + base_lr * (1 - alpha)

    def _get_lr(self, h):
        a, swa = self.anneal_epochs, self.swa_lr
        step = h._step_count - 1
        if a == 0:
            step = max(1, step)
        prev_alpha = self._anneal(max(0, min(1, (step - 1) / max(1, a))), _PY)
        prev_lr = swa if prev_alpha == 1 else (h.group.lr - prev_alpha * swa) / (1 - prev_alpha)
        alpha = self._anneal(max(0, min(1, step / max(1, a))), _PY)
        return swa * alpha + prev_lr * (1 - alpha)


"""``torch.optim.lr_scheduler`` as optax schedules: ``count -> lr``, equal to torch's
``scheduler.get_last_lr()``.

A scheduler here is a frozen dataclass of torch's constructor arguments, with the
optimizer replaced by the learning rate it starts from (``base_lr``; torch's
``optimizer.param_groups[0]["lr"]``). Calling it with the optimizer's step count gives
the learning rate of that step, so it plugs into any funcnets or optax optimizer::

    sched = CosineAnnealingLR(0.1, T_max=100, steps_per_epoch=len(loader))
    opt = optim.sgd(lr=sched, momentum=0.9)      # lr of step n = sched(n)

**Stepping.** torch's schedulers count ``scheduler.step()`` calls ("epochs"). By default
the scheduler steps with every optimizer step (torch's per-batch stepping);
``steps_per_epoch=N`` steps it once every ``N`` optimizer steps, so each value holds for
an epoch of ``N`` batches (torch's ``scheduler.step()`` at the end of each epoch). The
learning rate of optimizer step ``n`` is what ``get_last_lr()`` returns after
``n // steps_per_epoch`` scheduler steps.

**Exactness.** Most torch schedulers are *recursive* (``step()`` multiplies the current
learning rate, ``CosineAnnealingLR`` updates it by a ratio of cosines), and those
recursions drift from the closed forms in floating point. Two ways to evaluate:

* the closed form in JAX (the default; torch's ``_get_closed_form_lr`` or, where torch
  has none, its ``get_lr``, which is then closed-form). Within ~1e-13 of torch's
  recursion after 1000 steps in float64 (cosine's drift is the largest: 2e-13 after 27
  periods).
* ``total_epochs=E``: a table of torch's own recursion for scheduler steps ``0..E-1``,
  computed on the host in Python floats by a port of torch's stepping code, so it is
  *bit-identical* to ``get_last_lr()``; past ``E`` the closed form takes over (or the
  last value is held where there is none).

``ChainedScheduler`` and ``MultiplicativeLR`` have no closed form (their value depends on
the whole recursion), and a ``LambdaLR`` whose function JAX cannot trace (Python
``if``/``min`` on the epoch) has none either: those need ``total_epochs``, and say so when
built without it.

**Momentum.** ``OneCycleLR`` and ``CyclicLR`` also cycle the momentum (SGD's
``momentum`` or Adam's ``betas[0]``): :meth:`OneCycleLR.momentum` is that schedule, e.g.
``optax.inject_hyperparams(optax.sgd)(learning_rate=sched, momentum=sched.momentum)``.

``ReduceLROnPlateau`` is driven by a metric, not the step count: it is a pure
``step(state, metric) -> state`` over a :class:`PlateauState` pytree, and its learning
rate reaches the optimizer through :func:`inject_lr`.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnets._typing import Array

__all__ = [
    "LRScheduler",
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "OneCycleLR",
    "SequentialLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "PlateauState",
    "inject_lr",
    "InjectLrState",
    "set_lr",
    "get_lr",
]


def _float() -> Any:
    return jnp.result_type(float)


def _int() -> Any:
    return jnp.result_type(int)


def _check_lr(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"Invalid {name}: {value!r}; a learning rate must be a number >= 0.")


def _check_int(owner: str, name: str, value: Any, low: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"{owner}: expected an integer {name} >= {low}, but got {value!r}")


def _traceable(fn: Callable) -> bool:
    """Whether ``fn(epoch)`` traces with an integer array epoch (a closed form in JAX)."""
    try:
        jax.eval_shape(fn, jax.ShapeDtypeStruct((), jnp.int32))
        return True
    except Exception:  # noqa: BLE001  any failure means: evaluate it on the host instead
        return False


# --- the host port of torch's stepping -------------------------------------------
# torch keeps the learning rate in ``optimizer.param_groups`` and each scheduler's
# ``get_lr`` reads and rewrites it. _Group is that param group and each _Torch* class a
# line-by-line port of the matching torch scheduler's stepping (Python floats, as in
# torch), so composed schedulers act on one shared learning rate exactly as in torch.


class _Group:
    def __init__(self, lr: float):
        self.lr = lr
        self.initial_lr: float | None = None


class _TorchLR:
    """torch's ``LRScheduler``: construction takes the initial step; ``step()`` advances
    ``last_epoch`` and sets the group's lr to ``get_lr()``."""

    def __init__(self, spec: "LRScheduler", group: _Group):
        self.spec, self.group = spec, group
        self._is_initial = False
        if group.initial_lr is None:
            group.initial_lr = group.lr
        self.base_lr = group.initial_lr
        self.last_epoch = -1
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self) -> None:
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            value = self.get_lr()
        else:
            self.last_epoch = epoch
            # torch uses _get_closed_form_lr where the class has one, else get_lr
            torch_closed = self.spec._torch_closed_form
            value = self.spec._closed(epoch, self.base_lr, _PY) if torch_closed else self.get_lr()
        self.group.lr = value
        self.last_lr = value

    def get_lr(self) -> float:
        return self.spec._get_lr(self)


class _PY:
    """The arithmetic the closed forms use, on Python floats (torch's) ..."""

    cos = staticmethod(math.cos)
    floor = staticmethod(math.floor)
    minimum = staticmethod(min)
    maximum = staticmethod(max)
    pi = math.pi

    @staticmethod
    def where(c, a, b):
        return a if c else b

    @staticmethod
    def to_float(x):
        return float(x)

    @staticmethod
    def searchsorted(seq, x):
        return bisect.bisect_right(seq, x)


class _JNP:
    """... and on JAX arrays (elementwise, so a vector of counts works too)."""

    cos = staticmethod(jnp.cos)
    floor = staticmethod(jnp.floor)
    minimum = staticmethod(jnp.minimum)
    maximum = staticmethod(jnp.maximum)
    pi = math.pi
    where = staticmethod(jnp.where)

    @staticmethod
    def to_float(x):
        return jnp.asarray(x).astype(_float())

    @staticmethod
    def searchsorted(seq, x):
        return jnp.searchsorted(jnp.asarray(seq, _int()), x, side="right")


def _float32(xp) -> bool:
    """Whether a closed form is evaluated in JAX's float32, where a few of them are
    rewritten to avoid cancellations that torch's Python floats do not have (the host
    port and float64 keep torch's own arithmetic)."""
    return xp is _JNP and _float() == jnp.float32


def _pow(gamma: float, k, xp):
    """``gamma ** k`` for an integer count ``k``; in float32 as ``exp(k·log gamma)`` with
    the log in Python floats (float32's rounded gamma, e.g. 0.99000001, drifts 1.2e-5 off
    by k = 1200)."""
    if not _float32(xp) or gamma <= 0:
        return gamma**k
    return jnp.exp(jnp.asarray(k, _float()) * math.log(gamma))


def _half_cos1p(num, den, xp):
    """``(1 + cos(π·num/den))/2``, the cosine factor of the annealing schedules. In JAX
    with float32, as ``sin²(π·(den - r)/(2·den))`` (``r`` = ``num`` folded into
    ``[0, den]``, exact for integer steps): the plain form cancels near its minimum, where
    float32 put CosineAnnealingLR's last steps 2.5e-3 off torch's Python-float value.
    Elsewhere (the host port, float64) the plain form, torch's arithmetic."""
    if xp is _PY or _float() != jnp.float32:
        return (1 + xp.cos(xp.pi * num / den)) / 2
    num = jnp.asarray(num, _float())
    period = 2 * jnp.asarray(den, _float())
    r = jnp.mod(num, period)
    r = jnp.minimum(r, period - r)
    return jnp.sin(math.pi * (period / 2 - r) / period) ** 2


# --- the schedule objects -----------------------------------------------------------

_schedule = dataclass(frozen=True, repr=False)  # LRScheduler.__repr__ is torch-like


@_schedule
class LRScheduler:
    """Base class: ``sched(count) -> lr`` (an optax schedule).

    Args:
      steps_per_epoch: optimizer steps per scheduler step. ``None`` (default): the
        scheduler steps with every optimizer step (per batch); ``N``: once every ``N``
        optimizer steps (per epoch of ``N`` batches).
      total_epochs: if given, the learning rates of scheduler steps ``0..total_epochs-1``
        are torch's own recursion, tabulated on the host (bit-identical to
        ``get_last_lr()``); see the module docstring.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> sched = optim.lr_scheduler.StepLR(0.1, step_size=1, gamma=0.5, steps_per_epoch=2)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # optimizer steps 0..5: halved every 2
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
        >>> sched.lr_table(3).tolist()  # torch's recursion on the host, in Python floats
        [0.1, 0.05, 0.025]
        >>> opt = optim.sgd(lr=sched, momentum=0.9)  # any funcnets or optax optimizer takes it
    """

    steps_per_epoch: int | None = field(default=None, kw_only=True)
    total_epochs: int | None = field(default=None, kw_only=True)

    _torch_closed_form = False  # whether torch's class has a _get_closed_form_lr
    _sequential_closed_ok = True  # restarted at a milestone, it ignores the lr it takes over

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.steps_per_epoch is not None:
            _check_int(name, "steps_per_epoch", self.steps_per_epoch)
        if self.total_epochs is not None:
            _check_int(name, "total_epochs", self.total_epochs)
        self._validate()
        if self.total_epochs is None and not self._has_closed_form():
            raise ValueError(
                f"{name}: {self._why_no_closed_form()}, so its learning rates are computed on the "
                f"host: pass total_epochs=N (the number of scheduler steps to tabulate)."
            )

    # subclasses ---------------------------------------------------------------------
    def _validate(self) -> None:
        pass

    def _closed(self, epoch, base_lr, xp):  # torch's closed form; None where it has none
        raise NotImplementedError

    def _get_lr(self, h: _TorchLR) -> float:  # torch's get_lr (recursive), on the host
        raise NotImplementedError

    def _has_closed_form(self) -> bool:
        return True

    def _why_no_closed_form(self) -> str:
        return "it has no closed form"

    def _optimizer_lr(self) -> float:
        """The optimizer's lr this scheduler was built on (torch's ``group['lr']``)."""
        return self.base_lr  # type: ignore[attr-defined]

    def _host(self, group: _Group) -> Any:
        return _TorchLR(self, group)

    def _hold(self) -> int:
        return self.steps_per_epoch or 1

    def __repr__(self) -> str:
        own = [f for f in dataclasses.fields(self) if f.name not in ("steps_per_epoch", "total_epochs")]
        args = [f"{f.name}={getattr(self, f.name)!r}" for f in own]
        args += [f"{k}={getattr(self, k)!r}" for k in ("steps_per_epoch", "total_epochs") if getattr(self, k) is not None]
        return f"{type(self).__name__}({', '.join(args)})"

    # the schedule -------------------------------------------------------------------
    def __call__(self, count: Array | int) -> Array:
        """The learning rate of optimizer step ``count`` (0 for the first step)."""
        count = jnp.asarray(count)
        if not jnp.issubdtype(count.dtype, jnp.integer):  # optim's _scale_by_lr passes floats
            count = jnp.round(count).astype(_int())
        return self.lr_at_epoch(count // self._hold())

    def lr_at_epoch(self, epoch: Array | int) -> Array:
        """The learning rate after ``epoch`` scheduler steps (``get_last_lr()[0]``)."""
        epoch = jnp.asarray(epoch)
        closed = self._closed(epoch, self._optimizer_lr(), _JNP) if self._has_closed_form() else None
        if self.total_epochs is None:
            return jnp.asarray(closed, _float())
        table = jnp.asarray(self._table, _float())
        value = table[jnp.clip(epoch, 0, len(self._table) - 1)]
        if closed is None:
            return value
        return jnp.where(epoch < len(self._table), value, jnp.asarray(closed, _float()))

    def lr_table(self, num_epochs: int) -> np.ndarray:
        """torch's ``get_last_lr()[0]`` after ``0..num_epochs-1`` ``step()`` calls,
        computed as torch computes it (Python floats, its recursive formulas)."""
        host = self._host(_Group(self._optimizer_lr()))
        out = [host.last_lr]
        for _ in range(num_epochs - 1):
            host.step()
            out.append(host.last_lr)
        return np.asarray(out, np.float64)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        return self.lr_table(self.total_epochs)


def _lambda_closed(self, epoch, base_lr, xp):
    return base_lr * self.lr_lambda(epoch)


@_schedule
class LambdaLR(LRScheduler):
    """``torch.optim.lr_scheduler.LambdaLR``: ``lr = base_lr · lr_lambda(epoch)``.

    ``lr_lambda`` is evaluated in JAX if it traces (``lambda e: 0.95 ** e``); a function
    with Python control flow on the epoch (``lambda e: min(1, (e + 1) / 5)``) needs
    ``total_epochs``, and is then evaluated on the host for each epoch, as torch does.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.LambdaLR(0.1, lr_lambda=lambda epoch: 0.5 ** epoch)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.05, 0.025, 0.0125, 0.0063, 0.0031]

        torch: ``LambdaLR(opt, lambda epoch: 0.5 ** epoch)`` on ``SGD(params, lr=0.1)``.
    """

    base_lr: float
    lr_lambda: Callable[[int], float]

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        if not callable(self.lr_lambda):
            raise TypeError(f"lr_lambda should be a function, but got {type(self.lr_lambda).__name__}")

    def _has_closed_form(self):
        return _traceable(self.lr_lambda)

    def _why_no_closed_form(self):
        return "its lr_lambda cannot be traced by JAX (Python control flow on the epoch?)"

    _closed = _lambda_closed

    def _get_lr(self, h):
        return h.base_lr * self.lr_lambda(h.last_epoch)


@_schedule
class MultiplicativeLR(LRScheduler):
    """``torch.optim.lr_scheduler.MultiplicativeLR``: ``lr_e = lr_{e-1} · lr_lambda(e)``.

    A product over the whole history has no closed form: ``total_epochs`` is required
    (``lr_lambda`` is evaluated on the host for epochs ``1..total_epochs-1``); past it the
    last value is held.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.MultiplicativeLR(0.1, lr_lambda=lambda epoch: 0.9, total_epochs=6)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.09, 0.081, 0.0729, 0.0656, 0.059]

        torch: ``MultiplicativeLR(opt, lambda epoch: 0.9)`` on ``SGD(params, lr=0.1)``.
    """

    base_lr: float
    lr_lambda: Callable[[int], float]

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        if not callable(self.lr_lambda):
            raise TypeError(f"lr_lambda should be a function, but got {type(self.lr_lambda).__name__}")

    def _has_closed_form(self):
        return False

    def _why_no_closed_form(self):
        return "its learning rate is a product over every epoch so far"

    _closed = None  # type: ignore[assignment]
    _sequential_closed_ok = False

    def _get_lr(self, h):
        return h.group.lr * self.lr_lambda(h.last_epoch) if not h._is_initial else h.group.lr


@_schedule
class StepLR(LRScheduler):
    """``torch.optim.lr_scheduler.StepLR``: ``lr = base_lr · gamma^(epoch // step_size)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.StepLR(0.1, step_size=2, gamma=0.5)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]

        torch: ``StepLR(opt, step_size=2, gamma=0.5)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    step_size: int
    gamma: float = 0.1

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        _check_int("StepLR", "step_size", self.step_size)

    def _closed(self, epoch, base_lr, xp):
        return base_lr * self.gamma ** (epoch // self.step_size)

    def _get_lr(self, h):
        if h.last_epoch == 0 or h.last_epoch % self.step_size != 0:
            return h.group.lr
        return h.group.lr * self.gamma


@_schedule
class MultiStepLR(LRScheduler):
    """``torch.optim.lr_scheduler.MultiStepLR``: ``lr = base_lr · gamma^(number of
    milestones <= epoch)`` (a repeated milestone counts twice, as in torch).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.MultiStepLR(0.1, milestones=[2, 4], gamma=0.1)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]

        torch: ``MultiStepLR(opt, milestones=[2, 4], gamma=0.1)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    milestones: Sequence[int]
    gamma: float = 0.1

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        ms = tuple(self.milestones)
        object.__setattr__(self, "milestones", ms)
        for m in ms:
            _check_int("MultiStepLR", "milestone", m, low=0)
        if list(ms) != sorted(ms):
            raise ValueError(f"MultiStepLR: milestones must be increasing, got {list(ms)}")

    def _closed(self, epoch, base_lr, xp):
        return base_lr * self.gamma ** xp.searchsorted(list(self.milestones), epoch)

    def _get_lr(self, h):
        counts = Counter(self.milestones)
        if h.last_epoch not in counts:
            return h.group.lr
        return h.group.lr * self.gamma ** counts[h.last_epoch]


@_schedule
class ConstantLR(LRScheduler):
    """``torch.optim.lr_scheduler.ConstantLR``: ``base_lr · factor`` for epochs
    ``< total_iters``, then ``base_lr``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.ConstantLR(0.1, factor=0.5, total_iters=3)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.05, 0.05, 0.05, 0.1, 0.1, 0.1]

        torch: ``ConstantLR(opt, factor=0.5, total_iters=3)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    factor: float = 1.0 / 3
    total_iters: int = 5

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        if self.factor > 1.0 or self.factor <= 0:
            # torch accepts 0 and then divides by it at total_iters
            raise ValueError(f"Constant multiplicative factor expected to be in (0, 1], got {self.factor}.")
        _check_int("ConstantLR", "total_iters", self.total_iters)

    def _closed(self, epoch, base_lr, xp):
        return base_lr * (self.factor + (epoch >= self.total_iters) * (1 - self.factor))

    def _get_lr(self, h):
        if h.last_epoch == 0:
            return h.group.lr * self.factor
        if h.last_epoch != self.total_iters:
            return h.group.lr
        return h.group.lr * (1.0 / self.factor)


@_schedule
class LinearLR(LRScheduler):
    """``torch.optim.lr_scheduler.LinearLR``: the factor goes linearly from
    ``start_factor`` to ``end_factor`` over ``total_iters`` epochs, then stays.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.LinearLR(0.1, start_factor=0.25, total_iters=4)
        >>> [round(lr, 5) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1]

        torch: ``LinearLR(opt, start_factor=0.25, total_iters=4)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        if self.start_factor > 1.0 or self.start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
            )
        if self.end_factor > 1.0 or self.end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        _check_int("LinearLR", "total_iters", self.total_iters)

    def _closed(self, epoch, base_lr, xp):
        s, e, n = self.start_factor, self.end_factor, self.total_iters
        if _float32(xp):  # from the nearer end: no cancellation where the factor nears a small one
            k = xp.minimum(n, epoch)
            return base_lr * xp.where(2 * k < n, s + (e - s) * (k / n), e + (s - e) * ((n - k) / n))
        return base_lr * (s + (e - s) * xp.minimum(n, epoch) / n)

    def _get_lr(self, h):
        s, e, n = self.start_factor, self.end_factor, self.total_iters
        if h.last_epoch == 0:
            return h.group.lr * s
        if h._is_initial or h.last_epoch > n:
            return h.group.lr
        return h.group.lr * (1.0 + (e - s) / (n * s + (h.last_epoch - 1) * (e - s)))


@_schedule
class ExponentialLR(LRScheduler):
    """``torch.optim.lr_scheduler.ExponentialLR``: ``lr = base_lr · gamma^epoch``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.ExponentialLR(0.1, gamma=0.5)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.05, 0.025, 0.0125, 0.0063, 0.0031]

        torch: ``ExponentialLR(opt, gamma=0.5)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    gamma: float

    def _validate(self):
        _check_lr("base_lr", self.base_lr)

    def _closed(self, epoch, base_lr, xp):
        return base_lr * _pow(self.gamma, epoch, xp)

    def _get_lr(self, h):
        return h.group.lr if h._is_initial else h.group.lr * self.gamma


@_schedule
class PolynomialLR(LRScheduler):
    """``torch.optim.lr_scheduler.PolynomialLR``:
    ``lr = base_lr · (1 - min(epoch, total_iters)/total_iters)^power``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.PolynomialLR(0.1, total_iters=4, power=2.0)
        >>> [round(lr, 5) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.05625, 0.025, 0.00625, 0.0, 0.0]

        torch: ``PolynomialLR(opt, total_iters=4, power=2.0)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    total_iters: int = 5
    power: float = 1.0

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        _check_int("PolynomialLR", "total_iters", self.total_iters)
        if not self.power >= 0:  # 0 ** negative: torch divides by zero at total_iters
            raise ValueError(f"PolynomialLR: expected power >= 0, but got {self.power}")

    def _closed(self, epoch, base_lr, xp):
        n = self.total_iters
        # under jit XLA divides by the constant n as a multiply by 1/n, which can leave
        # 1 - n/n a hair below 0, and a negative base to a fractional power is NaN
        if _float32(xp):  # (n - e)/n: exact numerator, where 1 - e/n cancels near the end
            return base_lr * ((n - xp.minimum(n, epoch)) / n) ** self.power
        return base_lr * xp.maximum(1.0 - xp.minimum(n, epoch) / n, 0.0) ** self.power

    def _get_lr(self, h):
        n = self.total_iters
        if h._is_initial or h.last_epoch > n:
            return h.group.lr
        factor = ((1.0 - h.last_epoch / n) / (1.0 - (h.last_epoch - 1) / n)) ** self.power
        return h.group.lr * factor


@_schedule
class CosineAnnealingLR(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingLR``:
    ``lr = eta_min + (base_lr - eta_min)·(1 + cos(π·epoch/T_max))/2`` (continuing past
    ``T_max``, back up, as torch's does). torch's ``step()`` computes it recursively by
    a ratio of cosines; ``total_epochs`` reproduces that recursion exactly.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.CosineAnnealingLR(0.1, T_max=4)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.0854, 0.05, 0.0146, 0.0, 0.0146]

        torch: ``CosineAnnealingLR(opt, T_max=4)`` on ``SGD(params, lr=0.1)``.
    """

    _torch_closed_form = True
    base_lr: float
    T_max: int
    eta_min: float = 0.0

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        if not isinstance(self.T_max, (int, float)) or not self.T_max > 0:
            raise ValueError(f"CosineAnnealingLR: expected T_max > 0, but got {self.T_max!r}")

    def _closed(self, epoch, base_lr, xp):
        return self.eta_min + (base_lr - self.eta_min) * _half_cos1p(epoch, self.T_max, xp)

    def _get_lr(self, h):
        e, t, lo = h.last_epoch, self.T_max, self.eta_min
        if h._is_initial:
            return h.group.lr
        if h._step_count == 1 and e > 0:
            return lo + (h.base_lr - lo) * (1 + math.cos(e * math.pi / t)) / 2
        if (e - 1 - t) % (2 * t) == 0:
            return h.group.lr + (h.base_lr - lo) * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (h.group.lr - lo) + lo


class _TorchWarmRestarts(_TorchLR):
    """torch's ``CosineAnnealingWarmRestarts.step`` (integer ``T_cur``/``T_i`` bookkeeping)."""

    def __init__(self, spec, group):
        self.T_i, self.T_cur = spec.T_0, -1
        super().__init__(spec, group)

    def step(self) -> None:
        spec = self.spec
        if self.last_epoch < 0:  # the initial step: epoch 0
            epoch = 0
            self.T_i, self.T_cur = spec.T_0, epoch
        else:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * spec.T_mult
        self.last_epoch = math.floor(epoch)
        self.group.lr = self.last_lr = self.get_lr()


@_schedule
class CosineAnnealingWarmRestarts(LRScheduler):
    """``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` (SGDR):
    ``lr = eta_min + (base_lr - eta_min)·(1 + cos(π·T_cur/T_i))/2``, restarting after
    ``T_0``, ``T_0·T_mult``, ``T_0·T_mult²``, ... epochs.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.CosineAnnealingWarmRestarts(0.1, T_0=2, T_mult=2)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.1, 0.05, 0.1, 0.0854, 0.05, 0.0146]

        torch: ``CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)`` on ``SGD(params, lr=0.1)``.
    """

    base_lr: float
    T_0: int
    T_mult: int = 1
    eta_min: float = 0.0

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        if not isinstance(self.T_0, int) or self.T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {self.T_0}")
        if not isinstance(self.T_mult, int) or self.T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {self.T_mult}")
        if not isinstance(self.eta_min, (float, int)):
            raise ValueError(f"Expected float or int eta_min, but got {self.eta_min} of type {type(self.eta_min)}")

    def _host(self, group):
        return _TorchWarmRestarts(self, group)

    def _cycle(self, epoch, xp):
        """``(T_cur, T_i)`` after ``epoch`` steps, from the cycle starts (integers, so no
        ``log`` rounding at a restart)."""
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        top = 2**62 if xp is _PY else int(jnp.iinfo(_int()).max)
        starts, lengths, s, t = [], [], 0, self.T_0
        while s <= top:
            starts.append(s)
            lengths.append(t)
            s, t = s + t, t * self.T_mult
        if xp is _PY:
            k = bisect.bisect_right(starts, epoch) - 1
            return epoch - starts[k], lengths[k]
        starts_arr = jnp.asarray(starts, _int())
        k = jnp.searchsorted(starts_arr, epoch, side="right") - 1
        return epoch - starts_arr[k], jnp.asarray(np.asarray(lengths, np.float64), _float())[k]

    def _closed(self, epoch, base_lr, xp):
        t_cur, t_i = self._cycle(epoch, xp)
        return self._value(xp.to_float(t_cur), xp.to_float(t_i), base_lr, xp)

    def _value(self, t_cur, t_i, base_lr, xp):
        return self.eta_min + (base_lr - self.eta_min) * _half_cos1p(t_cur, t_i, xp)

    def _get_lr(self, h):
        return self._value(h.T_cur, h.T_i, h.base_lr, _PY)


class _TorchCyclic(_TorchLR):
    def __init__(self, spec, group):
        group.lr = spec.base_lr  # torch sets the group's lr before the initial step ...
        super().__init__(spec, group)
        self.base_lr = spec.base_lr  # ... and its own base_lrs after it


@_schedule
class CyclicLR(LRScheduler):
    """``torch.optim.lr_scheduler.CyclicLR``: the learning rate cycles between
    ``base_lr`` and ``max_lr`` (``triangular``, ``triangular2``, ``exp_range`` or a custom
    ``scale_fn``), and with ``cycle_momentum`` the momentum inversely between
    ``max_momentum`` and ``base_momentum`` (:meth:`momentum`). torch steps it per batch.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.CyclicLR(0.01, max_lr=0.1, step_size_up=2)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.01, 0.055, 0.1, 0.055, 0.01, 0.055]

        torch: ``CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=2)`` on ``SGD(params, lr=0.1)``.
    """

    base_lr: float
    max_lr: float
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    scale_fn: Callable[[Any], Any] | None = None
    scale_mode: str = "cycle"
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def _validate(self):
        _check_lr("base_lr", self.base_lr)
        _check_lr("max_lr", self.max_lr)
        _check_int("CyclicLR", "step_size_up", self.step_size_up)
        if self.step_size_down is not None:
            _check_int("CyclicLR", "step_size_down", self.step_size_down, low=0)
        if self.mode not in ("triangular", "triangular2", "exp_range") and self.scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        if self.scale_fn is not None and self.scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {self.scale_mode!r}")

    def _has_closed_form(self):
        return self.scale_fn is None or _traceable(self.scale_fn)

    def _why_no_closed_form(self):
        return "its scale_fn cannot be traced by JAX"

    def _host(self, group):
        return _TorchCyclic(self, group)

    def _optimizer_lr(self):
        return self.base_lr

    def _scale(self, epoch, xp):
        """``(scale_factor, scale_fn(cycle or epoch))`` of torch's ``get_lr``."""
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        total = up + down
        ratio = up / total
        if _float32(xp):
            # the position in the cycle from integers: float32's 1 + e/total - cycle and
            # x - 1 cancel (2e-5 off torch's lr at the ends of a cycle by epoch 1000)
            span = int(total)
            cycle = (epoch // span + 1).astype(_float())
            r = (epoch % span).astype(_float())
            factor = r / up if down == 0 else xp.where(r <= up, r / up, (total - r) / down)
        else:
            cycle = xp.floor(1 + epoch / total)
            x = 1.0 + epoch / total - cycle
            factor = xp.where(x <= ratio, x / ratio, (x - 1) / xp.where(ratio == 1, 1.0, ratio - 1))
        if self.scale_fn is not None:
            fn, mode = self.scale_fn, self.scale_mode
        elif self.mode == "triangular":
            fn, mode = (lambda _: 1.0), "cycle"
        elif self.mode == "triangular2":
            fn, mode = (lambda c: 1 / (2.0 ** (c - 1))), "cycle"
        else:
            fn, mode = (lambda i: _pow(self.gamma, i, xp)), "iterations"
        cycle = cycle if xp is _JNP else int(cycle)
        return factor, fn(cycle if mode == "cycle" else epoch)

    def _closed(self, epoch, base_lr, xp):
        factor, scale = self._scale(epoch, xp)
        return base_lr + (self.max_lr - base_lr) * factor * scale

    def _get_lr(self, h):
        return self._closed(h.last_epoch, h.base_lr, _PY)

    def momentum(self, count: Array | int) -> Array:
        """The momentum (or Adam's ``beta1``) torch sets for optimizer step ``count``."""
        if not self.cycle_momentum:
            raise ValueError("CyclicLR(cycle_momentum=False) does not schedule the momentum")
        factor, scale = self._scale(_epoch_of(self, count), _JNP)
        return jnp.asarray(self.max_momentum - (self.max_momentum - self.base_momentum) * factor * scale, _float())


def _epoch_of(sched: LRScheduler, count) -> Array:
    count = jnp.asarray(count)
    if not jnp.issubdtype(count.dtype, jnp.integer):
        count = jnp.round(count).astype(_int())
    return count // sched._hold()


class _TorchOneCycle(_TorchLR):
    def __init__(self, spec, group):
        group.initial_lr = spec.max_lr / spec.div_factor  # torch overwrites initial_lr
        super().__init__(spec, group)


@_schedule
class OneCycleLR(LRScheduler):
    """``torch.optim.lr_scheduler.OneCycleLR`` (1cycle): from ``max_lr/div_factor`` up to
    ``max_lr`` over ``pct_start`` of the steps, then down to
    ``max_lr/div_factor/final_div_factor`` (cosine or linear; ``three_phase`` as torch),
    and the momentum inversely (:meth:`momentum`).

    Stepped per batch, as torch's is meant to be: ``steps_per_epoch`` keeps torch's
    meaning (``total_steps = epochs · steps_per_epoch``). torch raises when stepped past
    ``total_steps``; this schedule holds the value of step ``total_steps`` instead.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.OneCycleLR(0.1, total_steps=6)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0], per batch
        [0.004, 0.0994, 0.0812, 0.0463, 0.0133, 0.0]
        >>> [round(m, 4) for m in sched.momentum(jnp.arange(6)).tolist()]  # param_groups[0]["momentum"]
        [0.95, 0.8506, 0.8688, 0.9037, 0.9367, 0.95]

        torch: ``OneCycleLR(opt, max_lr=0.1, total_steps=6)`` on ``SGD(params, lr=0.1, momentum=0.9)``;
        here ``optim.sgd(lr=sched, momentum=sched.momentum)``.
    """

    max_lr: float
    total_steps: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = field(default=None, kw_only=True)  # torch's meaning, see above
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    def _validate(self):
        _check_lr("max_lr", self.max_lr)
        if self.total_steps is not None:
            if not isinstance(self.total_steps, int) or self.total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {self.total_steps}")
        elif self.epochs is not None and self.steps_per_epoch is not None:
            if not isinstance(self.epochs, int) or self.epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {self.epochs}")
            if not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {self.steps_per_epoch}")
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(self.pct_start, float) or self.pct_start < 0 or self.pct_start > 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {self.pct_start}")
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {self.anneal_strategy}")
        if not self.div_factor > 0 or not self.final_div_factor > 0:
            raise ValueError(
                f"OneCycleLR: div_factor and final_div_factor must be > 0, got {self.div_factor}, "
                f"{self.final_div_factor}"
            )
        ends = [p[0] for p in self._phases()]
        # torch divides by a phase's length: the first phase of length 0 is hit at step
        # 0, the last at step total_steps
        if ends[0] == 0 or ends[-1] == ends[-2]:
            raise ValueError(
                f"OneCycleLR: total_steps={self._total} is too small for pct_start={self.pct_start}"
                f"{' with three_phase' if self.three_phase else ''}: a phase of the cycle has no steps "
                f"(phase ends {ends}), and torch would divide by zero. Use more steps or another pct_start."
            )

    def _hold(self):
        return 1

    def _optimizer_lr(self):
        return self.max_lr / self.div_factor

    def _host(self, group):
        return _TorchOneCycle(self, group)

    @property
    def _total(self) -> int:
        return self.total_steps if self.total_steps is not None else self.epochs * self.steps_per_epoch

    def _phases(self):
        """``(end_step, start_lr, end_lr, start_momentum, end_momentum)`` per phase (torch's)."""
        n, p = self._total, self.pct_start
        init, top = self.max_lr / self.div_factor, self.max_lr
        low = init / self.final_div_factor
        lo_m, hi_m = self.base_momentum, self.max_momentum
        if self.three_phase:
            return [
                (float(p * n) - 1, init, top, hi_m, lo_m),
                (float(2 * p * n) - 2, top, init, lo_m, hi_m),
                (n - 1, init, low, hi_m, hi_m),
            ]
        return [(float(p * n) - 1, init, top, hi_m, lo_m), (n - 1, top, low, lo_m, hi_m)]

    def _anneal(self, start, end, num, den, xp):
        """torch's ``_annealing_cos``/``_annealing_linear`` at ``pct = num/den``."""
        pct = num / den
        if xp is _JNP and _float() == jnp.float32:  # without float32's cancellation near pct = 1
            if self.anneal_strategy == "cos":
                return end + (start - end) * _half_cos1p(num, den, xp)
            return end + (start - end) * ((den - num) / den)
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (xp.cos(xp.pi * pct) + 1)
        return (end - start) * pct + start

    def _interp(self, step, which: int, xp):
        """torch's ``get_lr``: the first phase with ``step <= end_step`` (else the last)."""
        phases = self._phases()
        if xp is _PY:
            start = 0.0
            for i, ph in enumerate(phases):
                if step <= ph[0] or i == len(phases) - 1:
                    return self._anneal(ph[which], ph[which + 1], step - start, ph[0] - start, xp)
                start = ph[0]
        step = jnp.minimum(step, self._total)
        out, start, taken = None, 0.0, jnp.zeros(jnp.shape(step), bool)
        for i, ph in enumerate(phases):
            last = i == len(phases) - 1
            here = ~taken & ((step <= ph[0]) if not last else True)
            denom = ph[0] - start if ph[0] != start else 1.0
            v = self._anneal(ph[which], ph[which + 1], step - start, denom, xp)
            out = v if out is None else jnp.where(here, v, out)
            taken = taken | here
            start = ph[0]
        return out

    def _closed(self, epoch, base_lr, xp):
        return self._interp(epoch, 1, xp)

    def _get_lr(self, h):
        if h.last_epoch > self._total:
            raise ValueError(f"Tried to step {h.last_epoch} times. The specified number of total steps is {self._total}")
        return self._interp(h.last_epoch, 1, _PY)

    def momentum(self, count: Array | int) -> Array:
        """The momentum (SGD) or ``betas[0]`` (Adam) torch sets for optimizer step ``count``."""
        if not self.cycle_momentum:
            raise ValueError("OneCycleLR(cycle_momentum=False) does not schedule the momentum")
        return jnp.asarray(self._interp(_epoch_of(self, count), 3, _JNP), _float())


# --- composites ---------------------------------------------------------------------


def _check_parts(owner: str, schedulers: Sequence[LRScheduler], steps_per_epoch) -> tuple:
    parts = tuple(schedulers)
    if len(parts) < 1:
        raise ValueError(f"{owner} expects at least one scheduler, but got no scheduler.")
    lrs = set()
    for i, s in enumerate(parts):
        if isinstance(s, ReduceLROnPlateau):
            raise ValueError(
                f"{owner} does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs "
                f"to be specified when calling `step`, but got one at index {i} in the given schedulers sequence."
            )
        if not isinstance(s, LRScheduler):
            raise TypeError(f"{owner}: element {i} is a {type(s).__name__}, not an LRScheduler")
        if s.steps_per_epoch is not None and s.steps_per_epoch != steps_per_epoch and not isinstance(s, OneCycleLR):
            raise ValueError(
                f"{owner}: scheduler {i} has steps_per_epoch={s.steps_per_epoch}; set steps_per_epoch on the "
                f"{owner} itself (its schedulers step together)"
            )
        if not isinstance(s, (OneCycleLR, CyclicLR)):
            lrs.add(s._optimizer_lr())
    if len(lrs) > 1:
        raise ValueError(
            f"{owner}: the schedulers act on one optimizer, so they need one base_lr; got {sorted(lrs)}"
        )
    return parts


class _TorchChained:
    """torch's ``ChainedScheduler``: the schedulers are built in order on one param
    group (each takes its initial step), then each ``step()`` steps every one."""

    def __init__(self, spec: "ChainedScheduler", group: _Group):
        self.group = group
        self._schedulers = [s._host(group) for s in spec.schedulers]
        self.last_lr = group.lr

    def _initial_step(self):
        self.step()

    def step(self):
        for s in self._schedulers:
            s.step()
        self.last_lr = self.group.lr


@_schedule
class ChainedScheduler(LRScheduler):
    """``torch.optim.lr_scheduler.ChainedScheduler``: every scheduler steps the same
    learning rate in turn (recursive ones multiply it, closed-form ones overwrite it).

    The result depends on the whole recursion, so ``total_epochs`` is required.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.ChainedScheduler([lr_scheduler.ConstantLR(0.1, factor=0.5, total_iters=2),
        ...                                   lr_scheduler.ExponentialLR(0.1, gamma=0.9)], total_epochs=6)
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.05, 0.045, 0.081, 0.0729, 0.0656, 0.059]

        torch: ``ChainedScheduler([ConstantLR(opt, 0.5, total_iters=2), ExponentialLR(opt, 0.9)])`` on ``SGD(params, lr=0.1)``.
    """

    schedulers: Sequence[LRScheduler]

    def _validate(self):
        object.__setattr__(self, "schedulers", _check_parts("ChainedScheduler", self.schedulers, self.steps_per_epoch))

    def _has_closed_form(self):
        return False

    def _why_no_closed_form(self):
        return "chained schedulers step one learning rate recursively"

    _closed = None  # type: ignore[assignment]

    def _optimizer_lr(self):
        return self.schedulers[0]._optimizer_lr()

    def _host(self, group):
        return _TorchChained(self, group)


class _TorchSequential:
    """torch's ``SequentialLR``: resets the lr, undoes the schedulers' initial steps,
    restarts the first one; at each milestone the next one restarts from epoch 0 (its
    closed form where it has one)."""

    def __init__(self, spec: "SequentialLR", group: _Group):
        self.group = group
        self._schedulers = [s._host(group) for s in spec.schedulers]
        self._milestones = list(spec.milestones)
        self.last_epoch = 0
        group.lr = group.initial_lr
        self._undo(self)
        self._schedulers[0]._initial_step()
        self.last_lr = self._schedulers[0].last_lr

    def _undo(self, s):
        if hasattr(s, "_schedulers"):
            for sub in s._schedulers:
                self._undo(sub)
        elif hasattr(s, "last_epoch"):
            s.last_epoch -= 1

    def _initial_step(self):
        self.step()

    def step(self):
        self.last_epoch += 1
        idx = bisect.bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            s._update_lr(0)
        else:
            s.step()
        self.last_lr = s.last_lr


@_schedule
class SequentialLR(LRScheduler):
    """``torch.optim.lr_scheduler.SequentialLR``: ``schedulers[i]`` runs from
    ``milestones[i-1]``, restarted at its own epoch 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.optim import lr_scheduler
        >>> sched = lr_scheduler.SequentialLR([lr_scheduler.LinearLR(0.1, start_factor=0.5, total_iters=2),
        ...                               lr_scheduler.ExponentialLR(0.1, gamma=0.5)], milestones=[2])
        >>> [round(lr, 4) for lr in sched(jnp.arange(6)).tolist()]  # torch's get_last_lr()[0] after 0..5 step()s
        [0.05, 0.075, 0.1, 0.05, 0.025, 0.0125]

        torch: ``SequentialLR(opt, [LinearLR(opt, 0.5, total_iters=2), ExponentialLR(opt, 0.5)], milestones=[2])`` on ``SGD(params, lr=0.1)``.
    """

    schedulers: Sequence[LRScheduler]
    milestones: Sequence[int]

    def _validate(self):
        parts = _check_parts("SequentialLR", self.schedulers, self.steps_per_epoch)
        ms = tuple(self.milestones)
        object.__setattr__(self, "schedulers", parts)
        object.__setattr__(self, "milestones", ms)
        if len(ms) != len(parts) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number "
                f"of milestone points, but got number of schedulers {len(parts)} and the number of milestones "
                f"to be equal to {len(ms)}"
            )
        for m in ms:
            _check_int("SequentialLR", "milestone", m, low=1)
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"SequentialLR: milestones must be strictly increasing, got {list(ms)}")
        for i, s in enumerate(parts[1:], 1):
            if isinstance(s, (ChainedScheduler, SequentialLR)):
                raise ValueError(
                    f"SequentialLR: scheduler {i} is a {type(s).__name__}; torch cannot restart one at a "
                    f"milestone (only the first scheduler may be a composite)"
                )

    def _has_closed_form(self):
        # torch's initial step of a SequentialLR nested first steps its own epoch but not
        # its schedulers' epochs, so its milestones come one step early: the host port
        # follows that, the closed form would not
        if isinstance(self.schedulers[0], SequentialLR):
            return False
        return all(s._has_closed_form() and s._sequential_closed_ok for s in self.schedulers)

    def _why_no_closed_form(self):
        if isinstance(self.schedulers[0], SequentialLR):
            return (
                "its first scheduler is a SequentialLR, which torch steps one epoch ahead of its own "
                "schedulers (its milestones take effect one step early)"
            )
        return "one of its schedulers has no closed form"

    def _optimizer_lr(self):
        return self.schedulers[0]._optimizer_lr()

    def _host(self, group):
        return _TorchSequential(self, group)

    def _closed(self, epoch, base_lr, xp):
        starts = (0, *self.milestones)
        idx = xp.searchsorted(list(self.milestones), epoch)
        out = None
        for i, (s, start) in enumerate(zip(self.schedulers, starts)):
            v = jnp.asarray(s._closed(jnp.maximum(epoch - start, 0), s._optimizer_lr(), xp), _float())
            out = v if out is None else jnp.where(idx == i, v, out)
        return out


# --- ReduceLROnPlateau ----------------------------------------------------------------


class PlateauState(NamedTuple):
    """:class:`ReduceLROnPlateau`'s state (scalars; checkpoint it with
    ``flax.serialization``)."""

    lr: Array  # the learning rate now
    best: Array  # the best metric so far (inf / -inf before the first)
    num_bad_epochs: Array  # int: epochs without improvement
    cooldown_counter: Array  # int: epochs of cooldown left
    last_epoch: Array  # int: step() calls so far


@dataclass(frozen=True)
class ReduceLROnPlateau:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau``: multiply the learning rate by
    ``factor`` once the metric has not improved for more than ``patience`` epochs.

    Pure and jittable: ``state = plateau.step(state, val_loss)``; the optimizer takes
    ``state.lr`` through :func:`inject_lr` / :func:`set_lr`::

        plateau = ReduceLROnPlateau(0.1, patience=2)
        opt = inject_lr(optim.sgd, plateau.base_lr, momentum=0.9)
        ps = plateau.init()
        for epoch in ...:
            train_state = train_one_epoch(train_state)
            ps = plateau.step(ps, validation_loss)
            train_state = train_state._replace(opt_state=set_lr(train_state.opt_state, ps.lr))

    Example:
        >>> from funcnets.optim import lr_scheduler
        >>> plateau = lr_scheduler.ReduceLROnPlateau(0.1, patience=1, factor=0.5)
        >>> state = plateau.init()
        >>> for val_loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95]:
        ...     state = plateau.step(state, val_loss)
        ...     print(round(float(state.lr), 4), end=" ")  # torch's lr after each scheduler.step(val_loss)
        0.1 0.1 0.1 0.05 0.05 0.025
    """

    base_lr: float
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8

    def __post_init__(self):
        _check_lr("base_lr", self.base_lr)
        if self.factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if self.factor < 0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1), got {self.factor}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode {self.mode} is unknown!")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {self.threshold_mode} is unknown!")
        _check_int("ReduceLROnPlateau", "patience", self.patience, low=0)
        _check_int("ReduceLROnPlateau", "cooldown", self.cooldown, low=0)
        _check_lr("min_lr", self.min_lr)

    def init(self) -> PlateauState:
        worse = jnp.inf if self.mode == "min" else -jnp.inf
        zero = jnp.zeros((), _int())
        return PlateauState(jnp.asarray(self.base_lr, _float()), jnp.asarray(worse, _float()), zero, zero, zero)

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, state: PlateauState, metrics: Array | float) -> PlateauState:
        """torch's ``scheduler.step(metrics)``: the state after one epoch's metric."""
        current = jnp.asarray(metrics, _float())
        better = self._is_better(current, state.best)
        best = jnp.where(better, current, state.best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        cooldown = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad > self.patience
        new_lr = jnp.maximum(state.lr * self.factor, self.min_lr)
        lr = jnp.where(reduce & (state.lr - new_lr > self.eps), new_lr, state.lr)
        cooldown = jnp.where(reduce, self.cooldown, cooldown)
        bad = jnp.where(reduce, 0, bad)
        return PlateauState(lr, best, bad.astype(_int()), cooldown.astype(_int()), state.last_epoch + 1)


# --- a learning rate held in the optimizer state -------------------------------------


class InjectLrState(NamedTuple):
    """The state of :func:`inject_lr`: the learning rate and the wrapped optimizer's state."""

    lr: Array  # scalar: the learning rate of the next step
    inner_state: optax.OptState


def inject_lr(factory: Callable[..., optax.GradientTransformation], lr: float, **kwargs: Any) -> optax.GradientTransformation:
    """``factory(lr=..., **kwargs)`` with the learning rate kept in the optimizer state,
    so the training loop can change it between steps (:func:`set_lr`), e.g. from
    :class:`ReduceLROnPlateau` — ``optax.inject_hyperparams`` for the learning rate,
    working with every funcnets optimizer (they accept ``lr`` as a schedule).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> from funcnets.optim.lr_scheduler import get_lr, inject_lr, set_lr
        >>> opt = inject_lr(optim.sgd, 0.1, momentum=0.9)
        >>> opt_state = set_lr(opt.init({"w": jnp.zeros(2)}), 0.01)  # e.g. ReduceLROnPlateau's state.lr
        >>> round(float(get_lr(opt_state)), 4)
        0.01
    """
    _check_lr("lr", lr)

    def inner(state_lr):
        return factory(lr=lambda _count: state_lr, **kwargs)

    def init_fn(params):
        return InjectLrState(jnp.asarray(lr, _float()), inner(jnp.asarray(lr, _float())).init(params))

    def update_fn(updates, state, params=None):
        new_updates, inner_state = inner(state.lr).update(updates, state.inner_state, params)
        return new_updates, InjectLrState(state.lr, inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def _is_inject(x) -> bool:
    return isinstance(x, InjectLrState)


def set_lr(opt_state: optax.OptState, lr: Array | float) -> optax.OptState:
    """``opt_state`` with the learning rate of every :func:`inject_lr` in it set to ``lr``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> from funcnets.optim.lr_scheduler import inject_lr, set_lr
        >>> opt = inject_lr(optim.sgd, 0.1)
        >>> params = {"w": jnp.zeros(1)}
        >>> opt_state = set_lr(opt.init(params), 0.5)
        >>> updates, _ = opt.update({"w": jnp.ones(1)}, opt_state, params)
        >>> float(updates["w"][0])  # -0.5·g: the new learning rate, no recompiling
        -0.5
    """
    found = []

    def put(x):
        if _is_inject(x):
            found.append(x)
            return x._replace(lr=jnp.asarray(lr, x.lr.dtype))
        return x

    out = jax.tree_util.tree_map(put, opt_state, is_leaf=_is_inject)
    if not found:
        raise ValueError("set_lr: the optimizer state holds no injected learning rate; build it with inject_lr(...)")
    rates = [x.lr for x in found if not isinstance(x.lr, jax.core.Tracer)]
    if len({float(r) for r in rates}) > 1:
        raise ValueError(
            f"set_lr: the optimizer state holds {len(found)} injected learning rates with different values "
            f"({', '.join(f'{float(r):g}' for r in rates)}), e.g. param groups with their own rates; setting one "
            f"value would overwrite them all (torch's ReduceLROnPlateau scales each group's rate). Set each "
            f"group's InjectLrState yourself (e.g. its rate times the plateau's state.lr / base_lr), or inject one "
            f"rate around param_groups if the groups may share it.")
    return out


def get_lr(opt_state: optax.OptState) -> Array:
    """The learning rate held by the (first) :func:`inject_lr` in ``opt_state``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> from funcnets.optim.lr_scheduler import get_lr, inject_lr
        >>> opt = inject_lr(optim.adam, 1e-3)
        >>> round(float(get_lr(opt.init({"w": jnp.zeros(1)}))), 6)
        0.001
    """
    for x in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_inject):
        if _is_inject(x):
            return x.lr
    raise ValueError("get_lr: the optimizer state holds no injected learning rate; build it with inject_lr(...)")


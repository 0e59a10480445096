"""Compiled training: a jitted train step, whole epochs as one XLA program, evaluation.

A :class:`TrainState` carries everything that changes during training. A loss function
has the signature ``loss_fn(params, model_state, batch, key) -> (loss, (model_state,
metrics))``; :func:`supervised_loss` builds the usual one from a model and a criterion.

Frozen parameters: pass ``trainable`` (a frozenset from :func:`funcnets.optim.select`).
Only the trainable subset is differentiated — XLA then removes the frozen part of the
backward pass — and only it has optimizer state.

The step's metrics include ``grad_norm``, the total norm of the gradients before
clipping (torch's ``clip_grad_norm_`` return value), whenever the optimizer contains
:func:`funcnets.optim.clip_grad_norm` (which computes it anyway); ``grad_norm=True`` adds
the 2-norm without clipping (one more pass over the gradients: +45 MB, +7.2% of the bytes
a ResNet-18 batch-8 step accesses, so not by default). ``accumulate_steps=k`` splits each
batch into ``k`` micro-batches and takes one optimizer step on their mean gradient
(:mod:`funcnets.optim.accumulate`).

Mixed precision (``precision="bf16"`` or ``"fp16"``), as ``torch.autocast`` plus
``torch.amp.GradScaler``: the parameters stay float32 (master weights) and the optimizer
updates them in float32; inside the differentiated function they and the batch's
floating inputs are cast to the compute dtype (:func:`~funcnets.optim.cast_floating`),
so the forward and backward run in bfloat16/float16 and the gradients arrive in float32.
The loss (``supervised_loss`` computes it from float32 logits, as autocast runs
``cross_entropy`` in float32) and the BatchNorm running statistics stay float32 (the
buffers are not cast; funcnets' batch_norm reduces a low-precision batch with float32
accumulation, rounds its mean and variance to the compute dtype to normalise, and
blends them into the float32 buffers). float16 needs dynamic loss scaling: the optimizer
is ``GradScaler(...).wrap(optimizer)``; the step multiplies the loss by the current
scale inside the differentiated function, the wrapper unscales, and a step whose
gradients hold an inf/NaN is skipped — parameters, optimizer state and BatchNorm buffers
unchanged — while the scale is halved (grown after ``growth_interval`` clean steps), as
torch's. The step's metrics then include ``loss_scale`` (the scale it used) and
``step_skipped``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from funcnets._typing import Array, Params, PRNGKey, State
from funcnets.aot import CachedJit
from funcnets.config import float64_enabled, warn_if_downcast
from funcnets.losses import cross_entropy
from funcnets.nn._conv import conv_lowering
from funcnets.nn.module import Module
from funcnets.optim import merge, split
from funcnets.optim.accumulate import accumulate_gradients
from funcnets.optim.clip_grad import grad_norm_of
from funcnets.optim.grad_scaler import GradScaler, GradScalerState, cast_floating
from funcnets.parallel import batch_norm_mode

__all__ = [
    "TrainState",
    "create_train_state",
    "supervised_loss",
    "make_train_step",
    "make_train_epoch",
    "PRECISIONS",
    "evaluate",
    "evaluate_metrics",
    "batches",
]

Batch = Any  # e.g. (x: (N, C, H, W), y: (N,))
LossFn = Callable[[Params, State, Batch, PRNGKey], tuple[Array, tuple[State, dict]]]


class TrainState(NamedTuple):
    """Everything a training step reads and returns: a pytree, so it can be jitted,
    donated, sharded (:func:`funcnets.parallel.distribute`) and checkpointed."""

    params: Params  # all parameters, trainable and frozen, torch names
    model_state: State  # buffers: BatchNorm running statistics
    opt_state: optax.OptState  # for the trainable parameters only
    step: Array  # int32 scalar: optimizer steps taken
    key: PRNGKey  # advanced every step (dropout)


def create_train_state(
    params: Params,
    model_state: State | None,
    optimizer: optax.GradientTransformation,
    key: PRNGKey,
    trainable: frozenset[str] | None = None,
) -> TrainState:
    """The state before the first step; optimizer state only for ``trainable``.

    The arrays are copied: the train step donates its input state, and the caller's
    ``params``/``key`` must stay usable afterwards.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn, optim, train
        >>> params, state = nn.Linear(3, 2).init(jax.random.key(0))
        >>> opt = optim.adam(1e-3)
        >>> ts = train.create_train_state(params, state, opt, jax.random.key(1), trainable=frozenset({"bias"}))
        >>> int(ts.step), ts.opt_state[0].mu.keys()  # Adam's moments for the trainable bias only
        (0, dict_keys(['bias']))
    """
    warn_if_downcast(params, model_state, where="create_train_state")
    params, model_state, key = jax.tree_util.tree_map(jnp.copy, (params, model_state or {}, key))
    train_p = params if trainable is None else split(params, trainable)[0]
    return TrainState(params, model_state, optimizer.init(train_p), jnp.zeros([], jnp.int32), key)


def supervised_loss(model: Module, criterion: Callable[[Array, Array], Array] = cross_entropy) -> LossFn:
    """``criterion(model(x, train=True), y)`` with ``loss`` and (for class indices)
    ``accuracy`` metrics. ``batch = (x, y)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn, train
        >>> model = nn.Linear(3, 2)
        >>> params = {"weight": jnp.zeros((2, 3)), "bias": jnp.array([1.0, 0.0])}
        >>> loss_fn = train.supervised_loss(model)  # criterion: cross_entropy
        >>> loss, (state, metrics) = loss_fn(params, {}, (jnp.ones((2, 3)), jnp.array([0, 1])), None)
        >>> round(float(loss), 4), float(metrics["accuracy"])  # logits (1, 0) for both samples
        (0.8133, 0.5)
    """

    def loss_fn(params, model_state, batch, key):
        x, y = batch
        logits, new_state = model.apply(params, model_state, x, train=True, key=key)
        # the loss in float32 at least, as autocast runs cross_entropy in float32
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        loss = criterion(logits, y)
        metrics = {"loss": loss}
        if jnp.issubdtype(y.dtype, jnp.integer) and logits.ndim == y.ndim + 1:
            metrics["accuracy"] = jnp.mean(jnp.argmax(logits, axis=-1) == y)
        return loss, (new_state, metrics)

    return loss_fn


PRECISIONS = {None: None, "fp32": None, "bf16": jnp.bfloat16, "fp16": jnp.float16}


def _compute_dtype(precision: str | None):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' (or None), 'bf16' or 'fp16', got {precision!r}")
    return PRECISIONS[precision]


def _scaler_state(opt_state) -> GradScalerState:
    try:
        return GradScaler.state_of(opt_state)
    except ValueError:
        raise ValueError(
            "precision='fp16' needs dynamic loss scaling (float16 gradients underflow): build the optimizer as "
            "GradScaler().wrap(optimizer) (funcnets.optim.GradScaler), for create_train_state and the step, "
            "or train in 'bf16', which needs none."
        ) from None


def _step_fn(loss_fn: LossFn, optimizer: optax.GradientTransformation, trainable: frozenset[str] | None,
             batch_norm: str = "sync", accumulate_steps: int = 1, grad_norm: bool = False,
             precision: str | None = None):
    if not isinstance(accumulate_steps, int) or accumulate_steps < 1:
        raise ValueError(f"accumulate_steps must be an integer >= 1, got {accumulate_steps!r}")
    compute = _compute_dtype(precision)
    scaled = compute == jnp.float16

    def step(ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        with batch_norm_mode(batch_norm):
            return _step(ts, batch)

    def _step(ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key, sub = jax.random.split(ts.key)
        train_p, frozen_p = (ts.params, {}) if trainable is None else split(ts.params, trainable)

        scale = _scaler_state(ts.opt_state).scale if scaled else None

        def objective(tp, model_state, batch, key):
            p = merge(tp, frozen_p) if trainable is not None else tp
            if compute is not None:  # float32 master weights, low-precision compute
                p, batch = cast_floating(p, compute), cast_floating(batch, compute)
            loss, aux = loss_fn(p, model_state, batch, key)
            if scaled:  # scaler.scale(loss): inside, so the backward runs on the scaled loss
                loss = loss.astype(jnp.float32) * scale
            return loss, aux

        grad_fn = jax.value_and_grad(objective, has_aux=True)
        if accumulate_steps == 1:
            (_, (new_state, metrics)), grads = grad_fn(train_p, ts.model_state, batch, sub)
        else:
            # a loop of micro-batches: XLA:CPU's convolution is pathological inside a
            # loop body, as in make_train_epoch
            with conv_lowering("loop" if jax.default_backend() == "cpu" else "auto"):
                grads, new_state, metrics = accumulate_gradients(
                    grad_fn, train_p, ts.model_state, batch, sub, accumulate_steps
                )
        updates, opt_state = optimizer.update(grads, ts.opt_state, train_p)
        if scaled:  # a skipped step leaves the BatchNorm buffers as they were, too
            skipped = _scaler_state(opt_state).found_inf
            new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(skipped, old, new), new_state, ts.model_state)
            metrics = {**metrics, "loss_scale": scale, "step_skipped": skipped}
        norm = grad_norm_of(opt_state)  # clip_grad_norm computed it already
        if norm is None and grad_norm:
            norm = optax.tree.norm(grads)
        if norm is not None:
            metrics = {**metrics, "grad_norm": norm}
        train_p = optax.apply_updates(train_p, updates)
        params = train_p if trainable is None else merge(train_p, frozen_p)
        return TrainState(params, new_state, opt_state, ts.step + 1, key), metrics

    return step


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    trainable: frozenset[str] | None = None,
    donate: bool = True,
    batch_norm: str = "sync",
    accumulate_steps: int = 1,
    grad_norm: bool = False,
    precision: str | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """A jitted ``step(train_state, batch) -> (train_state, metrics)``.

    With ``donate=True`` the input train state's buffers are reused for the output (do
    not use the old state after the call; on CPU the trainable parameters are kept, which
    is faster, see :class:`_KeepTrainableParams`). The same step runs data-parallel when its
    inputs are sharded (:mod:`funcnets.parallel`); ``batch_norm`` is ``"sync"``
    (global statistics, SyncBatchNorm) or ``"per-device"`` (DDP's per-replica BatchNorm).
    ``accumulate_steps=k``: one optimizer step from ``k`` consecutive micro-batches of the
    batch (gradient accumulation; see :mod:`funcnets.optim.accumulate`). ``grad_norm``:
    report the gradients' 2-norm even without ``clip_grad_norm`` (see the module docstring).
    ``precision``: ``None``/``"fp32"``, ``"bf16"`` or ``"fp16"`` (mixed precision with
    float32 master weights; ``"fp16"`` needs ``GradScaler().wrap(optimizer)``, see the
    module docstring).

    A new process can load the compiled step instead of tracing it: with the persistent
    compilation cache on (:func:`funcnets.config.enable_compilation_cache`), the compiled
    executable is saved under a key of everything that changes the program and loaded
    by the next process with the same key (:mod:`funcnets.aot`; ``FUNCNETS_AOT_CACHE=0``
    turns it off). A loss function or optimizer holding your own functions or lambdas
    cannot be keyed soundly; such a step is traced as usual.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn, optim, train
        >>> model, opt = nn.Linear(3, 2), optim.sgd(lr=0.5)
        >>> params = {"weight": jnp.zeros((2, 3)), "bias": jnp.zeros(2)}  # zeros: loss log 2 at first
        >>> x = jnp.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]); y = jnp.array([0, 1, 1, 0])
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> step = train.make_train_step(train.supervised_loss(model), opt)
        >>> for _ in range(3):
        ...     ts, metrics = step(ts, (x, y))  # ts is donated: use only the returned one
        ...     print(round(float(metrics["loss"]), 4), end=" ")  # torch's loop gives 0.6931 0.6194 0.5598
        0.6931 0.6194 0.5598
        >>> int(ts.step), sorted(metrics)
        (3, ['accuracy', 'loss'])
    """
    step = _step_fn(loss_fn, optimizer, trainable, batch_norm, accumulate_steps, grad_norm, precision)
    # everything the traced step depends on besides its arguments: the AOT cache's key
    closure = ("make_train_step", loss_fn, optimizer, trainable, donate, batch_norm, accumulate_steps,
               grad_norm, precision)
    where = "the step of make_train_step"
    if not donate or jax.default_backend() != "cpu":
        return _WarnIfDowncast(CachedJit(jax.jit(step, donate_argnums=(0,) if donate else ()), closure), where)
    return _WarnIfDowncast(_KeepTrainableParams(step, trainable, closure), where)


class _WarnIfDowncast:
    """``fn(train_state, batch)``, with a :class:`~funcnets.config.Float64DowncastWarning`
    when the batch holds float64 NumPy arrays while float64 is off.

    The look is at the call, not in the trace: ``jax.jit`` turns a float64 NumPy array
    into float32 before tracing, and float32 and float64 NumPy batches share one compiled
    program, so the trace never sees the float64. It costs a walk over the batch's few
    leaves, ~2-4 µs a call with float64 off (one flag read with it on), against the
    ~20 µs dispatch of even an empty jitted function. Everything else (``lower``, ...)
    is the wrapped function's.
    """

    def __init__(self, fn: Callable, where: str):
        self._fn = fn
        self._where = where

    def __call__(self, ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        if not float64_enabled():
            warn_if_downcast(batch, where=self._where)
        return self._fn(ts, batch)

    def __getattr__(self, name: str) -> Any:
        if name in ("_fn", "_where"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._fn, name)


class _KeepTrainableParams:
    """The CPU train step, donating all of the state except the trainable parameters.

    A donated weight is still read by the backward pass (the input gradient) when XLA
    may already have updated it in place, so XLA copies every such weight first (4.9 ms
    of copies in the profile); writing the new parameters to fresh buffers is cheaper.
    Measured on the 2-core CPU, ResNet-18 step, batch 8: 83.4-84.4 ms donating
    everything, 77.9-81.4 ms keeping the trainable parameters (separate processes);
    batch 32: 249 -> 240 ms. Frozen parameters stay donated: passed through undonated
    they are copied to the output (+3.5 ms in the frozen-trunk step).
    """

    def __init__(self, step, trainable: frozenset[str] | None, closure=None):
        self._trainable = trainable
        self._inner = step
        # jitted, through the AOT cache (funcnets.aot) when it is on
        self._jitted = CachedJit(jax.jit(self._step, donate_argnums=(1,)), ("keep-trainable", closure))

    def _step(self, train_p, ts, batch):
        # ts.params holds only the frozen parameters here
        params = train_p if self._trainable is None else merge(train_p, ts.params)
        return self._inner(ts._replace(params=params), batch)

    def _args(self, ts: TrainState, batch: Batch):
        train_p, frozen_p = (ts.params, {}) if self._trainable is None else split(ts.params, self._trainable)
        return train_p, ts._replace(params=frozen_p), batch

    def __call__(self, ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        return self._jitted(*self._args(ts, batch))

    def lower(self, ts: TrainState, batch: Batch):
        """``jax.jit(...).lower`` for these arguments (``.compile()``, cost analysis)."""
        return self._jitted.lower(*self._args(ts, batch))


def make_train_epoch(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    trainable: frozenset[str] | None = None,
    donate: bool = True,
    batch_norm: str = "sync",
    accumulate_steps: int = 1,
    grad_norm: bool = False,
    precision: str | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """Many steps as one XLA program (``lax.scan``): ``epoch(train_state, batches)``.

    ``batches`` has a leading steps axis on every leaf (``x: (steps, N, ...)``); the
    returned metrics are stacked per step. Same result as calling the step in a loop.
    ``precision`` as in :func:`make_train_step`. The epoch is not in the AOT cache
    (:mod:`funcnets.aot`): a scanned epoch deserialised by jaxlib 0.10 failed at run time
    (``NOT_FOUND: Function wrapped_broadcast not found``) in a resumed ``funcnets train``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn, optim, train
        >>> model, opt = nn.Linear(3, 2), optim.sgd(lr=0.5)
        >>> params = {"weight": jnp.zeros((2, 3)), "bias": jnp.zeros(2)}  # zeros: loss log 2 at first
        >>> x = jnp.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]); y = jnp.array([0, 1, 1, 0])
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> epoch = train.make_train_epoch(train.supervised_loss(model), opt)
        >>> xs, ys = jnp.stack([x, x, x]), jnp.stack([y, y, y])  # 3 steps: (steps, N, ...)
        >>> ts, metrics = epoch(ts, (xs, ys))
        >>> [round(v, 4) for v in metrics["loss"].tolist()]  # as three calls of the step
        [0.6931, 0.6194, 0.5598]
    """
    step = _step_fn(loss_fn, optimizer, trainable, batch_norm, accumulate_steps, grad_norm, precision)

    def epoch(ts, batches):
        # XLA:CPU's convolution is pathological inside a loop body (see nn/_conv.py)
        lowering = "loop" if jax.default_backend() == "cpu" else "auto"
        with conv_lowering(lowering):
            return lax.scan(step, ts, batches)

    epoch_fn = jax.jit(epoch, donate_argnums=(0,) if donate else ())
    return _WarnIfDowncast(epoch_fn, "the epoch of make_train_epoch")


@partial(jax.jit, static_argnames=("model",))
def _predict(model: Module, params, state, x):
    return jnp.argmax(model.apply(params, state, x, train=False)[0], axis=-1)


def evaluate(model: Module, params: Params, state: State, x: Array, y: Array, batch_size: int = 512) -> float:
    """Eval-mode accuracy of ``model`` on ``(x, y)``, in batches of ``batch_size``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn, train
        >>> model = nn.Linear(2, 2)
        >>> params = {"weight": jnp.eye(2), "bias": jnp.zeros(2)}  # predicts the larger coordinate
        >>> x, y = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]), jnp.array([0, 1, 1])
        >>> round(train.evaluate(model, params, {}, x, y, batch_size=2), 4)
        0.6667
    """
    warn_if_downcast(x, params, state, where="evaluate")
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int(jnp.sum(_predict(model, params, state, x[i : i + batch_size]) == y[i : i + batch_size]))
    return correct / max(len(x), 1)


@partial(jax.jit, static_argnames=("model",))
def _correct_and_loss(model: Module, params, state, x, y):
    logits = model.apply(params, state, x, train=False)[0]
    return jnp.sum(jnp.argmax(logits, axis=-1) == y), cross_entropy(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), y, reduction="sum")


def evaluate_metrics(model: Module, params: Params, state: State, x: Array, y: Array,
                     batch_size: int = 512) -> dict[str, float]:
    """Eval-mode ``{"accuracy", "loss"}`` (mean cross-entropy) of ``model`` on ``(x, y)``,
    in batches of ``batch_size``: what ReduceLROnPlateau is usually driven by.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn, train
        >>> model = nn.Linear(2, 2)
        >>> params = {"weight": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}  # uniform: loss log 2
        >>> m = train.evaluate_metrics(model, params, {}, jnp.ones((3, 2)), jnp.array([0, 1, 1]))
        >>> m["accuracy"], round(m["loss"], 4)  # argmax picks class 0
        (0.3333333333333333, 0.6931)
    """
    warn_if_downcast(x, params, state, where="evaluate_metrics")
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        c, l_sum = _correct_and_loss(model, params, state, x[i : i + batch_size], y[i : i + batch_size])
        correct, loss = correct + int(c), loss + float(l_sum)
    n = max(len(x), 1)
    return {"accuracy": correct / n, "loss": loss / n}


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, key: PRNGKey):
    """One shuffled epoch as stacked arrays ``x: (steps, batch_size, ...)``, ``y: (steps,
    batch_size)``; the last partial batch is dropped so every step has the same shape.

    Example:
        >>> import jax, numpy as np
        >>> from funcnets import train
        >>> x, y = np.zeros((10, 3), np.float32), np.arange(10)
        >>> xs, ys = train.batches(x, y, batch_size=4, key=jax.random.key(0))
        >>> xs.shape, ys.shape  # 2 steps of 4; the last 2 samples are dropped
        ((2, 4, 3), (2, 4))
        >>> len(set(ys.ravel().tolist()))  # 8 different samples: shuffled without repeats
        8
    """
    warn_if_downcast(x, where="batches")
    if not 0 < batch_size <= len(x):
        raise ValueError(f"batch_size must be in [1, {len(x)}] (the number of samples), got {batch_size}")
    perm = np.asarray(jax.random.permutation(key, len(x)))
    steps = len(x) // batch_size
    idx = perm[: steps * batch_size].reshape(steps, batch_size)
    return jnp.asarray(x[idx]), jnp.asarray(y[idx])

"""Ready-made training runs used by the ``funcnets`` command and the examples.

:func:`fit` trains a classifier on a :class:`~funcnets.data.Split` with one compiled
program per epoch, a progress bar, held-out evaluation, checkpoints and resume, and
returns the history; :func:`plot_history` draws it as a PNG.

Resuming is exact and checked. Every checkpoint holds, besides the arrays, its epoch, the
history so far and the run's settings (``fit``'s own: batch size, seed, augmentation,
trainable parameters, a fingerprint of the data; and whatever the caller passes as
``settings``: the command stores model, optimizer, learning rate, schedule, ...). A
resume takes its position from the checkpoint's own step, and refuses settings that
differ from the saved ones, listing each difference (:func:`setting_differences`), with
one exception: a run may be extended to more epochs (see :func:`lr_schedule` for the
schedule an extension gets).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import numpy as np
import optax

from funcnets import optim, parallel
from funcnets._io import atomic_write_bytes, fault_point
from funcnets.checkpoint import (
    clear_checkpoints,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_temporary,
    save_checkpoint,
)
from funcnets.config import one_off_compile_options
from funcnets.data import Split, fingerprint, random_shift
from funcnets.errors import FuncnetsError
from funcnets.nn.module import Module
from funcnets.optim import lr_scheduler as _sched
from funcnets.train import TrainState, batches, create_train_state, evaluate_metrics, make_train_epoch, supervised_loss

__all__ = [
    "build_model",
    "input_shape",
    "make_optimizer",
    "lr_schedule",
    "learning_rate",
    "LearningRate",
    "SCHEDULES",
    "fit",
    "plot_history",
    "check_writable",
    "check_batch_size",
    "setting_differences",
    "NonFiniteLossError",
    "MODELS",
    "OPTIMIZERS",
    "ZooParityRow",
    "zoo_parity",
    "format_zoo_table",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "step", "multistep", "exponential", "plateau")
MODELS = ("lenet", "resnet18", "resnet34")


class NonFiniteLossError(FuncnetsError):
    """Training produced a NaN or infinite loss (or parameters); ``step`` is the first
    optimizer step (1-based, counted over the whole run) whose loss was not finite,
    ``epoch`` its epoch (1-based)."""

    def __init__(self, message: str, step: int, epoch: int):
        super().__init__(message)
        self.step = step
        self.epoch = epoch


def _zoo_model(name: str, **kwargs: Any):
    """``funcnets.models.get_model(name)`` as ``funcnets train`` builds it: GoogLeNet and
    Inception v3 without their auxiliary heads (train mode would return them, and the
    fine-tune trains the main head only, as torchvision's loaders with weights do)."""
    from funcnets.models import get_model, list_models

    if name not in list_models():
        try:
            get_model(name)  # the close matches
        except ValueError as e:
            close = [part for part in str(e).split(". ") if part.startswith("Close matches")]
            detail = f"{close[0].rstrip('.')}." if close else ""
            raise FuncnetsError(
                f"unknown model {name!r}; choose one of {', '.join(MODELS)} or any other name of "
                f"funcnets.models.list_models() ({len(list_models())} torchvision models). {detail}".rstrip()
            ) from None
    return get_model(name, **_TRAIN_KWARGS.get(name, {}), **kwargs)


_TRAIN_KWARGS = {"googlenet": {"aux_logits": False}, "inception_v3": {"aux_logits": False}}
_AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


def input_shape(name: str) -> tuple[int, int]:
    """``(side, channels)`` of the images ``funcnets train --model name`` feeds the model.

    LeNet: 32×32 grey. Every zoo model (:func:`funcnets.models.list_models`): 64×64 RGB
    (the grey digits replicated on three channels), or the architecture's own size where
    it needs more: its minimum (torchvision's ``meta["min_size"]``: Inception v3 75), or
    the one size it is built for (ViT's ``image_size`` and MaxViT's ``input_size``: 224).
    64 is the smallest side at which every zoo model keeps a spatial map of at least 2×2
    before its pooling (ResNet's /32), and what ResNet-18 was trained at before the zoo.
    """
    if name == "lenet":
        return 32, 1
    model = _zoo_model(name)
    fixed = getattr(model, "image_size", None) or (getattr(model, "input_size", None) or (None,))[0]
    return (int(fixed) if fixed else max(64, int(model.min_size))), 3


def _new_head(old: Module, num_classes: int) -> Module:
    from funcnets import nn

    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes)
    if isinstance(old, nn.Conv2d):  # SqueezeNet: classifier[1] = nn.Conv2d(512, num_classes, kernel_size=1)
        return nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
    raise FuncnetsError(f"cannot replace a {type(old).__name__} head")


def build_model(name: str, weights: str | os.PathLike | None = None, seed: int = 0, num_classes: int = 10):
    """``(model, params, state)`` for a ``num_classes``-way task: LeNet, or any model of
    :func:`funcnets.models.list_models` whose classifier head (the family's
    :func:`~funcnets.models._registry.head_path`: ``fc``, ``classifier[-1]``,
    ``heads.head``, ``head``, ...) is replaced by a fresh ``Linear(in_features,
    num_classes)`` (SqueezeNet: a 1×1 ``Conv2d``): the tutorial's fine-tuning set-up,
    ``model.fc = nn.Linear(512, 10)``. GoogLeNet and Inception v3 are built without their
    auxiliary heads.

    ``weights``: a torch ``.pth``/``.safetensors`` file. For a zoo model either
    torchvision's original (1000 classes; the head is replaced after loading, auxiliary
    heads dropped) or one with the ``num_classes`` head already, such as the file
    ``funcnets train --model NAME`` writes (loaded whole). As in torchvision, GoogLeNet and
    Inception v3 given weights normalise their input as ImageNet's (``transform_input``).
    """
    from funcnets import nn, torch_io
    from funcnets.models import LeNet
    from funcnets.models._registry import head_path

    key = jax.random.PRNGKey(seed)
    if name == "lenet":
        model = LeNet(num_classes=num_classes)
        if not weights:
            return (model, *model.init(key))
        return (model, *_load_weights(model, torch_io.load_file(weights, arch=None), weights, name, num_classes))
    # torchvision's GoogLeNet/Inception builders given weights set transform_input=True
    base = _zoo_model(name, **({"transform_input": True} if weights and name in _TRAIN_KWARGS else {}))
    path = head_path(base)
    head = _new_head(dict(base.named_modules())[path], num_classes)
    if weights:
        tensors = torch_io.load_file(weights, arch=name)
        w = tensors.get(f"{path}.weight")
        if w is not None and tuple(w.shape) == tuple(jax.eval_shape(head.init, key)[0]["weight"].shape):
            shapes = jax.eval_shape(base.init, key)  # the head is in the file: load it whole
            model = nn.replace(base, *shapes, path, head, key)[0]
            return (model, *_load_weights(model, tensors, weights, name, num_classes))
        if name in _TRAIN_KWARGS:  # torchvision loads the auxiliary heads, then deletes them
            tensors = {k: v for k, v in tensors.items() if not k.startswith(_AUX_PREFIXES)}
        params, state = _load_weights(base, tensors, weights, name, num_classes)
    else:
        params, state = base.init(key)
    model, params, state = nn.replace(base, params, state, path, head, jax.random.fold_in(key, 1))
    return model, params, _prune_empty(state)


def _prune_empty(tree: dict) -> dict:
    """``tree`` without empty sub-dicts: ``nn.replace`` at a nested path (``classifier.1``)
    of a head without buffers leaves ``{"classifier": {}}`` in the state, which the model's
    ``apply`` does not return, and a training scan needs the same structure in and out."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            v = _prune_empty(v)
            if not v:
                continue
        out[k] = v
    return out


def _load_weights(model: Module, tensors: dict, path, name: str, num_classes: int) -> tuple[dict, dict]:
    from funcnets import torch_io

    try:
        loaded = torch_io.load_state_dict(model, tensors)
    except FuncnetsError as e:
        problems = [line for line in str(e).splitlines() if line.startswith("  ")]
        shown = problems[:8] + ([f"  ... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        expected = (f"torchvision's {name} weights (1000 classes) or " if name != "lenet" else "")
        raise FuncnetsError(
            f"--weights {path} does not fit --model {name} with {num_classes} classes ({len(problems)} problems):\n"
            + "\n".join(shown)
            + f"\nPass {expected}a {name}.safetensors that `funcnets train --model {name}` wrote, "
            f"or choose the --model these weights belong to."
        ) from None
    return loaded.params, loaded.state


def _check_hyperparameter(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> None:
    ok = math.isfinite(value) and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}{')' if hi_open else ']'}, got {value}")


_MAX_SCHEDULE_STEPS = 1 << 22  # the cosine table's length limit (16 MiB of float32)


def lr_schedule(lr: float, schedule: str = "constant", total_steps: int | Sequence[int] | None = None):
    """The learning rate per optimizer step: ``lr`` itself, or an optax schedule.

    ``schedule="cosine"`` is torch's ``CosineAnnealingLR(T_max=total_steps, eta_min=0)``
    stepped every batch. ``total_steps`` may also be a list of cycle ends ``[T0, T1, ...]``
    (increasing): cosine from ``lr`` to 0 over steps ``[0, T0)``, then from ``lr`` to 0
    again over ``[T0, T1)``, and so on (SGDR's warm restarts), 0 after the last::

        lr_t = lr/2 · (1 + cos(π (t − T_{k−1}) / (T_k − T_{k−1})))   for T_{k−1} ≤ t < T_k

    This is how ``funcnets train --resume --epochs N`` extends a run: the schedule the
    run was started with is kept exactly for the epochs it covered (finished or not), and
    the added epochs get a cycle of their own, instead of a stretched schedule that would
    change the learning rate of epochs already trained.

    The rates are computed once in float64 (as torch computes them, in Python floats)
    and looked up by step, so a run extended later trains its first epochs with
    bit-identical rates: a cosine evaluated inside the compiled step can round
    differently from one program to the next. Up to 2**22 steps.
    """
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number greater than 0, got {lr}")
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; choose 'constant' or 'cosine'")
    ends = [total_steps] if isinstance(total_steps, int) else list(total_steps or [])
    if not ends or ends[0] < 1 or any(b <= a for a, b in zip(ends, ends[1:])):
        raise ValueError(f"the cosine schedule needs total_steps (epochs × steps per epoch) as a positive "
                         f"integer or an increasing list of cycle ends, got {total_steps!r}")
    if ends[-1] > _MAX_SCHEDULE_STEPS:
        raise ValueError(f"the cosine schedule covers at most {_MAX_SCHEDULE_STEPS:,} steps, got {ends[-1]:,} "
                         f"(fewer epochs or a larger batch size)")
    t = np.arange(ends[-1] + 1)
    starts, lengths = np.array([0, *ends[:-1]]), np.diff([0, *ends])
    k = np.minimum(np.searchsorted(ends, t, side="right"), len(ends) - 1)
    table = lr * 0.5 * (1.0 + np.cos(np.pi * np.minimum((t - starts[k]) / lengths[k], 1.0)))

    def cosine(count):
        # optimizers may pass the count as a float (exact: the table is far below 2**24 steps)
        index = jax.numpy.clip(count, 0, len(table) - 1).astype(jax.numpy.int32)
        return jax.numpy.asarray(table, dtype=jax.dtypes.canonicalize_dtype(np.float64))[index]

    return cosine


class LearningRate(NamedTuple):
    """A run's learning rate, as :func:`learning_rate` builds it for ``funcnets train``.

    ``lr``: what the optimizer takes, a float or ``step -> lr`` (a table of torch's own
    values looked up by the step count); ``momentum``: ``step -> momentum`` where the
    schedule cycles it (OneCycleLR: SGD's momentum, Adam's ``betas[0]``), else None;
    ``plateau``: the :class:`~funcnets.optim.lr_scheduler.ReduceLROnPlateau` that
    :func:`fit` steps after each epoch on the held-out ``plateau_metric`` (``"loss"`` or
    ``"accuracy"``), the rate then living in the optimizer state (``inject_lr``);
    ``per_step``: whether the rate changes within an epoch (history records every step's).
    """

    lr: Any
    momentum: Callable | None = None
    plateau: _sched.ReduceLROnPlateau | None = None
    plateau_metric: str = "loss"
    per_step: bool = False
    schedule: str = "constant"

    def at(self, steps: np.ndarray) -> np.ndarray:
        """The learning rates of optimizer steps ``steps`` as the optimizer sees them
        (not for ``plateau``, whose rate is in the optimizer state)."""
        if callable(self.lr):
            return np.asarray(jax.vmap(self.lr)(jax.numpy.asarray(steps)), np.float64)
        return np.full(np.shape(steps), float(self.lr))


# each schedule's options (a missing one: torch requires it), see learning_rate
SCHEDULE_OPTIONS = {
    "constant": {},
    "cosine": {},
    "onecycle": {"max_lr": None, "pct_start": 0.3, "base_momentum": 0.85, "max_momentum": 0.95,
                 "div_factor": 25.0, "final_div_factor": 1e4, "anneal_strategy": "cos"},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "plateau": {"patience": 10, "factor": 0.1, "plateau_metric": "loss"},
}


def _table_lookup(table: np.ndarray, hold: int) -> Callable:
    """``count -> table[count // hold]`` (the last value past the end), in the default
    float dtype; computed once on the host, so every compiled program sees the same bits."""

    def lookup(count):
        # optimizers may pass the count as a float (exact below 2**24 steps)
        index = jax.numpy.clip(jax.numpy.asarray(count).astype(jax.numpy.int32) // hold, 0, len(table) - 1)
        return jax.numpy.asarray(table, dtype=jax.dtypes.canonicalize_dtype(np.float64))[index]

    return lookup


def learning_rate(lr: float, schedule: str, epochs: int | Sequence[int], steps_per_epoch: int,
                  options: Mapping[str, Any] | None = None) -> LearningRate:
    """The learning rate of a ``funcnets train`` run: ``schedule`` is one of
    :data:`SCHEDULES`, torch's scheduler stepped as torch users step it.

    * ``constant``; ``cosine``: :func:`lr_schedule` (per batch, a new cycle per extension);
    * ``onecycle``: ``OneCycleLR(max_lr, total_steps=epochs·steps_per_epoch, pct_start,
      anneal_strategy, base_momentum, max_momentum, div_factor, final_div_factor)``
      stepped per batch, cycling the momentum (SGD) or ``betas[0]`` (Adam) from
      ``max_momentum`` down to ``base_momentum`` and back (torch's defaults 0.95 and 0.85;
      it replaces ``--momentum``/``betas[0]``); ``max_lr`` defaults to ``lr``. Its cycle
      spans the run's epochs, so a run cannot be extended (that would change the rates of
      the epochs already trained);
    * ``step`` (``step_size``, ``gamma``), ``multistep`` (``milestones``, ``gamma``),
      ``exponential`` (``gamma``): stepped once per epoch; an extension continues them;
    * ``plateau``: ``ReduceLROnPlateau(lr, mode, factor, patience)`` on the held-out
      ``plateau_metric`` after each epoch (``mode`` min for ``loss``, max for ``accuracy``).

    The rates are torch's own (``lr_table``: its recursion in Python floats), tabulated
    on the host. ``epochs``: the run's epoch count, or the list of epoch counts it was
    started and extended with.
    """
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number greater than 0, got {lr}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    ends = [epochs] if isinstance(epochs, int) else list(epochs)
    opts = dict(SCHEDULE_OPTIONS[schedule])
    for k, v in (options or {}).items():
        if k not in opts:
            users = [s for s, o in SCHEDULE_OPTIONS.items() if k in o]
            raise ValueError(f"--{k.replace('_', '-')} applies to --lr-schedule {' or '.join(users)}, not {schedule}")
        if v is not None:
            opts[k] = v
    missing = [k for k, v in opts.items() if v is None and k != "max_lr"]
    if missing:
        raise ValueError(f"--lr-schedule {schedule} needs --{missing[0].replace('_', '-')} (torch's {schedule} "
                         f"scheduler has no default for it)")
    total = ends[-1]
    if schedule in ("constant", "cosine"):
        return LearningRate(lr_schedule(lr, schedule, [e * steps_per_epoch for e in ends]),
                            per_step=schedule == "cosine", schedule=schedule)
    if schedule == "onecycle":
        if len(ends) > 1:
            raise ValueError(
                f"a --lr-schedule onecycle run cannot be extended (--epochs {ends[-1]} > {ends[0]}): its one cycle "
                f"spans the {ends[0]} epochs it was started with, and a longer cycle would change the learning "
                f"rates of the epochs already trained. Start a new run from its weights (--weights FILE)."
            )
        sched = _sched.OneCycleLR(opts["max_lr"] or lr, total_steps=total * steps_per_epoch,
                                  pct_start=float(opts["pct_start"]), anneal_strategy=opts["anneal_strategy"],
                                  base_momentum=float(opts["base_momentum"]),
                                  max_momentum=float(opts["max_momentum"]), div_factor=float(opts["div_factor"]),
                                  final_div_factor=float(opts["final_div_factor"]))
        n = total * steps_per_epoch
        with jax.enable_x64(True):  # torch's momentum in Python floats
            momentum = np.asarray(jax.vmap(sched.momentum)(np.arange(n)), np.float64)
        return LearningRate(_table_lookup(sched.lr_table(n), 1), _table_lookup(momentum, 1),
                            per_step=True, schedule=schedule)
    if schedule == "plateau":
        if opts["plateau_metric"] not in ("loss", "accuracy"):
            raise ValueError(f"plateau_metric must be 'loss' or 'accuracy', got {opts['plateau_metric']!r}")
        plateau = _sched.ReduceLROnPlateau(lr, mode="min" if opts["plateau_metric"] == "loss" else "max",
                                           factor=float(opts["factor"]), patience=int(opts["patience"]))
        return LearningRate(lr, plateau=plateau, plateau_metric=opts["plateau_metric"], schedule=schedule)
    if schedule == "step":
        sched = _sched.StepLR(lr, step_size=int(opts["step_size"]), gamma=float(opts["gamma"]))
    elif schedule == "multistep":
        sched = _sched.MultiStepLR(lr, milestones=[int(m) for m in opts["milestones"]], gamma=float(opts["gamma"]))
    else:
        sched = _sched.ExponentialLR(lr, gamma=float(opts["gamma"]))
    return LearningRate(_table_lookup(sched.lr_table(total), steps_per_epoch), schedule=schedule)


def make_optimizer(name: str, lr: float | LearningRate, momentum: float = 0.0, weight_decay: float = 0.0,
                   nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999),
                   schedule: str = "constant", total_steps: int | Sequence[int] | None = None
                   ) -> optax.GradientTransformation:
    """An optimizer by torch name, with the options ``funcnets train`` exposes.

    The learning rate follows :func:`lr_schedule` (``schedule``, ``total_steps``), or is
    a :class:`LearningRate` from :func:`learning_rate` (then ``schedule`` is not given):
    its cycled momentum replaces ``momentum`` (SGD) or ``betas[0]`` (Adam), and a plateau
    schedule keeps the rate in the optimizer state (:func:`~funcnets.optim.lr_scheduler.inject_lr`).
    Non-finite or out-of-range hyperparameters raise ``ValueError``.
    """
    if not isinstance(lr, LearningRate):
        lr = LearningRate(lr_schedule(lr, schedule, total_steps))
    elif schedule != "constant" or total_steps is not None:
        raise ValueError("make_optimizer: a LearningRate carries its schedule; do not pass schedule/total_steps too")
    _check_hyperparameter("momentum", momentum, 0.0, 1.0, hi_open=True)
    _check_hyperparameter("weight_decay", weight_decay, 0.0, math.inf, hi_open=True)
    for i, b in enumerate(betas):
        _check_hyperparameter(f"betas[{i}]", b, 0.0, 1.0, hi_open=True)
    if name == "sgd":
        factory, kwargs = optim.sgd, dict(momentum=lr.momentum or momentum, weight_decay=weight_decay,
                                          nesterov=nesterov)
    elif name in ("adam", "adamw"):
        if momentum or nesterov:
            raise ValueError(f"{name} takes betas, not momentum/nesterov; drop --momentum/--nesterov or use --optimizer sgd")
        factory = optim.adam if name == "adam" else optim.adamw
        kwargs = dict(betas=(lr.momentum or betas[0], betas[1]), weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if lr.plateau is not None:
        return _sched.inject_lr(factory, lr.plateau.base_lr, **kwargs)
    return factory(lr.lr, **kwargs)


def check_writable(directory: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``directory`` and prove it is writable now, before any work is done.
    ``option`` names the command-line option the directory came from, for the message."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".funcnets-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise FuncnetsError(
            f"cannot write to {option} {directory} ({e.strerror}). Pass a writable directory as {option} "
            f"(e.g. {option} ./runs/{'ckpt' if 'checkpoint' in option else 'train'}) or fix its permissions."
        ) from None
    return directory


def check_batch_size(batch_size: int, n_train: int) -> None:
    if not 0 < batch_size <= n_train:
        raise ValueError(f"batch size must be in [1, {n_train}] (the training set size), got {batch_size}")


def _jsonable(settings: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(settings), allow_nan=False))


def setting_differences(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, saved value, given value)`` for every setting that differs (compared as
    JSON; a setting missing on one side shows as None), except the one change a resume
    allows: ``"epochs"`` growing (an int that grows, or a list of cosine cycle ends that
    gains entries at its end, see :func:`lr_schedule`)."""
    saved, given = _jsonable(saved), _jsonable(given)
    out = []
    for k in sorted(set(saved) | set(given)):
        a, b = saved.get(k), given.get(k)
        if a == b:
            continue
        if k == "epochs" and isinstance(a, int) and isinstance(b, int) and b > a:
            continue
        if (k == "epochs" and isinstance(a, list) and isinstance(b, list) and b[: len(a)] == a
                and all(y > x for x, y in zip(b[len(a) - 1 :], b[len(a) :]))):
            continue
        out.append((k, a, b))
    return out


def _all_finite(tree) -> bool:
    return all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree_util.tree_leaves(tree)
               if np.issubdtype(np.asarray(leaf).dtype, np.inexact))


def fit(
    model: Module,
    params: Any,
    state: Any,
    data: Split,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    trainable: frozenset[str] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool | int | str | os.PathLike = False,
    overwrite: bool = False,
    keep: int = 3,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
    desc: str = "train",
    augment_shift: int = 0,
    devices: str = "1",
    batch_norm: str = "sync",
    warn: Callable[[str], None] | None = None,
    learning_rate: LearningRate | None = None,
    precision: str = "fp32",
) -> tuple[TrainState, list[dict]]:
    """Train for ``epochs`` epochs; returns the final state and one history row per
    epoch (``epoch``, ``loss``, ``train_accuracy``, ``test_accuracy``, ``seconds``).

    Checkpoints: with ``checkpoint_dir`` a checkpoint (arrays, epoch, history, settings)
    is saved after every epoch, keeping the ``keep`` newest. A fresh run refuses a
    directory that already holds checkpoints unless ``overwrite=True`` (which deletes
    them first). ``resume`` continues a run bit for bit as if uninterrupted: ``True`` from
    the newest intact checkpoint in ``checkpoint_dir`` (an unreadable newest one is
    skipped with a warning through ``warn``), an int from that step, a path from that
    ``step_*`` folder (saving beside it unless ``checkpoint_dir`` is given). The position
    comes from the checkpoint's step; settings that differ from the saved ones (see
    :func:`setting_differences`) raise, listing the differences. Resuming a run that has
    reached ``epochs`` trains nothing and returns its state and history. Leftover
    temporary folders from an interrupted save are removed first.

    A NaN or infinite loss (or parameters) stops training with
    :class:`NonFiniteLossError` before that epoch is checkpointed.

    ``settings``: JSON data that describes the rest of the run (the command passes
    model, optimizer, learning rate, schedule, ...), stored and compared on resume.
    ``augment_shift`` translates training images by up to that many pixels each epoch.
    ``devices="all"`` runs the same step data-parallel over every device
    (:mod:`funcnets.parallel`), with BatchNorm ``batch_norm`` = ``"sync"`` or
    ``"per-device"``; the device count is not a setting (a run may resume on others).

    ``learning_rate``: the :class:`LearningRate` the ``optimizer`` was built with
    (:func:`make_optimizer`). Each history row then records ``lr`` (the rate of the
    epoch's first step) and, for rates that change every step, ``lr_steps``; a plateau
    schedule is stepped after each epoch on the held-out loss or accuracy, and its state
    is saved in every checkpoint and restored on resume. Every row records the held-out
    ``test_loss``.

    ``precision``: ``"fp32"``, ``"bf16"`` or ``"fp16"``: mixed-precision training steps
    with float32 master weights (:func:`funcnets.train.make_train_step`); for ``"fp16"``
    the optimizer is wrapped in a default :class:`~funcnets.optim.GradScaler` here.
    Evaluation runs in float32.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if devices not in ("1", "all"):
        raise ValueError(f"devices must be '1' or 'all', got {devices!r}")
    check_batch_size(batch_size, len(data.x_train))
    random_shift(data.x_train[:1], augment_shift, np.random.default_rng(0))  # range check before any work
    steps_per_epoch = len(data.x_train) // batch_size
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    if precision == "fp16":  # float16 gradients underflow without dynamic loss scaling
        optimizer = optim.GradScaler().wrap(optimizer)
    key = jax.random.PRNGKey(seed)
    ts = create_train_state(params, state, optimizer, key, trainable)
    history: list[dict] = []
    start_epoch = 0
    last = None  # the newest checkpoint of this run
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
    resuming = resume is not False and resume is not None
    run_settings = None
    if directory is not None or resuming:  # only checkpoints need them (the data's digest costs a pass)
        run_settings = {
            **(settings or {}),
            "batch_size": batch_size,
            "seed": seed,
            "augment_shift": augment_shift,
            "trainable_params": sorted(trainable) if trainable is not None else None,
            "dataset": fingerprint(data),
        }
    if directory is not None:
        remove_temporary(directory)
    if resuming:
        if directory is None and (resume is True or isinstance(resume, int)):
            raise FuncnetsError("resuming needs the checkpoint directory (--checkpoint-dir) to look in.")
        info = find_checkpoint(directory, None if resume is True else resume, warn=warn)
        if not info.run:
            raise FuncnetsError(
                f"checkpoint {info.path} holds no run information (an older format, or saved without run=); "
                f"funcnets.checkpoint.load_checkpoint loads its arrays, but a run cannot continue from it."
            )
        diffs = setting_differences(info.settings, run_settings)
        if diffs:
            raise FuncnetsError(
                f"checkpoint {info.path} was saved by a run with other settings:\n"
                + "\n".join(f"  {k}: saved {a!r}, given {b!r}" for k, a, b in diffs)
                + "\nResume with the data and settings the run was saved with (funcnets train: drop the "
                "differing options), or start a new run (--overwrite / overwrite=True, or another checkpoint directory)."
            )
        ts = load_checkpoint(info.path, like=ts)
        start_epoch, partial = divmod(int(ts.step), steps_per_epoch)
        if partial or info.epoch != start_epoch or len(info.history) != start_epoch:
            raise FuncnetsError(
                f"checkpoint {info.path} is inconsistent: step {int(ts.step)} is not the end of epoch "
                f"{info.epoch} at {steps_per_epoch} steps per epoch (history: {len(info.history)} epochs). "
                f"Resume from another checkpoint (--resume STEP)."
            )
        if start_epoch > epochs:
            raise FuncnetsError(f"checkpoint {info.path} is at epoch {start_epoch}, past epochs={epochs}.")
        history, last = info.history, info.path
        directory = directory if directory is not None else info.path.parent
        plateau_state = _plateau_from_json(learning_rate, info.run.get("plateau"), info.path)
    elif directory is not None:
        if overwrite:
            clear_checkpoints(directory)
        elif list_checkpoints(directory):  # a lone stale `latest` is replaced by the first save
            raise FuncnetsError(
                f"{directory} already holds checkpoints of a run; continue it with resume=True, delete them "
                f"with overwrite=True, or pass another checkpoint_dir."
            )
    if not resuming:
        plateau_state = _plateau_from_json(learning_rate, None, None)
    mesh = None
    if devices == "all":
        mesh = parallel.data_mesh()
        ts = parallel.distribute(ts, mesh)
    epoch_fn = make_train_epoch(supervised_loss(model), optimizer, trainable=trainable, batch_norm=batch_norm,
                                precision=precision)
    bar = _progress(range(start_epoch, epochs), desc, progress)
    for e in bar:
        fault_point("epoch")
        t = time.perf_counter()
        # shuffle and augmentation depend only on (seed, epoch): a resumed run sees the same batches
        x = random_shift(data.x_train, augment_shift, np.random.default_rng([seed, e]))
        epoch_batches = batches(x, data.y_train, batch_size, jax.random.fold_in(key, e))
        if mesh is not None:
            epoch_batches = parallel.shard_batch(epoch_batches, mesh, batch_axis=1)
        ts, metrics = epoch_fn(ts, epoch_batches)
        fault_point("epoch.running")  # dispatched: XLA is running the epoch
        losses = np.asarray(metrics["loss"])
        _stop_if_not_finite(losses, ts, e, steps_per_epoch, last)
        held_out = evaluate_metrics(model, ts.params, ts.model_state, data.x_test, data.y_test)
        row = {
            "epoch": e + 1,
            "loss": float(np.mean(losses)),
            "train_accuracy": float(np.mean(metrics["accuracy"])),
            "test_accuracy": held_out["accuracy"],
            "test_loss": held_out["loss"],
        }
        if learning_rate is not None:
            ts, plateau_state = _record_lr(row, learning_rate, ts, plateau_state, e, steps_per_epoch, held_out)
        row["seconds"] = time.perf_counter() - t
        history.append(row)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{row['loss']:.4f}", test_acc=f"{row['test_accuracy']:.2%}")
        if directory is not None:
            run = {"epoch": e + 1, "epochs": epochs, "history": history, "settings": run_settings}
            if plateau_state is not None:
                run["plateau"] = _plateau_to_json(plateau_state)
            last = save_checkpoint(directory, ts, run=run, keep=keep)
    return ts, history


def _record_lr(row: dict, lr: LearningRate, ts: TrainState, plateau_state, e: int, steps_per_epoch: int,
               held_out: dict) -> tuple[TrainState, Any]:
    """Record epoch ``e``'s learning rate(s) in ``row``; step a plateau schedule on the
    held-out metric and put its new rate in the optimizer state for the next epoch."""
    if lr.plateau is None:
        rates = lr.at(np.arange(e * steps_per_epoch, (e + 1) * steps_per_epoch))
        row["lr"] = float(rates[0])
        if lr.per_step:
            row["lr_steps"] = [float(r) for r in rates]
        return ts, plateau_state
    row["lr"] = float(_sched.get_lr(ts.opt_state))
    with jax.enable_x64(True):  # torch's ReduceLROnPlateau works in Python floats
        plateau_state = lr.plateau.step(plateau_state, held_out[lr.plateau_metric])
        plateau_state = jax.tree_util.tree_map(np.asarray, plateau_state)
    return ts._replace(opt_state=_sched.set_lr(ts.opt_state, plateau_state.lr)), plateau_state


def _plateau_to_json(state) -> dict:
    out = {k: float(v) if k in ("lr", "best") else int(v) for k, v in state._asdict().items()}
    if not math.isfinite(out["best"]):  # no metric yet: JSON has no infinity
        out["best"] = None
    return out


def _plateau_from_json(lr: LearningRate | None, saved: dict | None, path) -> Any:
    if lr is None or lr.plateau is None:
        return None
    with jax.enable_x64(True):
        state = jax.tree_util.tree_map(np.asarray, lr.plateau.init())
        if saved is None:
            if path is not None:
                raise FuncnetsError(
                    f"checkpoint {path} holds no ReduceLROnPlateau state (it was saved by a run without the "
                    f"plateau schedule); resume it with the schedule it was started with."
                )
            return state
        fields = {k: saved[k] for k in state._fields}
        if fields["best"] is None:
            fields["best"] = state.best
        return type(state)(**{k: np.asarray(v, getattr(state, k).dtype) for k, v in fields.items()})


def _stop_if_not_finite(losses: np.ndarray, ts: TrainState, e: int, steps_per_epoch: int, last: Path | None) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        i = int(bad[0])
        what = f"the training loss became {float(losses[i])} at step {e * steps_per_epoch + i + 1} " \
               f"(epoch {e + 1}, batch {i + 1} of {steps_per_epoch})"
        step = e * steps_per_epoch + i + 1
    elif not (_all_finite(ts.params) and _all_finite(ts.model_state)):
        what = f"the parameters became non-finite in epoch {e + 1} (its losses were finite)"
        step = (e + 1) * steps_per_epoch
    else:
        return
    kept = (f"the last good checkpoint, {last}, is intact" if last is not None else
            "no checkpoint of this run was written")
    raise NonFiniteLossError(
        f"{what}; training stopped and this epoch was not saved ({kept}). Lower the learning rate "
        f"or check the data for bad values.",
        step=step, epoch=e + 1,
    )


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal, nothing in a log file or CI output
    return tqdm(iterable, desc=desc, unit="epoch", dynamic_ncols=True, disable=None)


def plot_history(history: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Loss, accuracy and (where the history records it) the learning rate per epoch, or
    per step, as a PNG (written atomically, mode ``0o666 & ~umask``)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    with_lr = all("lr" in h for h in history)  # histories written before lr was recorded have none
    fig, axes = plt.subplots(1, 3 if with_lr else 2, figsize=(13.5 if with_lr else 9, 3.5))
    ax1, ax2 = axes[:2]
    ax1.plot(epochs, [h["loss"] for h in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax2.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train (during epoch)")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], marker="s", label="held-out")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax2.legend()
    if with_lr:
        ax3 = axes[2]
        if all("lr_steps" in h for h in history):  # per step: step i of epoch e at e - 1 + i/n
            xs = [h["epoch"] - 1 + i / len(h["lr_steps"]) for h in history for i in range(len(h["lr_steps"]))]
            ax3.plot(xs, [r for h in history for r in h["lr_steps"]])
        else:  # one rate per epoch, held through it
            ax3.step([e - 1 for e in epochs], [h["lr"] for h in history], where="post", marker="o")
        ax3.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------ zoo parity
class ZooParityRow(NamedTuple):
    """One model of ``funcnets parity --model/--zoo``: float32 eval logits of the funcnets
    model against torchvision's on the same random weights and input. ``max_rel`` is
    ``max|ours − torch| / max|torch|``; ``error`` the message if the check itself failed."""

    model: str
    input: tuple[int, ...]
    max_abs: float
    max_rel: float
    tol: float
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.max_rel <= self.tol


def zoo_parity(name: str, batch: int = 2, seed: int = 0, tol: float = 1e-4) -> ZooParityRow:
    """Compare ``funcnets.models.get_model(name)`` with torchvision's model of that name.

    torchvision's ``weights=None`` model (``torch.manual_seed(seed)``, 1000 classes) with
    its BatchNorm statistics and affine parameters drawn away from 0/1 (else eval mode
    would test little more than the identity) and a zero-initialised head (ViT's) drawn
    from U(±0.05) (else both logits are 0) is loaded strictly into funcnets' model;
    both run a seeded ``randn(batch, 3, side, side)`` in eval mode, float32, with the side
    and builder arguments of :func:`funcnets.models._registry.parity_input`. Needs torch
    and torchvision (imported here, not at module import).
    """
    import warnings

    from funcnets import parity, torch_io
    from funcnets.models import get_model
    from funcnets.models._registry import head_path, parity_input

    torch = parity._torch()
    import torchvision

    start = time.perf_counter()
    side, kwargs = parity_input(name)
    shape = (batch, 3, side, side)
    model = get_model(name, **kwargs)  # an unknown name fails here, listing close matches
    try:
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # googlenet's/inception's init_weights notice
            tm = torchvision.models.get_model(name, weights=None, **kwargs).eval()
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in tm.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                    m.running_var.uniform_(0.5, 1.5, generator=gen)
                    if m.affine:
                        m.weight.uniform_(0.5, 1.5, generator=gen)
                        m.bias.uniform_(-0.1, 0.1, generator=gen)
            # a head torchvision initialises to zeros (ViT's heads.head) would give zero
            # logits on both sides, a vacuous comparison: draw it like a Linear's default
            head = tm.get_submodule(head_path(model))
            for p in head.parameters():
                if not p.any():
                    p.uniform_(-0.05, 0.05, generator=gen)
        loaded = torch_io.load_state_dict(model, tm.state_dict())  # strict
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            ref = tm(x)
        ref = (ref[0] if isinstance(ref, tuple) else ref).numpy().astype(np.float64)
        del tm
        y, _ = jax.jit(lambda p, s, x: model(p, s, x), compiler_options=one_off_compile_options())(loaded.params, loaded.state, jax.numpy.asarray(x.numpy()))
        y = np.asarray(y[0] if isinstance(y, tuple) else y, np.float64)
        if y.shape != ref.shape:
            raise FuncnetsError(f"logits of shape {y.shape}, torchvision's {ref.shape}")
        diff = float(np.abs(y - ref).max())
        rel = diff / (float(np.abs(ref).max()) or 1.0)
        if not math.isfinite(rel):
            rel = math.inf
        return ZooParityRow(name, shape, diff, rel, tol, time.perf_counter() - start)
    except (FuncnetsError, ValueError, TypeError, KeyError, RuntimeError) as e:  # a row, not the end of --zoo
        return ZooParityRow(name, shape, math.nan, math.inf, tol, time.perf_counter() - start,
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def format_zoo_table(rows: Sequence[ZooParityRow], markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a markdown table (model, input, max abs
    diff, max rel diff, ok)."""
    def cells(r: ZooParityRow) -> list[str]:
        ok = "yes" if r.ok else ("error: " + r.error if r.error else "NO")
        return [r.model, "×".join(map(str, r.input)), f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", ok]

    head = ["model", "input", "max abs diff", "max rel diff", "ok"]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 2 + ["---"]) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
        return "\n".join(lines)
    table = [head, *map(cells, rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)

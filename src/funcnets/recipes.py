"""Ready-made training runs used by the ``funcnets`` command and the examples.

:func:`fit` trains a classifier on a :class:`~funcnets.data.Split` with one compiled
program per epoch, a progress bar, held-out evaluation, checkpoints and resume, and
returns the history; :func:`plot_history` draws it as a PNG.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from funcnets import optim, parallel
from funcnets._io import atomic_write_bytes
from funcnets.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from funcnets.data import Split, random_shift
from funcnets.errors import FuncnetsError
from funcnets.nn.module import Module
from funcnets.train import TrainState, batches, create_train_state, evaluate, make_train_epoch, supervised_loss

__all__ = ["build_model", "make_optimizer", "fit", "plot_history", "check_writable", "check_batch_size"]

OPTIMIZERS = ("sgd", "adam", "adamw")
MODELS = ("lenet", "resnet18", "resnet34")


def build_model(name: str, weights: str | os.PathLike | None = None, seed: int = 0, num_classes: int = 10):
    """``(model, params, state)`` for a 10-class task: LeNet, or a ResNet whose ``fc`` is
    replaced by ``Linear(512, num_classes)`` (the tutorial's fine-tuning set-up).

    ``weights``: a torch ``.pth``/``.safetensors`` file for the original architecture
    (torchvision's 1000-class ResNet), loaded before the head is replaced.
    """
    from funcnets import models, nn, torch_io

    if name not in MODELS:
        raise FuncnetsError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    key = jax.random.PRNGKey(seed)
    model = models.LeNet(num_classes=num_classes) if name == "lenet" else getattr(models, name)()
    params, state = torch_io.load_weights(weights, model)[:2] if weights else model.init(key)
    if name == "lenet":
        return model, params, state
    return nn.replace(model, params, state, "fc", nn.Linear(512, num_classes), jax.random.fold_in(key, 1))


def make_optimizer(name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                   nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999),
                   schedule: str = "constant", total_steps: int | None = None) -> optax.GradientTransformation:
    """An optimizer by torch name, with the options ``funcnets train`` exposes.

    ``schedule="cosine"`` is torch's ``CosineAnnealingLR(T_max=total_steps)`` stepped
    every batch.
    """
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("the cosine schedule needs total_steps (epochs × steps per epoch)")
        lr = optax.cosine_decay_schedule(lr, total_steps)
    elif schedule != "constant":
        raise ValueError(f"unknown schedule {schedule!r}; choose 'constant' or 'cosine'")
    if name == "sgd":
        return optim.sgd(lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name in ("adam", "adamw"):
        if momentum or nesterov:
            raise ValueError(f"{name} takes betas, not momentum/nesterov; drop --momentum/--nesterov or use --optimizer sgd")
        factory = optim.adam if name == "adam" else optim.adamw
        return factory(lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` and prove it is writable now, before any work is done."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".funcnets-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise FuncnetsError(
            f"cannot write to {directory} ({e.strerror}). Pass a writable directory (e.g. --out ./runs) "
            f"or fix its permissions."
        ) from None
    return directory


def check_batch_size(batch_size: int, n_train: int) -> None:
    if not 0 < batch_size <= n_train:
        raise ValueError(f"batch size must be in [1, {n_train}] (the training set size), got {batch_size}")


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
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    augment_shift: int = 0,
    devices: str = "1",
    batch_norm: str = "sync",
) -> tuple[TrainState, list[dict]]:
    """Train for ``epochs`` epochs; returns the final state and one history row per
    epoch (``epoch``, ``loss``, ``train_accuracy``, ``test_accuracy``, ``seconds``).

    With ``checkpoint_dir`` a checkpoint is saved after every epoch, and with ``resume``
    training continues from the newest one there, bit for bit as if uninterrupted.
    ``augment_shift`` translates training images by up to that many pixels each epoch.
    ``devices="all"`` runs the same step data-parallel over every device
    (:mod:`funcnets.parallel`), with BatchNorm ``batch_norm`` = ``"sync"`` or ``"per-device"``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    check_batch_size(batch_size, len(data.x_train))
    key = jax.random.PRNGKey(seed)
    ts = create_train_state(params, state, optimizer, key, trainable)
    history: list[dict] = []
    start_epoch = 0
    if resume:
        if checkpoint_dir is None or latest_checkpoint(checkpoint_dir) is None:
            raise FuncnetsError(
                f"--resume found no checkpoint in {checkpoint_dir}; train once with --checkpoint-dir first "
                f"or drop --resume."
            )
        path = latest_checkpoint(checkpoint_dir)
        ts = load_checkpoint(path, like=ts)
        hist_file = Path(path) / "history.json"
        history = json.loads(hist_file.read_text()) if hist_file.is_file() else []
        start_epoch = len(history)
    mesh = None
    if devices == "all":
        mesh = parallel.data_mesh()
        ts = parallel.distribute(ts, mesh)
    elif devices != "1":
        raise ValueError(f"devices must be '1' or 'all', got {devices!r}")
    epoch_fn = make_train_epoch(supervised_loss(model), optimizer, trainable=trainable, batch_norm=batch_norm)
    bar = _progress(range(start_epoch, epochs), desc, progress)
    for e in bar:
        t = time.perf_counter()
        # shuffle and augmentation depend only on (seed, epoch): a resumed run sees the same batches
        x = random_shift(data.x_train, augment_shift, np.random.default_rng([seed, e]))
        epoch_batches = batches(x, data.y_train, batch_size, jax.random.fold_in(key, e))
        if mesh is not None:
            epoch_batches = parallel.shard_batch(epoch_batches, mesh, batch_axis=1)
        ts, metrics = epoch_fn(ts, epoch_batches)
        row = {
            "epoch": e + 1,
            "loss": float(np.mean(metrics["loss"])),
            "train_accuracy": float(np.mean(metrics["accuracy"])),
            "test_accuracy": evaluate(model, ts.params, ts.model_state, data.x_test, data.y_test),
        }
        row["seconds"] = time.perf_counter() - t
        history.append(row)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{row['loss']:.4f}", test_acc=f"{row['test_accuracy']:.2%}")
        if checkpoint_dir is not None:
            path = save_checkpoint(checkpoint_dir, ts)
            atomic_write_bytes(path / "history.json", json.dumps(history).encode())
    return ts, history


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal, nothing in a log file or CI output
    return tqdm(iterable, desc=desc, unit="epoch", dynamic_ncols=True, disable=None)


def plot_history(history: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Loss and accuracy per epoch as a PNG (written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["loss"] for h in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax2.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train (during epoch)")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], marker="s", label="held-out")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())

"""Fine-tuning on your own images from the command line: ``funcnets train --data photos/``,
``funcnets evaluate``, ``funcnets predict`` and ``funcnets export``.

``--data`` is an ImageFolder tree (``photos/<class>/<image>``, torchvision's layout and
class numbering) or a CSV/JSON list of ``path,label`` (:class:`funcnets.data.ImageList`).
Training images go through torchvision's ImageNet training recipe at ``--image-size``
(``RandomResizedCrop`` + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` with
ImageNet's mean/std); validation and ``evaluate``/``predict`` through its evaluation
preset (resize the shorter side to ``size * 256 / 224``, center-crop ``size``, the same
normalisation), all from :mod:`funcnets.data.transforms`, batched by the grain
pipeline (:func:`funcnets.data.loader`) with a seeded order and augmentation.

Outputs of ``train`` in ``--out``: ``best.safetensors`` (the weights of the epoch with
the best validation accuracy; torch names, ``torchvision.models.<name>(num_classes=K)``
loads it strictly), ``<model>.safetensors`` (the last epoch), ``classes.json`` (the class
names in index order, which ``predict`` reads beside the weights), ``history.json`` and
``curves.png``.

Checkpoints (``--checkpoint-dir``, one per epoch, :mod:`funcnets.checkpoint`) hold the
train state, the run's settings, the history and the grain iterator's state after the
epoch, so ``--resume`` sees exactly the batches and augmentations an uninterrupted run
would (same parameters, bit for bit, on the same machine).

Bad images: an unreadable or truncated image stops the run with a message naming the
file (a silent skip would change what the model trains on without anyone deciding it).
Every finished epoch is already checkpointed, so nothing finished is lost: fix or delete
the file, and ``--resume`` (a deleted file changes the training samples, so the remaining
batches differ from an uninterrupted run's: the resumed run says so and continues).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from funcnets.errors import FuncnetsError

__all__ = [
    "is_folder_data", "open_source", "train_transform", "eval_transform", "eval_resize", "load_trained",
    "add_train_options", "add_parsers", "wants_folder", "cmd_train_folder", "cmd_evaluate", "cmd_predict",
    "cmd_export", "classification_report", "plot_confusion",
]  # fmt: skip

DEFAULT_IMAGE_SIZE = 224  # torchvision's ImageNet recipe
DEFAULT_VAL_FRACTION = 0.2


# ----------------------------------------------------------------------------- data
def is_folder_data(spec: str | None) -> bool:
    """Whether ``--data spec`` names images on disk (an ImageFolder tree or a CSV/JSON
    list) rather than ``digits`` or a directory of MNIST IDX files."""
    if spec is None or spec == "digits":
        return False
    path = Path(spec).expanduser()
    if path.is_file():
        return path.suffix.lower() in (".csv", ".json")
    if not path.is_dir():
        return False
    entries = list(os.scandir(path))
    if any(e.is_dir() for e in entries):
        return True
    return not any("idx" in e.name for e in entries)  # a flat folder of images, or empty: ImageFolder says why


def open_source(spec: str | os.PathLike, option: str = "--data"):
    """An :class:`~funcnets.data.ImageFolder` for a folder, an :class:`~funcnets.data.ImageList`
    for a ``.csv``/``.json`` file; errors name ``option``."""
    from funcnets import data

    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".json"):
            raise FuncnetsError(f"{option} {spec}: expected a folder of class sub-folders or a .csv/.json list of "
                                f"path,label; got a {path.suffix or 'suffix-less'} file.")
        return data.ImageList(path)
    if not path.exists():
        raise FuncnetsError(f"{option} {spec}: no such folder or file. Pass a folder with one sub-folder of images "
                            f"per class (photos/cat/1.jpg, photos/dog/2.png, ...) or a .csv/.json list.")
    return data.ImageFolder(path)


def eval_resize(size: int) -> int:
    """The shorter side before the center crop: 256 for 224 (torchvision's ratio)."""
    return int(math.floor(size * 256 / 224))


def train_transform(size: int):
    """torchvision's ImageNet training transform at ``size``."""
    from funcnets.data import transforms as T

    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(T.IMAGENET_MEAN, T.IMAGENET_STD)])


def eval_transform(size: int):
    """torchvision's ImageNet evaluation preset at ``size`` (``weights.transforms()`` for 224)."""
    from funcnets.data import transforms as T

    return T.imagenet_eval(crop_size=size, resize_size=eval_resize(size))


def _check_size(name: str, size: int) -> None:
    from funcnets import recipes

    model = recipes._zoo_model(name)
    fixed = getattr(model, "image_size", None) or (getattr(model, "input_size", None) or (None,))[0]
    if fixed and int(fixed) != size:
        raise FuncnetsError(f"--model {name} takes {fixed}×{fixed} images only; pass --image-size {fixed}.")
    if size < int(getattr(model, "min_size", 1) or 1):
        raise FuncnetsError(f"--image-size {size} is below {name}'s minimum {model.min_size}; pass at least that.")


def _zoo_only(name: str, command: str) -> None:
    if name == "lenet":
        raise FuncnetsError(f"{command} on image files needs a model of funcnets.models.list_models() (RGB "
                            f"images), e.g. --model resnet18; lenet is for the bundled grey digits.")


# ----------------------------------------------------------------------------- models
def _head_weight_name(name: str) -> str:
    from funcnets import recipes
    from funcnets.models._registry import head_path

    return f"{head_path(recipes._zoo_model(name))}.weight"


def load_trained(name: str, weights: str | os.PathLike):
    """``(model, params, state, num_classes)`` from a weights file of model ``name``:
    the class count is read from the file's head (``fc.weight``'s rows, ...)."""
    from funcnets import recipes, torch_io

    _zoo_only(name, "this command")
    tensors = torch_io.load_file(weights, arch=name)  # raises the missing-file message
    key = _head_weight_name(name)
    if key not in tensors:
        raise FuncnetsError(f"--weights {weights} has no {key}: it is not a {name} state_dict. Pass the "
                            f"best.safetensors `funcnets train --model {name}` wrote, or choose its --model.")
    num_classes = int(tensors[key].shape[0])
    model, params, state = recipes.build_model(name, weights, 0, num_classes=num_classes)
    return model, params, state, num_classes


@jax.jit
def _softmax(logits):
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


@partial(jax.jit, static_argnames=("model",))
def _eval_logits(model, params, state, x):
    return model.apply(params, state, x, train=False)[0]


def _logits_fn(model):
    """Eval-mode logits; one compiled program per (model, shapes) for the whole process
    (every epoch's validation and the commands after it share it)."""
    return lambda params, state, x: _eval_logits(model, params, state, x)


def _all_logits(model, params, state, source, size: int, batch_size: int, workers: int, progress: bool,
                desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode logits ``(N, K)`` and labels ``(N,)`` of every sample in order; the last
    batch is padded to ``batch_size`` so one compiled program serves all batches."""
    from funcnets import data

    fn = _logits_fn(model)
    batch_size = min(batch_size, len(source))
    ld = data.loader(source, eval_transform(size), batch_size=batch_size, shuffle=False, num_workers=workers)
    out, labels = [], []
    bar = _bar(len(source), desc, progress)
    it = iter(ld)
    try:
        for x, y in it:
            n = len(x)
            if n < batch_size:
                x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
            out.append(np.asarray(fn(params, state, jnp.asarray(x)))[:n])
            labels.append(y)
            bar.update(n)
    finally:
        bar.close()
        getattr(it, "close", lambda: None)()
    return np.concatenate(out), np.concatenate(labels)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool):
    """The progress output the command uses elsewhere (tqdm, on a terminal only), counted in
    images: tqdm shows images/s and the ETA."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", unit_scale=False, dynamic_ncols=True, disable=None)


# ----------------------------------------------------------------------------- metrics
def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Confusion matrix (rows: true class, columns: predicted) and per-class precision,
    recall, F1 and support, as scikit-learn's ``classification_report`` defines them
    (0 where a denominator is 0)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (y_true.astype(int), y_pred.astype(int)), 1)
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(0).astype(float), cm.sum(1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return {"confusion": cm, "precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """The confusion matrix as a PNG with class names on both axes (written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from funcnets._io import atomic_write_bytes

    k = len(classes)
    side = min(4 + 0.45 * k, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), labels=list(classes), rotation=90 if k > 6 else 0)
    ax.set_yticks(range(k), labels=list(classes))
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if k <= 30:
        hi = cm.max() if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > hi / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _topk_accuracy(logits: np.ndarray, y: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


# ----------------------------------------------------------------------------- parsers
def add_train_options(tr) -> None:
    """``funcnets train``'s options for image files."""
    tr.add_argument("--val-data", help="images: a separate validation folder or .csv/.json list (same classes)")
    tr.add_argument("--val-fraction", type=float, help="images: hold out this fraction of --data for validation, "
                    f"per class, seeded by --seed (default {DEFAULT_VAL_FRACTION} without --val-data; 0: none)")
    tr.add_argument("--image-size", type=int, help=f"images: the side of the training crop and the evaluation "
                    f"center crop (default {DEFAULT_IMAGE_SIZE}, or the one size the model takes)")
    tr.add_argument("--workers", type=int, help="images: decoding/augmenting worker processes (default: "
                    "min(4, CPUs - 1); 0: in this process); a setting of the run, kept on --resume")


def add_parsers(sub) -> None:
    """The ``evaluate``, ``predict`` and ``export`` sub-commands."""
    ev = sub.add_parser("evaluate", help="accuracy, top-5, per-class precision/recall/F1 and a confusion matrix",
                        description="Evaluate trained weights on an ImageFolder (or .csv/.json list) with "
                                    "torchvision's evaluation preset (resize, center crop, ImageNet normalisation).")
    ev.add_argument("--model", required=True, help="a name of funcnets.models.list_models(), e.g. resnet18")
    ev.add_argument("--weights", required=True, help="the .safetensors/.pth `funcnets train` wrote (best.safetensors)")
    ev.add_argument("--data", required=True, help="a folder of class sub-folders, or a .csv/.json list")
    ev.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="center-crop side (default 224)")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--workers", type=int, default=0, help="decoding worker processes (default 0)")
    ev.add_argument("--out", default="runs/evaluate", help="where confusion.png and metrics.json go")
    ev.add_argument("--no-progress", action="store_true")

    pr = sub.add_parser("predict", help="the top-k classes of image files",
                        description="Classify image files with trained weights (torchvision's evaluation preset).")
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--model", required=True, help="a name of funcnets.models.list_models(), e.g. resnet18")
    pr.add_argument("--weights", required=True, help="the .safetensors/.pth `funcnets train` wrote")
    pr.add_argument("--classes", help="class names: a JSON list (index order) or {name: index}; default: the "
                    "classes.json beside --weights (train writes it), else the indices")
    pr.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    pr.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="center-crop side (default 224)")
    pr.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ex = sub.add_parser("export", help="weights as a file torchvision's model loads with strict=True",
                        description="Write trained weights as .pth or .safetensors with torchvision's names and "
                                    "print the PyTorch code that loads them.")
    ex.add_argument("--model", required=True, help="a name of funcnets.models.list_models(), e.g. resnet18")
    ex.add_argument("--weights", required=True, help="the .safetensors/.pth `funcnets train` wrote")
    ex.add_argument("--out", required=True, help="model.pth or model.safetensors")


# ----------------------------------------------------------------------------- train
_FOLDER_SETTINGS = ("model", "data", "val_data", "val_fraction", "image_size", "epochs", "batch_size", "optimizer",
                    "lr", "momentum", "nesterov", "weight_decay", "betas", "schedule", "trainable", "weights", "seed", "workers")


def wants_folder(args) -> bool:
    """Whether ``funcnets train`` with ``args`` trains on image files: ``--data`` names
    them, an image-only option is given, or ``--resume`` continues such a run."""
    if is_folder_data(args.data) or any(getattr(args, k, None) is not None
                                        for k in ("val_data", "val_fraction", "image_size", "workers")):
        return True
    if args.resume is None or args.data is not None:
        return False
    from funcnets import checkpoint, cli

    ckdir, which = cli._checkpoint_dir_and_choice(args)
    try:
        info = checkpoint.find_checkpoint(ckdir, which, warn=lambda m: None)
    except FuncnetsError:
        return False  # the digits path reports it
    return info.settings.get("kind") == "images"


def _given(args) -> dict:
    from funcnets import cli

    given = {k: getattr(args, k, None) for k in _FOLDER_SETTINGS}
    for k in ("data", "val_data"):
        if given[k] is not None:
            given[k] = str(Path(given[k]).expanduser().resolve())
    if given["weights"] is not None:
        given["weights"] = cli._weights_setting(given["weights"])
    if given["betas"] is not None:
        given["betas"] = list(given["betas"])
    return given


def _settings(args, info) -> dict:
    """The run's settings: defaults + given (fresh) or the checkpoint's (resume), refusing
    given ones that differ from the checkpoint's (``--epochs`` may grow)."""
    from funcnets import cli

    given = _given(args)
    if info is None:
        if given["data"] is None:
            raise FuncnetsError("--data is required: a folder of class sub-folders or a .csv/.json list.")
        s = {k: (cli.RUN_DEFAULTS.get(k) if v is None else v) for k, v in given.items()}
        if s["val_fraction"] is None:
            s["val_fraction"] = 0.0 if s["val_data"] else DEFAULT_VAL_FRACTION
        if s["model"] == "lenet" and args.model is None:
            s["model"] = "resnet18"
        s["image_size"] = s["image_size"] or _default_size(s["model"])
        if s["workers"] is None:  # a setting of the run: grain's iterator state depends on the worker count
            s["workers"] = min(4, max((os.cpu_count() or 1) - 1, 0))
        s["epochs"], s["betas"], s["kind"] = [s["epochs"]], list(s["betas"]), "images"
        if args.precision not in (None, "fp32"):
            s["precision"] = args.precision
        options = cli._schedule_options(args, s["schedule"])
        if options:
            s["schedule_options"] = options
        return s
    s = dict(info.settings)
    diffs = []
    for k, v in given.items():
        if v is None:
            continue
        old = s.get(k)
        if k == "epochs":
            if v < old[-1]:
                diffs.append(f"  --epochs: saved {old[-1]}, given {v} (a run can be extended, not shortened)")
            elif v > old[-1]:
                s["epochs"] = [*old, v]
        elif k == "weights":
            if old is None or old.get("sha256") != v["sha256"]:
                diffs.append(f"  --weights: saved {cli._show(k, old)}, given {cli._show(k, v)}")
        elif v != old:
            diffs.append(f"  {cli._option(k)}: saved {cli._show(k, old)}, given {cli._show(k, v)}")
    if args.precision is not None and args.precision != s.get("precision", "fp32"):
        diffs.append(f"  --precision: saved {s.get('precision', 'fp32')}, given {args.precision}")
    if diffs:
        raise FuncnetsError(f"--resume: {info.path} was saved by a run with other settings:\n" + "\n".join(diffs)
                            + "\nDrop these options to continue with the saved settings (only --epochs may grow), "
                            "or start a new run: --overwrite (deletes these checkpoints) or another --checkpoint-dir.")
    cli._schedule_options(args, s["schedule"])  # refuses options the saved schedule does not take
    return s


def _default_size(name: str) -> int:
    from funcnets import recipes

    model = recipes._zoo_model(name)
    fixed = getattr(model, "image_size", None) or (getattr(model, "input_size", None) or (None,))[0]
    return int(fixed) if fixed else DEFAULT_IMAGE_SIZE


def _sources(s: dict):
    from funcnets import data

    source = open_source(s["data"])
    if s["val_data"]:
        val = open_source(s["val_data"], "--val-data")
        if list(val.classes) != list(source.classes):
            raise FuncnetsError(f"--val-data {s['val_data']} has classes {list(val.classes)}, --data has "
                                f"{list(source.classes)}: they must be the same (same folder names).")
        return source, val
    if not 0 <= s["val_fraction"] < 1:
        raise FuncnetsError(f"--val-fraction must be in [0, 1), got {s['val_fraction']}")
    if s["val_fraction"] == 0:
        return source, None
    train, val = data.train_val_split(source, s["val_fraction"], seed=s["seed"])
    if len(val) == 0:
        raise FuncnetsError(f"--val-fraction {s['val_fraction']} of {len(source)} images holds out none; "
                            f"raise it or pass --val-data.")
    return train, val


def cmd_train_folder(args, status: dict) -> int:
    """``funcnets train --data photos/ ...``: fine-tune a zoo model on image files."""
    from funcnets import checkpoint, cli, data, optim, recipes, torch_io
    from funcnets._io import atomic_write_bytes, json_bytes, protected
    from funcnets.train import create_train_state, make_train_step, supervised_loss

    if args.devices != "1":
        raise FuncnetsError("--devices all is not supported for image files yet; drop it (one device).")
    if args.augment_shift is not None:
        raise FuncnetsError("--augment-shift applies to the digits/MNIST arrays; image files are augmented with "
                            "RandomResizedCrop and RandomHorizontalFlip. Drop it.")
    ckdir, which = cli._checkpoint_dir_and_choice(args)
    out = recipes.check_writable(args.out, "--out")
    if ckdir is not None:
        recipes.check_writable(ckdir, "--checkpoint-dir")
    info = checkpoint.find_checkpoint(ckdir, which, warn=cli._warn) if args.resume is not None else None
    if info is not None and info.settings.get("kind") != "images":
        raise FuncnetsError(f"--resume: {info.path} is a digits/MNIST run; resume it without the image options.")
    if info is None and ckdir is not None:
        if args.overwrite:
            checkpoint.clear_checkpoints(ckdir)
        elif checkpoint.list_checkpoints(ckdir):
            raise FuncnetsError(f"--checkpoint-dir {ckdir} already holds checkpoints. Continue that run with --resume, "
                                f"start afresh with --overwrite (deletes them), or pass another --checkpoint-dir.")
    s = _settings(args, info)
    name, epochs, bs, size = s["model"], s["epochs"][-1], s["batch_size"], s["image_size"]
    if s["schedule"] == "plateau":
        raise FuncnetsError("--lr-schedule plateau is not supported for image files yet; choose constant, cosine, "
                            "onecycle, step, multistep or exponential.")
    _zoo_only(name, "funcnets train")
    _check_size(name, size)
    train_src, val_src = _sources(s)
    classes = list(train_src.classes)
    if s.get("classes") not in (None, classes):
        raise FuncnetsError(f"--resume: the run was trained on classes {s['classes']}, --data now has {classes}.")
    s["classes"] = classes
    if len(train_src) < bs:
        raise FuncnetsError(f"--batch-size {bs} is larger than the {len(train_src)} training images; lower it.")
    workers = s["workers"]
    if workers < 0:
        raise FuncnetsError(f"--workers must be >= 0, got {workers}")
    weights = s["weights"]["file"] if s["weights"] and info is None else None
    model, params, state = recipes.build_model(name, weights, s["seed"], num_classes=len(classes))
    ld = data.loader(train_src, train_transform(size), batch_size=bs, shuffle=True, seed=s["seed"],
                     num_workers=workers, drop_remainder=True, num_epochs=epochs)
    steps = ld.batches_per_epoch
    lr = recipes.learning_rate(s["lr"], s["schedule"], s["epochs"], steps, s.get("schedule_options"))
    opt = recipes.make_optimizer(s["optimizer"], lr, s["momentum"], s["weight_decay"], s["nesterov"], tuple(s["betas"]))
    precision = s.get("precision", "fp32")
    if precision == "fp16":
        opt = optim.GradScaler().wrap(opt)
    trainable = optim.select(params, include=s["trainable"]) if s["trainable"] else None
    ts = create_train_state(params, state, opt, jax.random.PRNGKey(s["seed"]), trainable)
    history, loader_state, start = [], None, 0
    samples = hashlib.sha256(json.dumps([[str(p), int(c)] for p, c in train_src.samples]).encode()).hexdigest()
    if info is not None:
        if info.run.get("samples") not in (None, samples):
            cli._warn(f"the training images in --data changed since {info.path} was saved (files added, removed or "
                      f"renamed): the remaining batches follow the new list, not the ones the run would have seen.")
        ts = checkpoint.load_checkpoint(info.path, like=ts)
        history, loader_state, start = info.history, info.run.get("loader"), int(info.epoch or 0)
        if int(ts.step) != start * steps:
            cli._warn(f"{info.path} is at step {int(ts.step)}, not {start} epochs × {steps} steps: the data set "
                      f"changed since it was saved; the remaining batches follow the new sample list.")
            loader_state = None
    n_train = sum(a.size for k, a in _flat(params).items() if trainable is None or k in trainable)
    print(f"{name}: {sum(a.size for a in model.parameters(params)):,} parameters ({n_train:,} trained); head "
          f"{cli._head(model)}")
    print(f"data: {len(train_src)} training" + (f" / {len(val_src)} validation" if val_src else "")
          + f" images, {len(classes)} classes, {size}×{size}, {workers} worker(s)")
    status["describe"] = lambda: (
        "funcnets train: interrupted (Ctrl-C); " + (
            f"the last checkpoint, {checkpoint.latest_checkpoint(ckdir)}, is intact: continue with --resume"
            if ckdir is not None and checkpoint.latest_checkpoint(ckdir) else "nothing of this run was checkpointed"))
    if info is not None:
        print(f"resuming from {info.path} (epoch {start} of {epochs})")
    step = make_train_step(supervised_loss(model), opt, trainable=trainable,
                           precision=None if precision == "fp32" else precision)
    best = max((h["val_accuracy"] for h in history if h.get("val_accuracy") is not None), default=-1.0)
    it = ld.iterator(loader_state) if start < epochs else None
    title = f"{name} on {Path(s['data']).name}"
    try:
        for e in range(start, epochs):
            t = time.perf_counter()
            losses, accs = [], []
            bar = _bar(steps * bs, f"epoch {e + 1}/{epochs}", not args.no_progress)
            try:
                for _ in range(steps):
                    x, y = next(it)
                    ts, m = step(ts, (jnp.asarray(x), jnp.asarray(y)))
                    losses.append(m["loss"])
                    accs.append(m["accuracy"])
                    bar.update(bs)
            finally:
                bar.close()
            loss = float(np.mean(np.asarray(jax.device_get(losses))))
            if not math.isfinite(loss):
                raise FuncnetsError(f"the training loss of epoch {e + 1} is not finite; this epoch was not saved. "
                                    f"Lower --lr.")
            row = {"epoch": e + 1, "loss": loss, "train_accuracy": float(np.mean(jax.device_get(accs)))}
            if val_src is not None:
                logits, labels = _all_logits(model, ts.params, ts.model_state, val_src, size, bs, 0, False, "val")
                row["val_accuracy"] = float(np.mean(logits.argmax(1) == labels))
                row["val_loss"] = float(np.mean(_cross_entropy(logits, labels)))
            row["test_accuracy"] = row.get("val_accuracy", row["train_accuracy"])  # what plot_history draws
            row["lr"] = float(lr.at(np.asarray([e * steps]))[0])
            row["seconds"] = time.perf_counter() - t
            history.append(row)
            improved = row.get("val_accuracy", -1.0) > best
            with protected():
                if improved:
                    best = row["val_accuracy"]
                    torch_io.save_weights(out / "best.safetensors", model, ts.params, ts.model_state)
                atomic_write_bytes(out / "classes.json", json_bytes(classes))
                if ckdir is not None:
                    checkpoint.save_checkpoint(ckdir, ts, run={
                        "epoch": e + 1, "epochs": epochs, "history": history, "settings": s,
                        "loader": it.get_state(), "best_val_accuracy": best, "samples": samples})
            print(f"epoch {e + 1}/{epochs}: loss {row['loss']:.4f}, train accuracy {row['train_accuracy']:.2%}"
                  + (f", validation accuracy {row['val_accuracy']:.2%}" + (" (best so far)" if improved else "")
                     if "val_accuracy" in row else "") + f" ({row['seconds']:.1f} s)", flush=True)
    finally:
        getattr(it, "close", lambda: None)()
    with protected():
        torch_io.save_weights(out / f"{name}.safetensors", model, ts.params, ts.model_state)
        if val_src is None or not (out / "best.safetensors").exists():  # no validation: the last epoch is the best
            torch_io.save_weights(out / "best.safetensors", model, ts.params, ts.model_state)
        atomic_write_bytes(out / "classes.json", json_bytes(classes))
        atomic_write_bytes(out / "history.json", json_bytes(history))
        if history:
            recipes.plot_history(history, out / "curves.png", title=title)
    print(f"wrote {out / 'best.safetensors'} (best validation accuracy {best:.2%}), {out / (name + '.safetensors')} "
          f"(last epoch), {out / 'classes.json'}, {out / 'curves.png'}, {out / 'history.json'}" if best >= 0 else
          f"wrote {out / 'best.safetensors'} (= the last epoch; no validation data), {out / 'classes.json'}, "
          f"{out / 'curves.png'}, {out / 'history.json'}")
    return 0


def _flat(tree) -> dict:
    from funcnets.torch_io import flatten

    return flatten(tree)


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    return np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]


# ----------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from funcnets import recipes
    from funcnets._io import atomic_write_bytes, json_bytes

    model, params, state, k = load_trained(args.model, args.weights)
    _check_size(args.model, args.image_size)
    source = open_source(args.data)
    classes = list(source.classes)
    if len(classes) != k:
        raise FuncnetsError(f"--weights {args.weights} has a {k}-class head, --data {args.data} has {len(classes)} "
                            f"classes ({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}): pass the "
                            f"data the weights were trained for.")
    out = recipes.check_writable(args.out, "--out")
    logits, y = _all_logits(model, params, state, source, args.image_size, args.batch_size, args.workers,
                            not args.no_progress, "evaluate")
    pred = logits.argmax(1)
    rep = classification_report(y, pred, k)
    top5 = _topk_accuracy(logits, y, min(5, k))
    acc = float(np.mean(pred == y))
    width = max(12, *(len(c) for c in classes))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for i, c in enumerate(classes):
        lines.append(f"{c:<{width}}  {rep['precision'][i]:9.3f}  {rep['recall'][i]:6.3f}  {rep['f1'][i]:5.3f}  "
                     f"{rep['support'][i]:7d}")
    lines.append(f"{'macro avg':<{width}}  {rep['precision'].mean():9.3f}  {rep['recall'].mean():6.3f}  "
                 f"{rep['f1'].mean():5.3f}  {int(rep['support'].sum()):7d}")
    print("\n".join(lines))
    print(f"\naccuracy {acc:.2%} (top-{min(5, k)} {top5:.2%}) on {len(y)} images of {args.data}")
    plot_confusion(rep["confusion"], classes, out / "confusion.png", title=f"{args.model} on {Path(args.data).name}")
    metrics = {"accuracy": acc, f"top{min(5, k)}_accuracy": top5, "classes": classes,
               "per_class": {c: {"precision": float(rep["precision"][i]), "recall": float(rep["recall"][i]),
                                 "f1": float(rep["f1"][i]), "support": int(rep["support"][i])}
                             for i, c in enumerate(classes)},
               "confusion": rep["confusion"].tolist()}
    atomic_write_bytes(out / "metrics.json", json_bytes(metrics))
    print(f"wrote {out / 'confusion.png'}, {out / 'metrics.json'}")
    return 0


# ----------------------------------------------------------------------------- predict
def _class_names(args, k: int) -> list[str]:
    file = Path(args.classes) if args.classes else Path(args.weights).expanduser().parent / "classes.json"
    if not file.is_file():
        if args.classes:
            raise FuncnetsError(f"--classes {args.classes}: no such file. Pass the classes.json `funcnets train` "
                                f"wrote beside its weights.")
        return [str(i) for i in range(k)]
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise FuncnetsError(f"cannot read class names from {file}: {e}. Expected a JSON list of names.") from None
    if isinstance(raw, dict):
        raw = [n for n, _ in sorted(raw.items(), key=lambda kv: kv[1])]
    if not isinstance(raw, list) or len(raw) != k:
        raise FuncnetsError(f"{file} names {len(raw) if isinstance(raw, list) else 'no list of'} classes, the "
                            f"weights' head has {k}: pass the classes.json of this run with --classes.")
    return [str(n) for n in raw]


def predict_images(model, params, state, paths: Sequence[str], size: int) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` of image files through the evaluation preset."""
    from funcnets.data import default_loader

    tf = eval_transform(size)
    x = np.stack([tf(default_loader(p)) for p in paths]).astype(np.float32)
    return np.asarray(_softmax(_logits_fn(model)(params, state, jnp.asarray(x))))


def cmd_predict(args) -> int:
    model, params, state, k = load_trained(args.model, args.weights)
    _check_size(args.model, args.image_size)
    if args.topk < 1:
        raise FuncnetsError(f"--topk must be >= 1, got {args.topk}")
    names = _class_names(args, k)
    probs = predict_images(model, params, state, args.images, args.image_size)
    topk = min(args.topk, k)
    rows = []
    for path, p in zip(args.images, probs):
        top = np.argsort(-p, kind="stable")[:topk]
        rows.append({"image": path, "top": [{"class": names[i], "index": int(i), "probability": float(p[i])}
                                            for i in top]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(r["image"])
        for rank, t in enumerate(r["top"], 1):
            print(f"  {rank}. {t['class']:<20} {t['probability']:7.2%}")
    return 0


# ----------------------------------------------------------------------------- export
def torchvision_snippet(name: str, path: str | os.PathLike, num_classes: int, model=None) -> str:
    """PyTorch code that loads the exported file into torchvision's ``name`` strictly."""
    from funcnets import recipes

    kwargs = [f"num_classes={num_classes}"]
    kwargs += [f"{k}={v!r}" for k, v in recipes._TRAIN_KWARGS.get(name, {}).items()]
    if model is not None and getattr(model, "transform_input", False):
        kwargs.append("transform_input=True")
    load = (f'load_file("{path}")' if str(path).endswith(".safetensors")
            else f'torch.load("{path}", weights_only=True)')
    imports = "import torch\nimport torchvision\n" + (
        "from safetensors.torch import load_file\n" if str(path).endswith(".safetensors") else "")
    return (f"{imports}\nmodel = torchvision.models.{name}({', '.join(kwargs)})\n"
            f"model.load_state_dict({load}, strict=True)\nmodel.eval()")


def cmd_export(args) -> int:
    from funcnets import torch_io

    suffix = Path(args.out).suffix.lower()
    if suffix not in (".pth", ".pt", ".safetensors"):
        raise FuncnetsError(f"--out {args.out}: expected a .pth, .pt or .safetensors file name.")
    model, params, state, k = load_trained(args.model, args.weights)
    Path(args.out).expanduser().parent.mkdir(parents=True, exist_ok=True)
    path = torch_io.save_weights(Path(args.out).expanduser(), model, params, state)
    print(f"wrote {path} ({args.model}, {k} classes, {len(torch_io.state_dict(model, params, state))} tensors); "
          f"load it in PyTorch with:\n")
    print(torchvision_snippet(args.model, path, k, model))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the funcnets command: funcnets train/evaluate/predict/export")

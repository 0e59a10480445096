"""Checkpoints: save and resume a :class:`~funcnets.train.TrainState` exactly.

Layout of a checkpoint directory::

    ckpt/
      latest                   name of the newest complete checkpoint
      step_00000100/
        weights.safetensors    params + buffers with torch names (PyTorch loads it)
        train.msgpack          optimizer state, step, PRNG key (flax.serialization)
        manifest.json          sha256 and size of each file, step, format version

Each checkpoint is written into a temporary directory and renamed into place only when
complete, and ``latest`` is replaced atomically, so a crash mid-save never damages an
earlier checkpoint. Loading checks the hashes and the tree structure, shapes and dtypes
against a template state (a freshly created one) and says what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from funcnets._io import atomic_write_bytes
from funcnets.errors import FuncnetsError
from funcnets.torch_io import flatten, save_file, unflatten
from funcnets.train import TrainState

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint"]

_FORMAT = 1


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(directory: str | os.PathLike, ts: TrainState, *, keep: int = 3) -> Path:
    """Save ``ts`` as ``directory/step_XXXXXXXX`` and point ``latest`` at it.

    Keeps the newest ``keep`` checkpoints. Returns the checkpoint's path.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=directory))
    except OSError as e:
        raise FuncnetsError(
            f"cannot create checkpoint directory {directory}: {e.strerror}. Pass a writable --checkpoint-dir."
        ) from None
    step = int(ts.step)
    name = f"step_{step:08d}"
    try:
        weights = {**flatten(ts.params), **flatten(ts.model_state)}
        save_file(tmp / "weights.safetensors", weights, metadata={"format": "pt", "step": str(step)})
        rest = {"opt_state": ts.opt_state, "step": ts.step, "key": ts.key}
        atomic_write_bytes(tmp / "train.msgpack", serialization.to_bytes(jax.device_get(rest)))
        files = {f: {"sha256": _sha256(tmp / f), "bytes": (tmp / f).stat().st_size}
                 for f in ("weights.safetensors", "train.msgpack")}
        manifest = {"format": _FORMAT, "step": step, "files": files,
                    "params": sorted(flatten(ts.params)), "model_state": sorted(flatten(ts.model_state))}
        atomic_write_bytes(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        final = directory / name
        if final.exists():  # re-saving the same step: move the old one aside first
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(directory / "latest", name.encode())
    for old in sorted(directory.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None."""
    directory = Path(directory)
    pointer = directory / "latest"
    if pointer.is_file():
        path = directory / pointer.read_text().strip()
        if path.is_dir():
            return path
    steps = sorted(p for p in directory.glob("step_*") if (p / "manifest.json").is_file())
    return steps[-1] if steps else None


def load_checkpoint(path: str | os.PathLike, like: TrainState) -> TrainState:
    """Load a checkpoint (a ``step_*`` directory, or a directory holding ``latest``).

    ``like`` is a template with the expected structure — build it exactly as for
    training (same model, optimizer, ``trainable``). Hashes, names, shapes and dtypes
    are verified.
    """
    path = Path(path)
    if not (path / "manifest.json").is_file():
        found = latest_checkpoint(path) if path.is_dir() else None
        if found is None:
            raise FuncnetsError(
                f"no checkpoint at {path}: expected a step_* directory with manifest.json or a "
                f"directory containing one. Train with --checkpoint-dir first, or check the path."
            )
        path = found
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise FuncnetsError(f"checkpoint {path} has an unreadable manifest.json ({e}); it is corrupt.") from None
    for fname, info in manifest.get("files", {}).items():
        f = path / fname
        if not f.is_file() or _sha256(f) != info["sha256"]:
            raise FuncnetsError(
                f"checkpoint file {f} is missing or does not match its recorded sha256: the checkpoint "
                f"is corrupt. Resume from an earlier checkpoint (ls {path.parent})."
            )
    from safetensors.numpy import load_file

    weights = load_file(str(path / "weights.safetensors"))
    params = _restore_tree(flatten(like.params), weights, "params", path)
    model_state = _restore_tree(flatten(like.model_state), weights, "model_state", path)
    template = jax.device_get({"opt_state": like.opt_state, "step": like.step, "key": like.key})
    try:
        rest = serialization.from_bytes(template, (path / "train.msgpack").read_bytes())
    except Exception as e:  # structure mismatch raises ValueError/KeyError from flax
        raise FuncnetsError(
            f"the optimizer state in {path} does not fit this run's optimizer ({type(e).__name__}: {e}). "
            f"Resume with the same optimizer and trainable parameters as the run that saved it."
        ) from None
    return TrainState(unflatten(params), unflatten(model_state), rest["opt_state"], rest["step"], rest["key"])


def _restore_tree(expected: dict, weights: dict, what: str, path: Path) -> dict:
    problems = []
    out = {}
    for k, v in expected.items():
        if k not in weights:
            problems.append(f"  missing {k}")
        elif weights[k].shape != v.shape or weights[k].dtype != np.dtype(v.dtype):
            problems.append(f"  {k}: expected {v.dtype}{list(v.shape)}, found {weights[k].dtype}{list(weights[k].shape)}")
        else:
            out[k] = jax.numpy.asarray(weights[k])
    if problems:
        raise FuncnetsError(
            f"checkpoint {path} does not match this model's {what}:\n" + "\n".join(problems)
            + "\nResume with the same model (and dtype) as the run that saved it."
        )
    return out

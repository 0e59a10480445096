"""Checkpoints: save a training run, resume it exactly, and trust what was saved.

Layout of a checkpoint directory::

    ckpt/
      latest                   name of the newest checkpoint (the commit point)
      step_00000100/
        weights.safetensors    params + buffers with torch names (PyTorch loads it)
        train.msgpack          optimizer state, step, PRNG key (flax.serialization)
        run.json               the rest of what a resume needs: epoch, history, settings
        manifest.json          format, step, save time, sha256 and size of every file above

Saving writes every file, ``run.json`` included, into a temporary folder
``.tmp-step-*``, renames that folder to ``step_*`` in one atomic step and only then
replaces ``latest`` (atomically too). ``latest`` is the commit point: a kill at any
moment leaves the previous checkpoint and ``latest`` intact (at worst a complete
``step_*`` that ``latest`` does not name yet, or a temporary folder, which
:func:`remove_temporary` deletes at the next start). Under the ``funcnets`` command's
interrupt guard a Ctrl-C during a save lets the save finish first
(:func:`funcnets._io.protected`). Pruning keeps the ``keep`` most recently *written*
checkpoints (by save time, never by step number, so a run's own new checkpoint can never
lose to a higher step left by another run) and never removes the one just written.

Reading (:func:`read_checkpoint`) checks the manifest, every file's size and sha256, and
that every file parses; any problem is a :class:`CorruptCheckpointError` naming the file.
:func:`find_checkpoint` picks the one to resume: the checkpoint ``latest`` names, or,
when that one is unreadable, the newest intact one, with a warning. :func:`load_checkpoint`
then checks the arrays' names, shapes and dtypes against a template state and says what
differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np
from flax import serialization

from funcnets._io import atomic_write_bytes, fault_point, fsync_dir, json_bytes, make_temp_dir, protected
from funcnets.errors import FuncnetsError
from funcnets.torch_io import flatten, save_file, unflatten
from funcnets.train import TrainState

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "find_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "remove_temporary",
    "clear_checkpoints",
    "CheckpointInfo",
    "CorruptCheckpointError",
]

_FORMAT = 2  # 2: run.json (epoch, history, settings) inside the checkpoint
_STEP_DIR = re.compile(r"step_\d{8,}")
_TEMPORARY = (".tmp-step-*", ".tmp-old-*", ".latest.*.tmp")


class CorruptCheckpointError(FuncnetsError):
    """A checkpoint's files are missing, damaged or unreadable (not merely different)."""


class CheckpointInfo(NamedTuple):
    """What :func:`read_checkpoint` found: the verified manifest and ``run.json``."""

    path: Path
    step: int
    saved_at: float
    manifest: dict
    run: dict  # {} for a checkpoint saved without run information

    @property
    def epoch(self) -> int | None:
        """Completed epochs (as saved by :func:`funcnets.recipes.fit`), or None."""
        return self.run.get("epoch")

    @property
    def history(self) -> list[dict]:
        return list(self.run.get("history", []))

    @property
    def settings(self) -> dict:
        return dict(self.run.get("settings", {}))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- save
def save_checkpoint(directory: str | os.PathLike, ts: TrainState, *, run: Mapping[str, Any] | None = None,
                    keep: int = 3) -> Path:
    """Save ``ts`` (and ``run``, any JSON data: epoch, history, settings) as
    ``directory/step_XXXXXXXX`` and make it the one ``latest`` names.

    Everything is inside the checkpoint before the atomic rename and the ``latest``
    update make it the newest. Keeps the ``keep`` most recently written checkpoints
    (``keep <= 0``: all). Files and folders get the modes the umask gives. Returns the
    checkpoint's path.

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = checkpoint.save_checkpoint(tmp.name, ts._replace(step=jnp.int32(100)), run={"epoch": 3})
        >>> path.name, sorted(p.name for p in path.iterdir())
        ('step_00000100', ['manifest.json', 'run.json', 'train.msgpack', 'weights.safetensors'])
        >>> restored = checkpoint.load_checkpoint(tmp.name, like=ts)  # the newest intact one
        >>> int(restored.step), restored.params["fc"]["weight"].shape
        (100, (2, 3))
        >>> bool((jax.random.key_data(restored.key) == jax.random.key_data(ts.key)).all())  # typed keys too
        True
        >>> tmp.cleanup()
    """
    directory = Path(directory)
    step = int(ts.step)
    name = f"step_{step:08d}"
    with protected():
        tmp = make_temp_dir(directory, ".tmp-step-")
        final, aside = directory / name, None
        fault_point("save.start")
        try:
            weights = {**flatten(ts.params), **flatten(ts.model_state)}
            save_file(tmp / "weights.safetensors", weights, metadata={"format": "pt", "step": str(step)})
            fault_point("save.weights")
            rest = {"opt_state": ts.opt_state, "step": ts.step, "key": _key_data(ts.key)}
            atomic_write_bytes(tmp / "train.msgpack", serialization.to_bytes(jax.device_get(rest)))
            names = ["weights.safetensors", "train.msgpack"]
            if run is not None:
                atomic_write_bytes(tmp / "run.json", json_bytes(dict(run)))
                names.append("run.json")
            files = {f: {"sha256": _sha256(tmp / f), "bytes": (tmp / f).stat().st_size} for f in names}
            manifest = {"format": _FORMAT, "step": step, "saved_at": time.time(), "files": files,
                        "params": sorted(flatten(ts.params)), "model_state": sorted(flatten(ts.model_state))}
            atomic_write_bytes(tmp / "manifest.json", json_bytes(manifest))
            fault_point("save.files")
            if final.exists():  # re-saving a step: move the old one aside, never delete it first
                aside = make_temp_dir(directory, f".tmp-old-{name}-")
                os.replace(final, aside / name)
            os.replace(tmp, final)
            fsync_dir(directory)
        except BaseException:
            if aside is not None and (aside / name).exists() and not final.exists():
                os.replace(aside / name, final)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fault_point("save.renamed")
        atomic_write_bytes(directory / "latest", name.encode())
        fsync_dir(directory)
        fault_point("save.latest")
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        if keep > 0:
            others = sorted((p for p in list_checkpoints(directory) if p != final), key=_saved_at)
            for old in others[: max(0, len(others) - (keep - 1))]:
                shutil.rmtree(old, ignore_errors=True)
        fault_point("save.done")
    return final


# ----------------------------------------------------------------------------- find
def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The ``step_*`` folders in ``directory``, by step (complete or not).

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for step in (3, 1, 2):
        ...     _ = checkpoint.save_checkpoint(tmp.name, ts._replace(step=jnp.int32(step)), keep=2)
        >>> [p.name for p in checkpoint.list_checkpoints(tmp.name)]  # the 2 most recently written, by step
        ['step_00000001', 'step_00000002']
        >>> tmp.cleanup()
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _STEP_DIR.fullmatch(p.name) and p.is_dir())


def _saved_at(path: Path) -> float:
    """Save time from the manifest; unreadable manifests sort as the oldest."""
    try:
        return float(json.loads((path / "manifest.json").read_text())["saved_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("-inf")


def _pointer(directory: Path) -> tuple[Path | None, str | None]:
    """``(checkpoint latest names, problem)``: the problem says why it names none."""
    pointer = directory / "latest"
    if not pointer.exists():
        return None, f"{directory} has no `latest` pointer"
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{pointer} is unreadable ({e})"
    if not name:
        return None, f"{pointer} is empty (expected the name of a step_* folder)"
    if not _STEP_DIR.fullmatch(name):
        return None, f"{pointer} names {name[:40]!r}, not a step_* folder"
    if not (directory / name).is_dir():
        return None, f"{pointer} names {name}, which does not exist"
    return directory / name, None


def _newest_first(directory: Path) -> tuple[list[Path], str | None]:
    named, problem = _pointer(directory)
    rest = sorted((p for p in list_checkpoints(directory) if p != named), key=lambda p: (_saved_at(p), p.name),
                  reverse=True)
    return ([named] if named else []) + rest, problem


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` names, else the most recently written one with a
    manifest, or None. (Unverified; :func:`find_checkpoint` verifies.)

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> checkpoint.latest_checkpoint(tmp.name) is None
        True
        >>> checkpoint.latest_checkpoint(checkpoint.save_checkpoint(tmp.name, ts).parent).name
        'step_00000000'
        >>> tmp.cleanup()
    """
    candidates, _ = _newest_first(Path(directory))
    complete = [p for p in candidates if (p / "manifest.json").is_file()]
    return complete[0] if complete else None


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def find_checkpoint(directory: str | os.PathLike, which: int | str | os.PathLike | None = None, *,
                    warn: Callable[[str], None] | None = None) -> CheckpointInfo:
    """The checkpoint to resume from, verified (:func:`read_checkpoint`).

    ``which``: None for the newest (the one ``latest`` names; if that one is missing or
    unreadable, the most recently written intact one, after a warning through ``warn``,
    default :func:`warnings.warn`), a step number (``step_{which:08d}`` in
    ``directory``), or the path of a ``step_*`` folder. An explicitly chosen checkpoint
    that is unreadable is an error, not a fallback.

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for step in (1, 2):
        ...     _ = checkpoint.save_checkpoint(tmp.name, ts._replace(step=jnp.int32(step)))
        >>> checkpoint.find_checkpoint(tmp.name).step, checkpoint.find_checkpoint(tmp.name, 1).step
        (2, 1)
        >>> tmp.cleanup()
    """
    warn = warn or _warn
    directory = Path(directory)
    if isinstance(which, int) and not isinstance(which, bool):
        path = directory / f"step_{which:08d}"
        if not path.is_dir():
            steps = [int(p.name[5:]) for p in list_checkpoints(directory)]
            raise FuncnetsError(
                f"{directory} has no checkpoint for step {which}; it has "
                + (f"steps {', '.join(map(str, steps))}. Pass one of them to --resume." if steps else
                   "none. Train once with --checkpoint-dir first.")
            )
        return read_checkpoint(path)
    if which is not None:
        path = Path(which)
        if (path / "manifest.json").exists() or _STEP_DIR.fullmatch(path.name):
            return read_checkpoint(path)
        return find_checkpoint(path, None, warn=warn)
    candidates, problem = _newest_first(directory)
    if not candidates:
        raise FuncnetsError(
            f"found no checkpoint in {directory}: train once with --checkpoint-dir {directory} first, "
            f"or drop --resume."
        )
    failures = []
    for path in candidates:
        try:
            info = read_checkpoint(path)
        except CorruptCheckpointError as e:
            failures.append(str(e))
            warn(f"{e} Trying the next newest checkpoint." if path != candidates[-1] else str(e))
            continue
        if problem or failures:
            reason = f"{problem}; " if problem else ""
            warn(f"{reason}resuming from {path.name}, the newest intact checkpoint"
                 + (f" (epoch {info.epoch})" if info.epoch is not None else "") + ".")
        return info
    raise CorruptCheckpointError(
        f"no intact checkpoint in {directory} ({len(failures)} found, all unreadable; see the warnings above). "
        f"Start the run afresh with --overwrite (deletes them) or use another --checkpoint-dir."
    )


def read_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Verify one ``step_*`` folder: the manifest parses, every file it lists is there
    with its recorded size and sha256, and each parses (safetensors, msgpack, JSON).

    Raises :class:`CorruptCheckpointError` naming the first bad file.

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = checkpoint.save_checkpoint(tmp.name, ts, run={"epoch": 1, "history": [{"loss": 0.5}]})
        >>> info = checkpoint.read_checkpoint(path)  # verified: sizes, sha256, every file parses
        >>> info.step, info.epoch, info.history
        (0, 1, [{'loss': 0.5}])
        >>> (path / "train.msgpack").write_bytes(b"damaged")
        7
        >>> checkpoint.read_checkpoint(path)
        Traceback (most recent call last):
            ...
        funcnets.checkpoint.CorruptCheckpointError: ...train.msgpack...
        >>> tmp.cleanup()
    """
    manifest, run, _, _ = _read_files(Path(path))
    return CheckpointInfo(Path(path), int(manifest["step"]), float(manifest.get("saved_at", 0.0)), manifest, run)


def _corrupt(path: Path, what: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"checkpoint {path} is unusable: {what}. Resume from another checkpoint (--resume STEP; "
        f"ls {path.parent}), or start afresh with --overwrite."
    )


def _read_files(path: Path) -> tuple[dict, dict, dict, dict]:
    """``(manifest, run, weights, rest)`` after every check :func:`read_checkpoint` names."""
    if not path.is_dir():
        raise FuncnetsError(
            f"no checkpoint at {path}: expected a step_* folder with manifest.json, or a "
            f"--checkpoint-dir holding one. Check the path."
        )
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise _corrupt(path, "it has no manifest.json (it was never completely written)") from None
    except (OSError, ValueError) as e:
        raise _corrupt(path, f"manifest.json is unreadable ({type(e).__name__}: {e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not isinstance(manifest.get("step"), int) or not files:
        raise _corrupt(path, "manifest.json lacks its 'step' or 'files' entries")
    for fname, info in files.items():
        f = path / fname
        if not f.is_file():
            raise _corrupt(path, f"{fname} is missing")
        if f.stat().st_size != info.get("bytes") or _sha256(f) != info.get("sha256"):
            raise _corrupt(path, f"{fname} does not match the size and sha256 recorded in manifest.json")
    for required in ("weights.safetensors", "train.msgpack"):
        if required not in files:
            raise _corrupt(path, f"manifest.json does not list {required}")
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(path / "weights.safetensors"))
    except Exception as e:  # noqa: BLE001  safetensors raises its own SafetensorError and others
        raise _corrupt(path, f"weights.safetensors cannot be read ({type(e).__name__}: {e})") from None
    try:
        rest = serialization.msgpack_restore((path / "train.msgpack").read_bytes())
    except Exception as e:  # noqa: BLE001  msgpack raises many types on damaged input
        raise _corrupt(path, f"train.msgpack (the optimizer state) cannot be read ({type(e).__name__}: {e})") from None
    run = {}
    if "run.json" in files:
        try:
            run = json.loads((path / "run.json").read_text())
        except (OSError, ValueError) as e:
            raise _corrupt(path, f"run.json is unreadable ({type(e).__name__}: {e})") from None
        if not isinstance(run, dict):
            raise _corrupt(path, "run.json does not hold a JSON object")
    return manifest, run, weights, rest


# ----------------------------------------------------------------------------- load
def load_checkpoint(path: str | os.PathLike, like: TrainState) -> TrainState:
    """Load a checkpoint: a ``step_*`` folder, or a directory (its newest intact one).

    ``like`` is a template with the expected structure — build it exactly as for
    training (same model, optimizer, ``trainable``). Files are verified as by
    :func:`read_checkpoint`; names, shapes and dtypes against ``like``.

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = checkpoint.save_checkpoint(tmp.name, ts)
        >>> wrong = train.create_train_state({"fc": {"weight": jnp.ones((2, 4)), "bias": jnp.zeros(2)}}, {}, opt,
        ...                                  jax.random.key(0))
        >>> checkpoint.load_checkpoint(tmp.name, like=wrong)  # another model: told what differs
        Traceback (most recent call last):
            ...
        funcnets.errors.FuncnetsError: checkpoint .../step_00000000 does not match this model's params:
          fc.weight: expected float32[2, 4], found float32[2, 3]
        Resume with the same model (and dtype) as the run that saved it.
        >>> tmp.cleanup()
    """
    path = Path(path)
    if not (path / "manifest.json").exists() and not _STEP_DIR.fullmatch(path.name):
        path = find_checkpoint(path).path
    _, _, weights, rest = _read_files(path)
    params = _restore_tree(flatten(like.params), weights, "params", path)
    model_state = _restore_tree(flatten(like.model_state), weights, "model_state", path)
    template = jax.device_get({"opt_state": like.opt_state, "step": like.step, "key": _key_data(like.key)})
    try:
        rest = serialization.from_state_dict(template, rest)
    except Exception as e:  # noqa: BLE001  structure mismatch raises ValueError/KeyError from flax
        raise FuncnetsError(
            f"the optimizer state in {path} does not fit this run's optimizer ({type(e).__name__}: {e}). "
            f"Resume with the same optimizer and trainable parameters as the run that saved it."
        ) from None
    key = rest["key"]
    if _is_typed_key(like.key):
        key = jax.random.wrap_key_data(key, impl=jax.random.key_impl(like.key))
    return TrainState(unflatten(params), unflatten(model_state), rest["opt_state"], rest["step"], key)


def _is_typed_key(key: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)


def _key_data(key: Any) -> Any:
    """A PRNG key as an array msgpack can hold: a typed key (``jax.random.key``) as its
    uint32 data, which :func:`load_checkpoint` wraps back; a raw ``PRNGKey`` as it is."""
    return jax.random.key_data(key) if _is_typed_key(key) else key


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


# ----------------------------------------------------------------------------- housekeeping
def remove_temporary(directory: str | os.PathLike) -> list[Path]:
    """Delete what an interrupted save leaves behind (``.tmp-step-*`` folders and
    temporary ``latest`` files); returns what was removed.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from funcnets import checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> (Path(tmp.name) / ".tmp-step-abc").mkdir()  # what a killed save leaves
        >>> [p.name for p in checkpoint.remove_temporary(tmp.name)]
        ['.tmp-step-abc']
        >>> tmp.cleanup()
    """
    directory = Path(directory)
    removed = []
    for pattern in _TEMPORARY:
        for p in directory.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def clear_checkpoints(directory: str | os.PathLike) -> None:
    """Delete every checkpoint in ``directory`` (``step_*``, ``latest``, temporaries);
    other files are left alone. The ``latest`` pointer goes first, so a kill midway
    leaves no pointer to a deleted checkpoint.

    Example:
        >>> import jax, jax.numpy as jnp, tempfile
        >>> from funcnets import checkpoint, optim, train
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"fc": {"weight": jnp.ones((2, 3)), "bias": jnp.zeros(2)}}
        >>> ts = train.create_train_state(params, {}, opt, jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> _ = checkpoint.save_checkpoint(tmp.name, ts)
        >>> checkpoint.clear_checkpoints(tmp.name)
        >>> checkpoint.list_checkpoints(tmp.name), checkpoint.latest_checkpoint(tmp.name)
        ([], None)
        >>> tmp.cleanup()
    """
    directory = Path(directory)
    (directory / "latest").unlink(missing_ok=True)
    for p in list_checkpoints(directory):
        shutil.rmtree(p)
    remove_temporary(directory)

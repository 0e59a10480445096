"""PyTorch weights in and out: ``state_dict`` <-> ``(params, state)``, and files.

A model's params and buffers are nested dicts whose dotted leaf paths are the torch
``state_dict`` keys, so conversion is flattening plus checks. Files are ``.safetensors``
(the default: no code execution, PyTorch reads it with ``safetensors.torch.load_file``)
or ``.pth``/``.pt`` read with ``torch.load(weights_only=True)`` — never full unpickling.
torch is imported only to read ``.pth`` files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from funcnets._io import atomic_write_bytes
from funcnets._typing import Params, State
from funcnets.config import warn_if_downcast
from funcnets.errors import FuncnetsError
from funcnets.nn.module import Module

__all__ = [
    "state_dict",
    "load_state_dict",
    "Loaded",
    "save_file",
    "load_file",
    "save_weights",
    "load_weights",
    "flatten",
    "unflatten",
]


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``{"fc": {"weight": w}} -> {"fc.weight": w}``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets.torch_io import flatten
        >>> list(flatten({"layer1": {"0": {"conv1": {"weight": jnp.ones(1)}}}}))
        ['layer1.0.conv1.weight']
    """
    return traverse_util.flatten_dict(dict(tree), sep=".") if tree else {}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"fc.weight": w} -> {"fc": {"weight": w}}``.

    Example:
        >>> from funcnets.torch_io import unflatten
        >>> unflatten({"fc.weight": 1, "fc.bias": 2})
        {'fc': {'weight': 1, 'bias': 2}}
    """
    return traverse_util.unflatten_dict(dict(flat), sep=".") if flat else {}


def _ordered_names(model: Module) -> list[tuple[str, str]]:
    """``[(key, "param" | "buffer")]`` in torch's ``state_dict`` order."""
    out = []
    for mname, m in model.named_modules():
        pre = f"{mname}." if mname else ""
        out += [(pre + n, "param") for n in m.param_names()]
        out += [(pre + n, "buffer") for n in m.buffer_names()]
    return out


def state_dict(model: Module, params: Params, state: State | None = None) -> dict[str, np.ndarray]:
    """``model.state_dict()``: NumPy arrays keyed and ordered as torch's.

    ``torch_module.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`` accepts it.
    ``num_batches_tracked`` is exported as int64, torch's dtype.

    Example:
        >>> import jax
        >>> from funcnets import nn, torch_io
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        >>> params, state = model.init(jax.random.key(0))
        >>> sd = torch_io.state_dict(model, params, state)  # torch's keys, order and dtypes
        >>> [(k, v.shape, str(v.dtype)) for k, v in sd.items()]  # doctest: +NORMALIZE_WHITESPACE
        [('0.weight', (4, 3), 'float32'), ('0.bias', (4,), 'float32'), ('1.weight', (4,), 'float32'),
         ('1.bias', (4,), 'float32'), ('1.running_mean', (4,), 'float32'), ('1.running_var', (4,), 'float32'),
         ('1.num_batches_tracked', (), 'int64')]

        torch: ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` takes it.
    """
    flat = {**flatten(params), **flatten(state or {})}
    flat.update({name: flat[same] for name, same in model.shared_tensors().items() if same in flat})
    out = {}
    for key, _ in _ordered_names(model):
        if key not in flat:
            raise KeyError(f"{key} is missing from params/state of {type(model).__name__}")
        arr = np.array(flat[key])  # a writable copy: torch.from_numpy warns on read-only arrays
        out[key] = arr.astype(np.int64) if key.endswith("num_batches_tracked") else arr
    return out


class Loaded(NamedTuple):
    """Result of :func:`load_state_dict` (``missing_keys``/``unexpected_keys`` as in torch)."""

    params: dict
    state: dict
    missing_keys: list[str]
    unexpected_keys: list[str]


def load_state_dict(
    model: Module,
    state_dict: Mapping[str, Any],
    *,
    strict: bool = True,
    init: tuple[Params, State] | None = None,
    dtype: Any = None,
) -> Loaded:
    """Turn a torch ``state_dict`` (tensors or arrays) into ``(params, state)`` for ``model``.

    Args:
      strict: as in torch — missing or unexpected keys are an error. Shape mismatches
        are always an error. All problems are listed in one message.
      init: ``(params, state)`` to take missing entries from when ``strict=False``
        (default: ``model.init(PRNGKey(0))``).
      dtype: cast floating-point arrays to this dtype (default: keep the file's; float64
        arrays with float64 off become float32 with a ``Float64DowncastWarning``, which
        ``dtype=jnp.float32`` makes deliberate and silent).
    Returns:
      ``Loaded(params, state, missing_keys, unexpected_keys)``.

    Example:
        >>> import jax, numpy as np
        >>> from funcnets import nn, torch_io
        >>> model = nn.Linear(3, 2)
        >>> sd = {"weight": np.ones((2, 3), np.float32), "bias": np.zeros(2, np.float32)}  # e.g. torch's, .numpy()
        >>> loaded = torch_io.load_state_dict(model, sd)
        >>> loaded.params["weight"].shape, loaded.missing_keys, loaded.unexpected_keys
        ((2, 3), [], [])
        >>> torch_io.load_state_dict(model, {"weight": np.ones((2, 4), np.float32)})
        Traceback (most recent call last):
            ...
        funcnets.errors.FuncnetsError: Error(s) in loading state_dict for Linear (2):
          weight: expected shape (2, 3), the state_dict has (2, 4)
          missing key: bias
        ...
        >>> torch_io.load_state_dict(model, {"weight": sd["weight"]}, strict=False).missing_keys
        ['bias']
    """
    template = _template(model)
    given = {k: _to_numpy(v) for k, v in state_dict.items()}
    if dtype is None:  # a float64 torch model's weights, silently float32 with float64 off
        warn_if_downcast(given, where="load_state_dict")
    missing = [k for k in template if k not in given]
    unexpected = [k for k in given if k not in template]
    mismatched = [
        f"  {k}: expected shape {template[k][1]}, the state_dict has {tuple(given[k].shape)}"
        for k in template
        if k in given and tuple(given[k].shape) != template[k][1]
    ]
    problems = list(mismatched)
    if strict:
        problems += [f"  missing key: {k}" for k in missing] + [f"  unexpected key: {k}" for k in unexpected]
    if problems:
        raise FuncnetsError(
            f"Error(s) in loading state_dict for {type(model).__name__} ({len(problems)}):\n"
            + "\n".join(problems)
            + "\nCheck that the weights belong to this architecture (e.g. num_classes). In Python, "
            "load_state_dict(..., strict=False) loads the matching keys and keeps initial values for "
            "missing ones (shapes must still match)."
        )
    shared = model.shared_tensors()
    if missing:
        p0, s0 = init if init is not None else model.init(jax.random.PRNGKey(0))
        fallback = {**flatten(p0), **flatten(s0)}
        fallback.update({name: fallback[same] for name, same in shared.items()})
    params, buffers = {}, {}
    for key, (kind, _) in template.items():
        arr = given[key] if key in given else np.asarray(fallback[key])
        if np.issubdtype(arr.dtype, np.integer):
            value = jnp.asarray(arr.astype(jax.dtypes.canonicalize_dtype(np.int64)))
        else:
            value = jnp.asarray(arr, dtype=dtype)
        (params if kind == "param" else buffers)[key] = value
    for name, same in shared.items():  # one tensor, held under its first name (as torch's parameters())
        held = params if name in params else buffers
        value = held.pop(name)
        if same in missing and name in given:  # torch loads it through either name
            held[same] = value
    return Loaded(unflatten(params), unflatten(buffers), missing, unexpected)


def _template(model: Module) -> dict[str, tuple[str, tuple[int, ...]]]:
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    shapes = {**flatten(params), **flatten(state)}
    shared = model.shared_tensors()
    return {k: (kind, tuple(shapes[shared.get(k, k)].shape)) for k, kind in _ordered_names(model)}


def _to_numpy(v: Any) -> np.ndarray:
    """A NumPy copy of a tensor or array that nothing else references.

    Never a view: on CPU, ``jnp.asarray`` may keep the NumPy buffer it is given instead
    of copying it (jax-ml/jax#37830, for 64-byte-aligned buffers, so it depends on where
    torch's allocator put the tensor). A view of a torch tensor would then let torch's
    in-place updates (``optimizer.step()``, ``add_``) change funcnets' "immutable"
    parameters: a float64 SGD parity run drifted 40% from torch after loading weights
    from a model that torch went on training.
    """
    if hasattr(v, "detach"):  # a torch.Tensor
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        v = v.numpy()
    return np.array(v, copy=True)


# ----------------------------------------------------------------------------- files
_HOW_TO_GET = (
    "funcnets never downloads. On a machine with internet, save torchvision's weights "
    "with `python -c \"import torch, torchvision; m = torchvision.models.{arch}(weights='DEFAULT'); "
    "torch.save(m.state_dict(), '{arch}.pth')\"` and pass that file's path."
)
_HOW_TO_GET_OWN = (
    "funcnets never downloads, and torchvision has no pretrained weights for this model: pass a "
    "file you saved, such as the .safetensors that `funcnets train` writes to its --out folder, "
    "or torch.save(model.state_dict(), 'weights.pth') of a torch model with the same layer names."
)


def save_file(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """Write ``{name: array}`` as ``.safetensors``, atomically.

    Example:
        >>> import numpy as np, tempfile
        >>> from pathlib import Path
        >>> from funcnets import torch_io
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = torch_io.save_file(Path(tmp.name) / "w.safetensors", {"fc.weight": np.eye(2, dtype=np.float32)})
        >>> torch_io.load_file(path)["fc.weight"].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        >>> tmp.cleanup()
    """
    from safetensors.numpy import save

    arrays = {k: np.array(v, order="C") for k, v in tensors.items()}  # ascontiguousarray would make 0-d 1-d
    return atomic_write_bytes(path, save(arrays, metadata=metadata))


def load_file(path: str | os.PathLike, *, arch: str | None = "resnet18") -> dict[str, np.ndarray]:
    """Read ``{name: array}`` from ``.safetensors`` or ``.pth``/``.pt``/``.bin``.

    ``arch``: the torchvision builder whose weights a missing file would be (the message
    says how to save them), or None for a model torchvision has no weights for.

    ``.pth`` files are read with ``torch.load(weights_only=True)``; checkpoints that wrap
    the weights (``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel's
    ``module.`` prefix are unwrapped.

    Example:
        >>> from funcnets import torch_io
        >>> torch_io.load_file("missing/resnet18.pth")
        Traceback (most recent call last):
            ...
        FileNotFoundError: no weights file at missing/resnet18.pth. funcnets never downloads. ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}. "
                                + (_HOW_TO_GET.format(arch=arch) if arch else _HOW_TO_GET_OWN))
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file as st_load

            return st_load(str(path))
        if suffix in (".pth", ".pt", ".bin", ".ckpt"):
            try:
                import torch
            except ImportError:
                raise FuncnetsError(
                    f"reading {path.name} needs PyTorch (pip install torch). Or convert it once to "
                    f".safetensors with funcnets.torch_io.save_file, which needs no torch."
                ) from None
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
            for wrapper in ("state_dict", "model", "model_state_dict"):
                if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
                    obj = obj[wrapper]
            if not isinstance(obj, dict):
                raise FuncnetsError(f"{path} holds a {type(obj).__name__}, not a state_dict; save the model's "
                                    f"weights with torch.save(model.state_dict(), path) and pass that file.")
            if obj and all(k.startswith("module.") for k in obj):
                obj = {k[len("module."):]: v for k, v in obj.items()}
            return {k: _to_numpy(v) for k, v in obj.items()}
    except (FuncnetsError, FileNotFoundError):
        raise
    except Exception as e:  # corrupt or truncated files raise many different types
        raise FuncnetsError(
            f"could not read weights from {path}: {type(e).__name__}: {e}. The file is corrupt "
            f"or not a weights file; re-export or re-download it."
        ) from None
    raise FuncnetsError(
        f"unknown weights file type {suffix!r} for {path}: expected .safetensors or .pth/.pt/.bin/.ckpt. "
        f"Pass a file with one of these suffixes (rename it if it is one of these formats)."
    )


def save_weights(path: str | os.PathLike, model: Module, params: Params, state: State | None = None) -> Path:
    """Save ``model``'s weights with torch names: ``.safetensors`` (default) or ``.pth``.

    Example:
        >>> import jax, tempfile
        >>> from pathlib import Path
        >>> from funcnets import nn, torch_io
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> params, state = model.init(jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = torch_io.save_weights(Path(tmp.name) / "model.safetensors", model, params, state)
        >>> sorted(torch_io.load_file(path))  # torch names: PyTorch's load_state_dict(strict=True) takes them
        ['0.bias', '0.weight', '2.bias', '2.weight']
        >>> tmp.cleanup()
    """
    sd = state_dict(model, params, state)
    if Path(path).suffix.lower() in (".pth", ".pt"):
        import io

        import torch

        buf = io.BytesIO()
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, buf)
        return atomic_write_bytes(path, buf.getvalue())
    return save_file(path, sd, metadata={"format": "pt", "model": type(model).__name__})


def load_weights(path: str | os.PathLike, model: Module, *, strict: bool = True, dtype: Any = None) -> Loaded:
    """:func:`load_file` then :func:`load_state_dict`.

    Example:
        >>> import jax, tempfile
        >>> from pathlib import Path
        >>> from funcnets import nn, torch_io
        >>> model = nn.Linear(3, 2)
        >>> params, state = model.init(jax.random.key(0))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = torch_io.save_weights(Path(tmp.name) / "linear.safetensors", model, params)
        >>> loaded = torch_io.load_weights(path, model)
        >>> bool((loaded.params["weight"] == params["weight"]).all())
        True
        >>> tmp.cleanup()
    """
    arch = getattr(model, "arch", None)  # torchvision's builder name (ResNet has one, LeNet none)
    return load_state_dict(model, load_file(path, arch=arch), strict=strict, dtype=dtype)

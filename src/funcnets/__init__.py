"""funcnets: PyTorch's core training story as pure JAX functions.

Models are frozen dataclasses of hyperparameters with pure ``init``/``apply``; params
and buffers are nested dicts keyed with torch's ``state_dict`` names. torch is never
imported here (only in :mod:`funcnets.torch_io` when reading ``.pth`` files).

Importing funcnets adds :data:`funcnets.config.XLA_CPU_FLAGS` to ``XLA_FLAGS`` unless
JAX has already started (:func:`funcnets.config.tune_xla_cpu`), and runs JAX's CPU
programs synchronously with their memory kept in the main heap
(:func:`funcnets.config.tune_cpu_memory`).
"""

from funcnets import config

config.tune_xla_cpu()  # before anything starts JAX's backend
config.tune_cpu_memory()

from funcnets import autograd, checkpoint, data, losses, models, nn, optim, torch_io, train  # noqa: E402
from funcnets.errors import FuncnetsError, ShapeError  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # from_torch lives in funcnets.convert, imported on first use so that `import funcnets`
    # stays torch-free and fast.
    if name in ("from_torch", "port", "UnsupportedOperationError"):
        from funcnets import convert

        return getattr(convert, name)
    raise AttributeError(f"module 'funcnets' has no attribute {name!r}")


__all__ = [
    "autograd",
    "checkpoint",
    "config",
    "data",
    "losses",
    "models",
    "nn",
    "optim",
    "torch_io",
    "train",
    "FuncnetsError",
    "ShapeError",
    "from_torch",
    "port",
    "UnsupportedOperationError",
    "__version__",
]

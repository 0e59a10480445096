"""Process-wide settings the CLI and examples share."""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "default_device"]


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache, so a second process skips XLA compiles.

    Opt out with ``FUNCNETS_COMPILATION_CACHE=0``; choose the directory with the argument
    or ``FUNCNETS_COMPILATION_CACHE=/some/dir`` (default ``~/.cache/funcnets/jax``).
    """
    setting = os.environ.get("FUNCNETS_COMPILATION_CACHE", "")
    if setting.lower() in ("0", "false", "off", "no"):
        return None
    cache = Path(path or setting or Path.home() / ".cache" / "funcnets" / "jax")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable home must not stop training; it only costs compile time
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache


def default_device() -> jax.Device:
    """``torch.device('cuda' if torch.cuda.is_available() else 'cpu')``: JAX's first device
    is already the accelerator when there is one."""
    return jax.devices()[0]

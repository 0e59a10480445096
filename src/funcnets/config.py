"""Process-wide settings the CLI and examples share."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator


def _launched_as_command() -> bool:
    """Whether this process is the ``funcnets`` command (console script or ``python -m``)."""
    if Path(sys.argv[0]).name == "funcnets":
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b.split(".")[0] == "funcnets" for a, b in zip(argv, argv[1:]))


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"funcnets: interrupted (Ctrl-C) while starting; nothing was written\n")
    os._exit(130)


# Ctrl-C while the command is still importing JAX would print a 30-line traceback (and
# can be swallowed by JAX's gc callback). Nothing has been written yet, so the command
# simply ends: one line, status 130. Only in the command's own process (``import
# funcnets`` elsewhere leaves SIGINT alone); funcnets.cli.main installs the full guard
# (funcnets._io.interrupt_guard) as soon as it runs.
if _launched_as_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import jax  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "enable_compilation_cache",
    "default_device",
    "tune_xla_cpu",
    "tune_cpu_memory",
    "XLA_CPU_FLAGS",
    "enable_float64",
    "float64",
    "float64_enabled",
    "warn_if_downcast",
    "Float64DowncastWarning",
    "XLAFlagsIgnoredWarning",
]


class XLAFlagsIgnoredWarning(RuntimeWarning):
    """``import funcnets`` came after JAX started its backends, so its XLA flags do nothing."""


class Float64DowncastWarning(UserWarning):
    """A float64 (or complex128) array was given while JAX computes in 32 bits."""

# jaxlib 0.10's XLA:CPU hands every convolution to YNNPACK. On this project's models its
# kernels are 2-3x slower than XLA's own (Eigen) convolution, the backward passes most
# of all (ResNet-18 layer1, batch 32, forward+backward: 23.3 -> 9.6 ms; the whole train
# step 0.57x -> 0.8x of torch; see benchmarks/README.md). Dots stay with YNNPACK.
# XLA:CPU's default (concurrency-optimized) scheduler orders the ResNet-18 step worse for
# two cores than the memory-optimized one: batch 8 77-82 -> 73-77 ms, batch 32 242 -> 235
# ms (separate processes); LeNet unchanged. (jaxlib 0.10 marks the older spelling,
# --xla_cpu_enable_concurrency_optimized_scheduler=false, deprecated; it gives the same
# compiled program.)
XLA_CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
)
# Only on the jaxlib series these were measured with: the options are experimental, and
# XLA aborts the process on a flag it does not know.
_TUNED_JAXLIB = (0, 10)


def _jaxlib_series() -> tuple[int, ...]:
    import jaxlib

    return tuple(int(p) for p in jaxlib.__version__.split(".")[:2] if p.isdigit())


def one_off_compile_options() -> dict[str, Any]:
    """``jax.jit(..., compiler_options=...)`` for a program that runs once (a model's
    initialisation): no backend optimisation, no fusion emitters.

    XLA's LLVM passes cost far more than they save on a program run once: ResNet-18's
    initialisation (11.7M threefry draws) compiled in 16.5 s and ran in 0.7 s; so compiled,
    1.1 s and 1.5 s (2-core CPU under load), and the compile's memory, which glibc keeps
    mapped, no longer lifts the process's peak (584 -> 362 MB). Empty (XLA's defaults) on
    jaxlib series other than the one measured, where these options may not exist.
    """
    if _jaxlib_series() != _TUNED_JAXLIB:
        return {}
    return {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache, so a second process skips XLA compiles.

    Opt out with ``FUNCNETS_COMPILATION_CACHE=0``; choose the directory with the argument
    or ``FUNCNETS_COMPILATION_CACHE=/some/dir`` (default ``~/.cache/funcnets/jax``).

    This also turns on funcnets' AOT cache of compiled train steps (:mod:`funcnets.aot`,
    in ``<dir>/funcnets-aot``): a new process loads a :func:`~funcnets.train.make_train_step`
    step it has seen before without tracing it, which the compilation cache alone cannot
    skip (a ResNet-18 step: ~1.2 s -> ~0.3 s). ``FUNCNETS_AOT_CACHE=0`` turns that part off.
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


def tune_xla_cpu() -> bool:
    """Add :data:`XLA_CPU_FLAGS` to ``XLA_FLAGS`` (``import funcnets`` does this).

    XLA reads its flags once, when JAX starts its backend, so this only takes effect if
    no JAX computation has run yet in this process. Skipped when ``XLA_FLAGS`` already
    sets the same options (yours win), with ``FUNCNETS_XLA_FLAGS=0``, and on jaxlib
    versions other than the series these flags were measured with (0.10). Returns
    whether they are in effect.
    """
    from jax._src import xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    missing = [f for f in XLA_CPU_FLAGS if f.split("=")[0] not in flags]
    if not missing:
        return True
    if os.environ.get("FUNCNETS_XLA_FLAGS", "").lower() in ("0", "false", "off", "no") or _jaxlib_series() != _TUNED_JAXLIB:
        return False
    if xla_bridge.backends_are_initialized():
        # XLA has read XLA_FLAGS already: setting them now would silently do nothing.
        warnings.warn(
            "funcnets: JAX had already started its backends when funcnets was imported, so "
            f"the XLA:CPU flags it adds ({' '.join(missing)}) have no effect in this process "
            "(convolutions may be 2-3x slower on CPU). Import funcnets before running any JAX "
            "computation, put the flags in XLA_FLAGS yourself, or set FUNCNETS_XLA_FLAGS=0 "
            "to opt out and silence this warning.",
            XLAFlagsIgnoredWarning,
            stacklevel=2,
        )
        return False
    os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()
    return True


# XLA:CPU gives each execution of a program one block for all its temporaries (ResNet-18's
# train step at batch 32: 93 MB). JAX runs CPU programs asynchronously, on its own threads;
# glibc serves their large blocks by a fresh mmap each time (a thread's arena cannot hold
# more than 64 MB), so every step faulted its temporaries in anew: 23,000 page faults a
# step, ~25 ms of its 112 ms. Run on the calling thread, from the main heap, with glibc's
# thresholds raised so that it neither maps nor trims such blocks, the step reuses the
# same memory: 68 faults, 86 ms (2-core CPU, same process size). With trimming off, what
# XLA's compiler frees stayed resident too, beside the step's memory rather than under it:
# so after each compile the heap's free pages go back to the kernel (``malloc_trim``,
# 20-60 ms after ResNet-18's step, nothing next to a small one's compile): ResNet-18 b32
# train process peak 1000-1020 -> 774-796 MB (torch eager's: ~930).
_MALLOC_THRESHOLD = 1 << 30  # M_MMAP_THRESHOLD and M_TRIM_THRESHOLD, bytes
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch's
_TRIM: list = []  # the registered listener, once


def _trim_after_compiles(libc) -> None:
    """Return the heap's free pages to the kernel after each XLA compile (a JAX monitoring
    listener, registered once)."""
    if _TRIM:
        return

    def trim(event: str, duration: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE_EVENT:
            libc.malloc_trim(0)

    jax.monitoring.register_event_duration_secs_listener(trim)
    _TRIM.append(trim)


def tune_cpu_memory() -> bool:
    """Run JAX's CPU programs synchronously and keep their memory in the main heap, so a
    train step reuses its buffers instead of faulting them in afresh (``import funcnets``
    does this; see the comment above for the figures).

    Two process-wide settings, on Linux with glibc: ``jax_cpu_enable_async_dispatch``
    off (a jitted call on CPU returns when its result is ready, as torch's eager calls
    do; funcnets' input pipeline prefetches in worker processes all the same), and
    glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` at 1 GiB (freed memory stays
    with the process for the next step rather than going back to the kernel), except
    after each XLA compile, when the compiler's freed memory is returned (``malloc_trim``).
    JAX reads the first when it starts its backend, so this is skipped once a JAX
    computation has run; also with ``FUNCNETS_CPU_MEMORY=0`` and off Linux. Returns
    whether it applied.
    """
    from jax._src import xla_bridge

    if (os.environ.get("FUNCNETS_CPU_MEMORY", "").lower() in ("0", "false", "off", "no")
            or not sys.platform.startswith("linux") or xla_bridge.backends_are_initialized()):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    if not (mallopt(_M_MMAP_THRESHOLD, _MALLOC_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _MALLOC_THRESHOLD)):
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    _trim_after_compiles(libc)
    return True


def default_device() -> jax.Device:
    """``torch.device('cuda' if torch.cuda.is_available() else 'cpu')``: JAX's first device
    is already the accelerator when there is one.

    Example:
        >>> import jax
        >>> from funcnets import config
        >>> config.default_device() == jax.devices()[0]  # the GPU when there is one, else the CPU
        True
    """
    return jax.devices()[0]


# --------------------------------------------------------------------------- float64
def float64_enabled() -> bool:
    """Whether JAX computes in 64 bits now (``jax_enable_x64``).

    Example:
        >>> from funcnets import config
        >>> config.float64_enabled()  # JAX's default: 32 bits
        False
        >>> with config.float64():
        ...     print(config.float64_enabled())
        True
    """
    return bool(jax.config.jax_enable_x64)


def enable_float64(enabled: bool = True) -> None:
    """Turn float64 on (or off) for the whole process: torch's ``set_default_dtype(float64)``.

    JAX computes in 32 bits unless ``jax_enable_x64`` is set; this sets it. Call it at the
    start of a program, before creating arrays (arrays made before keep their dtype).
    ``jax.enable_x64(True)`` written as a statement does nothing: it is a context manager;
    use :func:`float64` for a block of code.

    Args:
      enabled: ``True`` for 64-bit floats and ints, ``False`` for JAX's 32-bit default.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import config
        >>> before = config.float64_enabled()
        >>> config.enable_float64()  # torch.set_default_dtype(torch.float64)
        >>> jnp.asarray([1.0]).dtype
        dtype('float64')
        >>> config.enable_float64(before)  # back to what it was
    """
    jax.config.update("jax_enable_x64", bool(enabled))


@contextlib.contextmanager
def float64(enabled: bool = True) -> Iterator[None]:
    """A ``with`` block computed in float64 (or, with ``enabled=False``, in float32).

    A function compiled inside the block is compiled for 64 bits; arrays created inside
    keep their dtype afterwards.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from funcnets import config, losses
        >>> x, y = np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12])  # NumPy float64, as torch users write
        >>> with config.float64():  # torch's float64 semantics for the block
        ...     loss = losses.mse_loss(x, y)
        >>> loss.dtype, float(loss) > 0  # the 1e-12 difference survives
        (dtype('float64'), True)
        >>> config.float64_enabled()  # off again after the block
        False
    """
    with jax.enable_x64(bool(enabled)):
        yield


_WIDE = (np.dtype(np.float64), np.dtype(np.complex128))


def warn_if_downcast(*trees: Any, where: str) -> None:
    """Warn when float64/complex128 NumPy arrays will be computed in 32 bits.

    With float64 off (JAX's default), JAX silently turns a float64 NumPy array into
    float32: the results then differ from torch's float64 ones at the 1e-7 level, not
    1e-15. funcnets' entry points call this on their array arguments.

    Args:
      *trees: arrays or pytrees of arrays (other leaves are ignored).
      where: the entry point, named in the warning.

    Example:
        >>> import numpy as np, warnings
        >>> from funcnets import config
        >>> with warnings.catch_warnings(record=True) as caught, config.float64(False):
        ...     warnings.simplefilter("always")
        ...     config.warn_if_downcast({"x": np.ones((2, 3))}, where="my_entry_point")
        >>> caught[0].category.__name__, str(caught[0].message)[:60]
        ('Float64DowncastWarning', 'my_entry_point: got a float64 array of shape (2, 3), but flo')
    """
    if float64_enabled():
        return
    for leaf in jax.tree_util.tree_leaves(trees):
        # JAX arrays (and tracers) are already in JAX's dtype: only NumPy data is downcast
        if isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype in _WIDE:
            dtype = leaf.dtype
            warnings.warn(
                f"{where}: got a {dtype} array of shape {tuple(np.shape(leaf))}, but float64 is "
                "off, so it is computed in float32. Turn float64 on with "
                "funcnets.config.enable_float64() (the whole program) or `with "
                "funcnets.config.float64():` (a block), or pass float32 arrays to silence this.",
                Float64DowncastWarning,
                stacklevel=3,
            )
            return

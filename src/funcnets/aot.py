"""The AOT cache: compiled train steps saved to disk, loaded by a new process without tracing.

:func:`funcnets.train.make_train_step` goes through it. The scanned epoch of
:func:`funcnets.train.make_train_epoch` does not: deserialised by jaxlib 0.10, it failed
at run time (``NOT_FOUND: Function wrapped_broadcast not found``) when a resumed
``funcnets train`` loaded it. A step fails the same way if what is saved is an
executable JAX itself read from its persistent cache (XLA:CPU serialises it again
without its kernels), so only fresh compiles are saved: when the JAX cache answers, the
step runs from it and this cache stays empty for that key.

JAX's persistent compilation cache skips XLA's compile in a new process, but the step is
still traced and lowered to find the cache key: 0.3-0.5 s for a ResNet-18 step, 1.2 s
with the compile-cache lookup. This cache stores the compiled executable itself
(``jax.experimental.serialize_executable``) with its input and output tree structures,
under a key computed *without tracing*, so a new process with the same key runs its
first step after reading one file.

When it is on: whenever JAX's persistent compilation cache is on
(:func:`funcnets.config.enable_compilation_cache`, which the ``funcnets`` command calls),
in the sub-directory ``funcnets-aot`` of that cache's directory. ``FUNCNETS_AOT_CACHE=0``
turns it off; ``FUNCNETS_AOT_CACHE=1`` turns it on even without the compilation cache
(``~/.cache/funcnets/jax/funcnets-aot``); ``FUNCNETS_AOT_CACHE=/some/dir`` chooses the
directory. The setting is read once per step function, at its first call.
``funcnets warmup`` fills the cache ahead of time.

The key (a SHA-256) covers everything that changes the program:

* the train step's closure: the loss function, the optimizer and every option of
  :func:`funcnets.train.make_train_step`,
  fingerprinted by :func:`fingerprint`;
* the arguments' tree structure, shapes, dtypes, weak types and shardings;
* JAX's trace context (``jax_enable_x64``, matmul precision, meshes, ...) and the other
  JAX settings, funcnets' own context variables (convolution lowering, layout, ...);
* the versions of Python, jax, jaxlib, numpy, optax, flax and oneDNN, a hash of
  funcnets' own source files (so an edited checkout never loads a stale program), the
  backend, its platform version, the devices (kind, ids), the host CPU's model and
  instruction-set flags (an executable built for AVX-512 must not run without it), and
  ``XLA_FLAGS``.

Soundness of the closure's fingerprint: a value is keyed only if what it computes is
fully determined by what is hashed. Numbers, strings, dtypes, enums, arrays (by
content), containers, dataclasses and named tuples of such values are keyed by value;
functions, classes and jitted functions of funcnets, optax, jax, numpy, flax, chex and
the standard library are keyed by their qualified name and their library's version (or
funcnets' source hash); closures made by those libraries (optax's transformations,
:func:`funcnets.train.supervised_loss`, schedules) by their code, defaults and the
values they close over, recursively. Anything else — a lambda or function of your
own, a model class defined outside funcnets, an object of an unknown type — cannot be
keyed soundly (its code or the globals it reads may change while its name stays), so
the step falls back to plain ``jax.jit`` (a debug log line on the ``funcnets.aot``
logger says why). The one assumption: library code does not read module-level
variables that you change at run time.

An entry is ``magic, SHA-256 of the body, body`` (a pickle of the key, the serialised
executable and its trees), written to a temporary file and renamed into place, so a
crash never leaves a partial entry. A corrupt, truncated or mismatched entry, or one
the backend refuses, is ignored with an :class:`AOTCacheWarning` and the step is
compiled (and saved) again. As with JAX's own cache, the directory must be trusted:
loading an executable runs its code.

``stats`` counts what happened in this process (``traced``: steps traced and compiled
by this cache, ``loaded``, ``saved``, ``rejected`` entries, ``unkeyable`` steps) and
``last_timings`` holds the seconds of the last miss or load (``trace_s``, ``lower_s``,
``compile_s``, ``save_s``; ``load_s``): the benchmark reads them.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import functools
import hashlib
import logging
import os
import pickle
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from jax._src import config as _jax_config  # trace_context: what jit's own cache keys on

__all__ = [
    "AOTCacheWarning",
    "Unkeyable",
    "CachedJit",
    "cache_dir",
    "fingerprint",
    "stats",
    "last_timings",
]

log = logging.getLogger("funcnets.aot")

stats: dict[str, int] = {"traced": 0, "loaded": 0, "saved": 0, "rejected": 0, "unkeyable": 0}
last_timings: dict[str, float] = {}

_FORMAT = 1
_MAGIC = b"funcnets-aot-cache 1\n"
_OFF = ("0", "false", "off", "no")
_ON = ("1", "true", "on", "yes")
_SUFFIX = ".step"


class AOTCacheWarning(RuntimeWarning):
    """An AOT cache entry was ignored (corrupt, mismatched, refused) or could not be written."""


class Unkeyable(TypeError):
    """A value whose behaviour cannot be fingerprinted soundly (see the module docstring)."""


# ----------------------------------------------------------------------------- where
def cache_dir() -> Path | None:
    """The AOT cache's directory now, created if needed, or ``None`` when it is off."""
    setting = os.environ.get("FUNCNETS_AOT_CACHE", "").strip()
    if setting.lower() in _OFF:
        return None
    if setting and setting.lower() not in _ON:
        path = Path(setting).expanduser()
    else:
        base = jax.config.jax_compilation_cache_dir
        if not base:
            if not setting:  # on by default only where the compilation cache is on
                return None
            base = Path.home() / ".cache" / "funcnets" / "jax"
        path = Path(base) / "funcnets-aot"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:  # an unwritable home must not stop training
        log.debug("AOT cache off: cannot create %s (%s)", path, e)
        return None
    return path


# ----------------------------------------------------------------------------- fingerprints
# libraries keyed by their installed version; funcnets by a hash of its source instead
_LIBRARIES = ("optax", "jax", "jaxlib", "numpy", "flax", "chex", "ml_dtypes", "opt_einsum")


@functools.lru_cache(maxsize=None)
def _source_hash() -> str:
    """SHA-256 of funcnets' own files (sources and built extensions)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".so", ".cc", ".pyd") and p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get(name), "__version__", "unknown")


def _module_version(modname: str | None) -> str:
    top = (modname or "").split(".")[0]
    if top == "funcnets":
        return "funcnets@" + _source_hash()
    if top in sys.stdlib_module_names or top == "builtins":
        return "python@" + sys.version
    if top in _LIBRARIES:
        return f"{top}@{_dist_version(top)}"
    raise Unkeyable(f"{modname or '?'} is not a versioned library (its code may change under the same name)")


def _importable_name(obj: Any) -> tuple[str, str] | None:
    """``(module, qualname)`` if ``obj`` is what importing that name gives, else None."""
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(mod, str) or not isinstance(qual, str) or "<" in qual:
        return None
    found: Any = sys.modules.get(mod)
    for part in qual.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return (mod, qual) if found is obj else None


def _code(h: _Hasher, code: types.CodeType) -> None:
    h.add("code", code.co_qualname, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
          code.co_flags, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)
    h.raw(code.co_code)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code(h, c)
        else:
            h.value(c)


class _Hasher:
    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._seen: dict[int, int] = {}
        self._alive: list[Any] = []  # keep ids unique while hashing
        self._depth = 0

    def raw(self, b: bytes) -> None:
        self._h.update(len(b).to_bytes(8, "little") + b)

    def add(self, *tokens: Any) -> None:
        for t in tokens:
            self.raw(repr(t).encode())

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def value(self, obj: Any) -> None:
        if obj is None or isinstance(obj, (bool, int, str, bytes)) and type(obj) in (bool, int, str, bytes):
            self.add(type(obj).__name__, obj)
            return
        if type(obj) is float:
            self.add("float", obj.hex())
            return
        if type(obj) is complex:
            self.add("complex", obj.real.hex(), obj.imag.hex())
            return
        if obj is Ellipsis:
            self.add("...")
            return
        if id(obj) in self._seen:  # a cycle or a shared value
            self.add("ref", self._seen[id(obj)])
            return
        self._seen[id(obj)] = len(self._seen)
        self._alive.append(obj)
        self._depth += 1
        if self._depth > 200:
            raise Unkeyable("too deeply nested")
        try:
            self._compound(obj)
        finally:
            self._depth -= 1

    def _compound(self, obj: Any) -> None:
        if isinstance(obj, np.dtype):
            self.add("dtype", obj.str, obj.name)
        elif isinstance(obj, np.generic):
            self.add("np", np.dtype(type(obj)).str)
            self.raw(np.asarray(obj).tobytes())
        elif isinstance(obj, (np.ndarray, jax.Array)):
            if isinstance(obj, jax.core.Tracer):
                raise Unkeyable("a traced value")
            a = np.ascontiguousarray(np.asarray(obj))
            self.add(type(obj).__name__, a.dtype.str, a.shape)
            self.raw(hashlib.sha256(a.tobytes()).digest())
        elif isinstance(obj, enum.Enum):
            self.add("enum")
            self.value(type(obj))
            self.add(obj.name)
        elif (name := _importable_name(obj)) is not None:  # library functions, classes, jnp.*, ufuncs
            self.add("ref", *name, _module_version(name[0]))
        elif isinstance(obj, types.FunctionType):
            self._function(obj)
        elif isinstance(obj, types.MethodType):
            self.add("method")
            self.value(obj.__self__)
            self.value(obj.__func__)
        elif isinstance(obj, functools.partial):
            self.add("partial")
            self.value(obj.func)
            self.value(obj.args)
            self.value(obj.keywords)
        elif type(obj) in (tuple, list):
            self.add(type(obj).__name__, len(obj))
            for v in obj:
                self.value(v)
        elif type(obj) is dict:
            self._items(obj.items())
        elif type(obj) in (set, frozenset):
            self.add(type(obj).__name__, len(obj))
            digests = sorted(fingerprint(v) for v in obj)
            self.add(*digests)
        elif isinstance(obj, tuple) and hasattr(type(obj), "_fields"):  # a NamedTuple
            self.add("namedtuple")
            self.value(type(obj))
            self.value(tuple(obj))
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            self.add("dataclass")
            self.value(type(obj))
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            extra = getattr(obj, "__dict__", {})
            self._items({**fields, **{k: v for k, v in extra.items() if k not in fields}}.items())
        else:
            raise Unkeyable(f"cannot fingerprint a {type(obj).__module__}.{type(obj).__qualname__}")

    def _items(self, items) -> None:
        pairs = sorted((fingerprint(k), v) for k, v in items)
        self.add("dict", len(pairs))
        for k, v in pairs:
            self.add(k)
            self.value(v)

    def _function(self, fn: types.FunctionType) -> None:
        # a closure made by a library (optax's update_fn, supervised_loss's loss_fn): its
        # code and library version, and everything it closes over
        version = _module_version(fn.__module__)  # raises for your own functions and lambdas
        self.add("function", fn.__module__, fn.__qualname__, version)
        _code(self, fn.__code__)
        self.value(fn.__defaults__)
        self.value(fn.__kwdefaults__)
        self.value(tuple(c.cell_contents if _cell_full(c) else Ellipsis for c in fn.__closure__ or ()))
        if fn.__dict__:
            self.value({k: v for k, v in fn.__dict__.items() if k != "__wrapped__"})
            if "__wrapped__" in fn.__dict__:
                self.value(fn.__dict__["__wrapped__"])


def _cell_full(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def fingerprint(obj: Any) -> str:
    """A SHA-256 hex digest of ``obj`` that changes whenever what it computes may change.

    Raises:
      Unkeyable: ``obj`` holds something that cannot be keyed soundly (a user function or
        lambda, a class defined outside funcnets and its libraries, an unknown object).
    """
    h = _Hasher()
    h.value(obj)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the key
_CONFIG_IGNORED = ("compilation_cache", "persistent_cache", "log", "traceback", "pprint", "explain_cache",
                   "dump", "source_url", "captured_constants", "proxy", "timeout", "tracer_error",
                   "transfer_guard", "check_tracer_leaks")


@functools.lru_cache(maxsize=None)
def _host_cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    keep = [ln for ln in info.splitlines() if ln.split(":")[0].strip() in ("vendor_id", "model name", "flags", "Features")]
    return "\n".join(sorted(set(keep)))


def _environment() -> dict[str, Any]:
    import jaxlib

    from funcnets.nn import _onednn, _onednn_rnn, _patches

    devices = jax.devices()
    return {
        "format": _FORMAT,
        "python": sys.version,
        "versions": {n: _dist_version(n) for n in ("jax", "jaxlib", "numpy", "optax", "flax", "onednn-cpu-gomp")},
        "jaxlib": jaxlib.__version__,
        "funcnets": _source_hash(),
        "backend": jax.default_backend(),
        "platform_version": devices[0].client.platform_version,
        "devices": [(d.id, d.platform, d.device_kind, d.process_index) for d in devices],
        "process_count": jax.process_count(),
        "host_cpu": hashlib.sha256(_host_cpu().encode()).hexdigest(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        # each also registers its custom calls, which a loaded executable calls by name
        "extensions": [_onednn.error(), _onednn_rnn.error(), _patches.error()],
        "config": {k: repr(v) for k, v in sorted(jax.config.values.items())
                   if not any(s in k for s in _CONFIG_IGNORED)},
    }


def _trace_context() -> tuple:
    return _jax_config.trace_context()


def _funcnets_context() -> tuple:
    # funcnets' context variables (convolution lowering, layout, BatchNorm groups, ...)
    # are read while tracing, so they are part of the program
    return tuple(sorted((v.name, val) for v, val in contextvars.copy_context().items()
                        if v.name.startswith("funcnets_")))


def _keyable_trace_context() -> list:
    out = []
    for name, val in zip(_jax_config.trace_context_names(), _jax_config.trace_context()):
        text = repr(val)
        if " at 0x" in text:
            if type(val).__name__ == "AxisEnv" and not getattr(val, "axis_sizes", None) and not getattr(val, "spmd_axis_names", None):
                text = "AxisEnv()"
            else:
                raise Unkeyable(f"JAX's trace context {name} holds {text}")
        out.append((name, text))
    return out


def _signature(args: tuple) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    sig = []
    for x in leaves:
        if isinstance(x, jax.core.Tracer):
            raise Unkeyable("called under a JAX transformation")
        aval = jax.typeof(x)
        sharding = repr(x.sharding) if isinstance(x, jax.Array) else type(x).__name__
        sig.append((aval.str_short(), bool(getattr(aval, "weak_type", False)), sharding))
    return str(tree), tuple(sig)


# ----------------------------------------------------------------------------- entries
def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old entry or the whole new one
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _reject(path: Path, why: str) -> None:
    stats["rejected"] += 1
    warnings.warn(f"funcnets: ignoring the AOT cache entry {path} ({why}); compiling the step again",
                  AOTCacheWarning, stacklevel=4)


def _load(path: Path, key: str):
    from jax.experimental.serialize_executable import deserialize_and_load

    t0 = time.perf_counter()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        _reject(path, f"unreadable: {e}")
        return None
    head = len(_MAGIC) + 64
    if not data.startswith(_MAGIC) or len(data) < head:
        _reject(path, "not a funcnets AOT cache entry, or truncated")
        return None
    body = data[head:]
    if hashlib.sha256(body).hexdigest().encode() != data[len(_MAGIC):head]:
        _reject(path, "corrupt: its checksum does not match")
        return None
    try:
        entry = pickle.loads(body)
        if entry.get("key") != key:
            _reject(path, "its key does not match this step")
            return None
        compiled = deserialize_and_load(entry["executable"], entry["in_tree"], entry["out_tree"])
    except Exception as e:  # noqa: BLE001 - any failure means: compile instead
        _reject(path, f"the backend refused it: {type(e).__name__}: {str(e)[:200]}")
        return None
    stats["loaded"] += 1
    last_timings.clear()
    last_timings["load_s"] = time.perf_counter() - t0
    log.debug("loaded %s from the AOT cache (%s, %.3f s)", entry.get("what"), path, last_timings["load_s"])
    return compiled


# JAX's persistent-cache hits, counted: an executable JAX read from its cache is not saved
# here. XLA:CPU serialises such a deserialised executable without its kernels, and a later
# process that loads it fails at the first step ("NOT_FOUND: Function transpose_copy_fusion
# not found"), after the step's inputs were donated. Seen with ResNet-18's frozen-trunk
# step whenever the JAX cache held the program but this cache did not (another key: a new
# funcnets version, or an earlier run with FUNCNETS_AOT_CACHE=0).
_jax_cache_hits = [0]


def _count_jax_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _jax_cache_hits[0] += 1


jax.monitoring.register_event_listener(_count_jax_cache_hit)


def _compile_and_save(jitted, args: tuple, path: Path | None, key: str | None, what: str):
    last_timings.clear()
    t0 = time.perf_counter()
    traced = jitted.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    hits = _jax_cache_hits[0]
    compiled = lowered.compile()
    t3 = time.perf_counter()
    stats["traced"] += 1
    last_timings.update(trace_s=t1 - t0, lower_s=t2 - t1, compile_s=t3 - t2)
    log.debug("traced and compiled %s (trace %.3f s, lower %.3f s, compile %.3f s)", what, t1 - t0, t2 - t1, t3 - t2)
    if path is None:
        return compiled
    if _jax_cache_hits[0] != hits:  # JAX's cache supplied it (or another thread's hit: skip too)
        log.debug("%s came from JAX's compilation cache; not saved (its kernels would be missing)", what)
        return compiled
    from jax.experimental.serialize_executable import serialize

    try:
        executable, in_tree, out_tree = serialize(compiled)
    except (ValueError, NotImplementedError, TypeError) as e:  # e.g. closed-over constants
        log.debug("%s cannot be serialised (%s); not cached", what, e)
        return compiled
    body = pickle.dumps({"key": key, "what": what, "executable": executable, "in_tree": in_tree,
                         "out_tree": out_tree}, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        _atomic_write(path, _MAGIC + hashlib.sha256(body).hexdigest().encode() + body)
    except OSError as e:
        warnings.warn(f"funcnets: could not write the AOT cache entry {path}: {e}", AOTCacheWarning, stacklevel=4)
        return compiled
    stats["saved"] += 1
    last_timings["save_s"] = time.perf_counter() - t3
    log.debug("saved %s to the AOT cache (%s, %d bytes)", what, path, len(body))
    return compiled


# ----------------------------------------------------------------------------- the wrapper
class CachedJit:
    """``jitted(*args)``, its compiled program saved to and loaded from the AOT cache.

    Args:
      jitted: a ``jax.jit`` function (with its donation), called positionally.
      closure: everything the traced function depends on besides its arguments (the
        loss function, the optimizer, the step's options); fingerprinted with
        :func:`fingerprint`. If it cannot be, the cache is not used (plain ``jitted``).
      what: a name for log lines.

    The first call with a new signature (tree, shapes, dtypes, shardings, trace context)
    computes the key, loads the executable or traces, compiles and saves it; later calls
    with the same signature go straight to the compiled executable's C++ dispatch.
    """

    def __init__(self, jitted: Callable, closure: Any, what: str = "train step"):
        self._jitted = jitted
        self._what = what
        self._closure = closure
        self._static: str | None = None
        self._dir: Path | None = None
        self._off: bool | None = None  # decided at the first call
        self._memo: dict[str, Any] = {}
        self._last: tuple | None = None  # (trace context, funcnets context, compiled, key)

    def _decide(self) -> None:
        self._dir = cache_dir()
        if self._dir is not None:
            try:
                self._static = fingerprint(self._closure)
            except Unkeyable as e:
                stats["unkeyable"] += 1
                log.debug("AOT cache not used for %s: %s", self._what, e)
        self._off = self._dir is None or self._static is None
        self._closure = None  # not needed any more

    def __call__(self, *args):
        if self._off is None:
            self._decide()
        if self._off:
            return self._jitted(*args)
        last = self._last
        if last is not None and last[0] == _trace_context() and last[1] == _funcnets_context():
            try:
                return last[2](*args)
            except (TypeError, ValueError):
                # a different signature (the compiled program refuses it before running)
                # or a real error: the slow path tells them apart
                if self._key(args) == last[3]:
                    raise
        return self._slow(args)

    def _key(self, args: tuple) -> str | None:
        try:
            parts = (_environment(), self._static, _signature(args), _keyable_trace_context(), _funcnets_context())
            return fingerprint(parts)
        except Unkeyable as e:
            log.debug("AOT cache not used for this call of %s: %s", self._what, e)
            return None

    def _slow(self, args: tuple):
        context = (_trace_context(), _funcnets_context())
        key = self._key(args)
        if key is None:
            self._last = None
            return self._jitted(*args)
        compiled = self._memo.get(key)
        if compiled is None:
            path = self._dir / f"{key}{_SUFFIX}"
            compiled = _load(path, key) or _compile_and_save(self._jitted, args, path, key, self._what)
            self._memo[key] = compiled
        self._last = (*context, compiled, key)
        return compiled(*args)

    def lower(self, *args):
        """``jax.jit(...).lower`` for these arguments."""
        return self._jitted.lower(*args)

    def trace(self, *args):
        """``jax.jit(...).trace`` for these arguments."""
        return self._jitted.trace(*args)

    def __getattr__(self, name: str):
        # the rest of the jitted function's API (eval_shape, clear_cache, ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._jitted, name)

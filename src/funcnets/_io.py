"""Safe writes: atomic files and folders that respect the umask, strict JSON, and Ctrl-C
that never tears a write.

- :func:`atomic_write_bytes` writes a temporary file beside the target, fsyncs it and
  renames it over the target, so readers see the old or the new file, never half of one.
  ``tempfile`` creates its files 0600 and folders 0700 whatever the umask; the writers
  here give them the mode a plain ``open``/``mkdir`` would (``0o666``/``0o777`` less the
  umask).
- :func:`json_bytes` is strict JSON: NaN and infinities (which ``json.dumps`` writes as
  bare ``NaN``, invalid JSON) become ``null``.
- :func:`interrupt_guard` (the ``funcnets`` command installs it) turns Ctrl-C into one
  line on stderr and exit status 130. It never raises ``KeyboardInterrupt`` at a random
  point (where JAX's ``_xla_gc_callback`` can swallow it): a watcher thread, woken through
  ``signal.set_wakeup_fd`` even while the main thread waits inside XLA, ends the process
  at once, unless the main thread is inside a :func:`protected` block (a checkpoint being
  saved), which then completes first and raises ``KeyboardInterrupt`` as it ends.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from funcnets.errors import FuncnetsError

__all__ = ["atomic_write_bytes", "make_temp_dir", "umask", "json_bytes", "protected", "interrupt_guard"]


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere the only portable way; racy only against other umask changes
    os.umask(old)
    return old


def _cannot_write(directory: Path, e: OSError) -> FuncnetsError:
    return FuncnetsError(
        f"cannot write to {directory}: {e.strerror}. Choose a writable directory "
        f"(check its permissions, or pass another output path)."
    )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over
    ``path`` (``os.replace`` is atomic on POSIX), so readers see the old or the new file.
    The file gets the mode ``0o666 & ~umask``, as ``open(path, "wb")`` would give it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _cannot_write(path.parent, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_temp_dir(directory: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder ``directory/<prefix>XXXXXXXX`` with mode ``0o777 & ~umask``
    (``tempfile.mkdtemp`` alone makes it 0700)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
        os.chmod(tmp, 0o777 & ~umask())
    except OSError as e:
        raise _cannot_write(directory, e) from None
    return tmp


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename inside ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_bytes(obj: Any, indent: int | None = 1) -> bytes:
    """``obj`` as strict JSON (UTF-8): non-finite floats become ``null``, since JSON has no
    NaN or infinity and ``json.dumps`` would write a bare ``NaN`` that parsers refuse."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False).encode()


# ----------------------------------------------------------------------------- Ctrl-C
_lock = threading.Lock()
_depth = 0  # how many protected() blocks the main thread is inside
_pending = False  # Ctrl-C arrived inside a protected block
_describe: Callable[[], str] | None = None  # the active guard's one-line message


def _exit_now(message: str) -> None:
    """End the process at once with status 130 (called from the watcher thread)."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001  a closed or broken stdout must not stop the exit
        pass
    os.write(2, (message.rstrip("\n") + "\n").encode(errors="replace"))
    os._exit(130)


def interrupt_message() -> str:
    """The active guard's line for an interrupt (a generic one without a guard)."""
    try:
        return _describe() if _describe is not None else "interrupted"
    except Exception as e:  # noqa: BLE001  the message must never fail the exit
        return f"interrupted ({type(e).__name__} while describing the state)"


@contextmanager
def protected() -> Iterator[None]:
    """Run the block to its end even if Ctrl-C arrives meanwhile (under
    :func:`interrupt_guard`); the interrupt then takes effect as the block ends, as a
    ``KeyboardInterrupt`` raised from this context manager. Without a guard this does
    nothing: Python's own ``KeyboardInterrupt`` arrives wherever it arrives, and the
    writers here leave only temporary files behind."""
    global _depth, _pending
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            fire = _depth == 0 and _pending
            if fire:
                _pending = False
        if fire:
            raise KeyboardInterrupt


class _Watcher(threading.Thread):
    def __init__(self, read_fd: int):
        super().__init__(name="funcnets-sigint", daemon=True)
        self.read_fd = read_fd

    def run(self) -> None:
        global _pending
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            if not data or 0 in data:  # 0: the guard is being removed
                return
            if signal.SIGINT in data:
                with _lock:
                    if _depth == 0:
                        _exit_now(interrupt_message())
                    _pending = True


def _ignore(signum, frame) -> None:
    """The Python-level handler does nothing: the watcher thread decides (see the module
    docstring). Raising here is what lets ``_xla_gc_callback`` swallow an interrupt."""


@contextmanager
def interrupt_guard(describe: Callable[[], str]) -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) prints ``describe()`` on stderr and exits with
    status 130: at once outside :func:`protected` blocks, at the end of one inside.

    Only the main thread can install signal handlers; elsewhere this does nothing. The
    previous handler and wakeup fd are restored on exit.
    """
    global _describe
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C-level handler must never block
    previous_describe = _describe
    _describe = describe
    watcher = _Watcher(read_fd)
    watcher.start()
    previous_handler = signal.signal(signal.SIGINT, _ignore)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        try:
            os.write(write_fd, b"\0")
        except OSError:
            pass
        watcher.join(timeout=5)
        os.close(write_fd)
        os.close(read_fd)
        _describe = previous_describe


# ----------------------------------------------------------------------------- test hooks
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """A named moment at which tests can kill or interrupt the process.

    ``FUNCNETS_FAULT="name:action[:n][,...]"`` (test-only; unset in normal use) acts on the
    ``n``-th time (default 1) the program reaches ``name``: ``kill`` sends itself SIGKILL,
    ``sigint`` sends itself SIGINT (as Ctrl-C would) and continues, ``pause`` prints
    ``funcnets-fault: name`` on stderr and sleeps 3 s so a test can signal it there.
    """
    spec = os.environ.get("FUNCNETS_FAULT")
    if not spec:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    for entry in spec.split(","):
        parts = entry.strip().split(":")
        if parts[0] != name or len(parts) < 2:
            continue
        if _fault_hits[name] != (int(parts[2]) if len(parts) > 2 else 1):
            continue
        if parts[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif parts[1] == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # let the watcher thread see it while we are still at this point
        elif parts[1] == "pause":
            os.write(2, f"funcnets-fault: {name}\n".encode())
            time.sleep(3.0)

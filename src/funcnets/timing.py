"""Fair timing: interleaved runs, warm-up excluded, medians, ``block_until_ready``.

Used by the benchmark suite and the examples so that every figure funcnets prints is
measured the same way, side by side with PyTorch in the same process.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax

__all__ = ["interleaved"]


def _block(out: Any) -> None:
    jax.block_until_ready(out)  # torch CPU results are already synchronous


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 15, warmup: int = 2,
                settle_ms: float = 20.0) -> dict[str, float]:
    """Median milliseconds per call of each function, timed round-robin.

    Round-robin (a, b, a, b, ...) rather than all-of-a-then-all-of-b, so a machine
    that slows down or speeds up during the run affects every contender alike.
    ``warmup`` calls of each (compilation, allocator warm-up) are not timed, nor are
    the untimed calls of the same function, for at least ``settle_ms`` (one call at
    least), before each timed one: after a torch call its OpenMP worker threads keep
    spinning on the cores (libgomp's ``GOMP_SPINCOUNT``; measured on the 2-core CPU: ~8
    ms of CPU time after a Conv1d step), and whatever runs next is slowed by them, as
    torch is by XLA's pool threads. In a real training loop only one library runs.
    Measured: a LeNet step timed right after torch's took 10.0 ms, after another
    funcnets call 6.5 ms; a Conv1d forward + backward (2 ms) after one settling call
    3.3 ms, after 20 ms of them 2.3 ms, torch's unchanged (1.9 ms).
    """
    for fn in fns.values():
        for _ in range(warmup):
            _block(fn())
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            while True:  # settle
                _block(fn())
                if (time.perf_counter() - t) * 1e3 >= settle_ms:
                    break
            t = time.perf_counter()
            _block(fn())
            samples[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}

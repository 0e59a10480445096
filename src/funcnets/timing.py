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


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 15, warmup: int = 2, settle: int = 1) -> dict[str, float]:
    """Median milliseconds per call of each function, timed round-robin.

    Round-robin (a, b, a, b, ...) rather than all-of-a-then-all-of-b, so a machine
    that slows down or speeds up during the run affects every contender alike.
    ``warmup`` calls of each (compilation, allocator warm-up) are not timed, nor are
    the ``settle`` calls before each timed one: after a torch call, its OpenMP threads
    keep spinning on the cores for a while, and whatever runs next is slowed by it
    (measured: a LeNet step timed right after torch's took 10.0 ms, the same step
    after another funcnets call 6.5 ms). In a real training loop only one library runs.
    """
    for fn in fns.values():
        for _ in range(warmup):
            _block(fn())
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for _ in range(settle):
                _block(fn())
            t = time.perf_counter()
            _block(fn())
            samples[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}

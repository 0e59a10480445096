"""Helpers for the parity tests: the tutorial's torch models and error measures."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np
import torch

from funcnets.parity import torch_lenet, torch_my_relu

TorchNet = lambda: torch_lenet()  # noqa: E731  the tutorial's Net (one definition, in funcnets.parity)
MyReLU = torch_my_relu()

# where funcnets' compiled extensions (src/funcnets/csrc/) are built, so CI must have them
ON_X86_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"


def default_compile_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without conftest's fast-compile flags, for subprocesses that train for
    real: no backend optimisation and no fusion emitters make executing long runs 2-3x
    slower, more than they save in compile time."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_backend_optimization_level", "--xla_cpu_use_fusion_emitters"))]
    return {**os.environ, "XLA_FLAGS": " ".join(flags), **extra}


def rel_err(a, b) -> float:
    """max|a - b| / max|b| (the relative error of ``a`` against reference ``b``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def assert_close(a, b, rtol: float, what: str = "") -> None:
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.0e}"


def to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()

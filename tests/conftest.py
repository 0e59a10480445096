"""Shared fixtures. torch is imported by the parity tests directly: if it is missing,
collection fails (CI must run parity for real, never skip it)."""

import os

# Compile fast: the suite is mostly compilation of small computations, and XLA:CPU's
# backend optimisation passes cost more than they save at test shapes (test_optim,
# test_pooling, test_normalization: 147 -> 117 s). Set before JAX creates its CPU client
# (XLA reads XLA_FLAGS once) and inherited by the tests' subprocesses (CLI, examples).
# Results are unchanged within the stated tolerances; benchmarks never run under it.
_FAST = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *(f for f in _FAST if f not in os.environ.get("XLA_FLAGS", ""))]).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

try:  # parity is the point of this suite: without torch it must fail, not skip
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError as e:
    raise pytest.UsageError(
        f"the parity tests need PyTorch and torchvision ({e}). Install them with "
        f"pip install -e '.[test]' (torch==2.14.1, torchvision==0.29.1)."
    ) from None

# Hypothesis: new random examples on a developer's run (that is how the upsampling and
# attention cases torch disagrees on were found), a fixed sequence of them in CI (CI set):
# the same examples every run, so a landing is not refused for a case drawn for the first
# time that is no regression. Each test keeps its own max_examples.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# One torch thread: on the loaded 2-core machine (two pytest workers, XLA's own pool)
# torch's two OpenMP threads spin-wait against each other: 100 float64 LeNet SGD steps
# took 8-78 s with two threads and 0.24 s with one. Tests that need more set it locally.
torch.set_num_threads(1)


@pytest.fixture
def x64():
    """Run the test with float64 enabled (``jax_enable_x64``), the test of semantics."""
    with jax.enable_x64(True):
        yield


# The CLI turns on JAX's persistent compilation cache; keep the test run out of ~/.cache.
os.environ.setdefault("FUNCNETS_COMPILATION_CACHE", "0")

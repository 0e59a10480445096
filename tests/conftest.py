"""Shared fixtures. torch is imported by the parity tests directly: if it is missing,
collection fails (CI must run parity for real, never skip it)."""

import jax
import pytest

try:  # parity is the point of this suite: without torch it must fail, not skip
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError as e:
    raise pytest.UsageError(
        f"the parity tests need PyTorch and torchvision ({e}). Install them with "
        f"pip install -e '.[test]' (torch==2.14.1, torchvision==0.29.1)."
    ) from None


@pytest.fixture
def x64():
    """Run the test with float64 enabled (``jax_enable_x64``), the test of semantics."""
    with jax.enable_x64(True):
        yield


# The CLI turns on JAX's persistent compilation cache; keep the test run out of ~/.cache.
import os  # noqa: E402

os.environ.setdefault("FUNCNETS_COMPILATION_CACHE", "0")

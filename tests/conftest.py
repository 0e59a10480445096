"""Shared fixtures. torch is imported by the parity tests directly: if it is missing,
collection fails (CI must run parity for real, never skip it)."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test with float64 enabled (``jax_enable_x64``), the test of semantics."""
    with jax.enable_x64(True):
        yield

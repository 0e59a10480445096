"""Bring your own PyTorch model: :func:`from_torch` converts a ``torch.nn.Module``
(:func:`check_convertible` only checks that it would, without copying any weight).

``fx`` traces and interprets the graph; ``ops`` is the table of torch functions and
Tensor methods with their JAX implementations; ``modules`` the table of ``torch.nn``
layers and how each funcnets layer is built from the torch one. torch is imported only
when these are called, never at ``import funcnets``.
"""

from funcnets.convert.fx import TorchGraph, TorchModule, UnsupportedOperationError, check_convertible, from_torch
from funcnets.convert.port import port, write_port

__all__ = ["from_torch", "check_convertible", "port", "write_port", "UnsupportedOperationError", "TorchGraph", "TorchModule"]

"""Type aliases shared across funcnets.

Params and State are nested dicts keyed with PyTorch's names, so the dotted path of a
leaf (``"layer1.0.conv1.weight"``) is the key of the same tensor in a torch
``state_dict``.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Mapping[str, Any]  # nested dict of arrays: trainable parameters
State = Mapping[str, Any]  # nested dict of arrays: buffers (BatchNorm running stats)

__all__ = ["Array", "PRNGKey", "Params", "State"]

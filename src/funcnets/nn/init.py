"""``torch.nn.init``'s distributions, as functions of a PRNG key and a shape.

torch's default layer initialisation is ``kaiming_uniform_(a=sqrt(5))`` for weights,
which is U(±1/sqrt(fan_in)), and U(±1/sqrt(fan_in)) for biases. Transformers and
attention use Glorot's ``xavier_uniform``/``xavier_normal``.
"""

from __future__ import annotations

import math

import jax

from funcnets._typing import Array, PRNGKey

__all__ = ["uniform", "default_bound", "calculate_fan_in_and_fan_out", "xavier_uniform", "xavier_normal"]


def uniform(key: PRNGKey, shape: tuple[int, ...], a: float = 0.0, b: float = 1.0) -> Array:
    """U(a, b) samples of ``shape`` (``torch.nn.init.uniform_(t, a, b)``).

    Example:
        >>> import jax
        >>> from funcnets.nn import init
        >>> w = init.uniform(jax.random.key(0), (2, 3), -0.1, 0.1)
        >>> w.shape, bool((abs(w) <= 0.1).all())
        ((2, 3), True)
    """
    return jax.random.uniform(key, shape, minval=a, maxval=b)


def default_bound(fan_in: int) -> float:
    """torch's default weight and bias bound, 1/sqrt(fan_in) (0 for an empty fan-in).

    Example:
        >>> from funcnets.nn import init
        >>> init.default_bound(16)  # nn.Linear(16, ...) draws its weight and bias from U(-0.25, 0.25)
        0.25
    """
    return 1.0 / math.sqrt(fan_in) if fan_in else 0.0


def calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch's ``_calculate_fan_in_and_fan_out``: (dim 1, dim 0) times the receptive field
    (the product of dims 2...).

    Raises:
        ValueError: for fewer than 2 dimensions, as torch.

    Example:
        >>> from funcnets.nn import init
        >>> init.calculate_fan_in_and_fan_out((8, 3, 5, 5))  # a Conv2d(3, 8, 5) weight
        (75, 200)
    """
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform(key: PRNGKey, shape: tuple[int, ...], gain: float = 1.0) -> Array:
    """``torch.nn.init.xavier_uniform_(t, gain)``: U(±a), a = gain * sqrt(6 / (fan_in + fan_out)).

    Example:
        >>> import jax
        >>> from funcnets.nn import init
        >>> w = init.xavier_uniform(jax.random.key(0), (4, 2))  # a = sqrt(6 / (2 + 4)) = 1
        >>> w.shape, bool((abs(w) <= 1.0).all())
        ((4, 2), True)
    """
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def xavier_normal(key: PRNGKey, shape: tuple[int, ...], gain: float = 1.0) -> Array:
    """``torch.nn.init.xavier_normal_(t, gain)``: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).

    Example:
        >>> import jax
        >>> from funcnets.nn import init
        >>> w = init.xavier_normal(jax.random.key(0), (200, 300))  # std = sqrt(2 / 500) ≈ 0.063
        >>> round(float(w.std()), 2)
        0.06
    """
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    return jax.random.normal(key, shape) * (gain * math.sqrt(2.0 / (fan_in + fan_out)))

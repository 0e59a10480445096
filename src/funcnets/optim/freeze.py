"""Parameter freezing, the ``requires_grad=False`` analog: choose the trainable leaves
by torch name, split a parameter tree into trainable and frozen parts, and merge them."""

from __future__ import annotations

import fnmatch
from typing import Callable, Iterable

from funcnets._typing import Params
from funcnets.torch_io import flatten, unflatten

__all__ = ["select", "split", "merge", "Selector"]

Selector = Callable[[str], bool] | str | Iterable[str] | None


def _matcher(sel: Selector) -> Callable[[str], bool]:
    if sel is None:
        return lambda name: False
    if callable(sel):
        return sel
    patterns = [sel] if isinstance(sel, str) else list(sel)
    # "fc" selects the module fc and everything below it, like "fc.*"
    return lambda name: any(fnmatch.fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)


def select(params: Params, include: Selector = None, exclude: Selector = None) -> frozenset[str]:
    """Dotted names of the trainable parameters: those matching ``include`` (default:
    all) and not ``exclude``. Selectors are glob patterns on torch names (``"fc.*"``,
    ``"layer4.*"``), a module prefix (``"fc"``) or a predicate ``name -> bool``.

    The result is a frozenset: hashable, so it can be a static ``jax.jit`` argument.
    Raises if nothing is selected, since a typo would otherwise train nothing.

    Example:
        >>> import jax
        >>> from funcnets import nn, optim
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> params, _ = model.init(jax.random.key(0))
        >>> sorted(optim.select(params, include="2"))  # train the head only: torch's requires_grad_(False) on "0"
        ['2.bias', '2.weight']
        >>> sorted(optim.select(params, exclude="*.bias"))
        ['0.weight', '2.weight']
    """
    names = list(flatten(params))
    inc = (lambda n: True) if include is None else _matcher(include)
    exc = _matcher(exclude)
    chosen = frozenset(n for n in names if inc(n) and not exc(n))
    if not chosen:
        raise ValueError(
            f"no parameter matches include={include!r} exclude={exclude!r}; parameter names look like "
            f"{names[:4]}"
        )
    return chosen


def split(params: Params, trainable: frozenset[str]) -> tuple[dict, dict]:
    """``(trainable_params, frozen_params)`` as two nested dicts.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> params = {"body": {"weight": jnp.ones(3)}, "head": {"weight": jnp.zeros(2)}}
        >>> trainable, frozen = optim.split(params, optim.select(params, include="head"))
        >>> trainable.keys(), frozen.keys()
        (dict_keys(['head']), dict_keys(['body']))
    """
    flat = flatten(params)
    return (
        unflatten({k: v for k, v in flat.items() if k in trainable}),
        unflatten({k: v for k, v in flat.items() if k not in trainable}),
    )


def merge(trainable_params: Params, frozen_params: Params) -> dict:
    """Inverse of :func:`split`.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> params = {"body": {"weight": jnp.ones(3)}, "head": {"weight": jnp.zeros(2)}}
        >>> trainable, frozen = optim.split(params, frozenset({"head.weight"}))
        >>> optim.merge(trainable, frozen).keys() == params.keys()
        True
    """
    return unflatten({**flatten(frozen_params), **flatten(trainable_params)})

"""torch's parameter groups: different hyperparameters for different parameters, chosen
by torch name, on ``optax.partition`` (``multi_transform``).

torch::

    torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                      lr=1e-3, weight_decay=0.1)

funcnets::

    optim.param_groups(optim.adamw, [{"params": ["*.bias", "*bn*"], "weight_decay": 0.0}],
                       lr=1e-3, weight_decay=0.1)

A group's ``"params"`` is a selector as in :func:`funcnets.optim.select`: glob patterns on
torch's dotted names (``"*.bias"``), module prefixes (``"fc"`` is ``fc.*``) or a predicate
``name -> bool``. Each group is its own optimizer (its own state and step count), as in
torch, where every parameter's state is its own.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import optax

from funcnets._typing import Params
from funcnets.optim.freeze import _matcher

__all__ = ["param_groups", "param_group_labels", "DEFAULT_GROUP"]

DEFAULT_GROUP = "default"  # the label of parameters that no group selects


def _groups(groups: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any, dict]]:
    """``[(label, selector, options)]``, checked."""
    if isinstance(groups, Mapping):
        groups = [groups]
    out = []
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise ValueError(
                f"parameter group {i} is {group!r}; a group is a dict with a 'params' selector "
                "(glob patterns on torch names, a module prefix or a predicate) and the options "
                "that differ from the defaults, e.g. {'params': '*.bias', 'weight_decay': 0.0}"
            )
        label = str(group.get("name", f"group{i}"))
        if label == DEFAULT_GROUP or label in [g[0] for g in out]:
            raise ValueError(f"parameter group {i} is named {label!r}, which is taken; give each group its own name")
        options = {k: v for k, v in group.items() if k not in ("params", "name")}
        out.append((label, group["params"], options))
    return out


def _label_fn(groups: list[tuple[str, Any, dict]]) -> Callable[[Params], Params]:
    matchers = [(label, _matcher(sel)) for label, sel, _ in groups]

    def labels(tree: Params) -> Params:
        paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
        names = [jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in paths]
        out = []
        for name in names:
            hits = [label for label, match in matchers if match(name)]
            if len(hits) > 1:
                raise ValueError(
                    f"parameter {name!r} is selected by parameter groups {hits}; torch refuses a "
                    "parameter in more than one group (\"some parameters appear in more than one "
                    "parameter group\"): make the selectors disjoint"
                )
            out.append(hits[0] if hits else DEFAULT_GROUP)
        for label, sel, _ in groups:
            if label not in out:
                raise ValueError(
                    f"parameter group {label!r} selects no parameter (params={sel!r}); parameter "
                    f"names look like {names[:4]}"
                )
        return jax.tree_util.tree_unflatten(treedef, out)

    return labels


def param_group_labels(params: Params, groups: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{torch name: group label}``: which group each parameter falls in (a group's
    ``"name"``, else ``"group<i>"``; :data:`DEFAULT_GROUP` for the unselected). Raises as
    :func:`param_groups` does.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import optim
        >>> params = {"fc": {"weight": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
        >>> optim.param_group_labels(params, [{"params": "*.bias", "name": "no_decay"}])
        {'fc.bias': 'no_decay', 'fc.weight': 'default'}
    """
    labels = _label_fn(_groups(groups))(params)
    paths, _ = jax.tree_util.tree_flatten_with_path(labels)
    return {jax.tree_util.keystr(p, simple=True, separator="."): label for p, label in paths}


def param_groups(
    optimizer: Callable[..., optax.GradientTransformation],
    groups: Sequence[Mapping[str, Any]],
    **defaults: Any,
) -> optax.GradientTransformation:
    """torch's ``Optimizer([{"params": ..., **options}, ...], **defaults)``.

    Every group is ``optimizer(**{**defaults, **options})``; parameters that no group
    selects are optimized with ``optimizer(**defaults)``. Each group's options are
    checked now (torch's messages); the selectors are matched against the parameters'
    torch names when the optimizer meets them (``init``), as torch does when it is given
    its parameters.

    Args:
      optimizer: a funcnets factory (``optim.sgd``, ``optim.adamw``, ...).
      groups: dicts with ``"params"`` (a selector: glob patterns on torch names such as
        ``"*.bias"``, a module prefix such as ``"fc"``, or a predicate ``name -> bool``),
        an optional ``"name"`` (the group's label in the optimizer state), and the
        options that differ from ``defaults``, e.g. ``{"params": "*.bias",
        "weight_decay": 0.0}`` or ``{"params": "fc", "lr": 1e-2}``.
      **defaults: the options of every group, as torch's optimizer keyword arguments.

    Returns:
      An optax transformation whose state holds one inner state per group (the
      selected parameters only), keyed by the group labels and :data:`DEFAULT_GROUP`.

    Raises:
      ValueError: at ``init``, if a parameter is selected by two groups (torch refuses a
        parameter in two groups) or a group selects nothing (a typo would otherwise
        silently leave it out); now, for an option out of range.
      TypeError: now, for an option the optimizer does not take.

    Differs from torch: a parameter in no group is optimized with the defaults (torch
    leaves out a parameter it was not given); to freeze parameters use
    :func:`funcnets.optim.select` and the train step's ``trainable``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from funcnets import optim
        >>> params = {"fc": {"weight": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
        >>> opt = optim.param_groups(optim.sgd, [{"params": "*.bias", "weight_decay": 0.0}],
        ...                          lr=0.1, weight_decay=0.5)  # torch: SGD([{...decay}, {...no_decay}])
        >>> opt_state = opt.init(params)
        >>> zero = {"fc": {"weight": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}}  # only the decay acts
        >>> updates, opt_state = opt.update(zero, opt_state, params)
        >>> params = optax.apply_updates(params, updates)
        >>> round(float(params["fc"]["weight"][0, 0]), 4), float(params["fc"]["bias"][0])  # 1 - lr·wd·1; 1
        (0.95, 1.0)
    """
    checked = _groups(groups)
    transforms = {}
    for label, _, options in [*checked, (DEFAULT_GROUP, None, {})]:
        try:
            transforms[label] = optimizer(**{**defaults, **options})
        except TypeError as e:
            raise TypeError(f"parameter group {label!r} {options}: {e}") from None
    return optax.partition(transforms, _label_fn(checked))

"""The module contract, stated once.

A module is a frozen dataclass of hyperparameters (printable, hashable, a valid static
``jax.jit`` argument) with two pure functions:

* ``init(key) -> (params, state)``: nested dicts keyed with torch's names. ``params`` are
  the trainable tensors (``model.parameters()``), ``state`` the buffers (BatchNorm's
  running statistics). Modules without parameters or buffers have no entry.
* ``apply(params, state, x, *, train=False, key=None) -> (y, new_state)``: the forward
  pass. ``train`` is torch's ``model.train()``/``model.eval()``; ``key`` is the PRNG key
  for dropout. Nothing is mutated; updated buffers are returned.

``module(params, state, x, ...)`` is ``apply``. The dotted paths of the leaves of
``params`` and ``state`` are exactly the keys of the torch module's ``state_dict()``.
:mod:`funcnets.nn.container` shows how to write one's own module (own parameters and
buffers, a ``ModuleList`` of children) so that these names come out as torch's.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
from typing import Any, Callable, Iterator, NamedTuple

import jax
import numpy as np

from funcnets._typing import Array, Params, PRNGKey, State
from funcnets.config import one_off_compile_options, warn_if_downcast
from funcnets.errors import ShapeError

__all__ = ["Module", "Scope", "replace", "capture", "Captured", "run_child"]


class Module:
    """Base class; subclasses are ``@dataclass(frozen=True, repr=False)``."""

    # --- what subclasses provide -------------------------------------------------
    def children(self) -> list[tuple[str, "Module"]]:
        """Direct submodules in registration order (torch's ``named_children``)."""
        if not dataclasses.is_dataclass(self):
            return []
        return [
            (f.name, getattr(self, f.name))
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Module)
        ]

    def param_names(self) -> tuple[str, ...]:
        """Names of this module's own parameters, in torch's registration order."""
        return ()

    def buffer_names(self) -> tuple[str, ...]:
        """Names of this module's own buffers, in torch's registration order."""
        return ()

    def init_own(self, key: PRNGKey) -> tuple[dict, dict]:
        """This module's own parameters and buffers (not its children's)."""
        return {}, {}

    def apply(
        self, params: Params, state: State, x: Any, *, train: bool = False, key: PRNGKey | None = None
    ) -> tuple[Any, State]:
        raise NotImplementedError(f"{type(self).__name__} does not define apply")

    def extra_repr(self) -> str:
        return ""

    def shared_tensors(self) -> dict[str, str]:
        """``{name: first name of the same tensor}`` for tensors torch shares between layers.

        Tied weights, or one layer registered under two names: torch lists such a
        parameter once in ``parameters()``, under its first name, and under every name in
        ``state_dict()``; params/state hold it once too. Empty for funcnets' own layers; a
        model converted with :func:`funcnets.from_torch` has the torch module's.
        """
        return {}

    # --- derived -----------------------------------------------------------------
    def __call__(self, params, state, x, *, train=False, key=None):
        # float64 NumPy inputs with float64 off would silently run in float32 (only concrete
        # NumPy arrays are looked at: under jit they are tracers, checked by the caller)
        warn_if_downcast(x, params, where=f"{type(self).__name__}.__call__")
        return self.apply(params, state if state is not None else {}, x, train=train, key=key)

    def init(self, key: PRNGKey) -> tuple[dict, dict]:
        """Fresh ``(params, state)`` with torch's default initialisation.

        Compiled once per module (it is hashable): op-by-op, a ResNet's hundred small
        random draws take seconds. Called inside a trace (``jax.jit``, ``jax.eval_shape``)
        it is traced into the outer program.
        """
        if not isinstance(key, jax.core.Tracer):
            try:
                return _compiled_init(self, key)
            except ValueError as e:  # a concrete key closed over by an outer jit
                if "top-level" not in str(e):
                    raise
        return _traced_init(self, key)

    def init_tree(self, key: PRNGKey) -> tuple[dict, dict]:
        """The traceable body of :meth:`init`: own params/buffers, then each child's."""
        kids = self.children()
        keys = jax.random.split(key, len(kids) + 1)
        params, state = self.init_own(keys[0])
        params, state = dict(params), dict(state)
        for k, (name, child) in zip(keys[1:], kids):
            p, s = child.init_tree(k)
            if p:
                params[name] = p
            if s:
                state[name] = s
        return params, state

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """``(dotted_name, module)`` for this module and every descendant, as in torch."""
        yield prefix, self
        for name, child in self.children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def _named(self, tree: Any, attr: str) -> Iterator[tuple[str, Array]]:
        for mname, m in self.named_modules():
            node = tree
            for part in mname.split(".") if mname else []:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            for leaf in getattr(m, attr)():
                if isinstance(node, dict) and leaf in node:
                    yield (f"{mname}.{leaf}" if mname else leaf), node[leaf]

    def shapes(self) -> tuple[dict, dict]:
        """``(params, state)`` as ``jax.ShapeDtypeStruct`` leaves, computing nothing.

        :meth:`init` traced with ``jax.eval_shape``: shapes and dtypes without allocating
        or drawing a single number (a VGG's 138M parameters listed in milliseconds).
        """
        key = jax.ShapeDtypeStruct((2,), np.uint32)  # a raw PRNGKey's shape; never drawn from
        return jax.eval_shape(self.init_tree, key)

    def named_parameters(self, params: Params | None = None) -> list[tuple[str, Array]]:
        """``[(name, array)]`` in torch's order, e.g. ``[("conv1.weight", (6,1,3,3)), ...]``.

        Uses the model's order, not the dict's: JAX transformations return dicts with
        sorted keys, so dict order is not torch's order. Without ``params`` it lists
        shapes only (``jax.ShapeDtypeStruct`` values, from :meth:`shapes`).
        """
        if params is None:
            params = self.shapes()[0]
        return list(self._named(params, "param_names"))

    def named_buffers(self, state: State | None = None) -> list[tuple[str, Array]]:
        """``[(name, array)]`` of buffers (running statistics) in torch's order.

        Without ``state`` it lists shapes only, as :meth:`named_parameters`.
        """
        if state is None:
            state = self.shapes()[1]
        return list(self._named(state, "buffer_names"))

    def parameters(self, params: Params | None = None) -> list[Array]:
        """``list(net.parameters())``: the arrays (or, without ``params``, shapes) in torch's order."""
        return [a for _, a in self.named_parameters(params)]

    def summary(self, params: Params | None = None, state: State | None = None) -> str:
        """A table of parameters and buffers with shapes and counts, and the totals.

        Without ``params`` it needs only the module (shapes from :meth:`shapes`); given
        ``params`` and no ``state`` it lists the parameters alone.
        """
        if params is None:
            params, shape_state = self.shapes()
            state = shape_state if state is None else state
        rows = [(n, "param", tuple(a.shape), int(np.prod(a.shape))) for n, a in self.named_parameters(params)]
        rows += [(n, "buffer", tuple(a.shape), int(np.prod(a.shape))) for n, a in self.named_buffers(state or {})]
        w = max([len(r[0]) for r in rows] + [4])
        lines = [f"{'name':<{w}}  {'kind':<6}  {'shape':<18} {'count':>10}", "-" * (w + 38)]
        lines += [f"{n:<{w}}  {k:<6}  {str(s):<18} {c:>10,}" for n, k, s, c in rows]
        total = sum(r[3] for r in rows if r[1] == "param")
        lines += ["-" * (w + 38), f"{type(self).__name__}: {total:,} trainable parameters"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        kids = self.children()
        name = type(self).__name__
        if not kids:
            return f"{name}({self.extra_repr()})"
        lines = [f"{name}("]
        for cname, child in kids:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({cname}): {body}")
        return "\n".join(lines) + "\n)"


def _init_tree(module: Module, key: PRNGKey) -> tuple[dict, dict]:
    return module.init_tree(key)


# Run once per model: compiled for compile time (config.one_off_compile_options). JAX
# takes compiler options only on a top-level jit, so inside a trace the plain one.
_compiled_init = jax.jit(_init_tree, static_argnums=0, compiler_options=one_off_compile_options())
_traced_init = jax.jit(_init_tree, static_argnums=0)


class Scope:
    """Threads params, state, train mode and PRNG keys through child modules.

    A container's ``apply`` calls ``scope(name, module, x)`` for each child and returns
    ``scope.state`` as its new state; errors from a child are prefixed with its name.
    """

    def __init__(self, params: Params, state: State, train: bool, key: PRNGKey | None):
        self.params, self.old_state, self.train, self._key = params, state or {}, train, key
        self.state: dict = {}

    def __call__(self, name: str, module: Module, x: Any) -> Any:
        sub_key = None
        if self._key is not None:
            self._key, sub_key = jax.random.split(self._key)
        try:
            y, new = run_child(name, x, lambda: module.apply(
                self.params.get(name, {}), self.old_state.get(name, {}), x, train=self.train, key=sub_key
            ))
        except ShapeError as e:
            raise e.at(name) from None
        if new:
            self.state[name] = new
        return y


class Captured(NamedTuple):
    """One child call seen by :func:`capture`.

    ``name`` is the child's dotted path from the model (``"layer1.0.conv1"``, torch's
    ``named_modules`` name); ``input``/``output`` are what it received and returned, with
    4-D activations in torch's ``(N, C, H, W)`` layout even where the model runs its trunk
    in :func:`~funcnets.nn.functional.channels_last`; ``start`` numbers the calls in the
    order they began (the records themselves are in the order the calls finished, so a
    container comes after its children).
    """

    name: str
    input: Any
    output: Any
    start: int


class _Capture:
    def __init__(self) -> None:
        self.records: list[Captured] = []
        self.path: list[str] = []
        self.started = 0


# None when no capture() is active: Scope then pays one ContextVar read per child, at trace time
_CAPTURE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("funcnets_capture", default=None)


@contextlib.contextmanager
def capture() -> Iterator[list[Captured]]:
    """Record every child call made through :class:`Scope` (or :func:`run_child`).

    The funcnets counterpart of torch's forward hooks on every submodule: inside the
    block each child's ``(dotted name, input, output)`` is appended to the list it yields.
    Run the model eagerly (not under ``jax.jit``/``jax.grad``, where the records would be
    tracers). :func:`funcnets.parity.locate` uses it to find where a port diverges.

    Example::

        with capture() as calls:
            y, _ = model(params, state, x)
        for c in calls:
            print(c.name, c.output.shape)
    """
    cap = _Capture()
    token = _CAPTURE.set(cap)
    try:
        yield cap.records
    finally:
        _CAPTURE.reset(token)


def run_child(name: str, x: Any, call: Callable[[], tuple[Any, State]]) -> tuple[Any, State]:
    """``call()`` (a child's ``apply``, returning ``(y, new_state)``), recorded as the child
    ``name`` with input ``x`` while :func:`capture` is active.

    :class:`Scope` calls it for every child; a container that runs its children without a
    Scope calls it itself so that :func:`capture` sees them. ``name`` may be dotted.
    """
    cap = _CAPTURE.get()
    if cap is None:
        return call()
    start, cap.started = cap.started, cap.started + 1
    cap.path.append(name)
    try:
        y, new = call()
        cap.records.append(Captured(".".join(cap.path), _torch_layout(x), _torch_layout(y), start))
    finally:
        cap.path.pop()
    return y, new


def _torch_layout(tree: Any) -> Any:
    """4-D activations of a channels_last/batch_last trunk moved to torch's NCHW."""
    from funcnets.nn._layout import _LAYOUT  # late: _layout imports the nn package, which imports this

    perm = {"NHWC": (0, 3, 1, 2), "CHWN": (3, 0, 1, 2)}.get(_LAYOUT.get())
    if perm is None:
        return tree
    return jax.tree_util.tree_map(lambda a: a.transpose(perm) if getattr(a, "ndim", 0) == 4 else a, tree)


def replace(
    model: Module, params: Params, state: State, path: str, new: Module, key: PRNGKey
) -> tuple[Module, dict, dict]:
    """Swap the submodule at dotted ``path`` for ``new`` with fresh weights.

    The tutorial's ``model.fc = nn.Linear(512, 10)``::

        model, params, state = replace(model, params, state, "fc", Linear(512, 10), key)
    """
    new_params, new_state = new.init(key)
    return _replace_module(model, path.split("."), new), _set(params, path, new_params), _set(state, path, new_state)


def _replace_module(model: Module, parts: list[str], new: Module) -> Module:
    name, rest = parts[0], parts[1:]
    children = dict(model.children())
    if name not in children:
        raise KeyError(f"{type(model).__name__} has no submodule {name!r}; it has {list(children)}")
    child = new if not rest else _replace_module(children[name], rest, new)
    if hasattr(model, "_with_child"):  # containers (Sequential, ModuleList, ModuleDict) rebuild
        return model._with_child(name, child)
    out = copy.copy(model)  # children may be init=False fields, which dataclasses.replace refuses
    object.__setattr__(out, name, child)
    return out


def _set(tree: State, path: str, value: dict) -> dict:
    """``tree`` with ``value`` at dotted ``path``; an empty ``value`` removes the entry, and
    parents left empty by that go too (a layer without buffers has no state entry, and
    neither do its containers)."""
    head, _, rest = path.partition(".")
    out = dict(tree)
    sub = _set(out.get(head, {}), rest, value) if rest else value
    if sub:
        out[head] = sub
    else:
        out.pop(head, None)
    return out

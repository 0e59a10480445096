"""Containers: ``torch.nn.Sequential``, ``ModuleList`` and ``ModuleDict``, and how to
write one's own module whose parameters get torch's dotted names.

A container is a frozen module like any other: it holds its children, and ``params``
and ``state`` hold the children's trees under the children's names, so the dotted leaf
paths are torch's ``state_dict`` keys. Indexing returns the child; its params are
``params[name]`` (``params["0"]`` for ``seq[0]``).

Writing your own module
-----------------------
Subclass :class:`~funcnets.nn.Module` as a frozen dataclass. Dataclass fields that are
modules are its children, registered in field order (torch registers in assignment
order: declare them in the order the torch module assigns them). Own parameters and
buffers are named by ``param_names()``/``buffer_names()`` (torch's registration order)
and created by ``init_own``; ``apply`` runs the children through a :class:`Scope`, which
picks each child's params and state and collects the new state::

    from dataclasses import dataclass, field
    import jax, jax.numpy as jnp
    import funcnets.nn as nn

    @dataclass(frozen=True, repr=False)
    class Stack(nn.Module):
        # torch: self.scale = nn.Parameter(torch.ones(d)); self.blocks = nn.ModuleList(
        #   [nn.Linear(d, d) for _ in range(n)]); self.register_buffer("shift", torch.zeros(d))
        d: int
        n: int
        blocks: nn.ModuleList = field(init=False)

        def __post_init__(self):
            object.__setattr__(self, "blocks", nn.ModuleList([nn.Linear(self.d, self.d) for _ in range(self.n)]))

        def param_names(self):
            return ("scale",)

        def buffer_names(self):
            return ("shift",)

        def init_own(self, key):
            return {"scale": jnp.ones(self.d)}, {"shift": jnp.zeros(self.d)}

        def apply(self, params, state, x, *, train=False, key=None):
            scope = nn.Scope(params.get("blocks", {}), state.get("blocks", {}), train, key)
            for name, block in self.blocks.children():
                x = jax.nn.relu(scope(name, block, x))
            return x * params["scale"] + state["shift"], state

    model = Stack(4, 2)
    params, state = model.init(jax.random.PRNGKey(0))
    [n for n, _ in model.named_parameters(params)]
    # ['scale', 'blocks.0.weight', 'blocks.0.bias', 'blocks.1.weight', 'blocks.1.bias']
    [n for n, _ in model.named_buffers(state)]   # ['shift']

torch's ``state_dict()`` lists each module's own parameters, then its buffers, then its
children's entries; ``named_parameters``/``named_buffers`` follow the same order, so
:mod:`funcnets.torch_io` loads a torch ``state_dict`` into such a module by name.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import jax.numpy as jnp
import numpy as np

from funcnets._typing import Params, State
from funcnets.nn.module import Module, Scope

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _check_module(owner: str, what: str, m: object) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{owner}: {what} is {type(m).__name__}, not a funcnets Module")
    return m


def _check_names(owner: str, names: Iterable[str], what: str = "module") -> tuple[str, ...]:
    names = tuple(names)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{owner}: {what} name should be a string. Got {type(n).__name__}")
        if "." in n or n == "":
            raise KeyError(f"{owner}: {what} name can't contain \".\" or be empty, got {n!r}")
    if len(set(names)) != len(names):
        raise KeyError(f"{owner}: {what} names must be unique, got {list(names)}")
    return names


def _abs_index(owner: str, idx: int, size: int) -> int:
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range")
    return idx % size


def _addindent(s: str) -> str:
    return s.replace("\n", "\n  ")


@dataclass(frozen=True, repr=False, init=False)
class Sequential(Module):
    """Applies its layers in order; ``x -> layers[-1](...layers[0](x))``.

    ``Sequential(a, b, c)`` names the children ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict([("conv", a), ("act", b)]))`` uses the given names, as in
    torch. ``seq[i]`` is the i-th child; ``seq[i:j]`` a ``Sequential`` of those children
    under their *original* names (torch's rule), so its params are
    ``{k: params[k] for k in seq[i:j].names if k in params}``. ``len``, iteration and
    ``seq + other`` (renumbered from ``"0"``) work as in torch; the container is frozen
    (no ``append``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> params, state = model.init(jax.random.key(0))
        >>> [name for name, _ in model.named_parameters(params)]  # torch's state_dict keys
        ['0.weight', '0.bias', '2.weight', '2.bias']
        >>> y, state = model.apply(params, state, jnp.ones((5, 4)))
        >>> y.shape
        (5, 2)
        >>> model[0]
        Linear(in_features=4, out_features=8, bias=True)
    """

    layers: tuple[Module, ...]
    names: tuple[str, ...]

    def __init__(self, *layers: Module | Mapping[str, Module]):
        if len(layers) == 1 and isinstance(layers[0], OrderedDict):
            names = _check_names("Sequential", layers[0].keys())
            mods = tuple(_check_module("Sequential", f"module {k!r}", m) for k, m in layers[0].items())
        else:
            mods = tuple(_check_module("Sequential", f"argument {i}", m) for i, m in enumerate(layers))
            names = tuple(str(i) for i in range(len(mods)))
        object.__setattr__(self, "layers", mods)
        object.__setattr__(self, "names", names)

    def children(self):
        return list(zip(self.names, self.layers))

    def __getitem__(self, idx: int | slice) -> Module:
        if isinstance(idx, slice):
            return type(self)(OrderedDict(self.children()[idx]))
        return self.layers[_abs_index("Sequential", idx, len(self))]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __add__(self, other: "Sequential") -> "Sequential":
        if not isinstance(other, Sequential):
            raise ValueError(
                f"add operator supports only objects of Sequential class, but {type(other)} is given."
            )
        return Sequential(*self.layers, *other.layers)

    def _with_child(self, name: str, child: Module) -> "Sequential":
        return type(self)(OrderedDict((k, child if k == name else m) for k, m in self.children()))

    def apply(self, params: Params, state: State, x, *, train=False, key=None):
        """``x``: whatever the first layer takes; returns the last layer's output."""
        scope = Scope(params, state, train, key)
        for name, layer in self.children():
            x = scope(name, layer, x)
        return x, scope.state


@dataclass(frozen=True, repr=False, init=False)
class ModuleList(Module):
    """A list of modules, children ``"0"``, ``"1"``, ...; params ``params["0"]``, ...

    It has no ``apply`` of its own (as torch's has no ``forward``): the module holding it
    iterates it, e.g. ``for name, m in self.blocks.children(): x = scope(name, m, x)``
    with a :class:`Scope` over ``params["blocks"]``. Indexing, slicing (renumbered, as
    torch's), ``len``, iteration and ``+`` as in torch; frozen (no ``append``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> blocks = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
        >>> params, state = blocks.init(jax.random.key(0))
        >>> len(blocks), sorted(params)
        (2, ['0', '1'])
        >>> x = jnp.ones((1, 3))
        >>> for name, block in blocks.children():  # what the owning module's apply does
        ...     x, _ = block.apply(params[name], {}, x)
        >>> x.shape
        (1, 3)
    """

    modules: tuple[Module, ...]

    def __init__(self, modules: Iterable[Module] | None = None):
        mods = tuple(_check_module("ModuleList", f"item {i}", m) for i, m in enumerate(modules or ()))
        object.__setattr__(self, "modules", mods)

    def children(self):
        return [(str(i), m) for i, m in enumerate(self.modules)]

    def __getitem__(self, idx: int | slice) -> Module:
        if isinstance(idx, slice):
            return type(self)(self.modules[idx])
        return self.modules[_abs_index("ModuleList", idx, len(self))]

    def __len__(self) -> int:
        return len(self.modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.modules)

    def __add__(self, other: Iterable[Module]) -> "ModuleList":
        return ModuleList([*self.modules, *other])

    def _with_child(self, name: str, child: Module) -> "ModuleList":
        return type(self)([child if k == name else m for k, m in self.children()])

    def apply(self, params, state, x, *, train=False, key=None):
        raise NotImplementedError(
            "ModuleList has no apply (torch's has no forward): iterate it in your module's apply, "
            "e.g. for name, m in self.blocks.children(): x = scope(name, m, x)"
        )

    def __repr__(self) -> str:
        # torch compresses runs of equal reprs: "(0-2): 3 x Linear(...)"
        reprs = [repr(m) for m in self.modules]
        if not reprs:
            return "ModuleList()"
        runs: list[list] = [[0, 0, reprs[0]]]
        for i, r in enumerate(reprs[1:], 1):
            if r == runs[-1][2]:
                runs[-1][1] = i
            else:
                runs.append([i, i, r])
        lines = []
        for start, end, r in runs:
            line = f"({start}): {r}" if start == end else f"({start}-{end}): {end - start + 1} x {r}"
            lines.append(_addindent(line))
        return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"


@dataclass(frozen=True, repr=False, init=False)
class ModuleDict(Module):
    """Modules by name, in insertion order; params ``params[key]``.

    Like :class:`ModuleList`, no ``apply``: the owner picks the child it needs
    (``scope(k, self.heads[k], x)``). ``[key]``, ``in``, ``len``, iteration over keys,
    ``keys()``, ``values()``, ``items()`` as in torch; frozen.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box": nn.Linear(4, 4)})
        >>> params, state = heads.init(jax.random.key(0))
        >>> list(heads.keys()), params["box"]["weight"].shape
        (['cls', 'box'], (4, 4))
        >>> y, _ = heads["cls"].apply(params["cls"], {}, jnp.ones((2, 4)))
        >>> y.shape
        (2, 3)
    """

    items_: tuple[tuple[str, Module], ...]

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        pairs = list((modules or {}).items()) if isinstance(modules, Mapping) else list(modules or ())
        merged: dict[str, Module] = {}
        for k, m in pairs:  # torch's update(): a repeated key keeps its first position
            merged[k] = _check_module("ModuleDict", f"module {k!r}", m)
        _check_names("ModuleDict", merged)
        object.__setattr__(self, "items_", tuple(merged.items()))

    def children(self):
        return list(self.items_)

    def __getitem__(self, key: str) -> Module:
        for k, m in self.items_:
            if k == key:
                return m
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.items_)

    def __len__(self) -> int:
        return len(self.items_)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        return [k for k, _ in self.items_]

    def values(self) -> list[Module]:
        return [m for _, m in self.items_]

    def items(self) -> list[tuple[str, Module]]:
        return list(self.items_)

    def _with_child(self, name: str, child: Module) -> "ModuleDict":
        return type(self)([(k, child if k == name else m) for k, m in self.items_])

    def apply(self, params, state, x, *, train=False, key=None):
        raise NotImplementedError(
            "ModuleDict has no apply (torch's has no forward): pick a child in your module's apply, "
            "e.g. y = scope(k, self.heads[k], x) with scope = Scope(params['heads'], state['heads'], train, key)"
        )


class _Value:
    """An initial parameter value, frozen: a module must stay hashable (a static jit argument)."""

    __slots__ = ("array", "_key")

    def __init__(self, value):
        a = np.array(value)  # a copy: changing the caller's array later does not change the module
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)):
            raise TypeError(
                f"a parameter must be a floating-point or complex array (torch: 'Only Tensors of floating point "
                f"and complex dtype can require gradients'), got dtype {a.dtype}; pass e.g. np.asarray(v, np.float32)"
            )
        a.flags.writeable = False
        self.array = a
        self._key = (a.shape, a.dtype.str, a.tobytes())

    def __eq__(self, other):
        return isinstance(other, _Value) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def describe(self, typename: bool) -> str:
        # torch: ParameterList prints the dtype ("torch.float32"), ParameterDict torch.typename ("torch.FloatTensor")
        dt = self.array.dtype
        kind = _TYPENAMES.get(dt.name, dt.name) if typename else f"torch.{dt.name}"
        return f"Parameter containing: [{kind} of size {'x'.join(map(str, self.array.shape))}]"


_TYPENAMES = {"float16": "torch.HalfTensor", "float32": "torch.FloatTensor", "float64": "torch.DoubleTensor",
              "bfloat16": "torch.BFloat16Tensor", "complex64": "torch.ComplexFloatTensor",
              "complex128": "torch.ComplexDoubleTensor"}


def _params_repr(name: str, items, typename: bool) -> str:
    # torch's Module.__repr__ around its extra_repr: one line for one entry, else indented lines
    lines = [f"  ({k}): {v.describe(typename)}" for k, v in items]
    if len(lines) <= 1:
        return f"{name}({''.join(lines)})"
    return f"{name}(\n" + "\n".join("  " + ln for ln in lines) + "\n)"


@dataclass(frozen=True, repr=False, init=False)
class ParameterList(Module):
    """``torch.nn.ParameterList``: parameters in a list, named ``"0"``, ``"1"``, ...

    Built from their initial values (arrays; torch: ``nn.Parameter`` tensors), which
    :meth:`init` returns as ``params = {"0": v0, "1": v1, ...}`` (the ``state_dict`` keys
    torch gives them). As in torch it has no forward: a module that owns one reads
    ``params[name][str(i)]``, or ``plist.values(params[name])`` for all of them in order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> scales = nn.ParameterList([jnp.ones(3), jnp.zeros((2, 3))])
        >>> params, _ = scales.init(jax.random.key(0))
        >>> sorted(params), len(scales), [v.shape for v in scales.values(params)]
        (['0', '1'], 2, [(3,), (2, 3)])
    """

    items_: tuple[tuple[str, _Value], ...]

    def __init__(self, values=None):
        object.__setattr__(self, "items_", tuple((str(i), _Value(v)) for i, v in enumerate(values or ())))

    def param_names(self):
        return tuple(k for k, _ in self.items_)

    def init_own(self, key):
        return {k: jnp.asarray(v.array) for k, v in self.items_}, {}

    def values(self, params: Params) -> list:
        """The parameters in ``params`` (this list's subtree), in order."""
        return [params[k] for k, _ in self.items_]

    def __len__(self) -> int:
        return len(self.items_)

    def __add__(self, other: "ParameterList") -> "ParameterList":
        return ParameterList([v.array for _, v in self.items_ + other.items_])

    def apply(self, params, state, x, *, train=False, key=None):
        raise NotImplementedError(
            "ParameterList has no apply (torch's has no forward): read its values in your module's apply, "
            "e.g. for w in self.scales.values(params['scales']): ..."
        )

    def __repr__(self) -> str:
        return _params_repr("ParameterList", self.items_, typename=False)


@dataclass(frozen=True, repr=False, init=False)
class ParameterDict(Module):
    """``torch.nn.ParameterDict``: parameters by name, in insertion order.

    Built from initial values (a mapping or ``(name, array)`` pairs); :meth:`init` returns
    ``params = {name: value}``. ``in``, ``len``, iteration over names and ``keys()`` as in
    torch; no forward, so the owner reads ``params[name][key]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> pd = nn.ParameterDict({"scale": jnp.ones(3), "shift": jnp.zeros(3)})
        >>> params, _ = pd.init(jax.random.key(0))
        >>> list(pd.keys()), params["shift"].tolist()
        (['scale', 'shift'], [0.0, 0.0, 0.0])
    """

    items_: tuple[tuple[str, _Value], ...]

    def __init__(self, parameters=None):
        pairs = list(parameters.items()) if isinstance(parameters, Mapping) else list(parameters or ())
        merged: dict = {}
        for k, v in pairs:  # torch's update(): a repeated key keeps its first position, takes the last value
            merged[k] = _Value(v)
        _check_names("ParameterDict", merged, "parameter")
        object.__setattr__(self, "items_", tuple(merged.items()))

    def param_names(self):
        return self.keys()

    def init_own(self, key):
        return {k: jnp.asarray(v.array) for k, v in self.items_}, {}

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.items_)

    def __len__(self) -> int:
        return len(self.items_)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.items_)

    def apply(self, params, state, x, *, train=False, key=None):
        raise NotImplementedError(
            "ParameterDict has no apply (torch's has no forward): read params[name][key] in your module's apply"
        )

    def __repr__(self) -> str:
        return _params_repr("ParameterDict", self.items_, typename=True)

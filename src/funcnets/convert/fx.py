"""``from_torch``: trace a torch module with ``torch.fx`` and interpret its graph with JAX.

The torch module is traced twice, in ``train()`` and in ``eval()`` mode (so that
``self.training`` branches and ``F.dropout(x, training=self.training)`` keep torch's
meaning), with every ``torch.nn`` layer funcnets has as a leaf. The graph becomes a
hashable tuple of nodes held by :class:`TorchGraph`, a funcnets :class:`Module` whose
``apply`` runs the nodes in order:

* ``call_module`` runs the converted funcnets layer on the params/state found at the
  submodule's dotted name (one name, one set of params: a layer called three times
  shares its weights, and JAX sums their gradients); buffers it updates are visible to
  its next call and returned as new state, as torch's in-place update would be;
* ``call_function``/``call_method`` run the JAX implementation from :mod:`.ops`;
* ``get_attr`` reads a parameter or buffer by its dotted ``state_dict`` name.

Everything unconvertible is collected first and refused in one
:class:`UnsupportedOperationError` naming each operation and the user's source line.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import operator
import re
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from funcnets.convert import modules as _modules
from funcnets.convert import ops as _ops
from funcnets.errors import FuncnetsError
from funcnets.nn.module import Module, run_child
from funcnets.torch_io import _to_numpy

__all__ = ["from_torch", "check_convertible", "UnsupportedOperationError", "TorchGraph", "TorchModule"]

_ADVICE = (
    "What to do: data-dependent Python control flow (an `if` or loop on a tensor's values) cannot be traced; "
    "fix such arguments with from_torch(..., concrete_args={'flag': value}), or give a funcnets implementation "
    "of the submodule that contains the operation with from_torch(..., leaf_modules={TorchClass: factory}), "
    "where factory(torch_submodule) returns a funcnets Module whose params/state use the submodule's "
    "state_dict names."
)


class UnsupportedOperationError(FuncnetsError):
    """Operations ``from_torch`` cannot convert, each with the user's source line."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"from_torch cannot convert {len(problems)} operation(s):"]
        lines += [f"  - {what}\n      at {where}" for what, where in problems]
        # an in-place problem says its own fix; the advice is for the rest
        advice = [_ADVICE] if any(not what.startswith("in-place ") for what, _ in problems) else []
        super().__init__("\n".join(lines + advice))


# ----------------------------------------------------------------------------- hashable graph
class _Ref(str):
    """A node's output, by node name."""


@dataclass(frozen=True)
class _Tagged:
    """Values that must stay distinct from tuples (lists index differently) or are unhashable."""

    kind: str  # "list", "slice", "dict", "dtype"
    items: tuple


class _Const:
    """A tensor constant captured in the graph (hashed by identity)."""

    def __init__(self, value: np.ndarray):
        self.value = value

    def __repr__(self):
        return f"tensor{tuple(self.value.shape)}"


@dataclass(frozen=True)
class _Node:
    name: str
    op: str  # placeholder, get_attr, call_module, call_function, call_method, output
    target: Any  # input name, dotted path, implementation function
    args: tuple
    kwargs: tuple  # ((name, value), ...)
    arg_names: tuple = ()  # call_module: the torch forward's argument names (for dict inputs)
    index: int = 0
    mutates: tuple = ()  # an in-place op: the nodes that are the tensor it writes, rebound to its result


def _encode(a: Any, torch: Any) -> Any:
    import torch.fx as tfx

    if isinstance(a, tfx.Node):
        return _Ref(a.name)
    if isinstance(a, list):
        return _Tagged("list", tuple(_encode(v, torch) for v in a))
    if isinstance(a, tuple):
        return tuple(_encode(v, torch) for v in a)
    if isinstance(a, slice):
        return _Tagged("slice", (_encode(a.start, torch), _encode(a.stop, torch), _encode(a.step, torch)))
    if isinstance(a, dict):
        return _Tagged("dict", tuple((k, _encode(v, torch)) for k, v in a.items()))
    if isinstance(a, torch.dtype):
        return _Tagged("dtype", (str(a).replace("torch.", ""),))
    if isinstance(a, (torch.device, torch.memory_format, torch.layout)):
        return None
    if isinstance(a, torch.Tensor):
        return _Const(_to_numpy(a))  # a copy: the graph must not change when the module's tensor does
    return a


def _decode(a: Any, env: dict) -> Any:
    if isinstance(a, _Ref):
        return env[a]
    if isinstance(a, tuple):
        return tuple(_decode(v, env) for v in a)
    if isinstance(a, _Tagged):
        if a.kind == "list":
            return [_decode(v, env) for v in a.items]
        if a.kind == "slice":
            return slice(*(_decode(v, env) for v in a.items))
        if a.kind == "dict":
            return {k: _decode(v, env) for k, v in a.items}
        return _ops.to_dtype(a.items[0])
    if isinstance(a, _Const):
        return jnp.asarray(a.value)
    return a


# ----------------------------------------------------------------------------- modules
def _get(tree: Mapping, path: str) -> Any:
    node: Any = tree
    for part in path.split(".") if path else []:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    return node


def _has(tree: Mapping, path: str) -> bool:
    v = _get(tree, path)
    return not (isinstance(v, Mapping) and not v)


def _drop(tree: dict, path: str) -> dict:
    """A copy of ``tree`` without the leaf at dotted ``path`` (and without dicts left empty)."""
    head, _, rest = path.partition(".")
    out = dict(tree)
    sub = _drop(out[head], rest) if rest else {}
    if sub:
        out[head] = sub
    else:
        del out[head]
    return out


def _set(tree: dict, path: str, value: Any) -> dict:
    """A copy of ``tree`` with ``value`` at dotted ``path`` (dicts along the way copied)."""
    if not path:
        return value
    head, _, rest = path.partition(".")
    out = dict(tree)
    out[head] = _set(dict(tree.get(head, {})), rest, value) if rest else value
    return out


@dataclass(frozen=True, repr=False)
class TorchModule(Module):
    """A torch submodule that is not one layer: its children and its own tensors.

    It gives the converted model torch's module tree, so ``named_parameters`` and
    ``state_dict`` names come out in torch's order. Only :class:`TorchGraph` runs it.
    """

    torch_class: str
    child_items: tuple = ()  # ((name, Module), ...)
    own_params: tuple = ()  # ((name, shape, dtype), ...)
    own_buffers: tuple = ()

    def children(self):
        return list(self.child_items)

    def param_names(self):
        return tuple(n for n, _, _ in self.own_params)

    def buffer_names(self):
        return tuple(n for n, _, _ in self.own_buffers)

    def init_own(self, key):
        # A parameter a custom module creates itself has no initialiser known here; it starts
        # at zero (from_torch returns the torch module's values, which is what to train from).
        params = {n: jnp.zeros(s, d) for n, s, d in self.own_params}
        return params, {n: jnp.zeros(s, d) for n, s, d in self.own_buffers}

    def apply(self, params, state, x, *, train=False, key=None):
        raise TypeError(f"{self.torch_class} is part of a converted graph; call the model from_torch returned")

    def extra_repr(self):
        return ", ".join(f"{n}: {tuple(s)}" for n, s, _ in self.own_params + self.own_buffers)

    def __repr__(self):  # torch's class name, as print(torch_module) shows it
        return self.torch_class + super().__repr__()[len(type(self).__name__):]


@dataclass(frozen=True, repr=False)
class TorchGraph(TorchModule):
    """The converted model: torch's module tree plus the traced forward, run with JAX.

    ``apply(params, state, x, train=, key=)``: ``x`` is the forward's one input, or a tuple
    of its inputs (or a dict by argument name) when it takes several. Returns
    ``(output, new_state)`` with the output structured as torch's (tensors, tuples, dicts).
    """

    input_names: tuple = ()
    eval_graph: tuple = ()
    train_graph: tuple = ()
    # ((name, first name of the same tensor), ...): torch's tied weights (a language model's
    # `head.weight = embedding.weight`) and layers registered twice are one tensor, with one
    # gradient (the sum over its uses) and one running statistic; `parameters()` lists it once,
    # under its first name, and so do params/state here. The graph calls a layer registered
    # twice by its first name (fx's), so only tied parameters need reading under other names.
    shared: tuple = ()

    def init_tree(self, key):
        params, state = super().init_tree(key)
        for name, _ in self.shared:
            params, state = (_drop(params, name), state) if _has(params, name) else (params, _drop(state, name))
        return params, state

    def shared_tensors(self) -> dict[str, str]:
        """``{name: first name of the same tensor}``: the torch module's tied weights and shared layers."""
        return dict(self.shared)

    def apply(self, params, state, x, *, train=False, key=None):
        graph = self.train_graph if train else self.eval_graph
        for name, same in self.shared:  # JAX sums a tied parameter's gradients over its uses, as torch does
            if _has(params, same):
                params = _set(params, name, _get(params, same))
        if len(self.input_names) == 1:
            inputs = {self.input_names[0]: x}
        elif isinstance(x, Mapping):
            inputs = dict(x)
        else:
            x = tuple(x) if isinstance(x, (tuple, list)) else (x,)
            inputs = dict(zip(self.input_names, x))
        env: dict = {}
        state = dict(state or {})
        for node in graph:
            if node.op == "placeholder":
                if node.target in inputs:
                    env[node.name] = inputs[node.target]
                elif node.args:
                    env[node.name] = _decode(node.args[0], env)  # the forward's default
                else:
                    raise TypeError(f"{self.torch_class}.forward is missing the input {node.target!r}")
            elif node.op == "get_attr":
                env[node.name] = _decode(node.args[0], env) if node.args else self._attr(params, state, node.target)
            elif node.op == "output":
                return _decode(node.args[0], env), state
            else:
                args = _decode(node.args, env)
                kwargs = {k: _decode(v, env) for k, v in node.kwargs}
                sub = None if key is None else jax.random.fold_in(key, node.index)
                if node.op == "call_module":
                    env[node.name], state = self._call_module(params, state, node, args, kwargs, train, sub)
                else:
                    fn = node.target if node.op == "call_function" else _ops.METHODS[node.target]
                    if _ops.needs_key(fn):
                        kwargs["_rng"] = sub
                    env[node.name] = fn(*args, **kwargs)
                for name in node.mutates:  # torch wrote into that tensor: its later uses see the new value
                    env[name] = env[node.name]
        raise ValueError("the graph has no output")

    def _attr(self, params, state, path):
        for tree in (params, state):
            v = _get(tree, path)
            if not (isinstance(v, Mapping) and not v):
                return v
        raise KeyError(f"{path!r} is neither a parameter nor a buffer of {self.torch_class}")

    def _call_module(self, params, state, node, args, kwargs, train, key):
        path = node.target
        module = dict(self.named_modules())[path]
        if kwargs:
            x = dict(zip(node.arg_names, args), **kwargs)
            if "query" not in x and "src" not in x and "tgt" not in x:  # only attention/transformers take dicts
                x = tuple(x[n] for n in node.arg_names if n in x)
        else:
            x = args[0] if len(args) == 1 else tuple(args)
        # run_child: funcnets.nn.module.capture() (parity.locate) sees each layer call by its torch name,
        # its inputs in the order torch's forward hooks see them (args, then keyword values)
        seen = args[0] if len(args) == 1 and not kwargs else tuple(args) + tuple(kwargs.values())
        y, new = run_child(path, seen, lambda: module.apply(_get(params, path), _get(state, path), x, train=train,
                                                            key=key))
        if new:
            state = _set(state, path, new)
        return y, state


# ----------------------------------------------------------------------------- tracing
def _user_line(stack_trace: str | None) -> str:
    """The last frame of a node's stack trace: the line of the user's forward."""
    if not stack_trace:
        return "(source line unknown)"
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', stack_trace)
    # torch's own wrappers, and this module's proxy (x += y, x[i] = v)
    frames = [f for f in frames if "/site-packages/torch/" not in f[0] and "/funcnets/convert/" not in f[0]] or frames
    if not frames:
        return stack_trace.strip().splitlines()[-1]
    f, line, fn, code = frames[-1]
    return f'{f}:{line} in {fn}: {code.strip()}'


def _frame_of(exc: BaseException) -> str:
    """The user's line an exception raised during tracing came from (outside torch)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename
              and "/funcnets/convert/" not in f.filename]
    if not frames:
        return "(source line unknown)"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _make_tracer(leaves: tuple[type, ...], stack_traces: bool = True):
    import torch.fx as tfx

    table_leaves = set(_modules.leaf_classes())

    class _Tracer(tfx.Tracer):
        def __init__(self):
            # pack_padded_sequence(x, lengths) called by a name the user's module imported: a graph node
            super().__init__(autowrap_functions=_packing_functions())
            self.record_stack_traces = stack_traces  # a fifth of the trace's time: only for error messages

        def is_leaf_module(self, m, qualname):
            # a subclass with its own forward (torchvision's LayerNorm2d permutes around
            # LayerNorm) is traced through, not converted as its base class
            base = next((c for c in type(m).__mro__ if c in leaves), None)
            return base is not None and (type(m).forward is base.forward or base not in table_leaves)

        def proxy(self, node):
            return _proxy_class()(node, self)

    return _Tracer()


# ----------------------------------------------------------------------------- in-place operations
_AUGMENTED = {"iadd": "+=", "isub": "-=", "imul": "*=", "itruediv": "/=", "ifloordiv": "//=", "imod": "%=",
              "ipow": "**=", "iand": "&=", "ior": "|=", "ixor": "^=", "ilshift": "<<=", "irshift": ">>="}
# results that are views of (share memory with) their first argument, as torch documents them; the
# casts and contiguous() return their input itself when nothing changes, so they count too
_VIEW_METHODS = frozenset(
    "view view_as reshape reshape_as flatten unflatten permute transpose swapaxes swapdims t squeeze unsqueeze "
    "expand expand_as narrow select split chunk unbind tensor_split contiguous detach movedim moveaxis diagonal "
    "unfold as_strided real imag to type type_as float double half bfloat16 long int bool short cpu cuda".split())
_VIEW_FUNCTIONS = ("flatten reshape permute transpose swapaxes swapdims t squeeze unsqueeze narrow select split "
                   "chunk unbind tensor_split detach movedim moveaxis diagonal broadcast_to unflatten as_strided "
                   "real imag view_as_real").split()
_VIEW_ATTRS = frozenset({"T", "mT", "H", "mH", "data", "real", "imag"})
_VIEW_MODULES = frozenset({"Identity", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
                           "AlphaDropout", "FeatureAlphaDropout"})
# results that are tuples of new tensors (their items are not views of anything)
_TUPLE_OPS = frozenset("max min topk sort kthvalue median nanmedian mode aminmax var_mean std_mean frexp cummax "
                       "cummin".split())
_TUPLE_MODULES = frozenset({"LSTM", "GRU", "RNN", "MultiheadAttention"})
_SHAPE_METHODS = frozenset("size dim ndimension numel nelement item tolist stride is_contiguous element_size "
                           "get_device".split())
_SHAPE_ATTRS = frozenset({"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "layout"})


@functools.lru_cache(maxsize=None)
def _proxy_class() -> type:
    """fx's Proxy, also recording ``x[i] = v`` and ``x += y`` as torch runs them.

    fx has neither: item assignment raises, and ``x += y`` falls back to ``x = x + y``, a new
    tensor where torch writes into ``x`` (so another name for that tensor would silently keep
    the old value). Here they become ``operator.setitem``/``operator.iadd`` nodes, which
    :func:`_inplace_plan` turns into rebindings.
    """
    import torch
    import torch.fx as tfx

    class Proxy(tfx.Proxy):
        def __setitem__(self, index, value):
            self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})

    def augmented(fn: Callable) -> Callable:
        def method(self, other):
            return self.tracer.create_proxy("call_function", fn, (self, other), {})

        return method

    for name in _AUGMENTED:
        if hasattr(torch.Tensor, f"__{name}__"):
            setattr(Proxy, f"__{name}__", augmented(getattr(operator, name)))
    return Proxy


def _inplace_plan(graph, module) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """Which nodes write into which tensor, and the writes that torch's aliasing makes unconvertible.

    Returns ``({in-place node: names of the nodes that are the tensor it writes}, problems)``.
    Every tensor node gets a *storage* (views share their base's) and an *identity* (an
    in-place op's result is the tensor it wrote). A write is converted functionally by
    rebinding every node of its identity to the op's result; it is refused where torch would
    change something else as well: a parameter or buffer (storage of a ``get_attr``), or
    another view of the same storage that is read afterwards. The exception is Python's own
    write-back: ``x[i] += v`` reads ``x[i]``, adds in place and assigns it back with
    ``x[i] = ...``, after which ``x`` is right again.
    """
    import torch
    import torch.fx as tfx

    Node = tfx.Node
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    view_fns = {getattr(torch, n) for n in _VIEW_FUNCTIONS if hasattr(torch, n)}
    tuple_fns = {getattr(torch, n) for n in _TUPLE_OPS if hasattr(torch, n)}
    tensor_memo: dict = {}

    def node_args(a) -> list:
        if isinstance(a, Node):
            return [a]
        if isinstance(a, (tuple, list)):
            return [n for v in a for n in node_args(v)]
        if isinstance(a, slice):
            return node_args((a.start, a.stop, a.step))
        if isinstance(a, dict):
            return node_args(list(a.values()))
        return []

    def is_tensor(n: Node) -> bool:
        """A tensor (or tuple of tensors), not shape arithmetic on Python numbers."""
        if n not in tensor_memo:
            tensor_memo[n] = True
            t, first = n.target, n.args[0] if n.args else None
            if n.op == "call_method":
                tensor_memo[n] = t not in _SHAPE_METHODS
            elif n.op == "call_function":
                if t is getattr:
                    tensor_memo[n] = n.args[1] not in _SHAPE_ATTRS and isinstance(first, Node) and is_tensor(first)
                elif getattr(t, "__module__", None) in ("builtins", "math"):
                    tensor_memo[n] = False
                elif t is operator.getitem:
                    tensor_memo[n] = isinstance(first, Node) and is_tensor(first)
                elif getattr(t, "__module__", None) == "_operator":
                    tensor_memo[n] = any(is_tensor(a) for a in node_args(n.args))
        return tensor_memo[n]

    tuples: set = set()

    def view_of(n: Node) -> Node | None:
        """The node whose memory ``n``'s value shares, if any."""
        t, first = n.target, n.args[0] if n.args else None
        if not isinstance(first, Node):
            return None
        if n.op == "call_method":
            if t in _TUPLE_OPS:
                tuples.add(n)
            return first if t in _VIEW_METHODS else None
        if n.op == "call_module":
            m = module.get_submodule(t)
            if type(m).__name__ in _TUPLE_MODULES or getattr(m, "return_indices", False):
                tuples.add(n)
            return first if type(m).__name__ in _VIEW_MODULES else None
        if n.op != "call_function":
            return None
        if t is operator.getitem:
            if first in tuples:  # an item of (values, indices), (out, (h, c)): its own tensor
                tuples.add(n)
                return None
            index = n.args[1]
            advanced = isinstance(index, list) or any(is_tensor(a) for a in node_args(index))
            return None if advanced else first  # indexing with tensors copies
        if t is getattr:
            return first if n.args[1] in _VIEW_ATTRS else None
        if t in tuple_fns:
            tuples.add(n)
        return first if t in view_fns else None

    def written(n: Node) -> tuple[Node | None, str]:
        """The tensor node ``n`` writes into, and how torch spells the write."""
        t, args, kwargs = n.target, n.args, n.kwargs
        first = args[0] if args and isinstance(args[0], Node) else None
        if n.op == "call_method":
            return (first, f"Tensor.{t}()") if t in _ops.INPLACE_METHODS else (None, "")
        if n.op == "call_module":
            m = module.get_submodule(t)
            if getattr(m, "inplace", False) is True:
                return first, f"module {t} ({type(m).__name__}(inplace=True))"
            return None, ""
        if n.op != "call_function":
            return None, ""
        name = getattr(t, "__name__", str(t))
        if t is operator.setitem:
            return first, "item assignment x[...] = v"
        if name in _AUGMENTED and getattr(t, "__module__", None) == "_operator":
            return (first, f"'{_AUGMENTED[name]}'") if first is not None and is_tensor(first) else (None, "")
        if isinstance(kwargs.get("out"), Node):
            return kwargs["out"], f"{name}(..., out=...)"
        if _ops.resolve(t) in _ops.INPLACE_FUNCTIONS:
            return first, f"{name}()"
        inplace = kwargs.get("inplace")
        if inplace is None and len(args) > 1:
            try:
                inplace = inspect.signature(t).bind(*args, **kwargs).arguments.get("inplace")
            except (TypeError, ValueError):
                inplace = None
        return (first, f"{name}(..., inplace=True)") if inplace is True else (None, "")

    storage: dict = {}
    ident: dict = {}
    members: dict = {}  # identity -> the nodes that are that tensor
    plan: dict[str, tuple[str, ...]] = {}
    problems: list[tuple[str, str]] = []
    for n in nodes:
        target, how = written(n)
        if target is None or target not in storage:
            src = view_of(n)
            storage[n] = storage.get(src, src) if src is not None else n
            ident[n] = n
            members[n] = [n]
            continue
        where = _user_line(n.meta.get("stack_trace") or n.stack_trace)
        root = storage[target]
        if root.op == "get_attr":
            problems.append((f"in-place {how} on the parameter/buffer {root.target!r}: torch would change the "
                             f"module's own tensor during forward, funcnets' params and state are read-only in "
                             f"apply (compute a new tensor instead; running statistics belong in a BatchNorm "
                             f"layer)", where))
        else:
            base, back = None, len(nodes)
            r = ident[target]
            if r.op == "call_function" and r.target is operator.getitem and isinstance(r.args[0], Node):
                base = ident[r.args[0]]
                back = next((pos[w] for w in nodes[pos[n] + 1:] if w.op == "call_function"
                             and w.target is operator.setitem and isinstance(w.args[0], Node)
                             and ident.get(w.args[0]) is base and w.args[1] == r.args[1] and w.args[2] is n),
                            len(nodes))
            for m in nodes[:pos[n]]:
                if storage.get(m) is not root or ident[m] is ident[target]:
                    continue
                until = back if ident[m] is base else len(nodes)
                if any(pos[n] < pos[u] < until for u in m.users):
                    other = f"the input {m.target!r}" if m.op == "placeholder" else (
                        f"{m.name!r} ({_user_line(m.meta.get('stack_trace') or m.stack_trace)})")
                    problems.append((f"in-place {how} writes into a tensor that shares memory with {other}, "
                                     f"which is read afterwards: torch would change that one too, a functional "
                                     f"conversion cannot (clone() before writing, or write through the original "
                                     f"tensor: x[i] += v)", where))
                    break
        storage[n], ident[n] = root, ident[target]
        plan[n.name] = tuple(m.name for m in members[ident[target]])
        members[ident[target]].append(n)
    return plan, problems


# torch's factories of a given size: fx cannot pass them a traced size (`torch.zeros(layers,
# x.size(0), hidden)`, an RNN's initial state), since they take no tensor to dispatch on
_FACTORIES = ("zeros", "ones", "full", "empty", "eye", "linspace", "rand", "randn", "randint")


@contextlib.contextmanager
def _factories_take_traced_sizes():
    """While tracing, a factory given a traced size becomes a graph node (restored after)."""
    import torch
    import torch.fx as tfx

    def traced(a) -> tfx.Proxy | None:
        if isinstance(a, tfx.Proxy):
            return a
        items = a.values() if isinstance(a, dict) else a if isinstance(a, (tuple, list)) else ()
        return next((p for p in map(traced, items) if p is not None), None)

    def wrap(fn):
        @functools.wraps(fn)
        def factory(*args, **kwargs):
            proxy = traced((args, kwargs))
            if proxy is None:
                return fn(*args, **kwargs)
            return proxy.tracer.create_proxy("call_function", fn, args, kwargs)

        return factory

    import torch.nn.utils.rnn as rnn

    _ops.function_table()  # resolved from the real functions, before they are wrapped below
    originals = {(torch, n): getattr(torch, n) for n in _FACTORIES}
    # torch.nn.utils.rnn.pack_padded_sequence(...) spelled out: fx's autowrap sees only imported names
    originals.update({(rnn, f.__name__): f for f in _packing_functions()})
    for (mod, n), fn in originals.items():
        setattr(mod, n, wrap(fn))
    try:
        yield
    finally:
        for (mod, n), fn in originals.items():
            setattr(mod, n, fn)


@functools.cache  # the real functions: first asked for before the tracing patches them
def _packing_functions() -> tuple:
    from torch.nn.utils import rnn

    return rnn.pack_padded_sequence, rnn.pad_packed_sequence


def trace_module(make_tracer: Callable[[], Any], module, concrete_args, what: str = "forward"):
    """``make_tracer().trace(module, concrete_args)``, its failures as :class:`UnsupportedOperationError`.

    fx hands ``forward`` the module's buffers themselves, so slicing one by a traced size
    fails (nanoGPT's ``self.bias[:, :, :T, :T]``); a failed trace is tried again with the
    buffers as graph inputs. Only as a second try: a buffer's real values may decide Python
    control flow, which traces only the first way.
    """
    import torch.fx as tfx

    try:
        try:
            with _factories_take_traced_sizes():
                return make_tracer().trace(module, concrete_args)
        except Exception as e:
            if isinstance(e, FuncnetsError) or not any(True for _ in module.buffers()):
                raise
            tracer = make_tracer()
            tracer.proxy_buffer_attributes = True
            try:
                with _factories_take_traced_sizes():
                    return tracer.trace(module, concrete_args)
            except Exception:
                raise e from None
    except tfx.proxy.TraceError as e:
        raise UnsupportedOperationError([(f"data-dependent control flow in {what} ({e})", _frame_of(e))]) from None
    except Exception as e:
        if isinstance(e, FuncnetsError):
            raise
        hint = (" (likely a traced size, x.size(0) or x.shape[i], where Python needs an int: range(n), or "
                "torch.ones(n, n), which x.new_ones(n, n) or torch.ones_like(...) can replace)"
                if isinstance(e, TypeError) else "")
        raise UnsupportedOperationError([(f"torch.fx could not trace {what}: {type(e).__name__}: {e}{hint}",
                                          _frame_of(e))]) from e


def _trace(module, concrete_args, leaves, training: bool, stack_traces: bool = True):
    """fx-trace ``module`` in train or eval mode (restoring its modes afterwards)."""
    import torch
    import torch.fx as tfx

    modes = {m: m.training for m in module.modules()}
    module.train(training)
    Function = torch.autograd.Function
    # the classmethod object itself, not `Function.apply` (a method bound to Function):
    # putting a bound method back would make every custom Function run Function.forward
    had_own = "apply" in vars(Function)
    descriptor = inspect.getattr_static(Function, "apply")
    original_apply = Function.apply
    tracers = []  # the one tracing now is the last

    def make_tracer():
        tracers.append(_make_tracer(leaves, stack_traces))
        return tracers[-1]

    def apply(cls, *args, **kwargs):
        # fx would trace through forward() and silently drop the custom backward: record
        # the call as one node instead, which the checks below then refuse.
        if any(isinstance(a, tfx.Proxy) for a in args):
            return tracers[-1].create_proxy("call_function", cls.apply, args, kwargs)
        return original_apply.__func__(cls, *args, **kwargs)

    Function.apply = classmethod(apply)
    # fx reads buffers as the real tensors: `self.count += 1` runs on the buffer itself while
    # tracing, and the graph only sees its value afterwards. Torch's version counters tell.
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    versions = {n: t._version for n, t in tensors.items()}
    saved = {n: b.detach().clone() for n, b in module.named_buffers()}
    try:
        graph = trace_module(make_tracer, module, concrete_args)
    finally:
        if had_own:
            Function.apply = descriptor
        else:
            del Function.apply
        for m, mode in modes.items():
            m.training = mode
        written = [n for n, t in tensors.items() if t._version != versions[n]]
        with torch.no_grad():
            for n in written:
                if n in saved:
                    tensors[n].copy_(saved[n])  # tracing must not change the user's module
    if written:
        raise UnsupportedOperationError([
            (f"in-place write into the {'buffer' if n in saved else 'parameter'} {n!r} in forward: torch "
             f"changes the module's own tensor on every call, funcnets' params and state are read-only in "
             f"apply (compute a new tensor instead; running statistics belong in a BatchNorm layer)",
             "(source line unknown: it ran on the real tensor, outside the traced graph)") for n in written])
    return graph


def _problems(graph, module, convert) -> list[tuple[str, str]]:
    import torch

    out = []
    for node in graph.nodes:
        where = _user_line(node.meta.get("stack_trace") or node.stack_trace)
        if node.op == "call_function":
            t = node.target
            owner = getattr(t, "__self__", None)
            if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
                out.append((f"custom autograd Function {owner.__name__}.apply (its backward would be lost; "
                            f"write it as a jax.custom_vjp inside a funcnets Module and pass it with leaf_modules)",
                            where))
            elif _ops.resolve(t) is None:
                name = f"{getattr(t, '__module__', '') or ''}.{getattr(t, '__name__', repr(t))}".lstrip(".")
                why = _ops.data_dependent_reason(t)
                out.append((f"function {name}" + (f": {why}" if why else ""), where))
        elif node.op == "call_method" and node.target not in _ops.METHODS:
            why = _ops.data_dependent_reason(node.target)
            out.append((f"Tensor method .{node.target}()" + (f": {why}" if why else ""), where))
        elif node.op == "call_module":
            m = module.get_submodule(node.target)
            err = _hooked(m, torch, norms=True) or convert(node.target, m)
            if err:
                out.append((f"module {node.target} ({type(m).__name__}): {err}", where))
    return out + _inplace_plan(graph, module)[1]


def _hooked(m, torch, norms: bool = False) -> str | None:
    """Why a layer converted whole would compute something else than torch's: what torch runs around it.
    ``norms``: weight_norm / spectral_norm (parametrizations or the older hooks) are converted, by
    :func:`funcnets.convert.modules.convert_module` (``funcnets port`` does not write them yet)."""
    if norms and _modules.reparametrizations(m) is not None:
        return None
    if torch.nn.utils.parametrize.is_parametrized(m):
        names = ", ".join(repr(n) for n in m.parametrizations)
        return (f"its {names} is parametrized (torch.nn.utils.parametrizations: weight_norm, spectral_norm, "
                f"orthogonal, ...), which a converted layer does not compute (from_torch converts weight_norm and "
                f"spectral_norm alone on a layer; funcnets port does not write them yet); "
                f"torch.nn.utils.parametrize.remove_parametrizations(layer, name) bakes the current value in "
                f"(training then updates that tensor itself, not the parametrization's originals)")
    hooks = [*m._forward_pre_hooks.values(), *m._forward_hooks.values()]
    if hooks:
        kinds = ", ".join(sorted({getattr(h, "__name__", type(h).__name__) for h in hooks}))
        return (f"it has forward hooks ({kinds}), which a converted layer does not run (torch.nn.utils.weight_norm "
                f"and spectral_norm are such hooks, converted by from_torch but not by funcnets port: "
                f"torch.nn.utils.remove_weight_norm(layer) bakes the weight in); "
                f"remove them before converting")
    return None


def problems(module: Any, concrete_args: dict[str, Any] | None = None,
             leaf_modules: Mapping[type, Callable[[Any], Module]] | None = None) -> list[tuple[str, str]]:
    """What :func:`from_torch` would refuse in ``module``, as ``[(operation, source line)]``
    (empty when it converts); see :func:`check_convertible`."""
    user = dict(leaf_modules or {})
    leaves = tuple(user) + tuple(_modules.leaf_classes())
    checked: dict[str, str | None] = {}

    def convert(path: str, m: Any) -> str | None:
        if path not in checked:  # the train and eval graphs call the same submodules
            try:
                factory = next((user[c] for c in type(m).__mro__ if c in user), None)
                factory(m) if factory is not None else _modules.convert_module(m)
                checked[path] = None
            except Exception as e:  # noqa: BLE001 -- reported
                checked[path] = f"{type(e).__name__}: {e}"
        return checked[path]

    def found(stack_traces: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for mode in (False, True):
            try:
                graph = _trace(module, concrete_args, leaves, mode, stack_traces)
            except UnsupportedOperationError as e:
                new = e.problems
            else:
                new = _problems(graph, module, convert)
            out += [p for p in new if p not in out]
        return out

    # traced without recording stack traces (a fifth of the time); only a refused module is
    # traced again with them, for the source lines
    return found(False) and found(True)


def check_convertible(module: Any, *, concrete_args: dict[str, Any] | None = None,
                      leaf_modules: Mapping[type, Callable[[Any], Module]] | None = None) -> None:
    """Check that :func:`from_torch` can convert ``module``, without converting it.

    Traces the forward (train and eval mode) and checks that every function, Tensor
    method and submodule of the graph has a funcnets counterpart; no tensor is read or
    copied, so a module built on torch's ``meta`` device is checked without allocating
    its weights -- a ViT-H/14 (632M parameters) in well under a second::

        with torch.device("meta"):
            net = torchvision.models.vit_h_14()
        funcnets.convert.check_convertible(net)

    Shapes are not checked (no input is run): ``from_torch(module, x)`` checks them.

    Args:
      module: the torch module (its train/eval mode is left as it was).
      concrete_args, leaf_modules: as for :func:`from_torch`.

    Raises:
      UnsupportedOperationError: the error :func:`from_torch` would raise, listing every
        operation it cannot convert with its source line.
    """
    found = problems(module, concrete_args, leaf_modules)
    if found:
        raise UnsupportedOperationError(found)


def _shape_dtype(t) -> tuple[tuple[int, ...], Any]:
    return tuple(t.shape), np.dtype(str(t.dtype).replace("torch.", ""))


def _to_jax(t) -> jax.Array:
    return jnp.asarray(_to_numpy(t))  # a copy (bfloat16 as float32): see torch_io._to_numpy


def _build_tree(module, path: str, leaves: dict[str, Module], name: str) -> Module:
    if path in leaves:
        return leaves[path]
    kids = []
    for cname, child in module._modules.items():  # a layer registered twice too (named_children dedups)
        if child is None:
            continue
        cpath = f"{path}.{cname}" if path else cname
        sub = _build_tree(child, cpath, leaves, name)
        if sub is not None:
            kids.append((cname, sub))
    own_p = tuple((n, *_shape_dtype(p)) for n, p in module.named_parameters(recurse=False))
    own_b = tuple((n, *_shape_dtype(b)) for n, b in module.named_buffers(recurse=False)
                  if n not in module._non_persistent_buffers_set)
    if not kids and not own_p and not own_b:
        return None
    return TorchModule(type(module).__name__, tuple(kids), own_p, own_b)


def _encode_graph(graph, module, train_index_offset: int = 0) -> tuple[_Node, ...]:
    import torch

    nodes = []
    names = set(module.state_dict(keep_vars=True))
    plan = _inplace_plan(graph, module)[0]
    for i, n in enumerate(graph.nodes):
        target, arg_names = n.target, ()
        if n.op == "call_function":
            target = _ops.resolve(n.target)
        elif n.op == "call_module":
            sub = module.get_submodule(n.target)
            try:
                arg_names = tuple(inspect.signature(sub.forward).parameters)
            except (TypeError, ValueError):
                arg_names = ()
        args = tuple(_encode(a, torch) for a in n.args)
        kwargs = tuple((k, _encode(v, torch)) for k, v in n.kwargs.items())
        if n.op == "get_attr" and n.target not in names:
            # a tensor the forward creates (torch.tensor(...), a plain tensor attribute): fx keeps
            # it on the module as _tensor_constantN; it is a constant of the graph, not a weight
            value = module
            for part in n.target.split("."):
                value = getattr(value, part)
            args = (_encode(value, torch),)
        nodes.append(_Node(n.name, n.op, target, args, kwargs, arg_names, i + train_index_offset,
                           plan.get(n.name, ())))
    return tuple(nodes)


def from_torch(
    module: Any,
    *example_inputs: Any,
    concrete_args: dict[str, Any] | None = None,
    leaf_modules: Mapping[type, Callable[[Any], Module]] | None = None,
) -> tuple[TorchGraph, dict, dict]:
    """Convert a ``torch.nn.Module`` into a funcnets model and copy its weights.

    Args:
      module: the torch module (its train/eval mode is left as it was).
      *example_inputs: optional torch tensors for ``forward``; when given, the converted
        model's output shapes are checked against torch's on them (with ``jax.eval_shape``,
        nothing is computed).
      concrete_args: forward arguments to fix while tracing (``torch.fx`` semantics),
        e.g. a flag that decides a Python branch.
      leaf_modules: ``{TorchClass: factory}``: submodules of that class are not traced
        but converted by ``factory(torch_submodule) -> funcnets Module`` (whose params
        and state must use the submodule's ``state_dict`` names).

    Returns:
      ``(model, params, state)``: ``model.apply(params, state, x, train=False, key=None)
      -> (y, new_state)``; ``params``/``state`` are nested dicts keyed by the torch
      module's ``state_dict`` names (float32/float64 kept). A parameter torch shares
      between layers (a language model's head tied to its embedding) is held once, under
      its first name, as torch's ``parameters()`` lists it, and trains as one tensor;
      so is a layer registered under two names; ``model.shared_tensors()`` names the
      others, which ``torch_io.state_dict`` writes.

    Raises:
      UnsupportedOperationError: listing every operation that cannot be converted, with
        its source line, before anything is built.

    Example::

        model, params, state = funcnets.from_torch(torchvision.models.resnet18())
        logits, _ = jax.jit(model.apply)(params, state, x)
    """
    import torch

    user = dict(leaf_modules or {})
    table = _modules.leaf_classes()
    leaves = tuple(user) + tuple(table)
    graphs = {mode: _trace(module, concrete_args, leaves, mode, stack_traces=False) for mode in (False, True)}

    converted: dict[str, Module] = {}

    def convert(path: str, m: Any) -> str | None:
        if path in converted:
            return None
        try:
            factory = next((user[c] for c in type(m).__mro__ if c in user), None)
            converted[path] = factory(m) if factory is not None else _modules.convert_module(m)
        except Exception as e:  # noqa: BLE001 -- reported, with the line, in the one error
            return f"{type(e).__name__}: {e}"
        return None

    if any(_problems(g, module, convert) for g in graphs.values()):
        # traced without stack traces (a fifth of the time): again with them, for the source lines
        raise UnsupportedOperationError(problems(module, concrete_args, leaf_modules))

    root = _build_tree(module, "", converted, type(module).__name__) or TorchModule(type(module).__name__)
    placeholders = [n.target for n in graphs[False].nodes if n.op == "placeholder"]
    model = TorchGraph(
        type(module).__name__, tuple(root.children()), root.own_params if isinstance(root, TorchModule) else (),
        root.own_buffers if isinstance(root, TorchModule) else (), tuple(placeholders),
        _encode_graph(graphs[False], module), _encode_graph(graphs[True], module), _shared(module),
    )

    sd = module.state_dict(keep_vars=True)
    param_ids = {id(p) for p in module.parameters()}
    params: dict = {}
    state: dict = {}
    aliases = dict(model.shared)
    for name, t in sd.items():
        if name in aliases:
            continue
        if id(t) in param_ids:
            params = _set(params, name, _to_jax(t))
        else:
            state = _set(state, name, _to_jax(t))
    _check_names(model, params, state, sd)
    if example_inputs:
        _check_shapes(module, model, params, state, example_inputs, torch)
    return model, params, state


def _shared(module) -> tuple[tuple[str, str], ...]:
    """``((name, first name of the same tensor), ...)``: tied parameters, buffers of shared layers."""
    first: dict[int, str] = {}
    out = []
    for name, t in [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]:
        if id(t) in first:
            out.append((name, first[id(t)]))
        else:
            first[id(t)] = name
    return tuple(out)


def _check_names(model: TorchGraph, params: dict, state: dict, sd: Mapping) -> None:
    """The converted layers must expect exactly the torch tensors' names and shapes."""
    want_p, want_s = jax.eval_shape(model.init_tree, jax.random.PRNGKey(0))
    flat = dict(model.named_parameters(want_p) + model.named_buffers(want_s))
    flat.update({name: flat[same] for name, same in model.shared})  # torch's state_dict holds both names
    mismatched = [f"{k}: torch {tuple(sd[k].shape)}, funcnets {tuple(flat[k].shape) if k in flat else 'missing'}"
                  for k in sd if k not in flat or tuple(flat[k].shape) != tuple(sd[k].shape)]
    extra = [k for k in flat if k not in sd]
    if mismatched or extra:
        raise FuncnetsError(
            "from_torch: the converted layers do not hold the torch module's tensors "
            f"({'; '.join(mismatched + [f'{k}: not in torch state_dict' for k in extra])}). "
            "A leaf_modules factory must return a module whose params/state use the submodule's state_dict names."
        )


def _check_shapes(module, model, params, state, example_inputs, torch) -> None:
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            ref = module(*example_inputs)
    finally:
        module.train(was)
    xs = [_to_jax(t) if isinstance(t, torch.Tensor) else t for t in example_inputs]
    x = xs[0] if len(xs) == 1 else tuple(xs)
    # a key, for layers random in eval too (FractionalMaxPool); eval-mode dropout ignores it
    out, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, key=jax.random.key(0)), params, state, x)
    got = [tuple(o.shape) for o in jax.tree_util.tree_leaves(out)]
    want = [tuple(r.shape) for r in jax.tree_util.tree_leaves(
        ref, is_leaf=lambda v: isinstance(v, torch.Tensor)) if isinstance(r, torch.Tensor)]
    if got != want:
        raise FuncnetsError(f"from_torch: the converted model's output shapes {got} differ from torch's {want}")



"""``funcnets.port``: a torch module as readable funcnets source that you own.

:func:`port` writes one Python file: a frozen dataclass per torch module class that has
its own ``forward`` (children as dataclass fields under torch's names, own parameters and
buffers under theirs), whose ``apply`` has one line per operation of that ``forward``
(``torch.fx``-traced with every submodule kept whole), written with
``funcnets.nn.functional``/``jnp`` and, for the rest, the torch-signature functions of
:mod:`funcnets.convert.ops`. torch layers become funcnets layer constructors with their
arguments (``Conv2d(3, 64, kernel_size=3, padding=1)``); ``Sequential``/``ModuleList``/
``ModuleDict`` become funcnets containers. The file imports no torch. Its ``load(path)``
returns ``(model, params, state)`` from the ``.safetensors`` weights written beside it
(:func:`write_port`).

Instances of one torch class whose traced ``forward`` differs (a block with and without
a downsampling branch, say) become numbered classes ``Block``, ``Block_2``. A class with
one instance gets its children as field defaults, so ``Net()`` builds the whole model.
"""

from __future__ import annotations

import dataclasses
import keyword
import operator
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from funcnets import nn as fnn
from funcnets.convert import fx as _fx
from funcnets.convert import modules as _modules
from funcnets.convert import ops as _ops
from funcnets.errors import FuncnetsError

__all__ = ["port", "write_port"]

_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
_RESERVED = {"SimpleNamespace", "self", "params", "state", "train", "key", "s", "F", "jnp", "jax", "ops", "np", "Module", "Scope",
             "OrderedDict", "dataclass", "field", "torch_io", "load", "os", "Path"}
_BINOPS = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/", operator.floordiv: "//",
           operator.mod: "%", operator.pow: "**", operator.matmul: "@", operator.and_: "&", operator.or_: "|",
           operator.xor: "^", operator.lshift: "<<", operator.rshift: ">>", operator.eq: "==", operator.ne: "!=",
           operator.lt: "<", operator.le: "<=", operator.gt: ">", operator.ge: ">="}
_UNOPS = {operator.neg: "-", operator.pos: "+", operator.invert: "~", operator.not_: "not "}
_AUGMENTED = {getattr(operator, "i" + k.__name__.rstrip("_")): v for k, v in _BINOPS.items()
              if hasattr(operator, "i" + k.__name__.rstrip("_"))}  # iadd: "+" (on numbers)
_ALIAS_METHODS = {"contiguous", "cpu", "cuda"}  # identities: the node is its input
_SCALAR_ARGS = {"kernel_size", "stride", "padding", "dilation", "output_padding", "output_size", "size"}


def _str(v: str) -> str:
    """A string literal in double quotes, as hand-written code has it."""
    r = repr(v)
    return '"' + r[1:-1] + '"' if r[0] == "'" and '"' not in v else r


def _repr(v: Any) -> str:
    return _str(v) if isinstance(v, str) else repr(v)


def _is_torch_container(m: Any) -> str | None:
    import torch.nn as tnn

    for name in _CONTAINERS:
        base = getattr(tnn, name)
        if isinstance(m, base) and type(m).forward is base.forward:
            return name
    return None


def _leaf_layer(m: Any) -> bool:
    """A torch layer funcnets has, used as is (a subclass with its own forward is not)."""
    table = _modules.leaf_classes()
    base = next((c for c in type(m).__mro__ if c in table), None)
    return base is not None and type(m).forward is base.forward


# ----------------------------------------------------------------------------- layer constructors
def _literal(v: Any, imports: set) -> str:
    if isinstance(v, fnn.Module):
        return _layer_source(v, imports)
    if isinstance(v, tuple):
        return "(" + ", ".join(_literal(a, imports) for a in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_literal(a, imports) for a in v) + "]"
    if isinstance(v, float) and not np.isfinite(v):
        return f'float("{v}")'
    if v is None or isinstance(v, (bool, int, float, str)):
        return _repr(v)
    if isinstance(v, np.generic):
        return repr(v.item())
    raise FuncnetsError(f"port: cannot write the value {v!r} ({type(v).__name__}) as source")


def _layer_source(layer: fnn.Module, imports: set) -> str:
    """``Conv2d(3, 64, kernel_size=3, padding=1)``: positional required, keywords where not default."""
    cls = type(layer)
    imports.add(cls.__name__)
    if cls.__name__ in _CONTAINERS:
        raise AssertionError("containers are written by _module_source")
    args = []
    for f in dataclasses.fields(layer):
        if not f.init or f.name.startswith("_"):
            continue
        v = getattr(layer, f.name)
        if (f.name in _SCALAR_ARGS and isinstance(v, tuple) and v and len(set(v)) == 1
                and isinstance(v[0], int) and not isinstance(v[0], bool)):
            v = v[0]  # Conv2d(kernel_size=3), as torch users write it
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if not has_default:
            if any("=" in a for a in args) or len(args) >= 2:
                args.append(f"{f.name}={_literal(v, imports)}")
            else:
                args.append(_literal(v, imports))
        elif not _same(v, default):
            args.append(f"{f.name}={_literal(v, imports)}")
    return f"{cls.__name__}({', '.join(args)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b) or (isinstance(a, (int, float)) and not isinstance(a, bool)
                                                       and not isinstance(b, bool) and a == b and type(a) is type(b))
    except Exception:  # noqa: BLE001 -- arrays and the like: keep the argument
        return False


# ----------------------------------------------------------------------------- tracing each class
class _Traced:
    """One torch module instance with its own forward: its graphs, rendered."""

    def __init__(self, path: str, module: Any):
        self.path, self.module = path, module
        self.body: str = ""
        self.cls_name: str = ""


def _trace_own(module: Any, concrete_args: dict | None):
    """fx graphs (eval, train) of ``module``'s forward with every submodule kept whole."""
    import torch.fx as tfx

    class _Tracer(tfx.Tracer):
        def __init__(self):
            super().__init__(autowrap_functions=_fx._packing_functions())  # as from_torch's tracer
            self.record_stack_traces = True

        def is_leaf_module(self, m, qualname):
            return True

        def proxy(self, node):  # records x[i] = v and x += y as torch runs them
            return _fx._proxy_class()(node, self)

    graphs = []
    modes = {m: m.training for m in module.modules()}
    try:
        for training in (False, True):
            module.train(training)
            graphs.append(_fx.trace_module(_Tracer, module, concrete_args, f"{type(module).__name__}.forward"))
    finally:
        for m, mode in modes.items():
            m.training = mode
    return graphs


def _plain_attributes(m: Any) -> dict:
    """A torch module's hyperparameters: its attributes that are numbers, strings, None or tuples of them."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return all(plain(a) for a in v)
        return v is None or isinstance(v, (bool, int, float, str))

    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(m).items()
            if not k.startswith("_") and k != "training" and plain(v)}


def _factory_import(factory: Any, torch_class: type) -> tuple[str, str]:
    """``(module, qualified name)`` of a leaf factory the generated file can import."""
    mod, qual = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    fix = (f"Give leaf_modules={{{torch_class.__name__}: factory}} a function defined at the top level of an "
           "importable module that does not import torch (e.g. mypackage/funcnets_layers.py: "
           "def make_gate(m): return Gate(...)), so that the ported file can import it.")
    if not mod or mod == "__main__" or "<lambda>" in qual or "<locals>" in qual or not qual:
        raise FuncnetsError(f"port: the leaf_modules factory {factory!r} for {torch_class.__name__} is a lambda, a "
                            f"local function or defined in __main__; the generated file cannot import it. {fix}")
    import importlib

    try:
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        obj = None
    if obj is not factory:
        raise FuncnetsError(f"port: the leaf_modules factory {mod}.{qual} is not importable under that name. {fix}")
    return mod, qual


class _Writer:
    def __init__(self, root: Any, concrete_args: dict | None, leaf_modules: dict | None = None):
        import torch

        self.torch = torch
        self.root = root
        self.concrete_args = concrete_args
        self.leaf_modules = dict(leaf_modules or {})
        self.factory_imports: set = set()  # (module, top-level name)
        self.layer_imports: set = set()
        self.uses: set = set()  # "F", "jnp", "jax", "ops", "OrderedDict"
        self.traced: dict[int, _Traced] = {}
        self.order: list[_Traced] = []
        self.problems: list[tuple[str, str]] = []
        self._walk(root, "", concrete_args)

    def user_leaf(self, m: Any) -> Any:
        """The leaf_modules factory for ``m``'s class, or None."""
        return next((self.leaf_modules[c] for c in type(m).__mro__ if c in self.leaf_modules), None)

    def leaf_source(self, m: Any) -> str:
        """``make_gate(SimpleNamespace(sign=-1.0))``: the factory, called on the submodule's hyperparameters.

        The generated file has no torch, so the factory gets a namespace of the torch
        submodule's plain attributes; it must build the same layer from it as from the
        submodule itself (checked here), which a factory reading hyperparameters does.
        """
        from types import SimpleNamespace

        factory = self.user_leaf(m)
        mod, qual = _factory_import(factory, type(m))
        attrs = _plain_attributes(m)
        want = factory(m)
        try:
            got = factory(SimpleNamespace(**attrs))
        except Exception as e:  # noqa: BLE001 -- explained below
            got = e
        if not isinstance(want, fnn.Module) or got != want:
            raise FuncnetsError(
                f"port: leaf_modules factory {mod}.{qual} does not build the same layer from the hyperparameters of "
                f"{type(m).__name__} ({', '.join(sorted(attrs)) or 'none'}) as from the torch module itself (got "
                f"{got!r}, expected {want!r}); the ported file has no torch module to give it. Read only those "
                f"attributes in the factory.")
        self.factory_imports.add((mod, qual.split(".")[0]))
        self.uses.add("SimpleNamespace")
        args = ", ".join(f"{k}={_literal(v, set())}" for k, v in attrs.items())
        return f"{qual}(SimpleNamespace({args}))"

    # --- which modules get a class ---------------------------------------------------
    def _walk(self, m: Any, path: str, concrete_args: dict | None = None) -> None:
        if id(m) in self.traced:
            return
        if m is not self.root and self.user_leaf(m) is not None:
            return  # the factory's layer stands for the whole submodule
        if m is not self.root and (_leaf_layer(m) or _is_torch_container(m)):
            for name, child in m.named_children():
                self._walk(child, f"{path}.{name}" if path else name)
            return
        t = _Traced(path, m)
        self.traced[id(m)] = t
        for name, child in m.named_children():
            self._walk(child, f"{path}.{name}" if path else name)
        t.graphs = _trace_own(m, concrete_args)  # children first: their classes come first in the file
        self.order.append(t)

    # --- apply bodies ------------------------------------------------------------------
    def render_all(self) -> None:
        for t in self.order:
            bodies = [self._render_graph(t, g) for g in t.graphs]
            if bodies[0] == bodies[1]:
                t.body = bodies[0]
            else:
                t.body = "        if train:\n" + _indent(bodies[1]) + "\n" + bodies[0]
        if self.problems:
            raise _fx.UnsupportedOperationError(self.problems)
        counts: dict[str, list[str]] = {}
        for t in self.order:
            base = _class_name(type(t.module).__name__)
            variants = counts.setdefault(base, [])
            key = t.body + "|" + repr(self._own_tensors(t.module))
            if key not in variants:
                variants.append(key)
            i = variants.index(key)
            t.cls_name = base if i == 0 else f"{base}_{i + 1}"
        self.instances: dict[str, int] = {}
        for t in self.order:
            self.instances[t.cls_name] = self.instances.get(t.cls_name, 0) + 1

    def _own_tensors(self, m: Any) -> tuple:
        p = tuple((n, tuple(v.shape), str(v.dtype)) for n, v in m.named_parameters(recurse=False))
        b = tuple((n, tuple(v.shape), str(v.dtype)) for n, v in m.named_buffers(recurse=False)
                  if n not in m._non_persistent_buffers_set)
        return p, b

    def _render_graph(self, t: _Traced, graph) -> str:
        module = t.module
        names: dict[str, str] = {}
        taken = set(_RESERVED)
        lines: list[str] = []
        scopes: dict[str, str] = {"": "s"}  # module path -> Scope variable
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]

        def var(node_name: str) -> str:
            if node_name not in names:
                v = re.sub(r"\W", "_", node_name)
                if keyword.iskeyword(v) or v in taken or v[0].isdigit():
                    v = v + "_"
                while v in taken:
                    v += "_"
                taken.add(v)
                names[node_name] = v
            return names[node_name]

        def val(a: Any, in_index: bool = False) -> str:
            import torch.fx as tfx

            torch = self.torch
            if isinstance(a, tfx.Node):
                return names[a.name] if a.name in names else var(a.name)  # (a refused node: named all the same)
            if isinstance(a, tuple):
                inner = ", ".join(val(v, in_index) for v in a)
                return inner + ("," if len(a) == 1 else "") if in_index else f"({inner}{',' if len(a) == 1 else ''})"
            if isinstance(a, list):
                return "[" + ", ".join(val(v) for v in a) + "]"
            if isinstance(a, slice):
                parts = [val(v) if v is not None else "" for v in (a.start, a.stop, a.step)]
                if in_index:
                    return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
                return f"slice({', '.join(val(v) for v in (a.start, a.stop, a.step))})"
            if a is Ellipsis:
                return "..."
            if isinstance(a, dict):
                return "{" + ", ".join(f"{_repr(k)}: {val(v)}" for k, v in a.items()) + "}"
            if isinstance(a, torch.dtype):
                self.uses.add("jnp")
                return f"jnp.{str(a).replace('torch.', '')}"
            if isinstance(a, (torch.device, torch.memory_format, torch.layout)):
                return "None"
            if isinstance(a, torch.Tensor):
                self.uses.add("jnp")
                arr = a.detach().cpu().numpy()
                return f"jnp.asarray({arr.tolist()!r}, dtype=jnp.{arr.dtype})"
            if isinstance(a, float) and not np.isfinite(a):
                return f'float("{a}")'
            return _repr(a)

        def call_args(args, kwargs, fn=None) -> str:
            kwargs = _drop_defaults(fn, kwargs)
            return ", ".join([val(a) for a in args] + [f"{k}={val(v)}" for k, v in kwargs.items()])

        def scope_of(path: str) -> tuple[str, str]:
            """(Scope variable of the parent, child name) for a dotted submodule path."""
            parent, _, name = path.rpartition(".")
            if parent not in scopes:
                grand, gname = scope_of(parent)
                v = "s_" + re.sub(r"\W", "_", parent)
                taken.add(v)
                scopes[parent] = v
                lines.append(f"{v} = Scope({grand}.params.get({_str(gname)}, {{}}), "
                             f"{grand}.old_state.get({_str(gname)}, {{}}), "
                             "train, key)")
            return scopes[parent], name

        def module_expr(path: str) -> str:
            expr, m = "self", module
            for part in path.split("."):
                kind = _is_torch_container(m)
                if kind in ("Sequential", "ModuleList"):
                    expr += f"[{list(dict(m.named_children())).index(part)}]"
                elif kind == "ModuleDict":
                    expr += f"[{_str(part)}]"
                else:
                    expr += f".{part}"
                m = getattr(m, part) if kind is None else dict(m.named_children())[part]
            return expr

        # the apply signature's input
        arg_lines = []
        if len(placeholders) == 1:
            t.input_name = var(placeholders[0].name) if placeholders[0].name not in _RESERVED else var("x")
            names[placeholders[0].name] = t.input_name
        else:
            t.input_name = "x"
            taken.add("x")
            for i, p in enumerate(placeholders):
                v = var(p.name)
                if p.args:
                    arg_lines.append(f"{v} = x[{i}] if len(x) > {i} else {val(p.args[0])}")
                else:
                    arg_lines.append(f"{v} = x[{i}]")
            if not any(p.args for p in placeholders):
                arg_lines = [f"{', '.join(names[p.name] for p in placeholders)} = x"]
        lines += arg_lines

        # in-place operations: the written tensor's variable is rebound to the op's result
        plan, inplace_problems = _fx._inplace_plan(graph, module)
        self.problems += [p for p in inplace_problems if p not in self.problems]

        def lhs(n) -> str:
            if n.name in plan:
                names[n.name] = names[plan[n.name][0]]
            return var(n.name)

        for i, n in enumerate(graph.nodes):
            where = _fx._user_line(n.meta.get("stack_trace") or n.stack_trace)
            if n.op == "placeholder":
                continue
            if n.op == "output":
                out = val(n.args[0])
                lines.append(f"return {out}, " + self._state_expr(module, scopes))
                continue
            if not n.users and n.op != "call_module" and n.name not in plan:
                continue  # a value nothing reads (an unpacked part left unused)
            if n.op == "get_attr":
                parent, _, leaf = n.target.rpartition(".")
                holder = module.get_submodule(parent) if parent else module
                is_buffer = leaf in dict(holder.named_buffers(recurse=False))
                tree = "state" if is_buffer else "params"
                lines.append(f"{var(n.name)} = {tree}" + "".join(f"[{_str(p)}]" for p in n.target.split(".")))
                continue
            if n.op == "call_module":
                sub = module.get_submodule(n.target)
                user = self.user_leaf(sub) is not None
                if not (user or _leaf_layer(sub) or _is_torch_container(sub) or id(sub) in self.traced):
                    self.problems.append((f"module {n.target} ({type(sub).__name__})", where))
                    continue
                if _leaf_layer(sub) and not user:
                    try:
                        hooked = _fx._hooked(sub, self.torch)
                        if hooked:
                            raise FuncnetsError(hooked)
                        _modules.convert_module(sub)
                    except Exception as e:  # noqa: BLE001 -- reported with the line
                        self.problems.append((f"module {n.target} ({type(sub).__name__}): {e}", where))
                        continue
                sv, cname = scope_of(n.target)
                x = self._module_input(sub, n, val)
                target = f"{lhs(n)} = " if n.users or n.name in plan else ""
                lines.append(f"{target}{sv}({_str(cname)}, {module_expr(n.target)}, {x})")
                continue
            if n.op == "call_method":
                if n.target not in _ops.METHODS:
                    self.problems.append((f"Tensor method .{n.target}()", where))
                    continue
                if n.target in _ALIAS_METHODS and not n.kwargs and len(n.args) == 1:
                    names[n.name] = val(n.args[0])
                    continue
                fn = _ops.METHODS[n.target]
                lines.append(f"{lhs(n)} = {self._call(fn, n.args, n.kwargs, val, call_args, i)}")
                continue
            # call_function
            fn = _ops.resolve(n.target)
            if fn is None:
                self.problems.append((f"function {getattr(n.target, '__module__', '')}."
                                      f"{getattr(n.target, '__name__', n.target)}", where))
                continue
            if n.target in _AUGMENTED and n.name not in plan:  # shape arithmetic: n += 1 on a number
                lines.append(f"{var(n.name)} = {val(n.args[0])} {_AUGMENTED[n.target]} {val(n.args[1])}")
                continue
            # a write is the op's new value: torch's inplace=True / out= have no counterpart
            kwargs = {k: v for k, v in n.kwargs.items() if n.name not in plan or k not in ("inplace", "out")}
            lines.append(f"{lhs(n)} = {self._function(n, fn, val, call_args, i, kwargs)}")
        s_line = "s = Scope(params, state, train, key)"
        return "\n".join("        " + ln for ln in [s_line] + lines)

    def _state_expr(self, module: Any, scopes: dict) -> str:
        own = [n for n, _ in module.named_buffers(recurse=False) if n not in module._non_persistent_buffers_set]
        nested = [(p, v) for p, v in scopes.items() if p]
        if not own and not nested:
            return "s.state"
        parts = [f"{_str(n)}: state[{_str(n)}]" for n in own] + ["**s.state"]
        for p, v in sorted(nested, key=lambda pv: -pv[0].count(".")):
            parts.append(f"**({{{_str(p)}: {v}.state}} if {v}.state else {{}})")
        if any("." in p for p, _ in nested):
            raise FuncnetsError("port: submodules reached two levels down (self.a.b.c(x)) are not supported yet")
        return "{" + ", ".join(parts) + "}"

    def _module_input(self, sub, n, val) -> str:
        args, kwargs = list(n.args), dict(n.kwargs)
        if not kwargs:
            return val(args[0]) if len(args) == 1 else "(" + ", ".join(val(a) for a in args) + ")"
        import inspect

        names = list(inspect.signature(sub.forward).parameters)
        merged = dict(zip(names, args), **kwargs)
        if id(sub) in self.traced or not ({"query", "src", "tgt"} & set(merged)):
            return "(" + ", ".join(val(merged[k]) for k in names if k in merged) + ",)"
        return "{" + ", ".join(f"{_str(k)}: {val(v)}" for k, v in merged.items()) + "}"

    def _call(self, fn, args, kwargs, val, call_args, index: int) -> str:
        name = _ops.port_name(fn)
        self.uses.add("ops")
        extra = ""
        if _ops.needs_key(fn):
            self.uses.add("jax")
            extra = f", _rng=None if key is None else jax.random.fold_in(key, {index})"
        return f"ops.{name}({call_args(args, kwargs, fn)}{extra})"

    def _function(self, n, fn, val, call_args, index: int, kwargs: dict) -> str:
        t = n.target
        args = n.args
        if t in _BINOPS and len(args) == 2 and not kwargs:
            return f"{val(args[0])} {_BINOPS[t]} {val(args[1])}"
        if t in _UNOPS and len(args) == 1:
            return f"{_UNOPS[t]}{val(args[0])}"
        if t is operator.getitem:
            return f"{val(args[0])}[{val(args[1], in_index=True) or '()'}]"
        if t is operator.setitem:  # x[i] = v
            self.uses.update(("ops", "jnp"))
            return f"ops.setitem({val(args[0])}, jnp.s_[{val(args[1], in_index=True) or '()'}], {val(args[2])})"
        if t is getattr and len(args) == 2 and isinstance(args[1], str) and args[1] in ("shape", "ndim", "dtype", "T",
                                                                                          "mT", "real", "imag"):
            return f"{val(args[0])}.{args[1]}"
        if t is getattr and len(args) == 2 and isinstance(args[1], str) and args[1] in ("values", "indices"):
            return f"{val(args[0])}.{args[1]}"
        import builtins

        if getattr(t, "__module__", None) == "builtins" and getattr(builtins, t.__name__, None) is t \
                and t is not getattr:
            return f"{t.__name__}({call_args(args, kwargs)})"
        fname = getattr(fn, "__name__", "")
        if getattr(fnn.functional, fname, None) is fn and not _ops.needs_key(fn):
            self.uses.add("F")
            return f"F.{fname}({call_args(args, kwargs, fn)})"
        return self._call(fn, args, kwargs, val, call_args, index)

    # --- module constructors ------------------------------------------------------------
    def module_source(self, m: Any, for_default: bool = False) -> str:
        kind = _is_torch_container(m) if m is not self.root else None
        if kind is not None:
            self.layer_imports.add(kind)
            kids = list(m.named_children())
            if kind == "Sequential" and [k for k, _ in kids] != [str(i) for i in range(len(kids))]:
                self.uses.add("OrderedDict")
                inner = ", ".join(f"({_str(k)}, {self.module_source(c)})" for k, c in kids)
                return f"Sequential(OrderedDict([{inner}]))"
            if kind == "ModuleDict":
                return "ModuleDict({" + ", ".join(f"{_str(k)}: {self.module_source(c)}" for k, c in kids) + "})"
            inner = ", ".join(self.module_source(c) for _, c in kids)
            return f"Sequential({inner})" if kind == "Sequential" else f"ModuleList([{inner}])"
        if self.user_leaf(m) is not None:
            return self.leaf_source(m)
        if id(m) in self.traced:
            t = self.traced[id(m)]
            if self.instances[t.cls_name] == 1:
                return f"{t.cls_name}()"
            kids = ", ".join(f"{k}={self.module_source(c)}" for k, c in m.named_children())
            return f"{t.cls_name}({kids})"
        layer = _modules.convert_module(m)
        return _layer_source(layer, self.layer_imports)

    def class_source(self, t: _Traced) -> str:
        m = t.module
        single = self.instances[t.cls_name] == 1
        doc = f'    """torch ``{type(m).__module__}.{type(m).__qualname__}``, ported by ``funcnets port``."""'
        lines = ["@dataclass(frozen=True, repr=False)", f"class {t.cls_name}(Module):", doc, ""]
        fields, builds = [], []
        for name, child in m.named_children():
            if not name.isidentifier() or keyword.iskeyword(name) or hasattr(fnn.Module, name):
                raise FuncnetsError(f"port: {type(m).__name__}'s child {name!r} cannot be a dataclass field")
            typ = _field_type(self, child)
            if single:
                self.uses.add("field")
                fields.append(f"    {name}: {typ} = field(init=False)")
                builds.append(f"        object.__setattr__(self, {_str(name)}, {self.module_source(child)})")
            else:
                fields.append(f"    {name}: {typ}")
        lines += fields
        if builds:
            lines += ["", "    def __post_init__(self):  # children built here: the dataclass is frozen"]
            lines += builds
        params, buffers = self._own_tensors(m)
        if params or buffers:
            lines += ([""] if fields else []) + [
                "    def param_names(self):", f"        return {_literal(tuple(n for n, _, _ in params), set())}", "",
                "    def buffer_names(self):", f"        return {_literal(tuple(n for n, _, _ in buffers), set())}", "",
                "    def init_own(self, key):",
                "        # zeros: load() fills them with the ported weights",
                "        return ({" + ", ".join(f"{_str(n)}: jnp.zeros({s!r}, jnp.{d.replace('torch.', '')})"
                                        for n, s, d in params) + "}, {"
                + ", ".join(f"{_str(n)}: jnp.zeros({s!r}, jnp.{d.replace('torch.', '')})" for n, s, d in buffers)
                + "})",
            ]
            self.uses.add("jnp")
        lines += [""] if (fields or params or buffers) else []
        lines += [f"    def apply(self, params, state, {t.input_name}, *, train=False, key=None):", t.body]
        return "\n".join(lines)


def _field_type(w: _Writer, child: Any) -> str:
    kind = _is_torch_container(child)
    if kind:
        return kind
    if w.user_leaf(child) is not None:
        return "Module"  # the factory's layer, whatever its class
    if id(child) in w.traced:
        return w.traced[id(child)].cls_name
    return type(_modules.convert_module(child)).__name__


def _drop_defaults(fn: Any, kwargs: dict) -> dict:
    """fx records every keyword of a wrapped function; keep those that differ from the default."""
    import inspect

    try:
        sig = inspect.signature(fn).parameters if fn is not None else {}
    except (TypeError, ValueError):
        return dict(kwargs)
    out = {}
    for k, v in kwargs.items():
        p = sig.get(k)
        if p is not None and p.default is not p.empty and type(v) is type(p.default) and _same(v, p.default):
            continue
        if p is not None and p.default is None and v is None:
            continue
        out[k] = v
    return out


def _class_name(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    if name in _RESERVED or name in fnn.__all__ or keyword.iskeyword(name):
        name = name + "_"
    return name


def _indent(body: str) -> str:
    return "\n".join("    " + ln if ln else ln for ln in body.splitlines())


def port(module: Any, *example_inputs: Any, weights: str | os.PathLike | None = None,
         concrete_args: dict[str, Any] | None = None, leaf_modules: dict[type, Any] | None = None) -> str:
    """The source of a funcnets module equal to the torch ``module``.

    Args:
      module: the torch module.
      *example_inputs: accepted for ``from_torch``'s signature (the port is symbolic:
        nothing is run).
      weights: the ``.safetensors`` file ``load()`` reads by default (relative to the
        generated file's folder); ``None``: ``<ModelClass>.safetensors``.
      concrete_args: forward arguments of the root module to fix while tracing.
      leaf_modules: ``{TorchClass: factory}`` as for ``from_torch``: such submodules are not
        traced; the file imports ``factory`` (a module-level function of a module without
        torch) and builds the layer with ``factory(SimpleNamespace(<the submodule's
        hyperparameters>))``.

    Returns:
      Python source: imports (funcnets, jax; no torch), one class per torch module class
      with its own forward (the model's class last), and ``load(path=...) -> (model,
      params, state)``. Write the weights with :func:`write_port`, or with
      ``funcnets.torch_io.save_file(path, module.state_dict())``.

    Raises:
      UnsupportedOperationError: every operation that cannot be written, with its line.
      FuncnetsError: a leaf factory the file cannot import (a lambda, a local function).
    """
    shared = _fx._shared(module)
    if shared:
        raise FuncnetsError(
            f"port: {', '.join(f'{a!r} is the tensor {b!r}' for a, b in shared)} (tied weights or a layer registered "
            f"twice); a port's layers hold their own tensors, so training it would untie them. Use "
            f"funcnets.from_torch, which keeps them one, or untie them in torch first if that is what you want.")
    w = _Writer(module, concrete_args, leaf_modules)
    w.render_all()
    root = w.traced[id(module)]
    classes = [w.class_source(t) for t in _unique_classes(w)]
    weights = weights or f"{root.cls_name}.safetensors"
    header = [f'"""{root.cls_name}: ported from torch ``{type(module).__module__}.{type(module).__qualname__}`` '
              f'by ``funcnets port``.', "",
              f"``load()`` returns ``(model, params, state)`` with the weights of ``{Path(weights).name}``;",
              "``model.apply(params, state, x, train=False, key=None) -> (y, new_state)``.", '"""', "",
              "from __future__ import annotations", "", "import os"]
    if "OrderedDict" in w.uses:
        header += ["from collections import OrderedDict"]
    header += [f"from dataclasses import dataclass{', field' if 'field' in w.uses else ''}", "from pathlib import Path"]
    header += ["from types import SimpleNamespace", ""] if "SimpleNamespace" in w.uses else [""]
    # one third-party block, sorted as ruff's isort does: plain imports, then from-imports
    if "jax" in w.uses:
        header.append("import jax")
    if "jnp" in w.uses:
        header.append("import jax.numpy as jnp")
    header.append("from funcnets import torch_io")
    if "ops" in w.uses:
        header.append("from funcnets.convert import ops")
    layer_names = sorted(w.layer_imports, key=_isort)
    if layer_names:
        line = f"from funcnets.nn import {', '.join(layer_names)}"
        header.append(line if len(line) <= 88 else
                      "from funcnets.nn import (\n" + "".join(f"    {n},\n" for n in layer_names) + ")")
    if "F" in w.uses:
        header.append("from funcnets.nn import functional as F")
    header += ["from funcnets.nn.module import Module, Scope", ""]
    if w.factory_imports:  # the leaf_modules factories: the user's own code
        header += [f"from {mod} import {name}" for mod, name in sorted(w.factory_imports)] + [""]
    header += [
               f'__all__ = [{", ".join(_str(n) for n in sorted([t.cls_name for t in _unique_classes(w)] + ["load"], key=_isort))}]',
               "",
               f"WEIGHTS = Path(__file__).with_name({_str(Path(weights).name)})"]
    load = [
        f"def load(path: str | os.PathLike = WEIGHTS) -> tuple[{root.cls_name}, dict, dict]:",
        f'    """``({root.cls_name}(), params, state)`` with the weights at ``path`` (torch ``state_dict`` names)."""',
        f"    model = {root.cls_name}()",
        "    params, state, _, _ = torch_io.load_weights(path, model, strict=True)",
        "    return model, params, state",
    ]
    src = "\n".join(header) + "\n\n\n" + "\n\n\n".join(classes) + "\n\n\n" + "\n".join(load) + "\n"
    return src


def _isort(name: str) -> tuple:
    """ruff's isort-style order: CONSTANTS, then Classes, then the rest."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _unique_classes(w: _Writer) -> list[_Traced]:
    seen, out = set(), []
    for t in w.order:
        if t.cls_name not in seen:
            seen.add(t.cls_name)
            out.append(t)
    return out


def write_port(module: Any, out: str | os.PathLike, *example_inputs: Any,
               concrete_args: dict[str, Any] | None = None,
               leaf_modules: dict[type, Any] | None = None) -> tuple[Path, Path]:
    """Write :func:`port`'s source to ``out`` and the weights beside it as ``<out stem>.safetensors``.

    Returns:
      ``(source path, weights path)``.
    """
    from funcnets import torch_io

    out = Path(out)
    weights = out.with_suffix(".safetensors")
    src = port(module, *example_inputs, weights=weights.name, concrete_args=concrete_args, leaf_modules=leaf_modules)
    sd = {k: v.detach().cpu().float().numpy() if str(v.dtype) == "torch.bfloat16" else v.detach().cpu().numpy()
          for k, v in module.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_io.save_file(weights, sd, metadata={"format": "pt"})
    out.write_text(src)
    return out, weights


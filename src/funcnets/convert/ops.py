"""The table of torch functions and tensor methods that :func:`funcnets.from_torch` converts.

Each entry is a JAX implementation with torch's signature (the argument names and
defaults of the torch function or ``Tensor`` method it stands for), registered under the
torch names it implements::

    @op("torch.cat", "torch.concat", "torch.concatenate")
    def cat(tensors, dim=0): ...

    @op("torch.sum", method="sum")     # torch.sum(x, 1) and x.sum(1)
    def sum_(input, dim=None, keepdim=False, *, dtype=None): ...

Names are resolved against torch lazily (:func:`function_table`), so importing this
module does not import torch. The implementations are plain module-level functions, so
a source generator (``funcnets port``) can emit ``ops.<name>(...)`` calls from the same
table: :data:`OPS` maps each implementation to the torch names it serves.

Shapes are static in JAX, so ``x.size(0)``, ``x.shape[1:]`` and the Python arithmetic on
them evaluate to plain ints while tracing, exactly as torch's eager values.
"""

from __future__ import annotations

import builtins
import functools
import math
import operator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnets import losses
from funcnets.nn import functional as F
from funcnets.nn import rnn_utils

__all__ = ["Op", "OPS", "METHODS", "INPLACE_METHODS", "INPLACE_FUNCTIONS", "op", "function_table", "needs_key",
           "to_dtype", "resolve", "port_name"]


class Op(NamedTuple):
    """One implementation: the JAX function and the torch names it stands for."""

    fn: Callable
    functions: tuple[str, ...]  # dotted torch names: "torch.cat", "torch.nn.functional.relu", "operator.add"
    methods: tuple[str, ...]  # Tensor method names: "view", "sum"


OPS: dict[str, Op] = {}  # first torch name ("torch.cat", "Tensor.view") -> Op
METHODS: dict[str, Callable] = {}  # Tensor method name -> implementation
_KEYED: set[Callable] = set()  # implementations that take a PRNG ``key`` (dropout)


def op(*functions: str, method: str | tuple[str, ...] = (), keyed: bool = False) -> Callable:
    """Register the decorated function for torch ``functions`` and Tensor ``method``(s)."""
    methods = (method,) if isinstance(method, str) else tuple(method)

    def register(fn: Callable) -> Callable:
        OPS[functions[0] if functions else f"Tensor.{methods[0]}"] = Op(fn, tuple(functions), methods)
        for m in methods:
            METHODS[m] = fn
        if keyed:
            _KEYED.add(fn)
        return fn

    return register


def needs_key(fn: Callable) -> bool:
    """Whether ``fn`` draws random numbers (it is then called with ``_rng=``, a PRNG key)."""
    return fn in _KEYED


@functools.lru_cache(maxsize=None)
def function_table() -> dict[Any, Callable]:
    """``{torch callable: implementation}``, resolving the dotted names (imports torch)."""
    import importlib

    table: dict[Any, Callable] = {}
    for o in OPS.values():
        for name in o.functions:
            mod, _, attr = name.rpartition(".")
            try:
                target = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError):  # a name this torch version lacks
                continue
            table[target] = o.fn
    return table


# ----------------------------------------------------------------------------- dtypes
_DTYPES = {
    "float32": jnp.float32, "float": jnp.float32, "float64": jnp.float64, "double": jnp.float64,
    "float16": jnp.float16, "half": jnp.float16, "bfloat16": jnp.bfloat16, "int64": jnp.int64,
    "long": jnp.int64, "int32": jnp.int32, "int": jnp.int32, "int16": jnp.int16, "int8": jnp.int8,
    "uint8": jnp.uint8, "bool": jnp.bool_, "complex64": jnp.complex64, "complex128": jnp.complex128,
}


def to_dtype(name: str | None):
    """A torch dtype's name (``"float32"``, from ``str(torch.float32)``) as a JAX dtype."""
    if name is None:
        return None
    return jnp.dtype(_DTYPES[name.replace("torch.", "")])


def _dim(dim):
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _shape(size) -> tuple[int, ...]:
    """torch's ``*size`` or ``size`` argument as a tuple."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _float_default():
    return jnp.zeros(()).dtype  # float32, or float64 under jax_enable_x64 (torch's default dtype set to it)


# ----------------------------------------------------------------------------- Python operators
for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_", "xor",
              "lshift", "rshift", "eq", "ne", "lt", "le", "gt", "ge", "neg", "pos", "invert", "abs",
              "getitem", "not_", "truth", "contains", "concat"):
    op(f"operator.{_name}")(getattr(operator, _name))


def _keep_dtype(input, out):
    """torch's in-place ops write into ``input``: the result keeps its dtype (``x += y`` with x
    float32 and y float64 stays float32)."""
    if hasattr(input, "dtype") and hasattr(out, "dtype") and out.dtype != input.dtype:
        return out.astype(input.dtype)
    return out


def _augmented(name: str, fn: Callable) -> None:
    """``x += y`` and friends: the new value of ``x`` (from_torch rebinds every later use of
    the tensor to it); on Python numbers (shape arithmetic) the plain operator."""

    def impl(a, b):
        return _keep_dtype(a, fn(a, b))

    impl.__name__ = impl.__qualname__ = name
    op(f"operator.{name}")(impl)


for _name, _fn in {"iadd": operator.add, "isub": operator.sub, "imul": operator.mul, "itruediv": operator.truediv,
                   "ifloordiv": operator.floordiv, "imod": operator.mod, "ipow": operator.pow, "iand": operator.and_,
                   "ior": operator.or_, "ixor": operator.xor, "ilshift": operator.lshift,
                   "irshift": operator.rshift}.items():
    _augmented(_name, _fn)


@op("operator.getitem")
def getitem(a, b):
    """``x[index]``; a boolean-mask index (``x[x > 0]``) is refused with the reason, while tracing."""
    try:
        return operator.getitem(a, b)
    except jax.errors.NonConcreteBooleanIndexError as e:
        raise TypeError(f"x[mask] with a boolean tensor mask: {DATA_DEPENDENT['masked_select']}") from e


@op("builtins.getattr")
def getattr_(obj, name, *default):
    """``x.shape``/``x.dtype``/``x.T``/``x.ndim`` and attributes of non-tensors."""
    if isinstance(obj, jax.Array) or hasattr(obj, "aval"):
        if name == "device":
            return None
        if name in _TENSOR_ATTRS:
            return _TENSOR_ATTRS[name](obj)
    return builtins.getattr(obj, name, *default)


_TENSOR_ATTRS: dict[str, Callable] = {
    "shape": lambda x: tuple(x.shape), "ndim": lambda x: x.ndim, "dtype": lambda x: x.dtype,
    "T": lambda x: jnp.transpose(x), "mT": lambda x: jnp.swapaxes(x, -1, -2),
    "is_cuda": lambda x: False, "requires_grad": lambda x: True, "data": lambda x: jax.lax.stop_gradient(x),
    "real": jnp.real, "imag": jnp.imag,
}

for _name in ("len", "int", "float", "bool", "min", "max", "abs", "tuple", "list", "range", "round"):
    op(f"builtins.{_name}")(getattr(builtins, _name))
op("math.sqrt")(math.sqrt)
op("math.prod")(math.prod)


# ----------------------------------------------------------------------------- elementwise
def _unary(jfn: Callable, *names: str, method: str | tuple[str, ...] = ()) -> None:
    def impl(input, *, out=None):
        return jfn(input)

    impl.__name__ = names[0].rpartition(".")[2] if names else method
    impl.__qualname__ = impl.__name__
    op(*names, method=method)(impl)


for _t, _j in {
    "abs": jnp.abs, "exp": jnp.exp, "log": jnp.log, "log2": jnp.log2, "log10": jnp.log10, "log1p": jnp.log1p,
    "expm1": jnp.expm1, "sqrt": jnp.sqrt, "rsqrt": jax.lax.rsqrt, "sin": jnp.sin, "cos": jnp.cos, "tan": jnp.tan,
    "asin": jnp.arcsin, "acos": jnp.arccos, "atan": jnp.arctan, "sinh": jnp.sinh, "cosh": jnp.cosh,
    "floor": jnp.floor, "ceil": jnp.ceil, "trunc": jnp.trunc, "sign": jnp.sign, "neg": jnp.negative,
    "negative": jnp.negative, "reciprocal": jnp.reciprocal, "square": jnp.square, "erf": jax.scipy.special.erf,
    "isnan": jnp.isnan, "isinf": jnp.isinf, "isfinite": jnp.isfinite, "logical_not": jnp.logical_not,
    "exp2": jnp.exp2, "frac": lambda x: x - jnp.trunc(x), "erfinv": jax.scipy.special.erfinv,
}.items():
    _unary(_j, f"torch.{_t}", method=_t)
op("torch.sigmoid", "torch.nn.functional.sigmoid", method="sigmoid")(F.sigmoid)
op("torch.tanh", "torch.nn.functional.tanh", method="tanh")(F.tanh)
op("torch.relu", "torch.nn.functional.relu", method="relu")(F.relu)


def _binary(jfn: Callable, name: str, *aliases: str) -> None:
    def impl(input, other, *, out=None):
        return jfn(input, other)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.{name}", *(f"torch.{a}" for a in aliases), method=(name, *aliases))(impl)


for _t, _j in {"mul": jnp.multiply, "sub": jnp.subtract, "maximum": jnp.maximum, "minimum": jnp.minimum,
               "eq": jnp.equal, "ne": jnp.not_equal, "lt": jnp.less, "le": jnp.less_equal, "gt": jnp.greater,
               "ge": jnp.greater_equal, "logical_and": jnp.logical_and, "logical_or": jnp.logical_or,
               "fmod": jnp.fmod, "remainder": jnp.remainder, "atan2": jnp.arctan2, "pow": jnp.power,
               "floor_divide": jnp.floor_divide, "bitwise_and": jnp.bitwise_and, "bitwise_or": jnp.bitwise_or}.items():
    _binary(_j, _t, *{"mul": ("multiply",), "sub": ("subtract",)}.get(_t, ()))


@op("torch.add", method="add")
def add(input, other, *, alpha=1, out=None):
    return input + (other if alpha == 1 else alpha * other)


@op("torch.rsub", method="rsub")
def rsub(input, other, *, alpha=1):
    return other - (input if alpha == 1 else alpha * input)


@op("torch.div", "torch.divide", "torch.true_divide", method=("div", "divide", "true_divide"))
def div(input, other, *, rounding_mode=None, out=None):
    q = jnp.true_divide(input, other)
    if rounding_mode == "floor":
        return jnp.floor(q) if jnp.issubdtype(q.dtype, jnp.floating) and not _both_int(input, other) else input // other
    if rounding_mode == "trunc":
        return jnp.trunc(q).astype(jnp.result_type(input, other)) if _both_int(input, other) else jnp.trunc(q)
    return q


def _both_int(a, b) -> bool:
    return all(jnp.issubdtype(jnp.result_type(v), jnp.integer) for v in (a, b))


@op("torch.clamp", "torch.clip", method=("clamp", "clip"))
def clamp(input, min=None, max=None, *, out=None):
    if min is not None:
        input = jnp.maximum(input, min)
    if max is not None:
        input = jnp.minimum(input, max)
    return input


op("torch.clamp_min", method="clamp_min")(lambda input, min: jnp.maximum(input, min))
op("torch.clamp_max", method="clamp_max")(lambda input, max: jnp.minimum(input, max))


@op("torch.where", method="where")
def where(condition, input=None, other=None):
    if input is None:
        raise TypeError("torch.where(condition) (the indices form) has a data-dependent shape; use the three-argument form")
    return jnp.where(condition, input, other)


@op("torch.masked_fill", method="masked_fill")
def masked_fill(input, mask, value):
    return jnp.where(mask, jnp.asarray(value, input.dtype), input)


@op("torch.lerp", method="lerp")
def lerp(input, end, weight):
    return input + weight * (end - input)


@op("torch.nan_to_num", method="nan_to_num")
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    return jnp.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf)


# ----------------------------------------------------------------------------- products
@op("torch.matmul", method="matmul")
def matmul(input, other, *, out=None):
    return jnp.matmul(input, other)


@op("torch.mm", "torch.bmm", method=("mm", "bmm"))
def mm(input, mat2, *, out=None):
    return jnp.matmul(input, mat2)


@op("torch.einsum")
def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return jnp.einsum(equation, *operands, precision=jax.lax.Precision.HIGHEST)


def _beta(input, beta):
    return 0 if beta == 0 else beta * input  # torch ignores input for beta=0 (its NaN does not propagate)


@op("torch.addmm", method="addmm")
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    return _beta(input, beta) + alpha * jnp.matmul(mat1, mat2)


@op("torch.baddbmm", method="baddbmm")
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    return _beta(input, beta) + alpha * jnp.matmul(batch1, batch2)


@op("torch.addbmm", method="addbmm")
def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    return _beta(input, beta) + alpha * jnp.sum(jnp.matmul(batch1, batch2), axis=0)


@op("torch.addmv", method="addmv")
def addmv(input, mat, vec, *, beta=1, alpha=1):
    return _beta(input, beta) + alpha * jnp.matmul(mat, vec)


@op("torch.addcmul", method="addcmul")
def addcmul(input, tensor1, tensor2, *, value=1):
    return input + value * tensor1 * tensor2


@op("torch.addcdiv", method="addcdiv")
def addcdiv(input, tensor1, tensor2, *, value=1):
    return input + value * tensor1 / tensor2


op("torch.mv", "torch.dot", method=("mv", "dot"))(lambda input, other: jnp.matmul(input, other))
op("torch.inner", method="inner")(lambda input, other: jnp.inner(input, other))
op("torch.kron", method="kron")(lambda input, other: jnp.kron(input, other))


@op("torch.outer", method="outer")
def outer(input, vec2):
    return jnp.outer(input, vec2)


@op("torch.nn.functional.linear")
def linear(input, weight, bias=None):
    return F.linear(input, weight, bias)


# ----------------------------------------------------------------------------- reductions
def _reduce(jfn: Callable, name: str) -> None:
    def impl(input, dim=None, keepdim=False, *, dtype=None, out=None):
        x = input if dtype is None else input.astype(dtype)
        if name in ("sum", "prod") and jnp.issubdtype(x.dtype, jnp.bool_):
            x = x.astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)  # torch sums bools as int64
        return jfn(x, axis=_dim(dim), keepdims=keepdim)

    impl.__name__ = impl.__qualname__ = f"{name}_"
    op(f"torch.{name}", method=name)(impl)


for _t, _j in {"sum": jnp.sum, "mean": jnp.mean, "prod": jnp.prod, "amax": jnp.max, "amin": jnp.min,
               "all": jnp.all, "any": jnp.any, "nansum": jnp.nansum, "logsumexp": jax.scipy.special.logsumexp}.items():
    _reduce(_j, _t)


def _max_min(input, dim, keepdim, other, jreduce, jarg, jpair):
    if dim is None:
        return jreduce(input)
    if not isinstance(dim, int):  # torch.max(a, b): elementwise
        return jpair(input, dim)
    values = jreduce(input, axis=dim, keepdims=keepdim)
    indices = jarg(input, axis=dim, keepdims=keepdim)
    return _MaxMin(values, indices)


class _MaxMin(NamedTuple):  # torch.return_types.max: .values, .indices, and unpacks as a pair
    values: Any
    indices: Any


@op("torch.max", method="max")
def max_(input, dim=None, keepdim=False, *, other=None):
    return _max_min(input, dim, keepdim, other, jnp.max, jnp.argmax, jnp.maximum)


@op("torch.min", method="min")
def min_(input, dim=None, keepdim=False, *, other=None):
    return _max_min(input, dim, keepdim, other, jnp.min, jnp.argmin, jnp.minimum)


@op("torch.argmax", method="argmax")
def argmax(input, dim=None, keepdim=False):
    return jnp.argmax(input, axis=dim, keepdims=keepdim) if dim is not None else jnp.argmax(input)


@op("torch.argmin", method="argmin")
def argmin(input, dim=None, keepdim=False):
    return jnp.argmin(input, axis=dim, keepdims=keepdim) if dim is not None else jnp.argmin(input)


def _correction(unbiased, correction) -> float:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


@op("torch.var", method="var")
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, (int, tuple, list)) and not isinstance(unbiased, bool):  # var(x, dim, keepdim)
        dim, unbiased = unbiased, None
    return jnp.var(input, axis=_dim(dim), ddof=_correction(unbiased, correction), keepdims=keepdim)


@op("torch.std", method="std")
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return jnp.sqrt(var(input, dim, unbiased, keepdim, correction=correction))


@op("torch.norm", method="norm")
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    x = jnp.abs(input)
    axis = _dim(dim)
    if p == float("inf"):
        return jnp.max(x, axis=axis, keepdims=keepdim)
    if p == 1:
        return jnp.sum(x, axis=axis, keepdims=keepdim)
    if p == 0:
        return jnp.sum(x != 0, axis=axis, keepdims=keepdim).astype(x.dtype)
    p = 2 if p == "fro" else p
    s = jnp.sum(x * x if p == 2 else x**p, axis=axis, keepdims=keepdim)
    # torch's gradient of a zero norm (an all-zero row, padding) is zero; s ** (1/p)'s would be NaN
    nonzero = s > 0
    safe = jnp.where(nonzero, s, 1)
    return jnp.where(nonzero, jnp.sqrt(safe) if p == 2 else safe ** (1.0 / p), 0)


@op("torch.cumsum", method="cumsum")
def cumsum(input, dim, *, dtype=None):
    return jnp.cumsum(input, axis=dim, dtype=dtype)


@op("torch.cumprod", method="cumprod")
def cumprod(input, dim, *, dtype=None):
    return jnp.cumprod(input, axis=dim, dtype=dtype)


@op("torch.topk", method="topk")
def topk(input, k, dim=-1, largest=True, sorted=True):
    x = jnp.moveaxis(input, dim, -1)
    v, i = jax.lax.top_k(x if largest else -x, k)
    return _MaxMin(jnp.moveaxis(v if largest else -v, -1, dim), jnp.moveaxis(i, -1, dim))


@op("torch.round", method="round")
def round_(input, *, decimals=0):
    return jnp.round(input, decimals)  # half to even, as torch


@op("torch.sort", method="sort")
def sort(input, dim=-1, descending=False, *, stable=False):
    # stable either way: torch's CPU sort keeps equal elements in order, NaN sorts as the largest
    i = jnp.argsort(input, axis=dim, descending=descending, stable=True)
    return _MaxMin(jnp.take_along_axis(input, i, axis=dim), i)


# ----------------------------------------------------------------------------- shape
@op("torch.cat", "torch.concat", "torch.concatenate")
def cat(tensors, dim=0, *, out=None):
    return jnp.concatenate(list(tensors), axis=dim)


@op("torch.stack")
def stack(tensors, dim=0, *, out=None):
    return jnp.stack(list(tensors), axis=dim)


@op("torch.split", method="split")
def split(tensor, split_size_or_sections, dim=0):
    n = tensor.shape[dim]
    if isinstance(split_size_or_sections, int):
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
    return tuple(jnp.split(tensor, np.cumsum(sizes)[:-1].tolist(), axis=dim))


@op("torch.chunk", method="chunk")
def chunk(input, chunks, dim=0):
    size = -(-input.shape[dim] // chunks)
    return split(input, size, dim)


@op("torch.unbind", method="unbind")
def unbind(input, dim=0):
    return tuple(jnp.moveaxis(input, dim, 0))


@op(method=("view", "reshape"))
def view(input, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int)):  # x.view(torch.float32)
        return jax.lax.bitcast_convert_type(input, shape[0])
    return jnp.reshape(input, _shape(shape))


@op("torch.reshape")
def reshape(input, shape):
    return jnp.reshape(input, tuple(shape))


@op(method=("view_as", "reshape_as"))
def view_as(input, other):
    return jnp.reshape(input, other.shape)


@op("torch.flatten", method="flatten")
def flatten(input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        return jnp.reshape(input, (1,))
    return F.flatten(input, start_dim, end_dim)


@op("torch.unflatten", method="unflatten")
def unflatten(input, dim, sizes):
    return F.unflatten(input, dim, tuple(sizes))


@op("torch.permute", method="permute")
def permute(input, *dims):
    return jnp.transpose(input, _shape(dims) if dims and not isinstance(dims[0], int) or len(dims) > 1 else dims)


@op("torch.transpose", "torch.swapaxes", "torch.swapdims", method=("transpose", "swapaxes", "swapdims"))
def transpose(input, dim0, dim1):
    return jnp.swapaxes(input, dim0, dim1)


@op("torch.t", method="t")
def t(input):
    return input.T


@op("torch.movedim", "torch.moveaxis", method=("movedim", "moveaxis"))
def movedim(input, source, destination):
    return jnp.moveaxis(input, source, destination)


@op("torch.squeeze", method="squeeze")
def squeeze(input, dim=None):
    if dim is None:
        return jnp.squeeze(input)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    dims = tuple(d % max(input.ndim, 1) for d in dims if input.ndim and input.shape[d] == 1)  # torch: no-op if not 1
    return jnp.squeeze(input, dims) if dims else input


@op("torch.unsqueeze", method="unsqueeze")
def unsqueeze(input, dim):
    return jnp.expand_dims(input, dim)


@op(method="expand")
def expand(input, *sizes):
    sizes = _shape(sizes)
    lead = len(sizes) - input.ndim
    target = tuple(input.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return jnp.broadcast_to(input, target)


@op("torch.broadcast_to", method="broadcast_to")
def broadcast_to(input, size):
    return expand(input, *size)


@op(method="expand_as")
def expand_as(input, other):
    return jnp.broadcast_to(input, other.shape)


@op(method="repeat")
def repeat(input, *sizes):
    sizes = _shape(sizes)
    x = jnp.reshape(input, (1,) * (len(sizes) - input.ndim) + tuple(input.shape))
    return jnp.tile(x, sizes)


@op("torch.tile", method="tile")
def tile(input, dims):
    return jnp.tile(input, tuple(dims))


@op("torch.repeat_interleave", method="repeat_interleave")
def repeat_interleave(input, repeats, dim=None, *, output_size=None):
    if not isinstance(repeats, int):
        raise TypeError("repeat_interleave with a tensor of repeats has a data-dependent shape")
    return jnp.repeat(input, repeats, axis=dim)


@op("torch.flip", method="flip")
def flip(input, dims):
    return jnp.flip(input, axis=_dim(dims))


@op("torch.roll", method="roll")
def roll(input, shifts, dims=None):
    return jnp.roll(input, shifts, axis=_dim(dims))


@op("torch.narrow", method="narrow")
def narrow(input, dim, start, length):
    return jax.lax.slice_in_dim(input, start, start + length, axis=dim)


@op("torch.select", method="select")
def select(input, dim, index):
    return jnp.take(input, index, axis=dim)


@op("torch.index_select", method="index_select")
def index_select(input, dim, index):
    return jnp.take(input, index, axis=dim)


def _along(index, dim: int) -> tuple:
    """Full indices for torch's gather/scatter: ``index`` along ``dim``, the position elsewhere."""
    dim = dim % index.ndim
    return tuple(index if d == dim else jax.lax.broadcasted_iota(index.dtype, index.shape, d)
                 for d in range(index.ndim))


@op("torch.gather", method="gather")
def gather(input, dim, index, *, sparse_grad=False):
    # index may be smaller than input in the other dimensions too (torch reads that corner)
    return input[_along(index, dim)]


@op("torch.scatter", method="scatter")
def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    if reduce is not None:
        raise TypeError("scatter(..., reduce=) is deprecated in torch; use scatter_reduce")
    src = value if src is None else src
    if not jnp.ndim(src):
        return input.at[_along(index, dim)].set(jnp.asarray(src, input.dtype))
    return input.at[_along(index, dim)].set(src[tuple(slice(0, n) for n in index.shape)])


@op("torch.scatter_add", method="scatter_add")
def scatter_add(input, dim, index, src):
    return input.at[_along(index, dim)].add(src[tuple(slice(0, n) for n in index.shape)])


@op("torch.tril", method="tril")
def tril(input, diagonal=0):
    return jnp.tril(input, diagonal)


@op("torch.triu", method="triu")
def triu(input, diagonal=0):
    return jnp.triu(input, diagonal)


@op(method="contiguous")
def contiguous(input, memory_format=None):
    return input


@op("torch.clone", method="clone")
def clone(input, *, memory_format=None):
    return input


@op("torch.detach", method="detach")
def detach(input):
    return jax.lax.stop_gradient(input)


@op(method="size")
def size(input, dim=None):
    return tuple(input.shape) if dim is None else input.shape[dim]


@op("torch.numel", method=("numel", "nelement"))
def numel(input):
    return int(np.prod(input.shape))


@op(method=("dim", "ndimension"))
def dim_(input):
    return input.ndim


# ----------------------------------------------------------------------------- dtype conversions
@op(method="to")
def to(input, *args, **kwargs):
    dtype = kwargs.get("dtype")
    for a in args:
        if isinstance(a, jnp.dtype):
            dtype = a
        elif hasattr(a, "dtype") and hasattr(a, "shape"):  # x.to(other)
            dtype = a.dtype
    return input if dtype is None else input.astype(dtype)


@op(method="type_as")
def type_as(input, other):
    return input.astype(other.dtype)


@op(method="type")
def type_(input, dtype=None):
    return input.astype(dtype)


for _m, _d in {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16",
               "long": "int64", "int": "int32", "bool": "bool", "short": "int16"}.items():
    def _cast(input, memory_format=None, *, _d=_d):
        return input.astype(to_dtype(_d))

    _cast.__name__ = _cast.__qualname__ = f"{_m}_"
    op(method=_m)(_cast)
op(method=("cpu", "cuda"))(lambda input, *a, **k: input)


# ----------------------------------------------------------------------------- creation
def _like(fill: Callable) -> Callable:
    def impl(input, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
        return fill(input.shape, dtype or input.dtype)

    return impl


op("torch.zeros_like")(_like(jnp.zeros))
op("torch.ones_like")(_like(jnp.ones))


@op("torch.full_like")
def full_like(input, fill_value, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    return jnp.full(input.shape, fill_value, dtype or input.dtype)


@op("torch.randn_like", "torch.rand_like", keyed=True)
def random_like(input, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None, _rng=None):
    raise TypeError("randn_like/rand_like draw from torch's generator; funcnets cannot reproduce those numbers")


@op(method="new_zeros")
def new_zeros(input, *size, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.zeros(_shape(size), dtype or input.dtype)


@op(method="new_ones")
def new_ones(input, *size, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.ones(_shape(size), dtype or input.dtype)


@op(method="new_full")
def new_full(input, size, fill_value, *, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.full(tuple(size), fill_value, dtype or input.dtype)


@op("torch.zeros")
def zeros(*size, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.zeros(_shape(size), dtype or _float_default())


@op("torch.ones")
def ones(*size, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.ones(_shape(size), dtype or _float_default())


@op("torch.full")
def full(size, fill_value, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = _float_default() if isinstance(fill_value, float) else None
    return jnp.full(tuple(size), fill_value, dtype)


@op("torch.arange")
def arange(start, end=None, step=1, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None and all(isinstance(v, int) for v in (start, end, step)):
        dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
    return jnp.arange(start, end, step, dtype=dtype or _float_default())


@op("torch.linspace")
def linspace(start, end, steps, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.linspace(start, end, steps, dtype=dtype or _float_default())


@op("torch.eye")
def eye(n, m=None, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.eye(n, m, dtype=dtype or _float_default())


@op("torch.tensor", "torch.as_tensor")
def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False):
    return jnp.asarray(data, dtype)


# ----------------------------------------------------------------------------- packed sequences
# kept padded (funcnets.nn.rnn_utils); the RNN layers take them as torch's do

op("torch.nn.utils.rnn.pack_padded_sequence")(rnn_utils.pack_padded_sequence)
op("torch.nn.utils.rnn.pad_packed_sequence")(rnn_utils.pad_packed_sequence)


# ----------------------------------------------------------------------------- torch.nn.functional
def _functional(name: str, *extra: str) -> None:
    """``torch.nn.functional.<name>`` → ``funcnets.nn.functional.<name>`` (same signature)."""
    op(f"torch.nn.functional.{name}", *extra)(getattr(F, name))


for _name in ("relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish", "hardsigmoid",
              "hardtanh", "softplus", "softsign", "threshold", "prelu",
              "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "pad",
              "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
              "adaptive_avg_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d", "max_unpool1d", "max_unpool2d",
              "max_unpool3d", "layer_norm", "group_norm", "rms_norm", "local_response_norm", "embedding",
              "embedding_bag", "one_hot", "interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle", "fold",
              "unfold", "cosine_similarity", "pairwise_distance", "pdist", "logsigmoid", "hardshrink", "softshrink",
              "tanhshrink", "glu", "grid_sample", "affine_grid"):
    _functional(_name)


@op("torch.nn.functional.rrelu", keyed=True)
def rrelu(input, lower=1.0 / 8.0, upper=1.0 / 3.0, training=False, inplace=False, *, _rng=None):
    return F.rrelu(input, lower, upper, training, key=_rng)


for _name in ("selu", "celu", "prelu", "pixel_shuffle", "pixel_unshuffle", "conv1d", "conv2d", "conv3d", "layer_norm",
              "group_norm", "cosine_similarity", "pairwise_distance", "pdist"):
    # torch.selu etc. are the same functions under torch's namespace
    _k = f"torch.nn.functional.{_name}"
    OPS[_k] = OPS[_k]._replace(functions=OPS[_k].functions + (f"torch.{_name}",))


def _pool_with_indices(name: str) -> None:
    fn = getattr(F, name)

    def impl(*args, **kwargs):
        return fn(*args, **kwargs)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.nn.functional.{name}", f"torch.nn.functional.{name}_with_indices", f"torch.{name}")(impl)


for _name in ("max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
              "adaptive_max_pool3d"):
    _pool_with_indices(_name)


def _softmax_like(name: str) -> None:
    fn = getattr(F, name)

    def impl(input, dim=None, _stacklevel=3, dtype=None):
        return fn(input, dim, dtype=dtype)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.nn.functional.{name}", f"torch.{name}", method=name)(impl)


for _name in ("softmax", "log_softmax", "softmin"):
    _softmax_like(_name)


def _dropout_like(name: str) -> None:
    fn = getattr(F, name)

    def impl(input, p=0.5, training=True, inplace=False, *, _rng=None):
        return fn(input, p, training, _rng)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.nn.functional.{name}", f"torch.{name}", keyed=True)(impl)


for _name in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"):
    _dropout_like(_name)


@op("torch.nn.functional.batch_norm", "torch.batch_norm")
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-05):
    """The normalised output; torch's in-place update of the running statistics passed in
    is not made (use ``nn.BatchNorm*d`` modules, whose buffers are returned as new state)."""
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)[0]


@op("torch.nn.functional.instance_norm", "torch.instance_norm")
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-05):
    return F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)[0]


@op("torch.nn.functional.normalize")
def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    n = norm(input, p, dim, keepdim=True)
    return input / jnp.maximum(n, eps)


@op("torch.nn.functional.scaled_dot_product_attention", keyed=True)
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, _rng=None):
    return F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                                          dropout_key=_rng)



# ----------------------------------------------------------------------------- torchvision's fx-wrapped helpers
@op("torch._assert", "torch._assert_async")
def assert_(condition, message=""):
    """Shapes are static here: the condition is a Python bool while tracing, checked as torch does."""
    if isinstance(condition, (bool, np.bool_)) and not condition:
        raise AssertionError(message)


@op("torchvision.ops.stochastic_depth.stochastic_depth", "torchvision.ops.stochastic_depth", keyed=True)
def stochastic_depth(input, p, mode, training=True, *, _rng=None):
    """torchvision's row/batch drop of residual branches, scaled by 1/(1 - p) when kept
    (``funcnets.models._ops.stochastic_depth``, which the zoo models use)."""
    from funcnets.models._ops import stochastic_depth as _stochastic_depth  # late: models import nn

    return _stochastic_depth(input, p, mode, training, _rng)


@op("torchvision.models.swin_transformer._patch_merging_pad")
def patch_merging_pad(x):
    """Swin's patch merging: pad H, W to even, then the four interleaved 2x2 neighbours on channels."""
    h, w = x.shape[-3], x.shape[-2]
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(0, h % 2), (0, w % 2), (0, 0)])
    parts = [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]]
    return jnp.concatenate(parts, axis=-1)


@op("torchvision.models.swin_transformer._get_relative_position_bias")
def get_relative_position_bias(relative_position_bias_table, relative_position_index, window_size):
    """``(1, heads, N, N)`` from the bias table, N = window_size[0] * window_size[1]."""
    n = window_size[0] * window_size[1]
    bias = jnp.take(relative_position_bias_table, relative_position_index, axis=0)
    return jnp.transpose(jnp.reshape(bias, (n, n, -1)), (2, 0, 1))[None]


@op("torchvision.models.swin_transformer.shifted_window_attention", keyed=True)
def shifted_window_attention(input, qkv_weight, proj_weight, relative_position_bias, window_size, num_heads,
                             shift_size, attention_dropout=0.0, dropout=0.0, qkv_bias=None, proj_bias=None,
                             logit_scale=None, training=True, *, _rng=None):
    """torchvision's (shifted) window multi-head self-attention, ``input: (B, H, W, C)``, as its source does."""
    b, h, w, c = input.shape
    ws = list(window_size)
    pad_r, pad_b = (ws[1] - w % ws[1]) % ws[1], (ws[0] - h % ws[0]) % ws[0]
    x = jnp.pad(input, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
    ph, pw = x.shape[1], x.shape[2]
    shift = list(shift_size)
    if ws[0] >= ph:
        shift[0] = 0
    if ws[1] >= pw:
        shift[1] = 0
    if sum(shift) > 0:
        x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
    nw = (ph // ws[0]) * (pw // ws[1])
    x = jnp.reshape(x, (b, ph // ws[0], ws[0], pw // ws[1], ws[1], c))
    x = jnp.reshape(jnp.transpose(x, (0, 1, 3, 2, 4, 5)), (b * nw, ws[0] * ws[1], c))
    if logit_scale is not None and qkv_bias is not None:
        length = qkv_bias.shape[0] // 3
        qkv_bias = qkv_bias.at[length:2 * length].set(0)
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = jnp.transpose(jnp.reshape(qkv, (x.shape[0], x.shape[1], 3, num_heads, c // num_heads)), (2, 0, 3, 1, 4))
    q, k, v = qkv[0], qkv[1], qkv[2]
    hi = jax.lax.Precision.HIGHEST
    if logit_scale is not None:
        attn = jnp.matmul(normalize(q, dim=-1), jnp.swapaxes(normalize(k, dim=-1), -2, -1), precision=hi)
        attn = attn * jnp.exp(jnp.minimum(logit_scale, math.log(100.0)))
    else:
        attn = jnp.matmul(q * (c // num_heads) ** -0.5, jnp.swapaxes(k, -2, -1), precision=hi)
    attn = attn + relative_position_bias
    if sum(shift) > 0:
        mask = np.zeros((ph, pw), np.float32)
        count = 0
        for hs in ((0, -ws[0]), (-ws[0], -shift[0]), (-shift[0], None)):
            for wsl in ((0, -ws[1]), (-ws[1], -shift[1]), (-shift[1], None)):
                mask[hs[0]:hs[1], wsl[0]:wsl[1]] = count
                count += 1
        mask = mask.reshape(ph // ws[0], ws[0], pw // ws[1], ws[1]).transpose(0, 2, 1, 3).reshape(nw, -1)
        mask = mask[:, None, :] - mask[:, :, None]
        mask = np.where(mask != 0, -100.0, 0.0).astype(np.float32)
        attn = jnp.reshape(attn, (x.shape[0] // nw, nw, num_heads, x.shape[1], x.shape[1]))
        attn = jnp.reshape(attn + jnp.asarray(mask, attn.dtype)[None, :, None], (-1, num_heads, x.shape[1], x.shape[1]))
    k1, k2 = (None, None) if _rng is None else jax.random.split(_rng)
    attn = F.dropout(F.softmax(attn, -1), attention_dropout, training, k1)
    x = jnp.reshape(jnp.swapaxes(jnp.matmul(attn, v, precision=hi), 1, 2), (x.shape[0], x.shape[1], c))
    x = F.dropout(F.linear(x, proj_weight, proj_bias), dropout, training, k2)
    x = jnp.reshape(x, (b, ph // ws[0], pw // ws[1], ws[0], ws[1], c))
    x = jnp.reshape(jnp.transpose(x, (0, 1, 3, 2, 4, 5)), (b, ph, pw, c))
    if sum(shift) > 0:
        x = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))
    return x[:, :h, :w, :]


# ----------------------------------------------------------------------------- more of torch's functions
op("torch.absolute", method="absolute")(lambda input: jnp.abs(input))
op("torch.deg2rad", method="deg2rad")(lambda input: jnp.deg2rad(input))
op("torch.rad2deg", method="rad2deg")(lambda input: jnp.rad2deg(input))
op("torch.lgamma", method="lgamma")(lambda input: jax.scipy.special.gammaln(input))
op("torch.logaddexp", method="logaddexp")(lambda input, other: jnp.logaddexp(input, other))
op("torch.xlogy", method="xlogy")(lambda input, other: jax.scipy.special.xlogy(input, other))
op("torch.logcumsumexp", method="logcumsumexp")(lambda input, dim: jax.lax.cumlogsumexp(input, axis=dim % input.ndim))
op("torch.fliplr", method="fliplr")(lambda input: jnp.flip(input, 1))
op("torch.flipud", method="flipud")(lambda input: jnp.flip(input, 0))
op("torch.trace", method="trace")(lambda input: jnp.trace(input))
op("torch.diag", method="diag")(lambda input, diagonal=0: jnp.diag(input, diagonal))
op("torch.hstack")(lambda tensors: jnp.hstack(list(tensors)))
op("torch.vstack")(lambda tensors: jnp.vstack(list(tensors)))
op("torch.broadcast_tensors")(lambda *tensors: tuple(jnp.broadcast_arrays(*tensors)))


@op("torch.diagonal", method="diagonal")
def diagonal(input, offset=0, dim1=0, dim2=1):
    return jnp.diagonal(input, offset, dim1, dim2)  # the diagonal last, as torch


@op("torch.diag_embed", method="diag_embed")
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    out = jnp.vectorize(lambda v: jnp.diag(v, offset), signature="(k)->(n,n)")(input)
    return jnp.moveaxis(out, (-2, -1), (dim1, dim2))


@op("torch.diff", method="diff")
def diff(input, n=1, dim=-1, prepend=None, append=None):
    return jnp.diff(input, n=n, axis=dim, prepend=prepend, append=append)


@op("torch.rot90", method="rot90")
def rot90(input, k=1, dims=(0, 1)):
    return jnp.rot90(input, k, axes=tuple(dims))


@op("torch.isclose", method="isclose")
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return jnp.isclose(input, other, rtol=rtol, atol=atol, equal_nan=equal_nan)


@op("torch.nanmean", method="nanmean")
def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    return jnp.nanmean(input, axis=_dim(dim), keepdims=keepdim, dtype=dtype)


@op("torch.count_nonzero", method="count_nonzero")
def count_nonzero(input, dim=None):
    return jnp.count_nonzero(input, axis=_dim(dim))


@op("torch.var_mean")
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, (int, tuple, list)) and not isinstance(unbiased, bool):  # var_mean(x, dim, keepdim)
        dim, unbiased = unbiased, None
    return var(input, dim, unbiased, keepdim, correction=correction), jnp.mean(input, axis=_dim(dim), keepdims=keepdim)


@op("torch.std_mean")
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    v, m = var_mean(input, dim, unbiased, keepdim, correction=correction)
    return jnp.sqrt(v), m


class _MinMax(NamedTuple):  # torch.return_types.aminmax
    min: Any
    max: Any


@op("torch.aminmax", method="aminmax")
def aminmax(input, *, dim=None, keepdim=False):
    return _MinMax(jnp.min(input, axis=dim, keepdims=keepdim), jnp.max(input, axis=dim, keepdims=keepdim))


@op("torch.argsort", method="argsort")
def argsort(input, dim=-1, descending=False, *, stable=False):
    return jnp.argsort(input, axis=dim, descending=descending, stable=True)


@op("torch.take_along_dim", method="take_along_dim")
def take_along_dim(input, indices, dim=None):
    if dim is None:
        return jnp.take_along_axis(input.reshape(-1), indices.reshape(-1), axis=0)
    shape = jnp.broadcast_shapes(input.shape[:dim % input.ndim] + (1,) + input.shape[dim % input.ndim + 1:],
                                 indices.shape[:dim % input.ndim] + (1,) + indices.shape[dim % input.ndim + 1:])
    ax = dim % input.ndim
    x = jnp.broadcast_to(input, shape[:ax] + (input.shape[ax],) + shape[ax + 1:])
    i = jnp.broadcast_to(indices, shape[:ax] + (indices.shape[ax],) + shape[ax + 1:])
    return jnp.take_along_axis(x, i, axis=ax)


@op("torch.tensor_split", method="tensor_split")
def tensor_split(input, indices_or_sections, dim=0):
    if isinstance(indices_or_sections, int):
        return tuple(jnp.array_split(input, indices_or_sections, axis=dim))
    return tuple(jnp.split(input, list(indices_or_sections), axis=dim))


@op("torch.cross", "torch.linalg.cross", method="cross")
def cross(input, other, dim=None):
    if dim is None:  # torch.cross: the first dimension of size 3
        dim = next(i for i, n in enumerate(jnp.broadcast_shapes(input.shape, other.shape)) if n == 3)
    return jnp.cross(input, other, axis=dim)


@op("torch.cdist")
def cdist(x1, x2, p=2.0, compute_mode=None):
    return norm(x1[..., :, None, :] - x2[..., None, :, :], p, dim=-1)


@op("torch.meshgrid")
def meshgrid(*tensors, indexing=None):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    return tuple(jnp.meshgrid(*tensors, indexing=indexing or "ij"))  # torch's default is "ij"


@op(method="index_fill")
def index_fill(input, dim, index, value):
    return input.at[(slice(None),) * (dim % input.ndim) + (index,)].set(jnp.asarray(value, input.dtype))


@op(method="unfold")
def unfold(input, dimension, size, step):
    """``x.unfold(dim, size, step)``: the windows along ``dim``, each window's elements last."""
    d = dimension % input.ndim
    starts = jnp.arange((input.shape[d] - size) // step + 1) * step
    windows = jnp.take(input, starts[:, None] + jnp.arange(size)[None, :], axis=d)
    return jnp.moveaxis(windows, d + 1, -1)


# ----------------------------------------------------------------------------- special functions
@op("torch.logit", "torch.special.logit", method="logit")
def logit(input, eps=None, *, out=None):
    """``log(p / (1 - p))``; with ``eps``, ``p`` clamped to ``[eps, 1 - eps]`` first (zero gradient outside)."""
    if eps is not None:
        input = jnp.clip(input, eps, 1 - eps)
    return jnp.log(input / (1 - input))


op("torch.special.expit")(F.sigmoid)
op("torch.special.erf")(jax.scipy.special.erf)
op("torch.erfc", "torch.special.erfc", method="erfc")(lambda input, *, out=None: jax.scipy.special.erfc(input))
op("torch.hypot", method="hypot")(lambda input, other, *, out=None: jnp.hypot(input, other))
op("torch.sinc", "torch.special.sinc", method="sinc")(lambda input, *, out=None: jnp.sinc(input))  # sin(pi x)/(pi x)
op("torch.signbit", method="signbit")(lambda input, *, out=None: jnp.signbit(input))


@op("torch.heaviside", method="heaviside")
def heaviside(input, values, *, out=None):
    """0 where ``input < 0``, ``values`` where it is 0, 1 where ``> 0`` (torch has no gradient for it)."""
    return jnp.heaviside(input, values)


@op("torch.tensordot")
def tensordot(a, b, dims=2, out=None):
    """torch's ``dims``: an int (the last/first ``dims`` axes) or two lists of axes."""
    if isinstance(dims, int) or (hasattr(dims, "ndim") and dims.ndim == 0):
        axes = int(dims)
    else:
        axes = tuple(tuple(int(i) for i in np.atleast_1d(np.asarray(d))) for d in dims)
    return jnp.tensordot(a, b, axes, precision=jax.lax.Precision.HIGHEST)


@op("torch.isin")
def isin(elements, test_elements, *, assume_unique=False, invert=False):
    return jnp.isin(elements, test_elements, invert=invert)


# ----------------------------------------------------------------------------- order statistics
def _lower_median(input, dim, keepdim, ignore_nan):
    """torch's median: the lower of the two middle values (no averaging), and its index."""
    x = jnp.moveaxis(input, dim, -1)
    i = jnp.argsort(x, axis=-1, stable=True)  # NaN last
    s = jnp.take_along_axis(x, i, axis=-1)
    nan = jnp.isnan(x)
    if ignore_nan:  # nanmedian: the lower middle of the non-NaN values (NaN when all are)
        k = jnp.maximum((jnp.sum(~nan, axis=-1, keepdims=True) - 1) // 2, 0)
    else:  # median: NaN if any, at the first NaN's index
        k = jnp.where(jnp.any(nan, axis=-1, keepdims=True), jnp.argmax(nan, axis=-1, keepdims=True),
                      (x.shape[-1] - 1) // 2)
        i = jnp.where(jnp.any(nan, axis=-1, keepdims=True), jnp.arange(x.shape[-1]), i)
        s = jnp.where(jnp.any(nan, axis=-1, keepdims=True), x, s)
    idx = jnp.take_along_axis(i, k, axis=-1)
    values = jnp.take_along_axis(s, k, axis=-1)
    if keepdim:
        return _MaxMin(jnp.moveaxis(values, -1, dim), jnp.moveaxis(idx, -1, dim))
    return _MaxMin(values[..., 0], idx[..., 0])


def _median_all(input, ignore_nan):
    x = jnp.reshape(input, (-1,))
    v = jax.lax.stop_gradient(_lower_median(x, 0, False, ignore_nan).values)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return v
    # torch spreads the gradient evenly over the elements equal to the median
    tie = x == v
    return v + jnp.sum(jnp.where(tie, x - jax.lax.stop_gradient(x), 0)) / jnp.maximum(jnp.sum(tie), 1)


@op("torch.median", method="median")
def median(input, dim=None, keepdim=False, *, out=None):
    """``median(x)``: the lower middle value of all elements (NaN if any is NaN); ``median(x, dim)``:
    ``(values, indices)`` along ``dim``."""
    if dim is None:
        return _median_all(input, False)
    return _lower_median(input, dim, keepdim, False)


@op("torch.nanmedian", method="nanmedian")
def nanmedian(input, dim=None, keepdim=False, *, out=None):
    if dim is None:
        return _median_all(input, True)
    return _lower_median(input, dim, keepdim, True)


def _quantile(input, q, dim, keepdim, interpolation, ignore_nan):
    """torch's quantile_compute (aten/src/ATen/native/Sorting.cpp): ranks ``q * (n - 1)`` in the sorted
    values, moved to the last index where a NaN makes the result NaN."""
    if interpolation not in ("linear", "lower", "higher", "midpoint", "nearest"):
        raise ValueError(f"quantile() interpolation must be one of linear, lower, higher, midpoint or nearest. "
                         f"Got {interpolation}")
    scalar_q = not hasattr(q, "ndim") or q.ndim == 0
    if not isinstance(q, jax.core.Tracer) and not np.all((np.asarray(q) >= 0) & (np.asarray(q) <= 1)):
        raise ValueError(f"quantile() q must be in the range [0, 1] but got {q}")
    qs = jnp.reshape(jnp.asarray(q, input.dtype), (-1,))
    if dim is None:
        x = jnp.reshape(input, (-1,))
        out_shape = (1,) * input.ndim if keepdim else ()
    else:
        d = dim % max(input.ndim, 1)
        x = jnp.moveaxis(input, d, -1) if input.ndim else jnp.reshape(input, (1,))
        out_shape = (input.shape[:d] + (1,) + input.shape[d + 1:]) if keepdim else input.shape[:d] + input.shape[d + 1:]
    s = jnp.sort(x, axis=-1)  # NaN last
    last = x.shape[-1] - 1
    nan = jnp.isnan(s)
    if ignore_nan:
        ranks = qs * (jnp.sum(~nan, axis=-1, keepdims=True) - 1).astype(s.dtype)
        ranks = jnp.where(ranks < 0, last, ranks)
    else:
        ranks = jnp.where(jnp.any(nan, axis=-1, keepdims=True), last, qs * last)
    if interpolation == "lower":
        ranks = jnp.floor(ranks)
    elif interpolation == "higher":
        ranks = jnp.ceil(ranks)
    elif interpolation == "nearest":
        ranks = jnp.round(ranks)  # half to even, as torch's round
    below = ranks.astype(jnp.int32)
    values = jnp.take_along_axis(s, below, axis=-1)
    if interpolation in ("linear", "midpoint"):
        w = jnp.full_like(ranks, 0.5) if interpolation == "midpoint" else ranks - below
        above = jnp.take_along_axis(s, jnp.ceil(ranks).astype(jnp.int32), axis=-1)
        values = jnp.where(w < 0.5, values + w * (above - values), above - (above - values) * (1 - w))  # torch's lerp
    values = jnp.moveaxis(values, -1, 0)  # (len(q), *rest)
    values = jnp.reshape(values, (qs.shape[0],) + tuple(out_shape))
    return values[0] if scalar_q else values


@op("torch.quantile", method="quantile")
def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear", out=None):
    """``q``: a number or a 1-D tensor in [0, 1] (its dimension comes first in the result)."""
    return _quantile(input, q, dim, keepdim, interpolation, False)


@op("torch.nanquantile", method="nanquantile")
def nanquantile(input, q, dim=None, keepdim=False, *, interpolation="linear", out=None):
    return _quantile(input, q, dim, keepdim, interpolation, True)


def _cum_extreme(input, dim, better):
    """(values, indices) of the running max/min; a tie takes the later index and NaN sticks, as torch."""
    x = jnp.moveaxis(input, dim, 0) if input.ndim else jnp.reshape(input, (1,))
    idx = jax.lax.broadcasted_iota(jnp.int32, x.shape, 0)

    def combine(a, b):
        take_b = better(b[0], a[0]) | (b[0] == a[0]) | jnp.isnan(b[0])
        if jnp.issubdtype(x.dtype, jnp.floating):
            take_b = take_b & ~(jnp.isnan(a[0]) & ~jnp.isnan(b[0]))
        return jnp.where(take_b, b[0], a[0]), jnp.where(take_b, b[1], a[1])

    _, i = jax.lax.associative_scan(combine, (jax.lax.stop_gradient(x), idx), axis=0)
    values = jnp.take_along_axis(x, i, axis=0)  # the gradient goes to the element that holds the extreme
    i = i.astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    if not input.ndim:
        return _MaxMin(values[0], i[0])
    return _MaxMin(jnp.moveaxis(values, 0, dim), jnp.moveaxis(i, 0, dim))


@op("torch.cummax", method="cummax")
def cummax(input, dim):
    return _cum_extreme(input, dim, jnp.greater)


@op("torch.cummin", method="cummin")
def cummin(input, dim):
    return _cum_extreme(input, dim, jnp.less)


def _index_dtype(out_int32):
    return jnp.int32 if out_int32 or not jax.config.jax_enable_x64 else jnp.int64


@op("torch.searchsorted")
def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None, out=None):
    """Insertion indices of ``input`` in the last dimension of ``sorted_sequence`` (1-D, or with the
    same leading dimensions as ``input``); ``side="right"`` (or ``right=True``): after equal values."""
    if side is not None:
        if right and side == "left":
            raise ValueError("torch.searchsorted(): side and right can't be set to opposites, got side of left "
                             "while right was True")
        right = side == "right"
    seq = sorted_sequence
    if sorter is not None:
        seq = jnp.take_along_axis(seq, sorter, axis=-1)
    x = jnp.asarray(input)
    how = "right" if right else "left"
    if seq.ndim == 1:
        res = jnp.searchsorted(seq, x, side=how, method="compare_all")
    else:
        if x.shape[:-1] != seq.shape[:-1]:
            raise ValueError(f"torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
                             f"dimensions of boundaries tensor and input value tensor must match, but we got "
                             f"boundaries tensor {list(seq.shape)} and input value tensor {list(x.shape)}")
        f = lambda s, v: jnp.searchsorted(s, v, side=how, method="compare_all")  # noqa: E731
        for _ in range(seq.ndim - 1):
            f = jax.vmap(f)
        res = f(seq, x)
    return res.astype(_index_dtype(out_int32))


@op("torch.bucketize")
def bucketize(input, boundaries, *, out_int32=False, right=False, out=None):
    """The bucket of each value: ``boundaries[i-1] < x <= boundaries[i]`` (``right=True``: ``<= x <``)."""
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


@op("torch.block_diag")
def block_diag(*tensors):
    blocks = [jnp.reshape(t, (1, -1)) if t.ndim < 2 else t for t in tensors]
    dtype = jnp.result_type(*blocks)
    rows, cols = sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)
    out, r, c = jnp.zeros((rows, cols), dtype), 0, 0
    for b in blocks:
        out = out.at[r:r + b.shape[0], c:c + b.shape[1]].set(b.astype(dtype))
        r, c = r + b.shape[0], c + b.shape[1]
    return out


@op("torch.cartesian_prod")
def cartesian_prod(*tensors):
    if len(tensors) == 1:
        return tensors[0]
    grids = jnp.meshgrid(*tensors, indexing="ij")
    return jnp.stack([jnp.reshape(g, (-1,)) for g in grids], axis=1)


# ----------------------------------------------------------------------------- linear algebra
_HI = jax.lax.Precision.HIGHEST


def _vector_norm(x, ord, axis, keepdim):
    x = jnp.abs(x)
    if ord == float("inf"):
        return jnp.max(x, axis=axis, keepdims=keepdim)
    if ord == -float("inf"):
        return jnp.min(x, axis=axis, keepdims=keepdim)
    if ord == 0:
        return jnp.sum(x != 0, axis=axis, keepdims=keepdim).astype(x.dtype)
    if ord == 1:
        return jnp.sum(x, axis=axis, keepdims=keepdim)
    s = jnp.sum(x * x if ord == 2 else x ** ord, axis=axis, keepdims=keepdim)
    if ord < 0:
        return s ** (1.0 / ord)
    # torch's gradient of a zero norm is zero; s ** (1/p)'s would be NaN
    nonzero = s > 0
    safe = jnp.where(nonzero, s, 1)
    return jnp.where(nonzero, jnp.sqrt(safe) if ord == 2 else safe ** (1.0 / ord), 0)


@op("torch.linalg.vector_norm")
def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):
    """``(sum |x|^ord)^(1/ord)`` over ``dim`` (all elements when None); ``ord`` inf/-inf/0 as torch."""
    if dtype is not None:
        x = x.astype(dtype)
    return _vector_norm(x, ord, _dim(dim), keepdim)


@op("torch.linalg.matrix_norm")
def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None, out=None):
    """``ord``: "fro", "nuc", inf, -inf, 1, -1, 2, -2 over the two dimensions ``dim``."""
    if dtype is not None:
        A = A.astype(dtype)
    dim = tuple(d % A.ndim for d in dim)
    if ord == "fro":
        return _vector_norm(A, 2, dim, keepdim)
    x = jnp.moveaxis(A, dim, (-2, -1))
    if ord in ("nuc", 2, -2):
        s = jnp.linalg.svd(x, compute_uv=False)
        r = jnp.sum(s, -1) if ord == "nuc" else (s[..., 0] if ord == 2 else s[..., -1])
    elif ord in (1, -1, float("inf"), -float("inf")):
        sums = jnp.sum(jnp.abs(x), axis=-2 if ord in (1, -1) else -1)
        r = jnp.max(sums, -1) if ord in (1, float("inf")) else jnp.min(sums, -1)
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    if keepdim:
        r = jnp.expand_dims(r, dim)
    return r


@op("torch.linalg.norm")
def linalg_norm(A, ord=None, dim=None, keepdim=False, *, out=None, dtype=None):
    """torch.linalg.norm: a vector norm for an int ``dim`` (or 1-D input), a matrix norm for two dims
    (or 2-D input with ``ord`` given); with neither, the 2-norm of all elements."""
    if isinstance(dim, int) or (isinstance(dim, (tuple, list)) and len(dim) == 1):
        return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    if dim is None and (ord is None or A.ndim == 1):
        return vector_norm(A, 2 if ord is None else ord, None, keepdim, dtype=dtype)
    if dim is None:
        if A.ndim != 2:
            raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. "
                               f"Got {A.ndim}D.")
        dim = (-2, -1)
    return matrix_norm(A, "fro" if ord is None else ord, tuple(dim), keepdim, dtype=dtype)


@op("torch.linalg.solve")
def solve(A, B, *, left=True, out=None):
    """``A X = B`` (``left=False``: ``X A = B``); ``B`` of shape ``A.shape[:-1]`` (or 1-D) is a vector."""
    vector = B.ndim == 1 or B.shape == A.shape[:-1]
    if not left:
        if vector:
            raise RuntimeError("linalg.solve: Vector broadcasting of the left hand side is not supported for "
                               "left=False. In this case linalg.solve is equivalent to B / A.squeeze(-1)")
        return jnp.swapaxes(jnp.linalg.solve(jnp.swapaxes(A, -1, -2), jnp.swapaxes(B, -1, -2)), -1, -2)
    if vector:
        return jnp.linalg.solve(A, B[..., None])[..., 0]
    return jnp.linalg.solve(A, B)


op("torch.linalg.inv", "torch.inverse", method="inverse")(lambda A, *, out=None: jnp.linalg.inv(A))
op("torch.linalg.det", "torch.det", method="det")(lambda A, *, out=None: jnp.linalg.det(A))


@op("torch.logdet", method="logdet")
def logdet(input):
    """``log(det(A))``: NaN for a negative determinant, -inf for a zero one."""
    sign, logabs = jnp.linalg.slogdet(input)
    return jnp.where(sign < 0, jnp.nan, logabs)


op("torch.linalg.eigvalsh")(lambda A, UPLO="L", *, out=None: eigh(A, UPLO).eigenvalues)
op("torch.linalg.svdvals")(lambda A, *, driver=None, out=None: jnp.linalg.svd(A, compute_uv=False))
op("torch.linalg.matrix_exp", "torch.matrix_exp", method="matrix_exp")(lambda A: jax.scipy.linalg.expm(A))


class _Slogdet(NamedTuple):  # torch.return_types.slogdet
    sign: Any
    logabsdet: Any


@op("torch.linalg.slogdet", "torch.slogdet", method="slogdet")
def slogdet(A, *, out=None):
    return _Slogdet(*jnp.linalg.slogdet(A))


def _hermitian(A, UPLO="L"):
    """``A`` read from one triangle, as torch's eigh/cholesky do (the other is never looked at), with
    torch's gradient: the Hermitian part of the incoming one (``(G + G^H) / 2``), so a gradient also
    reaches the unread triangle as torch's does."""
    tri = jnp.tril(A) if UPLO == "L" else jnp.triu(A)
    strict = jnp.tril(A, -1) if UPLO == "L" else jnp.triu(A, 1)
    full = tri + jnp.conj(jnp.swapaxes(strict, -1, -2))
    sym = (A + jnp.conj(jnp.swapaxes(A, -1, -2))) / 2
    sg = jax.lax.stop_gradient
    return sg(full) + (sym - sg(sym))  # the value of ``full`` exactly, the tangent of ``sym``


@op("torch.linalg.cholesky")
def cholesky(A, *, upper=False, out=None):
    """The lower factor ``L`` of ``A = L L^H`` (``upper=True``: ``L^H``), from ``A``'s lower triangle."""
    L = jnp.linalg.cholesky(_hermitian(A), symmetrize_input=False)
    return jnp.conj(jnp.swapaxes(L, -1, -2)) if upper else L


class _QR(NamedTuple):  # torch.return_types.qr
    Q: Any
    R: Any


@op("torch.linalg.qr")
def qr(A, mode="reduced", *, out=None):
    """Householder QR as LAPACK's (the signs of Q's columns and R's rows are LAPACK's); ``mode="r"``
    gives an empty Q as torch."""
    if mode == "r":
        return _QR(jnp.zeros((0,), A.dtype), jnp.linalg.qr(A, mode="r"))
    return _QR(*jnp.linalg.qr(A, mode=mode))


class _SVD(NamedTuple):  # torch.return_types.linalg_svd
    U: Any
    S: Any
    Vh: Any


class _SVDV(NamedTuple):  # torch.return_types.svd (torch.svd gives V, not V^H)
    U: Any
    S: Any
    V: Any


@op("torch.linalg.svd")
def svd(A, full_matrices=True, *, driver=None, out=None):
    return _SVD(*jnp.linalg.svd(A, full_matrices=full_matrices))


@op("torch.svd", method="svd")
def svd_legacy(input, some=True, compute_uv=True, *, out=None):
    if not compute_uv:  # torch: zero U (m, m) and V (n, n), whatever ``some``
        m, n = input.shape[-2:]
        return _SVDV(jnp.zeros(input.shape[:-2] + (m, m), input.dtype), jnp.linalg.svd(input, compute_uv=False),
                     jnp.zeros(input.shape[:-2] + (n, n), input.dtype))
    u, s, vh = jnp.linalg.svd(input, full_matrices=not some)
    return _SVDV(u, s, jnp.conj(jnp.swapaxes(vh, -1, -2)))


class _Eigh(NamedTuple):  # torch.return_types.linalg_eigh
    eigenvalues: Any
    eigenvectors: Any


@op("torch.linalg.eigh")
def eigh(A, UPLO="L", *, out=None):
    """Eigenvalues ascending and eigenvectors of a symmetric/Hermitian ``A``, from the ``UPLO`` triangle
    only, as torch (not the symmetrised matrix)."""
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    w, v = jnp.linalg.eigh(_hermitian(A, UPLO), symmetrize_input=False)
    return _Eigh(w, v)


# ----------------------------------------------------------------------------- FFT
def _fft1(jfn, name):
    def impl(input, n=None, dim=-1, norm=None, *, out=None):
        return jfn(input, n=n, axis=dim, norm=norm)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.fft.{name}")(impl)


def _fftn(jfn, name, default_dim):
    def impl(input, s=None, dim=default_dim, norm=None, *, out=None):
        if dim is None and s is not None:  # torch: the last len(s) dimensions
            dim = tuple(range(-len(s), 0))
        return jfn(input, s=None if s is None else tuple(s), axes=None if dim is None else tuple(_dims(dim)),
                   norm=norm)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.fft.{name}")(impl)


def _dims(dim):
    return (dim,) if isinstance(dim, int) else tuple(dim)


for _name in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"):
    _fft1(getattr(jnp.fft, _name), _name)
for _name in ("fft2", "ifft2", "rfft2", "irfft2"):
    _fftn(getattr(jnp.fft, _name), _name, (-2, -1))
for _name in ("fftn", "ifftn", "rfftn", "irfftn"):
    _fftn(getattr(jnp.fft, _name), _name, None)
op("torch.fft.fftshift")(lambda input, dim=None: jnp.fft.fftshift(input, axes=_dim(dim)))
op("torch.fft.ifftshift")(lambda input, dim=None: jnp.fft.ifftshift(input, axes=_dim(dim)))


# ----------------------------------------------------------------------------- complex numbers
@op("torch.complex")
def complex_(real, imag, *, out=None):
    return jax.lax.complex(real, imag)


@op("torch.polar")
def polar(abs, angle, *, out=None):
    return jax.lax.complex(abs * jnp.cos(angle), abs * jnp.sin(angle))


@op("torch.view_as_complex")
def view_as_complex(input):
    if input.shape[-1:] != (2,):
        raise RuntimeError("Tensor must have a last dimension of size 2")
    return jax.lax.complex(input[..., 0], input[..., 1])


@op("torch.view_as_real")
def view_as_real(input):
    return jnp.stack([jnp.real(input), jnp.imag(input)], axis=-1)


op("torch.real")(lambda input: jnp.real(input))
op("torch.imag")(lambda input: jnp.imag(input))
op("torch.angle", method="angle")(lambda input, *, out=None: jnp.angle(input))
op("torch.conj", "torch.conj_physical", method=("conj", "conj_physical"))(lambda input: jnp.conj(input))
# torch's lazy conjugation/negation bits, made real: values here are always resolved
op("torch.resolve_conj", "torch.resolve_neg", method=("resolve_conj", "resolve_neg"))(lambda input: input)


# ----------------------------------------------------------------------------- torch.special, more of torch.linalg
def _alias(existing: str, *names: str) -> None:
    """More torch names (torch.special.expm1, torch.linalg.matmul) for an implementation above."""
    OPS[existing] = OPS[existing]._replace(functions=OPS[existing].functions + names)


for _name in ("erfinv", "exp2", "expm1", "log1p", "round", "logsumexp", "xlogy"):
    _alias(f"torch.{_name}", f"torch.special.{_name}")
for _name in ("softmax", "log_softmax"):
    _alias(f"torch.nn.functional.{_name}", f"torch.special.{_name}")
_alias("torch.lgamma", "torch.special.gammaln")
_alias("torch.matmul", "torch.linalg.matmul")

_SP = jax.scipy.special
for _names, _j, _method in (
        (("torch.digamma", "torch.special.digamma", "torch.special.psi"), _SP.digamma, "digamma"),
        (("torch.i0", "torch.special.i0"), _SP.i0, "i0"), (("torch.special.i0e",), _SP.i0e, ()),
        (("torch.special.i1",), _SP.i1, ()), (("torch.special.i1e",), _SP.i1e, ()),
        (("torch.special.ndtr",), _SP.ndtr, ()), (("torch.special.ndtri",), _SP.ndtri, ()),
        (("torch.special.log_ndtr",), _SP.log_ndtr, ()), (("torch.special.entr",), _SP.entr, ()),
        (("torch.special.erfcx",), _SP.erfcx, ())):
    _unary(_j, *_names, method=_method)
op("torch.special.xlog1py")(lambda input, other, *, out=None: _SP.xlog1py(input, other))
op("torch.special.zeta")(lambda input, other, *, out=None: _SP.zeta(input, other))  # Hurwitz: sum (k + other)^-input
op("torch.special.gammainc", "torch.igamma", method="igamma")(lambda input, other, *, out=None: _SP.gammainc(input, other))
op("torch.special.gammaincc", "torch.igammac", method="igammac")(
    lambda input, other, *, out=None: _SP.gammaincc(input, other))
op("torch.special.polygamma", "torch.polygamma")(lambda n, input, *, out=None: _SP.polygamma(n, input))
op("torch.special.multigammaln", "torch.mvlgamma", method="mvlgamma")(
    lambda input, p, *, out=None: _SP.multigammaln(input, p))


@op("torch.linalg.diagonal")
def linalg_diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """torch.linalg.diagonal: torch.diagonal with the last two dimensions by default."""
    return jnp.diagonal(A, offset, dim1, dim2)


@op("torch.linalg.vecdot")
def vecdot(x, y, *, dim=-1, out=None):
    return jnp.sum(jnp.conj(x) * y, axis=dim)


@op("torch.linalg.multi_dot")
def multi_dot(tensors, *, out=None):
    return jnp.linalg.multi_dot(list(tensors), precision=_HI)


@op("torch.linalg.matrix_power", "torch.matrix_power", method="matrix_power")
def matrix_power(A, n, *, out=None):
    return jnp.linalg.matrix_power(A, n)


@op("torch.linalg.solve_triangular")
def solve_triangular(A, B, *, upper, left=True, unitriangular=False, out=None):
    """``A X = B`` (``left=False``: ``X A = B``) for triangular ``A``, reading only its ``upper``/lower part."""
    return jax.lax.linalg.triangular_solve(A, B, left_side=left, lower=not upper, unit_diagonal=unitriangular)


@op("torch.linalg.pinv")
def pinv(A, *, atol=None, rtol=None, hermitian=False, out=None):
    """The pseudo-inverse; singular values below ``rtol * largest`` count as zero (torch's default
    ``rtol = eps * max(m, n)``, not JAX's ten times that)."""
    if atol is not None:
        raise TypeError("linalg.pinv(atol=...) is not converted; pass rtol= (relative to the largest singular value)")
    if rtol is None:
        rtol = jnp.finfo(A.dtype).eps * max(A.shape[-2:])
    return jnp.linalg.pinv(A, rtol, hermitian)


@op("torch.fft.fftfreq")
def fftfreq(n, d=1.0, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.fft.fftfreq(n, d, dtype=dtype or _float_default())


@op("torch.fft.rfftfreq")
def rfftfreq(n, d=1.0, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    return jnp.fft.rfftfreq(n, d, dtype=dtype or _float_default())


# ----------------------------------------------------------------------------- data-dependent shapes
DATA_DEPENDENT: dict[str, str] = {
    name: f"{name}'s result has a data-dependent shape (how many elements it returns depends on the values), "
          f"which JAX cannot trace; {fix}"
    for name, fix in {
        "nonzero": "use a mask with torch.where(mask, x, 0) or a fixed-size torch.topk",
        "argwhere": "use a mask with torch.where(mask, x, 0)",
        "masked_select": "use torch.where(mask, x, 0) and reduce over the masked positions",
        "unique": "use a fixed-size encoding (torch.nn.functional.one_hot with a known num_classes)",
        "unique_consecutive": "use a fixed-size encoding",
    }.items()
}


def data_dependent_reason(target: Any) -> str | None:
    """Why a traced function or method name (``torch.unique``, ``"nonzero"``) cannot convert, or None."""
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    return DATA_DEPENDENT.get(name.lstrip("_"))



# ----------------------------------------------------------------------------- losses in forward
# torch's signatures, deprecated size_average/reduce included (they shift positional arguments)
def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        raise TypeError("size_average= and reduce= are deprecated in torch; use reduction=")
    return reduction


@op("torch.nn.functional.cross_entropy")
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    return losses.cross_entropy(input, target, weight, ignore_index, _reduction(size_average, reduce, reduction),
                                label_smoothing)


@op("torch.nn.functional.nll_loss")
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    return losses.nll_loss(input, target, weight, ignore_index, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.mse_loss")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    return losses.mse_loss(input, target, _reduction(size_average, reduce, reduction), weight)


@op("torch.nn.functional.l1_loss")
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    return losses.l1_loss(input, target, _reduction(size_average, reduce, reduction), weight)


@op("torch.nn.functional.smooth_l1_loss")
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    return losses.smooth_l1_loss(input, target, _reduction(size_average, reduce, reduction), beta)


@op("torch.nn.functional.binary_cross_entropy")
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    return losses.binary_cross_entropy(input, target, weight, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    return losses.binary_cross_entropy_with_logits(input, target, weight, _reduction(size_average, reduce, reduction),
                                                   pos_weight)


@op("torch.nn.functional.kl_div")
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    return losses.kl_div(input, target, _reduction(size_average, reduce, reduction), log_target)


@op("torch.nn.functional.huber_loss")
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    return losses.huber_loss(input, target, reduction, delta, weight)


@op("torch.nn.functional.soft_margin_loss")
def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    return losses.soft_margin_loss(input, target, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.multilabel_soft_margin_loss")
def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    return losses.multilabel_soft_margin_loss(input, target, weight, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.multi_margin_loss")
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    return losses.multi_margin_loss(input, target, p, margin, weight, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.multilabel_margin_loss")
def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    return losses.multilabel_margin_loss(input, target, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.poisson_nll_loss")
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-08, reduce=None,
                     reduction="mean"):
    return losses.poisson_nll_loss(input, target, log_input, full, eps, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.gaussian_nll_loss")
def gaussian_nll_loss(input, target, var, full=False, eps=1e-06, reduction="mean"):
    return losses.gaussian_nll_loss(input, target, var, full, eps, reduction)


@op("torch.nn.functional.cosine_embedding_loss")
def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    return losses.cosine_embedding_loss(input1, input2, target, margin, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.margin_ranking_loss")
def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    return losses.margin_ranking_loss(input1, input2, target, margin, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.hinge_embedding_loss")
def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    return losses.hinge_embedding_loss(input, target, margin, _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.triplet_margin_loss")
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-06, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    return losses.triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap,
                                      _reduction(size_average, reduce, reduction))


@op("torch.nn.functional.triplet_margin_with_distance_loss")
def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False,
                                      reduction="mean"):
    """A torch ``distance_function`` this table converts (``F.pairwise_distance``, ``F.cosine_similarity``
    wrapped in a lambda is not) is replaced by its implementation."""
    if distance_function is not None:
        impl = resolve(distance_function)
        if impl is None:
            raise TypeError("triplet_margin_with_distance_loss: distance_function must be a torch function "
                            "from_torch converts (e.g. F.pairwise_distance); a Python lambda runs torch code on "
                            "JAX arrays. Compute the distances in forward and use a margin loss instead")
        distance_function = impl
    return losses.triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=distance_function,
                                                    margin=margin, swap=swap, reduction=reduction)


@op("torch.nn.functional.ctc_loss")
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    return losses.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)


@op("torch.nn.functional.linear_cross_entropy")
def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean",
                         ignore_index=None, label_smoothing=0.0, options=None):
    return losses.linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias, weight=weight,
                                       reduction=reduction, ignore_index=ignore_index,
                                       label_smoothing=label_smoothing, options=options)


@op("torch.nn.functional.bilinear", "torch.bilinear")
def bilinear(input1, input2, weight, bias=None):
    return F.bilinear(input1, input2, weight, bias)


@op("torch.nn.functional.channel_shuffle", "torch.channel_shuffle", "torch.nn.functional.native_channel_shuffle",
    "torch.native_channel_shuffle")
def channel_shuffle(input, groups):
    return F.channel_shuffle(input, groups)


def _fractional_pool(name: str) -> None:
    fn = getattr(F, name)

    def impl(input, kernel_size, output_size=None, output_ratio=None, return_indices=False, _random_samples=None, *,
             _rng=None):
        return fn(input, kernel_size, output_size, output_ratio, return_indices, _random_samples, key=_rng)

    impl.__name__ = impl.__qualname__ = name
    op(f"torch.nn.functional.{name}", f"torch.nn.functional.{name}_with_indices", keyed=True)(impl)


for _name in ("fractional_max_pool2d", "fractional_max_pool3d"):
    if hasattr(F, _name):
        _fractional_pool(_name)


# ----------------------------------------------------------------------------- in-place operations
# torch's in-place variants, converted functionally: each returns the mutated tensor's new value
# (same dtype), and from_torch / port rebind every later use of that tensor to it. Which calls
# mutate what, and the aliasing they refuse, is decided on the graph (convert/fx.py).
INPLACE_METHODS: set[str] = set()  # Tensor methods that write into their first argument
INPLACE_FUNCTIONS: set[Callable] = set()  # implementations of torch.relu_, F.elu_, ...

# Tensor methods above whose torch in-place variant ``<name>_`` exists (``x.add_``, ``x.clamp_``)
_INPLACE_BASES = (
    "abs acos add addmm asin atan atan2 bitwise_and bitwise_or ceil clamp clamp_max clamp_min clip cos cosh "
    "cumprod cumsum detach div divide eq erf erfinv exp exp2 expm1 floor floor_divide fmod frac ge gt le lerp log "
    "log10 log1p log2 logical_and logical_not logical_or lt masked_fill mul multiply nan_to_num ne neg negative pow "
    "reciprocal relu remainder round rsqrt scatter scatter_add sigmoid sign sin sinh sqrt square squeeze sub subtract "
    "swapaxes swapdims t tan tanh transpose tril triu true_divide trunc unsqueeze erfc hypot logit sinc heaviside"
).split()
# ... of which torch also has a function ``torch.<name>_`` (``torch.relu_(x)``)
_INPLACE_TORCH_FUNCTIONS = set(
    "abs acos asin atan ceil clamp clamp_max clamp_min clip cos cosh detach erf exp exp2 expm1 floor frac log log10 "
    "log1p log2 nan_to_num neg negative reciprocal relu round rsqrt sigmoid sin sinh sqrt square tan tanh trunc "
    "erfc logit sinc".split())


def _inplace(name: str, fn: Callable, functions: tuple[str, ...] = (), method: bool = True) -> Callable:
    def impl(input, *args, **kwargs):
        return _keep_dtype(input, fn(input, *args, **kwargs))

    # ``ops.add_inplace`` in ported source: ``ops.mul_`` etc. already name torch.mul & co.
    impl.__name__ = impl.__qualname__ = name[:-1] + "_inplace"
    impl.__doc__ = f"``{name}``: the new value of ``input`` (torch writes it in place)."
    globals()[impl.__name__] = impl
    op(*functions, method=name if method else ())(impl)
    if method:
        INPLACE_METHODS.add(name)
    if functions:
        INPLACE_FUNCTIONS.add(impl)
    return impl


for _name in _INPLACE_BASES:
    _inplace(_name + "_", METHODS[_name], (f"torch.{_name}_",) if _name in _INPLACE_TORCH_FUNCTIONS else ())
for _name in ("relu", "elu", "celu", "selu", "leaky_relu", "hardtanh", "threshold"):
    # torch.nn.functional.relu_ and friends (F.relu(x, inplace=True) is the plain function, rebound the same way)
    _k = f"torch.{_name}_"
    if _k in OPS:  # x.relu_() and torch.relu_(x) above: one implementation
        OPS[_k] = OPS[_k]._replace(functions=OPS[_k].functions + (f"torch.nn.functional.{_name}_",))
    else:
        _inplace(f"{_name}_", getattr(F, _name), (f"torch.nn.functional.{_name}_",), method=False)


@op(method="zero_")
def zero_inplace(input):
    """``x.zero_()``: zeros of ``x``'s shape and dtype."""
    return jnp.zeros_like(input)


@op(method="fill_")
def fill_inplace(input, value):
    """``x.fill_(value)``: ``value`` (a number or a 0-d tensor) everywhere."""
    return jnp.broadcast_to(jnp.asarray(value, input.dtype), input.shape)


@op(method="copy_")
def copy_inplace(input, src, non_blocking=False):
    """``x.copy_(src)``: ``src`` broadcast to ``x``'s shape, cast to its dtype (the gradient goes to ``src``)."""
    return jnp.broadcast_to(jnp.asarray(src).astype(input.dtype), input.shape)


INPLACE_METHODS.update({"zero_", "fill_", "copy_"})


@op("operator.setitem")
def setitem(input, index, value):
    """``input[index] = value`` (torch's item assignment) as the new value of ``input``.

    ``value`` is cast to ``input``'s dtype and broadcast as torch does. A boolean mask
    (``x[mask] = v``, or ``x[:, mask] = v`` after full slices) selects with ``jnp.where``, so
    the shape stays static; ``v`` must then broadcast to one selected element (a number, or
    ``x.shape[mask.ndim:]``), not be one row per ``True`` (a data-dependent count).
    """
    value = jnp.asarray(value).astype(input.dtype)
    index = tuple(index) if isinstance(index, tuple) else (index,)
    index = tuple(jnp.asarray(i) if isinstance(i, list) else i for i in index)
    arrays = [i for i, v in enumerate(index) if hasattr(v, "dtype") and v.dtype == jnp.bool_]
    if not arrays:
        return input.at[index if len(index) != 1 else index[0]].set(value)
    k = arrays[0]
    if len(arrays) > 1 or any(v != slice(None) for v in index[:k]) or any(
            v not in (slice(None), Ellipsis) for v in index[k + 1:]):
        raise TypeError("item assignment with a boolean mask: only x[mask] = v and x[:, ..., mask] = v "
                        "(full slices before the mask) convert; write it with torch.where")
    mask = index[k]
    rest = input.ndim - k - mask.ndim
    if value.ndim > rest and value.shape[0] != 1:
        raise TypeError(f"x[mask] = v with v of shape {tuple(value.shape)}: one row per True element has a "
                        "data-dependent shape; use torch.where(mask[..., None], v_full, x) with v_full of x's shape")
    value = jnp.reshape(value, value.shape[max(value.ndim - rest, 0):]) if value.ndim > rest else value
    m = jnp.reshape(mask, (1,) * k + mask.shape + (1,) * rest)
    return jnp.where(m, value, input)


def resolve(target: Any) -> Callable | None:
    """The implementation of a traced ``call_function`` target, or None.

    A namedtuple class (torchvision's ``GoogLeNetOutputs``, ``InceptionOutputs``) is its
    own implementation: it builds the same named tuple of JAX arrays.
    """
    fn = function_table().get(target)
    if fn is None and isinstance(target, type) and issubclass(target, tuple) and hasattr(target, "_fields"):
        return target
    return fn


# ----------------------------------------------------------------------------- names for ``funcnets port``
_PORT_NAMES: dict[Callable, str] = {}


def _register_port_names() -> None:
    """Give every implementation a name in this module (``ops.exp``, ``ops.sum_``), so that
    source written by ``funcnets port`` calls ``ops.<name>(...)``; done at import, in the
    table's order, so the names are the same in every process."""
    g = globals()
    for o in OPS.values():
        if o.fn in _PORT_NAMES:
            continue
        short = o.functions[0].rpartition(".")[2] if o.functions else o.methods[0]
        own = getattr(o.fn, "__name__", "")
        if g.get(own) is o.fn:
            _PORT_NAMES[o.fn] = own
            continue
        for c in (short, short + "_", f"{short}_op", f"torch_{short}"):  # abs: builtins, operator, torch
            if c.isidentifier() and c not in g and not hasattr(builtins, c):
                g[c] = o.fn
                _PORT_NAMES[o.fn] = c
                break


_register_port_names()


def port_name(fn: Callable) -> str:
    """The name under which ``fn`` is an attribute of this module (``getattr(ops, name) is fn``)."""
    return _PORT_NAMES[fn]

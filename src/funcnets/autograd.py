"""Torch-style autograd on top of JAX transformations.

PyTorch records a graph while it computes and ``Q.backward(gradient=v)`` leaves the
vector-Jacobian product ``J^T v`` in each leaf's ``.grad``. JAX differentiates the
*function* instead: :func:`backward` takes ``fn`` and its inputs and returns those same
``J^T v`` values, one per input, with nothing accumulated anywhere (so there is no
``zero_grad``). :func:`graph` shows what ``grad_fn``/``next_functions`` show in torch,
read from the function's jaxpr.

The tutorial's custom ``MyReLU(torch.autograd.Function)`` is :func:`my_relu`, a
``jax.custom_vjp`` that saves its input and zeroes the gradient where ``input < 0`` —
so, unlike :func:`relu` (``torch.relu``), its gradient at exactly 0 is 1.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from funcnets._typing import Array

__all__ = [
    "backward",
    "vjp",
    "jvp",
    "jacobian",
    "hessian",
    "graph",
    "Graph",
    "relu",
    "my_relu",
]


# --------------------------------------------------------------------------- VJPs
def backward(fn: Callable[..., Any], *inputs: Any, gradient: Any = None) -> tuple[Any, ...]:
    """What ``fn(*inputs).backward(gradient=gradient)`` leaves in each input's ``.grad``.

    Args:
      fn: a function of ``len(inputs)`` array (or pytree) arguments.
      *inputs: the points to differentiate at; every one is treated as
        ``requires_grad=True``.
      gradient: ``v``, the gradient of some scalar with respect to ``fn``'s output, same
        shape as the output. May be omitted only when the output is a scalar (as in torch).

    Returns:
      A tuple with ``J_i^T v`` for each input ``i`` (same shapes as the inputs).

    Example:
      >>> a, b = jnp.array([2., 3.]), jnp.array([6., 4.])
      >>> backward(lambda a, b: 3 * a**3 - b**2, a, b, gradient=jnp.ones(2))
      (Array([36., 81.], dtype=float32), Array([-12.,  -8.], dtype=float32))
    """
    out, pullback = jax.vjp(fn, *inputs)
    if gradient is None:
        if jnp.ndim(out) != 0:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs: the output has "
                f"shape {tuple(jnp.shape(out))}. Pass gradient=<array of that shape>, e.g. "
                f"gradient=jnp.ones({tuple(jnp.shape(out))}) to sum the output."
            )
        gradient = jnp.ones_like(out)
    elif jnp.shape(gradient) != jnp.shape(out):
        raise ValueError(
            f"gradient has shape {tuple(jnp.shape(gradient))} but the output has shape "
            f"{tuple(jnp.shape(out))}; they must match (torch: 'Mismatch in shape')."
        )
    return pullback(jnp.asarray(gradient, dtype=jnp.result_type(out)))


def vjp(fn: Callable[..., Any], inputs: Any, v: Any) -> tuple[Any, Any]:
    """``torch.autograd.functional.vjp``: returns ``(fn(*inputs), J^T v)``.

    ``inputs`` is one array or a tuple of arrays; the VJP has the same structure.
    """
    single = not isinstance(inputs, tuple)
    args = (inputs,) if single else inputs
    out, pullback = jax.vjp(fn, *args)
    grads = pullback(v)
    return out, grads[0] if single else grads


def jvp(fn: Callable[..., Any], inputs: Any, v: Any) -> tuple[Any, Any]:
    """``torch.autograd.functional.jvp``: returns ``(fn(*inputs), J v)`` (forward mode)."""
    single = not isinstance(inputs, tuple)
    args = (inputs,) if single else inputs
    tangents = (v,) if single else v
    return jax.jvp(fn, args, tangents)


def jacobian(
    fn: Callable[..., Any], inputs: Any, *, strategy: str = "reverse-mode"
) -> Any:
    """``torch.autograd.functional.jacobian``: the full Jacobian, shape ``out.shape + in.shape``.

    Args:
      strategy: ``"reverse-mode"`` (``jax.jacrev``, cheap when outputs are few) or
        ``"forward-mode"`` (``jax.jacfwd``, cheap when inputs are few), as in torch.
    """
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(
            f"strategy must be 'reverse-mode' or 'forward-mode', got {strategy!r}"
        )
    single = not isinstance(inputs, tuple)
    args = (inputs,) if single else inputs
    transform = jax.jacrev if strategy == "reverse-mode" else jax.jacfwd
    jac = transform(fn, argnums=tuple(range(len(args))))(*args)
    return jac[0] if single else jac


def hessian(fn: Callable[..., Any], inputs: Any) -> Any:
    """``torch.autograd.functional.hessian`` of a scalar function (forward-over-reverse)."""
    single = not isinstance(inputs, tuple)
    args = (inputs,) if single else inputs
    hess = jax.hessian(fn, argnums=tuple(range(len(args))))(*args)
    return hess[0][0] if single else hess


# --------------------------------------------------------------------------- ReLUs
def relu(x: Array) -> Array:
    """``torch.relu``: ``max(x, 0)``; its gradient at exactly 0 is 0, as in torch."""
    return jax.nn.relu(x)


@jax.custom_vjp
def my_relu(x: Array) -> Array:
    """The tutorial's ``MyReLU.apply``: ``x.clamp(min=0)`` with a hand-written backward.

    Backward: ``grad_input = grad_output`` with ``grad_input[input < 0] = 0``. Only
    strictly negative inputs are zeroed, so the gradient at exactly 0 is 1 (torch.relu's is 0).
    """
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def _my_relu_fwd(x: Array) -> tuple[Array, Array]:
    # ctx.save_for_backward(input)
    return my_relu(x), x


def _my_relu_bwd(x: Array, grad_output: Array) -> tuple[Array]:
    return (jnp.where(x < 0, jnp.zeros_like(grad_output), grad_output),)


my_relu.defvjp(_my_relu_fwd, _my_relu_bwd)


# --------------------------------------------------------------------------- graphs
# torch's grad_fn names for the primitives a tutorial reader meets, so the printed graph
# reads like `loss.grad_fn.next_functions`.
_TORCH_NAMES = {
    "add": "AddBackward0",
    "sub": "SubBackward0",
    "mul": "MulBackward0",
    "div": "DivBackward0",
    "neg": "NegBackward0",
    "integer_pow": "PowBackward0",
    "pow": "PowBackward0",
    "square": "PowBackward0",
    "exp": "ExpBackward0",
    "log": "LogBackward0",
    "dot_general": "MmBackward0",
    "conv_general_dilated": "ConvolutionBackward0",
    "reduce_sum": "SumBackward1",
    "reduce_max": "MaxBackward1",
    "select_n": "WhereBackward0",
    "reshape": "ViewBackward0",
    "transpose": "TBackward0",
    "broadcast_in_dim": "ExpandBackward0",
    "max": "MaximumBackward0",
    "abs": "AbsBackward0",
    "tanh": "TanhBackward0",
    "logistic": "SigmoidBackward0",
    "custom_jvp_call[relu]": "ReluBackward0",  # jax.nn.relu = torch.relu
    "custom_vjp_call[max]": "MyReLUBackward",  # the tutorial's MyReLU
}


class Graph:
    """The recorded operations of a function, printable from output back to inputs.

    ``str(graph)`` draws a tree whose root is the output's producing operation (torch's
    ``out.grad_fn``) and whose children are its operands (``grad_fn.next_functions``);
    leaves are the inputs (torch's ``AccumulateGrad``) or constants. A subexpression used
    twice is drawn once and referred to afterwards.
    """

    def __init__(self, closed_jaxpr: jax.extend.core.ClosedJaxpr, arg_names: Sequence[str]):
        self.jaxpr = closed_jaxpr.jaxpr
        self._producer = {v: e for e in self.jaxpr.eqns for v in e.outvars}
        leaves = jax.tree_util.tree_leaves(self.jaxpr.invars)
        self._names = {v: n for v, n in zip(leaves, arg_names)}

    @property
    def operations(self) -> list[str]:
        """Primitive names in execution order (``jaxpr`` equations)."""
        return [e.primitive.name for e in self.jaxpr.eqns]

    def _label(self, eqn: Any) -> str:
        name = eqn.primitive.name
        sub = eqn.params.get("name")  # pjit wrappers carry the function name
        inner = eqn.params.get("call_jaxpr")  # custom_jvp/vjp calls: name them by their body
        if sub:
            name = f"{name}[{sub}]"
        elif inner is not None:
            body = getattr(inner, "jaxpr", inner)
            name = f"{name}[{'+'.join(e.params.get('name') or e.primitive.name for e in body.eqns)}]"
        elif name == "integer_pow":
            name = f"integer_pow[y={eqn.params['y']}]"
        torch_name = _TORCH_NAMES.get(name.split("[y=")[0], _TORCH_NAMES.get(eqn.primitive.name))
        shape = tuple(eqn.outvars[0].aval.shape)
        text = f"{name} -> {shape}"
        return f"{text}  ({torch_name})" if torch_name else text

    def _leaf(self, var: Any) -> str:
        if hasattr(var, "val"):  # a Literal
            return f"const {np.asarray(var.val).tolist()}"
        if var in self._names:
            return f"{self._names[var]} {tuple(var.aval.shape)}  (AccumulateGrad)"
        return f"const {tuple(var.aval.shape)}"

    def __str__(self) -> str:
        lines: list[str] = []
        seen: dict[Any, int] = {}

        def walk(var: Any, prefix: str, last: bool, root: bool) -> None:
            branch = "" if root else ("└── " if last else "├── ")
            eqn = self._producer.get(var) if not hasattr(var, "val") else None
            if eqn is None:
                lines.append(prefix + branch + self._leaf(var))
                return
            if id(eqn) in seen:
                lines.append(prefix + branch + f"{eqn.primitive.name} (#{seen[id(eqn)]}, shown above)")
                return
            seen[id(eqn)] = len(seen) + 1
            lines.append(prefix + branch + f"#{seen[id(eqn)]} " + self._label(eqn))
            child_prefix = prefix + ("" if root else ("    " if last else "│   "))
            operands = list(eqn.invars)
            for i, op in enumerate(operands):
                walk(op, child_prefix, i == len(operands) - 1, False)

        for out in self.jaxpr.outvars:
            walk(out, "", True, True)
        return "\n".join(lines)

    __repr__ = __str__


def _path_part(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return f".{key.key}"
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    return str(key)


def graph(fn: Callable[..., Any], *example_inputs: Any) -> Graph:
    """Trace ``fn`` on example inputs and return its operation graph (see :class:`Graph`).

    Example:
      >>> print(graph(lambda a, b: 3 * a**3 - b**2, jnp.ones(2), jnp.ones(2)))
      #1 sub -> (2,)  (SubBackward0)
      ├── #2 mul -> (2,)  (MulBackward0)
      ...
    """
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for i, arg in enumerate(example_inputs):
        base = params[i] if i < len(params) else f"arg{i}"
        for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]:
            names.append(base + "".join(_path_part(k) for k in path))
    return Graph(jax.make_jaxpr(fn)(*example_inputs), names)

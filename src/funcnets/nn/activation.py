"""Activations: ``torch.nn``'s nonlinearities (``ReLU`` ... ``Softmin``) and their
functional forms (``F.relu6``, ``F.gelu``, ``F.softmax``, ...).

Every function reproduces torch's forward *and* the side its backward takes at a kink:
where torch's backward formula picks one branch on an exact tie (``hardtanh``'s bounds
get 0, ``leaky_relu``'s 0 gets the negative slope, ``elu``'s 0 gets ``alpha``,
``hardswish``'s ±3 get 0 and 1, ``threshold``/``softplus`` at the threshold take the
lower branch), the ``jnp.where`` here selects the same branch, so ``jax.grad`` returns
torch's number on the tie. (``jnp.clip``/``jnp.maximum`` would split a tie 50/50.)
Branches that are not selected are fed safe arguments, so their discarded derivatives
never become ``inf · 0 = nan``.

The layers hold only hyperparameters; ``PReLU`` is the one with a parameter
(``weight``). ``inplace=`` is accepted for torch's signatures and shown in ``repr`` as
torch shows it, but nothing is ever modified in place: these are pure functions.
Element-wise layers work in every activation layout; the ones that read an axis
(``PReLU`` with per-channel weights, the softmax family on 4-D inputs) need torch's
layout and raise inside :func:`~funcnets.nn.functional.channels_last` /
:func:`~funcnets.nn.functional.batch_last`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.typing import DTypeLike

from funcnets import autograd
from funcnets._typing import Array, PRNGKey
from funcnets.errors import ShapeError
from funcnets.nn._layout import _LAYOUT
from funcnets.nn.module import Module

__all__ = [
    # functional
    "relu", "my_relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu",
    "mish", "hardswish", "hardsigmoid", "hardtanh", "sigmoid", "tanh", "softplus", "softsign",
    "threshold", "softmax", "log_softmax", "softmin", "logsigmoid", "hardshrink", "softshrink",
    "tanhshrink", "glu", "rrelu",
    # layers
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Hardswish", "Hardsigmoid", "Hardtanh", "Sigmoid", "Tanh", "Softplus", "Softsign",
    "Threshold", "Softmax", "LogSoftmax", "Softmin", "LogSigmoid", "Hardshrink", "Softshrink",
    "Tanhshrink", "GLU", "RReLU", "Softmax2d",
]

my_relu = autograd.my_relu

# torch's constants (ATen's Activation.cpp / functional.py), to the digits torch writes
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT1_2 = 0.70710678118654752440  # M_SQRT1_2
_ONE_SIXTH_F32 = float(np.float32(1.0) / np.float32(6.0))  # 1.0f / 6.0f in hardsigmoid's backward


# ------------------------------------------------------------------------- checks
def _as_float(input: Any, who: object) -> Array:
    """``input`` as an array, or a ShapeError naming ``who`` if it is not floating point
    (torch has no integer kernels for these ops)."""
    x = jnp.asarray(input)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ShapeError(
            f"{who} expected a floating-point input, got dtype {x.dtype}. "
            f"Convert it first, e.g. x.astype(jnp.float32)."
        )
    return x


def _static(v: Any) -> bool:
    """Whether a hyperparameter is a concrete number (checkable now) rather than a tracer:
    the functions also take traced hyperparameters (``jax.vmap`` over ``alpha``, say)."""
    return not isinstance(v, jax.core.Tracer)


def _promote_float(input: Any) -> Array:
    """torch.sigmoid/tanh/softsign promote integer inputs to the default float dtype."""
    x = jnp.asarray(input)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def _check_layout(who: object, x: Array, what: str) -> None:
    """Axis-reading ops need torch's layout: a 4-D activation in a layout block is not NCHW."""
    if x.ndim == 4 and _LAYOUT.get() != "NCHW":
        raise ShapeError(
            f"{who} {what} of a torch-layout (N, C, H, W) input, but it was called inside "
            f"{'channels_last()' if _LAYOUT.get() == 'NHWC' else 'batch_last()'} with a 4-D input "
            f"{tuple(x.shape)}. Call it outside the layout block (transpose the activation back "
            f"to NCHW first)."
        )


# -------------------------------------------------------------- element-wise functions
def relu(input: Array, inplace: bool = False) -> Array:
    """``torch.relu``: ``max(x, 0)``; gradient 0 at exactly 0, as in torch."""
    return autograd.relu(input)


def hardtanh(input: Array, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Array:
    """``clamp(x, min_val, max_val)``; gradient 1 strictly inside, 0 on and beyond the bounds.

    Integer inputs stay integer, as in torch.
    """
    if _static(min_val) and _static(max_val) and min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    x = jnp.asarray(input)
    lo, hi = jnp.asarray(min_val, x.dtype), jnp.asarray(max_val, x.dtype)
    # torch's backward is grad·(min_val < x < max_val): ties go to the constant branches
    return jnp.where(x <= lo, lo, jnp.where(x >= hi, hi, x))


def relu6(input: Array, inplace: bool = False) -> Array:
    """``min(max(x, 0), 6)`` = ``hardtanh(x, 0, 6)``: gradient 0 at 0 and at 6."""
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input: Array, negative_slope: float = 0.01, inplace: bool = False) -> Array:
    """``x if x > 0 else negative_slope·x``; gradient ``negative_slope`` at 0."""
    x = _as_float(input, "leaky_relu")
    return jnp.where(x > 0, x, x * negative_slope)


def prelu(input: Array, weight: Array) -> Array:
    """``x if x > 0 else weight·x`` with ``weight`` per channel (dim 1).

    Args:
      input: ``(N, C, *)``; with fewer than 2 dims there is no channel dim (C = 1).
      weight: ``(1,)``/``()`` (shared) or ``(C,)``.
    Returns:
      ``input``'s shape. Gradient at 0: ``weight`` for the input, 0 for ``weight``.
    """
    x = _as_float(input, "prelu")
    w = jnp.asarray(weight)
    if w.ndim > 1:
        raise ShapeError(f"prelu: expected `weight` to be a scalar or 1-D array, got shape {tuple(w.shape)}.")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size not in (1, channels):
        raise ShapeError(
            f"prelu: weight has {w.size} parameters but the input {tuple(x.shape)} has {channels} "
            f"channels (dim 1; inputs with fewer than 2 dims have 1). Use PReLU({channels}) or "
            f"PReLU(1) (one shared slope)."
        )
    if w.size == 1:
        w = w.reshape(())
    else:
        _check_layout("prelu", x, "reads channels from dim 1")
        w = w.reshape((channels,) + (1,) * (x.ndim - 2))
    return jnp.where(x > 0, x, w * x)


def _elu(x: Array, alpha: float, scale: float, input_scale: float) -> Array:
    """ATen's ``elu(x, alpha, scale, input_scale)``: ``x·scale`` for ``x > 0``, else
    ``alpha·scale·(exp(x·input_scale) - 1)``; the ``x <= 0`` branch owns the tie at 0
    (gradient ``alpha·scale·input_scale``)."""
    neg = x <= 0
    safe = jnp.where(neg, x, jnp.zeros((), x.dtype))  # exp never sees a large positive x
    return jnp.where(neg, jnp.expm1(safe * input_scale) * (alpha * scale), x * scale)


def elu(input: Array, alpha: float = 1.0, inplace: bool = False) -> Array:
    """``x`` for ``x > 0``, else ``alpha·(exp(x) - 1)``; gradient ``alpha`` at 0 (torch's)."""
    return _elu(_as_float(input, "elu"), alpha, 1.0, 1.0)


def selu(input: Array, inplace: bool = False) -> Array:
    """``scale·elu(x, alpha)`` with torch's constants; gradient ``scale·alpha`` at 0."""
    return _elu(_as_float(input, "selu"), _SELU_ALPHA, _SELU_SCALE, 1.0)


def celu(input: Array, alpha: float = 1.0, inplace: bool = False) -> Array:
    """``max(0, x) + min(0, alpha·(exp(x/alpha) - 1))``; gradient 1 at 0 (see :func:`_celu`)."""
    if _static(alpha) and alpha == 0:
        raise ValueError("ZeroDivisionError in CELU: alpha cannot be 0.")
    return _celu(_as_float(input, "celu"), alpha)


@jax.custom_jvp
def _celu(x: Array, alpha: float | Array) -> Array:
    return _elu(x, alpha, 1.0, 1.0 / alpha)


def _celu_jvp(primals, tangents):
    # torch's derivatives.yaml differentiates celu as elu_backward(grad, alpha, 1,
    # 1.0/alpha.toFloat(), ...): the backward's input scale is 1/alpha with alpha rounded
    # to float32, while the forward's is exact. In float64 that moves the gradient by up
    # to ~1e-7 relative (1.00000003 at 0 for alpha=1.779...); we take torch's number.
    (x, alpha), (tx, talpha) = primals, tangents
    inv = 1.0 / jnp.asarray(alpha).astype(jnp.float32).astype(x.dtype)
    neg = x <= 0
    safe = jnp.where(neg, x, jnp.zeros((), x.dtype))
    slope = jnp.where(neg, jnp.exp(safe * inv) * (alpha * inv), jnp.ones((), x.dtype))
    y = _celu(x, alpha)
    dy = jnp.zeros_like(y) if isinstance(tx, SymbolicZero) else tx * slope
    if not isinstance(talpha, SymbolicZero):
        # torch has no gradient for alpha (a Scalar); this is the exact one, for traced alphas
        e = jnp.exp(safe / alpha)
        dy = dy + talpha * jnp.where(neg, (e - 1) - (safe / alpha) * e, jnp.zeros((), x.dtype))
    return y, dy


_celu.defjvp(_celu_jvp, symbolic_zeros=True)


def gelu(input: Array, approximate: str = "none") -> Array:
    """``x·Φ(x)`` (``approximate='none'``) or ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``
    (``'tanh'``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}.")
    x = _as_float(input, "gelu")
    if approximate == "tanh":
        return jax.nn.gelu(x, approximate=True)
    # torch's formula, 0.5·x·(1 + erf(x/√2)), not jax.nn.gelu's erfc form: for x << 0 in
    # float32 the two differ in the fourth digit (gelu(-4): -1.2672e-4 vs -1.2669e-4)
    return x * 0.5 * (1 + jax.lax.erf(x * _SQRT1_2))


def silu(input: Array, inplace: bool = False) -> Array:
    """``x·sigmoid(x)`` (swish)."""
    return jax.nn.silu(_as_float(input, "silu"))


def mish(input: Array, inplace: bool = False) -> Array:
    """``x·tanh(softplus(x))`` (softplus without torch's threshold, as in ATen's mish)."""
    x = _as_float(input, "mish")
    return x * jnp.tanh(jax.nn.softplus(x))


def hardswish(input: Array, inplace: bool = False) -> Array:
    """``0`` for ``x <= -3``, ``x`` for ``x >= 3``, else ``x·(x + 3)/6``.

    torch's backward gives 0 at -3 and 1 at 3 (the outer branches own the ties).
    """
    x = _as_float(input, "hardswish")
    # x·0, not 0: torch's x·min(max(x + 3, 0), 6)/6 is NaN at -inf; the middle branch never
    # sees ±inf, whose NaN gradient would leak through the where (torch's is 0 and 1 there)
    mid = jnp.where(jnp.isinf(x), jnp.zeros((), x.dtype), x)
    return jnp.where(x <= -3, x * 0, jnp.where(x >= 3, x, mid * (mid + 3) / 6))


def hardsigmoid(input: Array, inplace: bool = False) -> Array:
    """``0`` for ``x <= -3``, ``1`` for ``x >= 3``, else ``(x + 3)/6``; gradient 0 at ±3."""
    return _hardsigmoid(_as_float(input, "hardsigmoid"))


@jax.custom_jvp
def _hardsigmoid(x: Array) -> Array:
    return jnp.where(x <= -3, jnp.zeros((), x.dtype), jnp.where(x >= 3, jnp.ones((), x.dtype), (x + 3) / 6))


@_hardsigmoid.defjvp
def _hardsigmoid_jvp(primals, tangents):
    # torch's hardsigmoid_backward multiplies by `1.0f / 6.0f`, a float32 constant, in every
    # dtype: its float64 gradient is 0.16666667163..., not 1/6; we take torch's number
    (x,), (t,) = primals, tangents
    inside = (x > -3) & (x < 3)
    return _hardsigmoid(x), t * jnp.where(inside, jnp.asarray(_ONE_SIXTH_F32, x.dtype), jnp.zeros((), x.dtype))


def sigmoid(input: Array) -> Array:
    """``1/(1 + exp(-x))``; integer inputs are promoted to float, as in torch."""
    return jax.nn.sigmoid(_promote_float(input))


def tanh(input: Array) -> Array:
    """``tanh(x)``; integer inputs are promoted to float, as in torch."""
    return jnp.tanh(_promote_float(input))


def softsign(input: Array) -> Array:
    """``x/(1 + |x|)``; integer inputs are promoted to float, as in torch."""
    x = _promote_float(input)
    return x / (jnp.abs(x) + 1)


def softplus(input: Array, beta: float = 1, threshold: float = 20) -> Array:
    """``log(1 + exp(beta·x))/beta``, and ``x`` where ``beta·x > threshold`` (linear region).

    At ``beta·x == threshold`` the smooth branch is taken (value and gradient), as in torch.
    """
    x = _as_float(input, "softplus")
    xb = x * beta
    linear = xb > threshold
    safe = jnp.where(linear, jnp.zeros((), x.dtype), xb)  # exp never overflows in the unused branch
    return jnp.where(linear, x, jnp.log1p(jnp.exp(safe)) / beta)


def threshold(input: Array, threshold: float, value: float, inplace: bool = False) -> Array:
    """``x`` where ``x > threshold``, else ``value``; gradient 0 at the threshold.

    Integer inputs stay integer, as in torch.
    """
    x = jnp.asarray(input)
    return jnp.where(x <= jnp.asarray(threshold, x.dtype), jnp.asarray(value, x.dtype), x)


def logsigmoid(input: Array) -> Array:
    """``log(sigmoid(x)) = -softplus(-x)``, computed stably."""
    return jax.nn.log_sigmoid(_as_float(input, "logsigmoid"))


def hardshrink(input: Array, lambd: float = 0.5) -> Array:
    """``0`` where ``-lambd <= x <= lambd``, else ``x``; gradient 0 on the bounds (torch's)."""
    x = _as_float(input, "hardshrink")
    return jnp.where((x >= -lambd) & (x <= lambd), jnp.zeros((), x.dtype), x)


def softshrink(input: Array, lambd: float = 0.5) -> Array:
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else ``0`` (``x·0``:
    NaN stays NaN, as in ATen); gradient 0 on the bounds."""
    if _static(lambd) and lambd < 0:
        raise ValueError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    x = _as_float(input, "softshrink")
    return jnp.where(x > lambd, x - lambd, jnp.where(x < -lambd, x + lambd, x * 0))


def tanhshrink(input: Array) -> Array:
    """``x - tanh(x)``."""
    x = _promote_float(input)
    return x - jnp.tanh(x)


def glu(input: Array, dim: int = -1) -> Array:
    """``a·sigmoid(b)`` with ``a, b`` the two halves of ``input`` along ``dim``.

    Args:
      input: ``(*, 2M, *)``, ``dim`` of even size.
    Returns:
      ``(*, M, *)``.
    """
    x = _as_float(input, "glu")
    if x.ndim == 0:
        raise ShapeError("glu does not support scalars because halving size must be even")
    _check_dim("glu", x, dim)
    if x.shape[dim] % 2:
        raise ShapeError(
            f"glu: halving dimension must be even, but dimension {dim % x.ndim} of input "
            f"{tuple(x.shape)} is size {x.shape[dim]}"
        )
    a, b = jnp.split(x, 2, axis=dim)
    return a * jax.nn.sigmoid(b)


def rrelu(input: Array, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0, training: bool = False,
          inplace: bool = False, *, key: PRNGKey | None = None) -> Array:
    """Randomized leaky ReLU: ``x`` for ``x > 0``, else ``a·x``.

    ``a`` is ``(lower + upper)/2`` in evaluation (torch's ``leaky_relu``), and drawn per
    element from ``U(lower, upper)`` when ``training`` (from ``key``; torch's draws differ).
    """
    x = _as_float(input, "rrelu")
    if not training:
        return leaky_relu(x, (lower + upper) / 2)
    if key is None:
        raise ValueError("rrelu in training mode needs a PRNG key: pass key=jax.random.key(seed) (or training=False).")
    a = jax.random.uniform(key, x.shape, x.dtype, lower, upper)
    return jnp.where(x > 0, x, a * x)


# ------------------------------------------------------------------ the softmax family
def _softmax_dim(name: str, x: Array, dim: int | None, stacklevel: int) -> int:
    """torch's ``_get_softmax_dim``: with ``dim=None`` warn and pick 0 for 0-, 1- and
    3-D inputs (unbatched), else 1."""
    if dim is not None:
        return dim
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if x.ndim in (0, 1, 3) else 1


def _check_dim(who: object, x: Array, dim: int) -> None:
    n = max(x.ndim, 1)  # torch lets a 0-D input take dim 0 or -1
    if not -n <= dim < n:
        raise ShapeError(
            f"{who} got dim={dim} for an input of shape {tuple(x.shape)}: dim must be in "
            f"[{-n}, {n - 1}]. Pass the dim of the class scores (dim=1 for (N, C, ...), -1 for the last)."
        )


def _softmax_like(fn, name: str, input: Array, dim: int | None, stacklevel: int, dtype: DTypeLike | None) -> Array:
    x = jnp.asarray(input)
    if dtype is not None:  # torch casts before the operation (to avoid overflow)
        x = x.astype(dtype)
    x = _as_float(x, name)
    dim = _softmax_dim(name, x, dim, stacklevel + 1)
    _check_dim(name, x, dim)
    _check_layout(name, x, "reduces over a dim")
    if x.ndim == 0:
        return fn(x.reshape(1), axis=0).reshape(())
    return fn(x, axis=dim)


def softmax(input: Array, dim: int | None = None, _stacklevel: int = 3, dtype: DTypeLike | None = None) -> Array:
    """``exp(x_i) / Σ_j exp(x_j)`` along ``dim``.

    ``dim=None`` is torch's deprecated implicit choice (a warning; dim 0 for 0-, 1- and
    3-D inputs, else 1): pass ``dim``. ``dtype`` casts the input first.
    """
    return _softmax_like(jax.nn.softmax, "softmax", input, dim, _stacklevel, dtype)


def log_softmax(input: Array, dim: int | None = None, _stacklevel: int = 3, dtype: DTypeLike | None = None) -> Array:
    """``x_i - log Σ_j exp(x_j)`` along ``dim`` (computed stably; see :func:`softmax` for ``dim``)."""
    return _softmax_like(jax.nn.log_softmax, "log_softmax", input, dim, _stacklevel, dtype)


def softmin(input: Array, dim: int | None = None, _stacklevel: int = 3, dtype: DTypeLike | None = None) -> Array:
    """``softmax(-x)`` along ``dim`` (see :func:`softmax` for ``dim`` and ``dtype``)."""
    return _softmax_like(lambda x, axis: jax.nn.softmax(-x, axis=axis), "softmin", input, dim, _stacklevel, dtype)


# ------------------------------------------------------------------------------ layers
@dataclass(frozen=True, repr=False)
class _Activation(Module):
    """A parameter-free element-wise layer: ``x: (*) -> (*)`` in any layout."""

    _floats_only: ClassVar[bool] = True  # torch has integer kernels only for a few

    def _forward(self, x: Array) -> Array:
        raise NotImplementedError

    def apply(self, params, state, x, *, train=False, key=None):
        x = _as_float(x, self) if self._floats_only else jnp.asarray(x)
        return self._forward(x), state

    def _inplace(self, lead: str = "") -> str:
        """torch's ``extra_repr`` shows ``inplace=True`` only when set."""
        if not getattr(self, "inplace", False):
            return lead
        return f"{lead}, inplace=True" if lead else "inplace=True"


@dataclass(frozen=True, repr=False)
class ReLU(_Activation):
    """``max(x, 0)``, gradient 0 at 0 (``torch.nn.ReLU``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReLU().apply({}, {}, jnp.array([-1.0, 0.0, 2.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [0.0, 0.0, 2.0]
    """

    inplace: bool = False
    _floats_only: ClassVar[bool] = False

    def _forward(self, x):
        return relu(x)

    def extra_repr(self):
        return self._inplace()


@dataclass(frozen=True, repr=False)
class Hardtanh(_Activation):
    """``clamp(x, min_val, max_val)``; gradient 0 on the bounds (``torch.nn.Hardtanh``).

    ``min_value``/``max_value`` are torch's deprecated spellings (a FutureWarning).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Hardtanh(-1.0, 1.0).apply({}, {}, jnp.array([-2.0, 0.5, 3.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [-1.0, 0.5, 1.0]
    """

    min_val: float = -1.0
    max_val: float = 1.0
    inplace: bool = False
    min_value: float | None = None
    max_value: float | None = None
    _floats_only: ClassVar[bool] = False

    def __post_init__(self):
        for old, new in (("min_value", "min_val"), ("max_value", "max_val")):
            if getattr(self, old) is not None:
                warnings.warn(f"keyword argument `{old}` is deprecated and renamed to `{new}`", FutureWarning, stacklevel=3)
                object.__setattr__(self, new, getattr(self, old))
                object.__setattr__(self, old, None)
        if self.max_val <= self.min_val:
            raise ValueError(f"max_val ({self.max_val}) must be greater than min_val ({self.min_val})")

    def _forward(self, x):
        return hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return self._inplace(f"min_val={self.min_val}, max_val={self.max_val}")


@dataclass(frozen=True, repr=False)
class ReLU6(_Activation):
    """``min(max(x, 0), 6)``; gradient 0 at 0 and 6 (``torch.nn.ReLU6``, a Hardtanh(0, 6)).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ReLU6().apply({}, {}, jnp.array([-1.0, 3.0, 8.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [0.0, 3.0, 6.0]
    """

    inplace: bool = False
    min_val: ClassVar[float] = 0.0
    max_val: ClassVar[float] = 6.0
    _floats_only: ClassVar[bool] = False

    def _forward(self, x):
        return relu6(x)

    def extra_repr(self):
        return self._inplace()


@dataclass(frozen=True, repr=False)
class LeakyReLU(_Activation):
    """``x if x > 0 else negative_slope·x``; gradient ``negative_slope`` at 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.LeakyReLU(negative_slope=0.25).apply({}, {}, jnp.array([-2.0, 3.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [-0.5, 3.0]
    """

    negative_slope: float = 1e-2
    inplace: bool = False

    def _forward(self, x):
        return leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return self._inplace(f"negative_slope={self.negative_slope}")


@dataclass(frozen=True, repr=False, init=False)
class PReLU(Module):
    """``x if x > 0 else weight·x`` with a learnable ``weight`` (``torch.nn.PReLU``).

    ``num_parameters`` is 1 (one slope shared by all channels) or C (one per channel,
    applied on dim 1: ``x: (N, C, *)``; an input with fewer than 2 dims has one channel).
    ``weight: (num_parameters,)`` starts at ``init`` (0.25), kept as ``init_value``
    because ``init`` is the module's initialiser here.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.PReLU()
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].tolist()  # one learnable slope, starting at 0.25
        [0.25]
        >>> y, _ = m.apply(params, state, jnp.array([-4.0, 2.0]))
        >>> y.tolist()
        [-1.0, 2.0]
    """

    num_parameters: int = 1
    init_value: float = 0.25

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        object.__setattr__(self, "num_parameters", num_parameters)
        object.__setattr__(self, "init_value", init)
        if self.num_parameters < 1:
            raise ValueError(f"PReLU needs num_parameters >= 1 (1 or the channel count), got {self.num_parameters}")

    def param_names(self):
        return ("weight",)

    def init_own(self, key: PRNGKey):
        return {"weight": jnp.full((self.num_parameters,), self.init_value, jnp.result_type(float))}, {}

    def apply(self, params, state, x, *, train=False, key=None):
        x = _as_float(x, self)
        if self.num_parameters > 1:
            channels = x.shape[1] if x.ndim >= 2 else 1
            if channels != self.num_parameters:
                raise ShapeError(
                    f"{self!r} expected input (N, {self.num_parameters}, *) (channels on dim 1), got "
                    f"{tuple(x.shape)}. An unbatched input needs a batch dim (x[None]); for one "
                    f"shared slope use PReLU(1)."
                )
            _check_layout(self, x, "reads channels from dim 1")
        return prelu(x, params["weight"]), state

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


@dataclass(frozen=True, repr=False)
class ELU(_Activation):
    """``x`` for ``x > 0``, else ``alpha·(exp(x) - 1)`` (``torch.nn.ELU``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.ELU().apply({}, {}, jnp.array([-1.0, 0.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]  # exp(-1) - 1 below 0
        [-0.6321, 0.0, 1.0]
    """

    alpha: float = 1.0
    inplace: bool = False

    def _forward(self, x):
        return elu(x, self.alpha)

    def extra_repr(self):
        return self._inplace(f"alpha={self.alpha}")


@dataclass(frozen=True, repr=False)
class SELU(_Activation):
    """``scale·(max(0, x) + min(0, alpha·(exp(x) - 1)))``, alpha ≈ 1.6733, scale ≈ 1.0507.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.SELU().apply({}, {}, jnp.array([-1.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]  # scale·(exp(-1) - 1)·alpha, scale·1
        [-1.1113, 1.0507]
    """

    inplace: bool = False

    def _forward(self, x):
        return selu(x)

    def extra_repr(self):
        return self._inplace()


@dataclass(frozen=True, repr=False)
class CELU(_Activation):
    """``max(0, x) + min(0, alpha·(exp(x/alpha) - 1))`` (``torch.nn.CELU``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.CELU(alpha=2.0).apply({}, {}, jnp.array([-2.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]  # 2·(exp(-2/2) - 1)
        [-1.2642, 1.0]
    """

    alpha: float = 1.0
    inplace: bool = False

    def __post_init__(self):
        if self.alpha == 0:
            raise ValueError("ZeroDivisionError in CELU: alpha cannot be 0.")

    def _forward(self, x):
        return celu(x, self.alpha)

    def extra_repr(self):
        return self._inplace(f"alpha={self.alpha}")


@dataclass(frozen=True, repr=False)
class GELU(_Activation):
    """``x·Φ(x)``, or its tanh approximation with ``approximate='tanh'``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> x = jnp.array([-1.0, 0.0, 1.0])
        >>> [round(v, 4) for v in nn.GELU().apply({}, {}, x)[0].tolist()]  # x·Φ(x)
        [-0.1587, 0.0, 0.8413]
        >>> [round(v, 4) for v in nn.GELU(approximate="tanh").apply({}, {}, x)[0].tolist()]
        [-0.1588, 0.0, 0.8412]
    """

    approximate: str = "none"

    def __post_init__(self):
        if self.approximate not in ("none", "tanh"):
            raise ValueError(f"approximate argument must be either none or tanh, got {self.approximate!r}.")

    def _forward(self, x):
        return gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


@dataclass(frozen=True, repr=False)
class SiLU(_Activation):
    """``x·sigmoid(x)`` (``torch.nn.SiLU``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.SiLU().apply({}, {}, jnp.array([0.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]  # x·sigmoid(x)
        [0.0, 0.7311]
    """

    inplace: bool = False

    def _forward(self, x):
        return silu(x)

    def extra_repr(self):
        return self._inplace()


@dataclass(frozen=True, repr=False)
class Mish(_Activation):
    """``x·tanh(softplus(x))`` (``torch.nn.Mish``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Mish().apply({}, {}, jnp.array([0.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]  # tanh(log(1 + e))
        [0.0, 0.8651]
    """

    inplace: bool = False

    def _forward(self, x):
        return mish(x)

    def extra_repr(self):
        return self._inplace()


@dataclass(frozen=True, repr=False)
class Hardswish(_Activation):
    """``x·relu6(x + 3)/6``; gradient 0 at -3 and 1 at 3 (``torch.nn.Hardswish``).

    torch's repr never shows ``inplace``; neither does this one.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Hardswish().apply({}, {}, jnp.array([0.0, 1.0, 4.0]))
        >>> [round(v, 4) for v in y.tolist()]  # 1·(1 + 3)/6; x from 3 on
        [0.0, 0.6667, 4.0]
    """

    inplace: bool = False

    def _forward(self, x):
        return hardswish(x)


@dataclass(frozen=True, repr=False)
class Hardsigmoid(_Activation):
    """``relu6(x + 3)/6``; gradient 0 at ±3 (``torch.nn.Hardsigmoid``; repr without ``inplace``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Hardsigmoid().apply({}, {}, jnp.array([-4.0, 0.0, 4.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [0.0, 0.5, 1.0]
    """

    inplace: bool = False

    def _forward(self, x):
        return hardsigmoid(x)


@dataclass(frozen=True, repr=False)
class Sigmoid(_Activation):
    """``1/(1 + exp(-x))`` (``torch.nn.Sigmoid``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Sigmoid().apply({}, {}, jnp.array([0.0, 2.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [0.5, 0.8808]
    """

    _floats_only: ClassVar[bool] = False

    def _forward(self, x):
        return sigmoid(x)


@dataclass(frozen=True, repr=False)
class Tanh(_Activation):
    """``tanh(x)`` (``torch.nn.Tanh``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Tanh().apply({}, {}, jnp.array([0.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]
        [0.0, 0.7616]
    """

    _floats_only: ClassVar[bool] = False

    def _forward(self, x):
        return tanh(x)


@dataclass(frozen=True, repr=False)
class Softsign(_Activation):
    """``x/(1 + |x|)`` (``torch.nn.Softsign``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Softsign().apply({}, {}, jnp.array([-3.0, 1.0]))
        >>> [round(v, 4) for v in y.tolist()]  # x/(1 + |x|)
        [-0.75, 0.5]
    """

    _floats_only: ClassVar[bool] = False

    def _forward(self, x):
        return softsign(x)


@dataclass(frozen=True, repr=False)
class Softplus(_Activation):
    """``log(1 + exp(beta·x))/beta``, linear (``x``) where ``beta·x > threshold``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Softplus().apply({}, {}, jnp.array([0.0, 30.0]))
        >>> [round(v, 4) for v in y.tolist()]  # log 2; linear past threshold=20
        [0.6931, 30.0]
    """

    beta: float = 1.0
    threshold: float = 20.0

    def _forward(self, x):
        return softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


@dataclass(frozen=True, repr=False)
class Threshold(_Activation):
    """``x`` where ``x > threshold``, else ``value`` (``torch.nn.Threshold``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Threshold(0.5, -1.0).apply({}, {}, jnp.array([0.0, 2.0]))
        >>> [round(v, 4) for v in y.tolist()]  # x if x > 0.5 else -1
        [-1.0, 2.0]
    """

    threshold: float
    value: float
    inplace: bool = False
    _floats_only: ClassVar[bool] = False

    def _forward(self, x):
        return threshold(x, self.threshold, self.value)

    def extra_repr(self):
        return self._inplace(f"threshold={self.threshold}, value={self.value}")


@dataclass(frozen=True, repr=False)
class _SoftmaxNd(Module):
    """Shared by Softmax/LogSoftmax/Softmin: ``x: (*) -> (*)`` normalised along ``dim``.

    ``dim=None`` is torch's deprecated implicit choice (a warning; 0 for 0-, 1- and 3-D
    inputs, else 1), kept so ported code behaves as it did in torch: pass ``dim``.
    """

    dim: int | None = None
    _fn: ClassVar[Any] = None
    _name: ClassVar[str] = ""

    def apply(self, params, state, x, *, train=False, key=None):
        x = _as_float(x, self)
        # user -> __call__ -> apply -> here: warn at the user's line, as torch's forward does
        dim = _softmax_dim(self._name, x, self.dim, 4)
        _check_dim(self, x, dim)
        _check_layout(self, x, "reduces over a dim")
        return type(self)._fn(x, dim), state

    def extra_repr(self):
        return f"dim={self.dim}"


@dataclass(frozen=True, repr=False)
class Softmax(_SoftmaxNd):
    """``exp(x_i) / Σ_j exp(x_j)`` along ``dim`` (``torch.nn.Softmax``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Softmax(dim=-1).apply({}, {}, jnp.log(jnp.array([1.0, 2.0, 5.0])))
        >>> [round(v, 4) for v in y.tolist()]  # proportional to exp(x): 1, 2, 5 out of 8
        [0.125, 0.25, 0.625]
    """

    _fn: ClassVar[Any] = staticmethod(softmax)
    _name: ClassVar[str] = "softmax"


@dataclass(frozen=True, repr=False)
class LogSoftmax(_SoftmaxNd):
    """``log(softmax(x))`` along ``dim``, computed stably (``torch.nn.LogSoftmax``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.LogSoftmax(dim=-1).apply({}, {}, jnp.array([0.0, 0.0]))
        >>> [round(v, 4) for v in y.tolist()]  # log(1/2)
        [-0.6931, -0.6931]
    """

    _fn: ClassVar[Any] = staticmethod(log_softmax)
    _name: ClassVar[str] = "log_softmax"


@dataclass(frozen=True, repr=False)
class Softmin(_SoftmaxNd):
    """``softmax(-x)`` along ``dim`` (``torch.nn.Softmin``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Softmin(dim=-1).apply({}, {}, jnp.log(jnp.array([1.0, 3.0])))
        >>> [round(v, 4) for v in y.tolist()]  # softmax(-x): the smaller input gets the larger weight
        [0.75, 0.25]
    """

    _fn: ClassVar[Any] = staticmethod(softmin)
    _name: ClassVar[str] = "softmin"



@dataclass(frozen=True, repr=False)
class Softmax2d(Module):
    """Softmax over the channels of ``(N, C, H, W)`` or ``(C, H, W)`` (dim -3).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Softmax2d().apply({}, {}, jnp.log(jnp.array([1.0, 3.0])).reshape(2, 1, 1))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]  # over C
        [0.25, 0.75]
    """

    def apply(self, params, state, x, *, train=False, key=None):
        x = _as_float(x, self)
        if x.ndim not in (3, 4):
            raise ShapeError(f"Softmax2d: expected input to be 3D or 4D, got {x.ndim}D {tuple(x.shape)} instead")
        _check_layout(self, x, "reduces over the channels")
        return softmax(x, -3), state


@dataclass(frozen=True, repr=False)
class LogSigmoid(_Activation):
    """``log(sigmoid(x))`` (``torch.nn.LogSigmoid``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.LogSigmoid().apply({}, {}, jnp.array([-1.0, 0.0, 2.0]))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]
        [-1.3133, -0.6931, -0.1269]
    """

    def _forward(self, x):
        return logsigmoid(x)


@dataclass(frozen=True, repr=False)
class Hardshrink(_Activation):
    """``0`` where ``|x| <= lambd``, else ``x`` (``torch.nn.Hardshrink``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Hardshrink(0.5).apply({}, {}, jnp.array([-1.0, 0.3, 0.5, 2.0]))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]
        [-1.0, 0.0, 0.0, 2.0]
    """

    lambd: float = 0.5

    def _forward(self, x):
        return hardshrink(x, self.lambd)

    def extra_repr(self):
        return f"{self.lambd}"


@dataclass(frozen=True, repr=False)
class Softshrink(_Activation):
    """``x ∓ lambd`` beyond ``±lambd``, else ``0`` (``torch.nn.Softshrink``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Softshrink(0.5).apply({}, {}, jnp.array([-1.0, 0.3, 2.0]))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]
        [-0.5, 0.0, 1.5]
    """

    lambd: float = 0.5

    def _forward(self, x):
        return softshrink(x, self.lambd)

    def extra_repr(self):
        return str(self.lambd)


@dataclass(frozen=True, repr=False)
class Tanhshrink(_Activation):
    """``x - tanh(x)`` (``torch.nn.Tanhshrink``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.Tanhshrink().apply({}, {}, jnp.array([0.0, 1.0]))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]
        [0.0, 0.2384]
    """

    def _forward(self, x):
        return tanhshrink(x)


@dataclass(frozen=True, repr=False)
class GLU(Module):
    """``a·sigmoid(b)`` over the halves of ``dim`` (``torch.nn.GLU``): ``(*, 2M, *) -> (*, M, *)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.GLU().apply({}, {}, jnp.array([1.0, 2.0, 0.0, 100.0]))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]  # [1, 2] gated by sigmoid([0, 100])
        [0.5, 2.0]
    """

    dim: int = -1

    def apply(self, params, state, x, *, train=False, key=None):
        return glu(x, self.dim), state

    def extra_repr(self):
        return f"dim={self.dim}"


@dataclass(frozen=True, repr=False)
class RReLU(Module):
    """Randomized leaky ReLU (``torch.nn.RReLU``): slope ``(lower + upper)/2`` in eval,
    per-element ``U(lower, upper)`` draws in training (needs ``key``).

    Example:
        >>> import jax.numpy as jnp
        >>> from funcnets import nn
        >>> y, _ = nn.RReLU().apply({}, {}, jnp.array([-1.0, 2.0]))
        >>> [round(v, 4) for v in y.reshape(-1).tolist()]  # eval: slope (1/8 + 1/3) / 2
        [-0.2292, 2.0]
    """

    lower: float = 1.0 / 8.0
    upper: float = 1.0 / 3.0
    inplace: bool = False

    def apply(self, params, state, x, *, train=False, key=None):
        return rrelu(x, self.lower, self.upper, train, key=key), state

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}" + (", inplace=True" if self.inplace else "")

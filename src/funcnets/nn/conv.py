"""Convolutions: ``torch.nn.Conv1d``/``Conv2d``/``Conv3d``, ``ConvTranspose1d``/``2d``/``3d``
and their functional forms (the lowering choices are in ``_conv.py``).

Every option of torch's: ``stride``, ``padding`` (an int, a tuple, ``'valid'`` or ``'same'``,
which pads ``d·(k - 1)`` in all, the odd one on the right/bottom as torch does, and needs
stride 1), ``dilation``, ``groups`` (depthwise included, with channel multipliers),
``bias`` and ``padding_mode`` (``'zeros'``, ``'reflect'``, ``'replicate'``, ``'circular'``:
the input is padded with :func:`funcnets.nn.functional.pad` in that mode, then convolved
without padding, as torch does). Transposed convolutions take ``output_padding`` and,
when called, ``output_size`` (torch's ``_output_padding``).

Layouts: inputs are torch's ``(N, C, *S)`` or unbatched ``(C, *S)``; weights ``(C_out,
C_in/groups, *k)``, transposed ``(C_in, C_out/groups, *k)``. ``conv2d``/``Conv2d`` also
follow :func:`channels_last`/:func:`batch_last`, ``conv_transpose2d``/``ConvTranspose2d``
:func:`channels_last` (where oneDNN's deconvolution needs no transposes); the other
convolutions raise inside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn import _conv, init
from funcnets.nn._layout import _LAYOUT, _batch_axis, _channels, _check_4d, _check_float, _layout, _ntuple
from funcnets.nn.module import Module
from funcnets.nn.padding import _non_constant

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
]

IntOrN = int | Sequence[int]
_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# ----------------------------------------------------------------------------- shared checks
def _padding_pairs(padding, kernel, stride, dilation, n: int) -> tuple[tuple[int, int], ...]:
    """torch's ``padding`` argument as ``(before, after)`` per spatial dimension."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            # torch: the total d·(k - 1), the odd one after (right/bottom)
            return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))
        raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
    return tuple((p, p) for p in _ntuple(padding, n, "padding"))


def _expected(n: int, c: int | str) -> str:
    """The batched input shape in the current layout (2-D) or torch's (1-D, 3-D)."""
    return _layout(c) if n == 2 else f"(N, {c}, {_SPATIAL[n]})"


def _no_layout(who: str, n: int, channels_last: bool = False) -> str:
    """The layout to run in: the layout contexts are for the 2-D image layers (the 2-D
    transposed convolution follows channels_last); the others refuse them."""
    layout = _LAYOUT.get()
    if layout == "NCHW" or (channels_last and n == 2 and layout == "NHWC"):
        return layout
    where = "F.batch_last()" if channels_last else "F.channels_last()/F.batch_last()"
    raise ShapeError(
        f"{who} takes torch's layout (N, C, {_SPATIAL[n]}); it does not run inside {where}, "
        f"which only conv2d/Conv2d and the other 2-D image layers follow. Call it outside that "
        f"block (with the activation moved back to NCHW)."
    )


def _check_input(who: str, x: Array, c_in: int, n: int) -> None:
    """``x`` must be ``(N, C_in, *S)`` or ``(C_in, *S)`` (for 2-D: in the current layout)."""
    if x.ndim not in (n + 1, n + 2):
        raise ShapeError(
            f"{who} expected input {_expected(n, c_in)}, got {tuple(x.shape)}: a {n}-d convolution "
            f"takes a batch, or one sample ({c_in}, {_SPATIAL[n]}) without the batch axis."
        )
    c = _channels(x) if n == 2 else x.shape[-n - 1]
    if c != c_in:
        raise ShapeError(
            f"{who} expected input {_expected(n, c_in)}, got {tuple(x.shape)}: the input has {c} "
            f"channels, the convolution takes {c_in} (one sample: ({c_in}, {_SPATIAL[n]})). Pass "
            f"{c_in} channels, or build the layer with in_channels={c}."
        )


def _check_size(who: str, sizes, pads, kernel, dilation) -> None:
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads))
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < e for p, e in zip(padded, eff)):
        raise ShapeError(
            f"{who}: input {tuple(sizes)} (padded {padded}) is smaller than the kernel {eff} "
            f"(dilation·(kernel_size - 1) + 1). Use a larger input, more padding or a smaller kernel."
        )


# ----------------------------------------------------------------------------- functional
def _convolution(x, weight, bias, stride, padding, dilation, groups, n: int, op: str) -> Array:
    layout = _LAYOUT.get() if n == 2 else "NCHW"
    if n != 2:
        _no_layout(op, n)
    elif layout != "NCHW":
        _check_4d(x, op)
    if weight.ndim != n + 2:
        raise ShapeError(f"{op}: weight must be (C_out, C_in/groups, {_SPATIAL[n]}), got shape {tuple(weight.shape)}")
    if groups <= 0 or weight.shape[0] % groups:
        raise ValueError(f"{op}: out_channels ({weight.shape[0]}) must be divisible by groups ({groups}), a positive integer")
    _check_input(op, x, weight.shape[1] * groups, n)
    stride, dilation = _ntuple(stride, n, "stride"), _ntuple(dilation, n, "dilation")
    kernel = weight.shape[2:]
    pads = _padding_pairs(padding, kernel, stride, dilation, n)
    unbatched = x.ndim == n + 1  # the batch axis goes where the layout has it (0 but in batch_last)
    xb = jnp.expand_dims(x, _batch_axis()) if unbatched else x
    y = _convolve(op, xb, weight, bias, stride, pads, dilation, groups, layout)
    return jnp.squeeze(y, _batch_axis()) if unbatched else y


def _convolve(who: str, x, weight, bias, stride, pads, dilation, groups, layout) -> Array:
    """A batched convolution once its arguments are checked: the size check, the lowering, the bias."""
    _check_size(who, _conv._spatial_sizes(x.shape, layout), pads, weight.shape[2:], dilation)
    return _conv.conv_nd(x, weight, stride, pads, dilation, groups, layout, bias)


def conv1d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrN = 1, padding: IntOrN | str = 0,
           dilation: IntOrN = 1, groups: int = 1) -> Array:
    """1-D cross-correlation, ``torch.nn.functional.conv1d``.

    Args:
      x: ``(N, C_in, L)`` or ``(C_in, L)``; weight: ``(C_out, C_in / groups, k)``; bias: ``(C_out,)``.
      padding: an int, ``(p,)``, ``'valid'`` or ``'same'`` (stride 1).
    Returns:
      ``(N, C_out, L_out)``, ``L_out = (L + 2p - d·(k - 1) - 1) // s + 1``.
    """
    return _convolution(x, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrN = 1, padding: IntOrN | str = 0,
           dilation: IntOrN = 1, groups: int = 1) -> Array:
    """2-D cross-correlation, ``torch.nn.functional.conv2d``.

    Args:
      x: ``(N, C_in, H, W)`` or ``(C_in, H, W)`` (inside :func:`channels_last`/:func:`batch_last`,
        ``(N, H, W, C_in)``/``(C_in, H, W, N)``); weight: ``(C_out, C_in / groups, kH, kW)``;
        bias: ``(C_out,)``. padding: an int, a pair, ``'valid'`` or ``'same'`` (stride 1).
    Returns:
      ``(N, C_out, H_out, W_out)`` with ``H_out = (H + 2p - d(k-1) - 1) // s + 1``.
    """
    return _convolution(x, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv3d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrN = 1, padding: IntOrN | str = 0,
           dilation: IntOrN = 1, groups: int = 1) -> Array:
    """3-D cross-correlation, ``torch.nn.functional.conv3d``.

    Args:
      x: ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``; weight: ``(C_out, C_in / groups, kD, kH, kW)``;
      bias: ``(C_out,)``. padding: an int, a triple, ``'valid'`` or ``'same'`` (stride 1).
    Returns:
      ``(N, C_out, D_out, H_out, W_out)``, each ``(S + 2p - d·(k - 1) - 1) // s + 1``.
    """
    return _convolution(x, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, n: int, op: str) -> Array:
    layout = _no_layout(op, n, channels_last=True)
    if layout != "NCHW":
        _check_4d(x, op)
    if weight.ndim != n + 2:
        raise ShapeError(f"{op}: weight must be (C_in, C_out/groups, {_SPATIAL[n]}), got shape {tuple(weight.shape)}")
    if groups <= 0 or weight.shape[0] % groups:
        raise ValueError(f"{op}: in_channels ({weight.shape[0]}) must be divisible by groups ({groups}), a positive integer")
    _check_input(op, x, weight.shape[0], n)
    stride, dilation = _ntuple(stride, n, "stride"), _ntuple(dilation, n, "dilation")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of ints, got {padding!r}")
    padding, output_padding = _ntuple(padding, n, "padding"), _ntuple(output_padding, n, "output_padding")
    if any(op_ >= s and op_ >= d for op_, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"{op}: output padding must be smaller than either stride or dilation, but got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    unbatched = x.ndim == n + 1
    xb = x[None] if unbatched else x
    sizes = _conv._spatial_sizes(xb.shape, layout)
    out = [_conv.transposed_out_size(L, k, s, p, o, d)
           for L, k, s, p, o, d in zip(sizes, weight.shape[2:], stride, padding, output_padding, dilation)]
    if any(o < 0 for o in out):
        raise ShapeError(
            f"{op}: input {sizes} gives a negative output size {tuple(out)} "
            f"((L - 1)·stride - 2·padding + dilation·(k - 1) + output_padding + 1); use less padding"
        )
    y = _conv.conv_transpose_nd(xb, weight, stride, padding, output_padding, dilation, groups, layout)
    y = _conv.add_bias(y, bias, layout)
    return y[0] if unbatched else y


def conv_transpose1d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrN = 1, padding: IntOrN = 0,
                     output_padding: IntOrN = 0, groups: int = 1, dilation: IntOrN = 1) -> Array:
    """``torch.nn.functional.conv_transpose1d``, the gradient of ``conv1d`` with respect to its input.

    Args:
      x: ``(N, C_in, L)`` or ``(C_in, L)``; weight: ``(C_in, C_out / groups, k)``; bias: ``(C_out,)``.
    Returns:
      ``(N, C_out, L_out)``, ``L_out = (L - 1)·s - 2p + d·(k - 1) + output_padding + 1``.
    """
    return _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, 1, "conv_transpose1d")


def conv_transpose2d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrN = 1, padding: IntOrN = 0,
                     output_padding: IntOrN = 0, groups: int = 1, dilation: IntOrN = 1) -> Array:
    """``torch.nn.functional.conv_transpose2d`` ("deconvolution"), the gradient of ``conv2d``
    with respect to its input.

    Args:
      x: ``(N, C_in, H, W)`` or ``(C_in, H, W)`` (inside :func:`channels_last`: ``(N, H, W, C_in)``);
        weight: ``(C_in, C_out / groups, kH, kW)``; bias: ``(C_out,)``.
    Returns:
      ``(N, C_out, H_out, W_out)``, ``H_out = (H - 1)·s - 2p + d·(k - 1) + output_padding + 1``.
    """
    return _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, 2, "conv_transpose2d")


def conv_transpose3d(x: Array, weight: Array, bias: Array | None = None, stride: IntOrN = 1, padding: IntOrN = 0,
                     output_padding: IntOrN = 0, groups: int = 1, dilation: IntOrN = 1) -> Array:
    """``torch.nn.functional.conv_transpose3d``.

    Args:
      x: ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``; weight: ``(C_in, C_out / groups, kD, kH, kW)``.
    Returns:
      ``(N, C_out, D_out, H_out, W_out)``, each ``(S - 1)·s - 2p + d·(k - 1) + output_padding + 1``.
    """
    return _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, 3, "conv_transpose3d")


# ----------------------------------------------------------------------------- layers
class _ConvNd(Module):
    """What Conv1d/2d/3d and ConvTranspose1d/2d/3d share: torch's argument checks, the
    parameters ``weight`` and ``bias`` with torch's default initialisation, the repr."""

    _n = 2
    _transposed = False

    def __post_init__(self):
        n, name = self._n, type(self).__name__
        for field in ("kernel_size", "stride", "dilation") + (("output_padding",) if self._transposed else ()):
            object.__setattr__(self, field, _ntuple(getattr(self, field), n, field))
        if isinstance(self.padding, str):
            if self._transposed:
                raise ValueError(f"{name}: padding must be an int or a tuple of {n} ints, got {self.padding!r}")
            _padding_pairs(self.padding, self.kernel_size, self.stride, self.dilation, n)  # torch's checks
        else:
            object.__setattr__(self, "padding", _ntuple(self.padding, n, "padding"))
        if not isinstance(self.groups, int) or self.groups <= 0:
            raise ValueError("groups must be a positive integer")
        if self.in_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({self.in_channels}) must be divisible by groups ({self.groups})")
        if self.out_channels % self.groups:
            raise ValueError(f"{name}: out_channels ({self.out_channels}) must be divisible by groups ({self.groups})")
        if self.padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {set(_PADDING_MODES)}, but got padding_mode='{self.padding_mode}'"
            )
        if self._transposed and self.padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {name}')

    def param_names(self):
        return ("weight", "bias") if self.bias else ("weight",)

    def _weight_shape(self) -> tuple[int, ...]:
        if self._transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def init_own(self, key):
        """torch's ``kaiming_uniform_(a=√5)`` = U(±1/√fan_in) for the weight and the bias,
        ``fan_in = weight.shape[1]·prod(kernel_size)`` (``C_out/groups·prod(k)`` when transposed)."""
        kw, kb = jax.random.split(key)
        shape = self._weight_shape()
        bound = init.default_bound(shape[1] * math.prod(self.kernel_size))
        params = {"weight": init.uniform(kw, shape, -bound, bound)}
        if self.bias:
            params["bias"] = init.uniform(kb, (self.out_channels,), -bound, bound)
        return params, {}

    def _batched(self, x: Array) -> tuple[Array, bool]:
        """Checks the input (dtype, rank, channels) and gives it a batch axis."""
        _check_float(self, x)
        if self._n != 2 or self._transposed:
            _no_layout(repr(self), self._n, channels_last=self._transposed)
        _check_input(repr(self), x, self.in_channels, self._n)
        if x.ndim == self._n + 2:
            return x, False
        return jnp.expand_dims(x, _batch_axis()), True

    def extra_repr(self):
        n = self._n
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if isinstance(self.padding, str):
            s += f", padding={self.padding}"
        elif self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self._transposed and self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if not self.bias:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    def apply(self, params, state, x, *, train=False, key=None):
        layout = _LAYOUT.get() if self._n == 2 else "NCHW"
        xb, unbatched = self._batched(x)
        pads = _padding_pairs(self.padding, self.kernel_size, self.stride, self.dilation, self._n)
        if self.padding_mode != "zeros":
            xb, pads = self._pad(xb, pads, layout), ((0, 0),) * self._n
        y = _convolve(repr(self), xb, params["weight"], params.get("bias"), self.stride, pads, self.dilation,
                      self.groups, layout)
        return (jnp.squeeze(y, _batch_axis()) if unbatched else y), state

    def _pad(self, x: Array, pads, layout: str) -> Array:
        """torch's ``F.pad(x, _reversed_padding_repeated_twice, mode=padding_mode)``."""
        c_axis, _ = _conv._axes(x.ndim, layout)
        n_axis = {"NCHW": 0, "NHWC": 0, "CHWN": x.ndim - 1}[layout]
        xt = jnp.moveaxis(x, (n_axis, c_axis), (0, 1))  # (N, C, *S) for F.pad's trailing dimensions
        try:
            xt = _non_constant(xt, list(pads), self.padding_mode)
        except ShapeError as e:
            raise ShapeError(f"{self!r} on an input of shape {tuple(x.shape)}: {e.message}") from None
        return jnp.moveaxis(xt, (0, 1), (n_axis, c_axis))


@dataclass(frozen=True, repr=False)
class Conv1d(_Conv):
    """1-D convolution (``torch.nn.Conv1d``): ``(N, C_in, L) -> (N, C_out, L_out)`` (or
    unbatched ``(C_in, L)``), weight ``(C_out, C_in/groups, k)``,
    ``L_out = (L + 2p - d·(k - 1) - 1) // s + 1``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Conv1d(4, 6, kernel_size=3, stride=2)
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].shape, params["bias"].shape
        ((6, 4, 3), (6,))
        >>> y, state = m.apply(params, state, jnp.ones((2, 4, 11)))
        >>> y.shape  # L_out = (11 - 3) // 2 + 1
        (2, 6, 5)
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int]
    stride: int | tuple[int] = 1
    padding: int | tuple[int] | str = 0
    dilation: int | tuple[int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    _n = 1


@dataclass(frozen=True, repr=False)
class Conv2d(_Conv):
    """2-D convolution (``torch.nn.Conv2d``): ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)``
    (or unbatched ``(C_in, H, W)``; follows :func:`channels_last`/:func:`batch_last`), weight
    ``(C_out, C_in/groups, kH, kW)``, ``H_out = (H + 2p - d·(k - 1) - 1) // s + 1``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].shape
        (8, 3, 3, 3)
        >>> y, state = m.apply(params, state, jnp.ones((2, 3, 16, 16)))
        >>> y.shape
        (2, 8, 16, 16)
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    _n = 2


@dataclass(frozen=True, repr=False)
class Conv3d(_Conv):
    """3-D convolution (``torch.nn.Conv3d``): ``(N, C_in, D, H, W) -> (N, C_out, D_out, H_out,
    W_out)`` (or unbatched ``(C_in, D, H, W)``), weight ``(C_out, C_in/groups, kD, kH, kW)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.Conv3d(2, 4, kernel_size=3, padding=(0, 1, 1))
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.ones((1, 2, 5, 6, 6)))
        >>> y.shape  # D shrinks by k - 1 = 2; H and W are padded by 1
        (1, 4, 3, 6, 6)
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int, int]
    stride: int | tuple[int, int, int] = 1
    padding: int | tuple[int, int, int] | str = 0
    dilation: int | tuple[int, int, int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    _n = 3


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __call__(self, params, state, x, output_size: Sequence[int] | None = None, *, train=False, key=None):
        return self.apply(params, state if state is not None else {}, x, output_size, train=train, key=key)

    def apply(self, params, state, x, output_size: Sequence[int] | None = None, *, train=False, key=None):
        """``x: (N, C_in, *S)`` or ``(C_in, *S)``; ``output_size`` (the spatial size, optionally
        with the leading dimensions) picks the output padding as torch's ``_output_padding``."""
        xb, unbatched = self._batched(x)
        output_padding = self._output_padding(x, output_size)
        y = _conv_transpose(xb, params["weight"], params.get("bias"), self.stride, self.padding, output_padding,
                            self.groups, self.dilation, self._n, repr(self))
        return (y[0] if unbatched else y), state

    def _output_padding(self, x: Array, output_size) -> tuple[int, ...]:
        """torch's ``_output_padding``: ``output_size`` is the spatial size, or the whole
        output shape (in the current layout: ``(N, H, W, C)`` inside channels_last)."""
        if output_size is None:
            return self.output_padding
        n, lead = self._n, x.ndim - self._n
        size = [int(s) for s in output_size]
        spatial = list(_conv._axes(n + 2, _LAYOUT.get())[1])
        if x.ndim == n + 1:  # unbatched: no batch axis (it sits first, 0, in NCHW and NHWC)
            spatial = [a - 1 for a in spatial]
        if len(size) == lead + n:
            size = [size[a] for a in spatial]
        if len(size) != n:
            raise ValueError(
                f"ConvTranspose{n}D: for {x.ndim}D input, output_size must have {n} or {lead + n} "
                f"elements (got {len(size)})"
            )
        sizes = [x.shape[a] for a in spatial]
        lo = [(L - 1) * s - 2 * p + d * (k - 1) + 1
              for L, s, p, d, k in zip(sizes, self.stride, self.padding, self.dilation, self.kernel_size)]
        hi = [m + s - 1 for m, s in zip(lo, self.stride)]
        if any(not a <= v <= b for v, a, b in zip(size, lo, hi)):
            raise ValueError(
                f"requested an output size of {size}, but valid sizes range from {lo} to {hi} "
                f"(for an input of {sizes})"
            )
        return tuple(v - a for v, a in zip(size, lo))


@dataclass(frozen=True, repr=False)
class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution (``torch.nn.ConvTranspose1d``): ``(N, C_in, L) -> (N, C_out,
    L_out)``, weight ``(C_in, C_out/groups, k)``, ``L_out = (L - 1)·s - 2p + d·(k - 1) +
    output_padding + 1``; call with ``output_size=`` to pick the output padding.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.ConvTranspose1d(4, 2, kernel_size=3, stride=2)
        >>> params, state = m.init(jax.random.key(0))
        >>> params["weight"].shape  # (C_in, C_out, k)
        (4, 2, 3)
        >>> x = jnp.ones((1, 4, 5))
        >>> y, state = m.apply(params, state, x)
        >>> y.shape  # (5 - 1)·2 + 3
        (1, 2, 11)
        >>> y, state = m.apply(params, state, x, output_size=[12])  # picks output_padding=1
        >>> y.shape
        (1, 2, 12)
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int]
    stride: int | tuple[int] = 1
    padding: int | tuple[int] = 0
    output_padding: int | tuple[int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int] = 1
    padding_mode: str = "zeros"
    _n = 1


@dataclass(frozen=True, repr=False)
class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution (``torch.nn.ConvTranspose2d``): ``(N, C_in, H, W) -> (N, C_out,
    H_out, W_out)`` (or unbatched; follows :func:`channels_last`), weight ``(C_in,
    C_out/groups, kH, kW)``, ``H_out = (H - 1)·s - 2p + d·(k - 1) + output_padding + 1``;
    call with ``output_size=`` to pick the output padding.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.ConvTranspose2d(8, 3, kernel_size=4, stride=2, padding=1)  # undoes a stride-2 conv's shape
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.ones((2, 8, 8, 8)))
        >>> y.shape  # (8 - 1)·2 - 2·1 + 4 = 16
        (2, 3, 16, 16)
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    output_padding: int | tuple[int, int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int, int] = 1
    padding_mode: str = "zeros"
    _n = 2


@dataclass(frozen=True, repr=False)
class ConvTranspose3d(_ConvTranspose):
    """3-D transposed convolution (``torch.nn.ConvTranspose3d``): ``(N, C_in, D, H, W) -> (N,
    C_out, D_out, H_out, W_out)``, weight ``(C_in, C_out/groups, kD, kH, kW)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from funcnets import nn
        >>> m = nn.ConvTranspose3d(2, 1, kernel_size=2, stride=2)
        >>> params, state = m.init(jax.random.key(0))
        >>> y, state = m.apply(params, state, jnp.ones((1, 2, 2, 3, 3)))
        >>> y.shape
        (1, 1, 4, 6, 6)
    """

    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int, int]
    stride: int | tuple[int, int, int] = 1
    padding: int | tuple[int, int, int] = 0
    output_padding: int | tuple[int, int, int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int, int, int] = 1
    padding_mode: str = "zeros"
    _n = 3

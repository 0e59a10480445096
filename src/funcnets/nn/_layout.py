"""Activation layouts and argument normalisation shared by every layer family.

4-D image activations are NCHW (torch's) unless a layout context says otherwise while
tracing: :func:`channels_last` (``(N, H, W, C)``, ResNet's trunk on CPU) or
:func:`batch_last` (``(C, H, W, N)``, LeNet's trunk on CPU). Weights always keep
torch's layouts. The private helpers here let a layer ask for the current layout's
channel axis, spatial size and the expected shape for error messages.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Sequence

import jax.numpy as jnp

from funcnets._typing import Array
from funcnets.errors import ShapeError
from funcnets.nn import _conv

__all__ = ["channels_last", "batch_last", "is_channels_last", "is_batch_last"]

IntOr2 = int | Sequence[int]


def _ntuple(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """``v`` as an ``n``-tuple of ints (torch's ``_single``/``_pair``/``_triple``)."""
    if isinstance(v, int):
        return (v,) * n
    t = tuple(int(i) for i in v)
    if len(t) != n:
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def _pair(v: IntOr2, name: str) -> tuple[int, int]:
    return _ntuple(v, 2, name)  # type: ignore[return-value]


# the axis order of 4-D activations while tracing: "NCHW" (torch's), "NHWC" or "CHWN"
_LAYOUT: contextvars.ContextVar[str] = contextvars.ContextVar("funcnets_layout", default="NCHW")


@contextlib.contextmanager
def _layout_block(layout: str) -> Iterator[None]:
    token = _LAYOUT.set(layout)
    try:
        yield
    finally:
        _LAYOUT.reset(token)


def channels_last() -> contextlib.AbstractContextManager[None]:
    """While tracing, 4-D activations are ``(N, H, W, C)`` for ``conv2d``, the poolings,
    ``batch_norm`` and the layers built on them (``Conv2d``, ``BatchNorm2d``, ...);
    weights stay in torch's layouts. XLA:CPU computes convolutions channels-last, so a
    network that stays channels-last between its convolutions saves a transpose in every
    fusion around them. Move the input with ``x.transpose(0, 2, 3, 1)`` and back with
    ``y.transpose(0, 3, 1, 2)`` before anything layout-specific (``flatten``).
    """
    return _layout_block("NHWC")


def batch_last() -> contextlib.AbstractContextManager[None]:
    """While tracing, 4-D activations are ``(C, H, W, N)`` for the same functions and
    layers as :func:`channels_last` (an unbatched input is ``(C, H, W)``). On CPU this
    is fastest for small images with few channels (LeNet): elementwise and pooling work
    vectorizes along the batch and the convolutions need no transposes (see
    ``nn/_conv.py``). Move the input with ``x.transpose(1, 2, 3, 0)`` and back with
    ``y.transpose(3, 0, 1, 2)`` before anything layout-specific (``flatten``, ``linear``).
    """
    return _layout_block("CHWN")


def is_channels_last() -> bool:
    """Whether functions traced now see ``(N, H, W, C)`` activations (:func:`channels_last`)."""
    return _LAYOUT.get() == "NHWC"


def is_batch_last() -> bool:
    """Whether functions traced now see ``(C, H, W, N)`` activations (:func:`batch_last`)."""
    return _LAYOUT.get() == "CHWN"


def _hw(x: Array) -> tuple[int, int]:
    """A 4-D activation's spatial size ``(H, W)`` in the current layout."""
    return _conv._spatial(x.shape, _LAYOUT.get())


def _nchw_pads(pads: tuple) -> tuple:
    """``((0, 0), (0, 0), h_pad, w_pad)`` in the current layout's axis order."""
    return pads if _LAYOUT.get() == "NCHW" else ((0, 0), pads[2], pads[3], (0, 0))


def _channels(x: Array) -> int:
    """The channel count of an image ``(N, C, H, W)``/``(C, H, W)`` in the current layout."""
    return x.shape[{"NCHW": -3, "NHWC": -1, "CHWN": 0}[_LAYOUT.get()]]


def _batch_axis() -> int:
    """Where a batch axis goes (``jnp.expand_dims``) or comes off an unbatched image."""
    return -1 if _LAYOUT.get() == "CHWN" else 0


def _layout(c: int | str = "C") -> str:
    """The expected activation shape with ``c`` channels, for error messages."""
    return {
        "NCHW": f"(N, {c}, H, W)",
        "NHWC": f"(N, H, W, {c}) (channels_last)",
        "CHWN": f"({c}, H, W, N) (batch_last)",
    }[_LAYOUT.get()]


def _check_4d(x: Array, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"{op} expects a 4-D input {_layout()}, got shape {tuple(x.shape)}. "
            f"Add a batch dimension with jnp.expand_dims(x, {_batch_axis()}) for a single image."
        )



def _check_float(layer: object, x: Array) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ShapeError(
            f"{layer!r} expected a floating-point input, got dtype {x.dtype}. "
            f"Convert it first, e.g. x.astype(jnp.float32) (images scaled to [0, 1])."
        )
